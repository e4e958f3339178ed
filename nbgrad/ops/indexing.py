"""Indexing primitives: `x[index]` and writes through an index. Basic indexing (ints,
slices, None, Ellipsis) is a view; gathers (`take`) and scatters (`index_put`) go through
flat element positions computed once in Python, so NumPy's indexing rules (and its bounds
checks) decide what an index means before any kernel sees it.

NOTE: Numba does not bounds-check. Indices that reach a kernel are validated in Python first
(`flat_positions` through NumPy, `first_out_of_range` with a small njit scan).
"""
import numba
import numpy as np

from .primitive import Primitive, register
from .shape import copy_into, flat_contiguous, view_primitive


@numba.njit(cache=True)
def take_kernel(x, positions, out):
    for i in range(positions.shape[0]):
        out[i] = x[positions[i]]


@numba.njit(cache=True)
def scatter_add_kernel(g, positions, out):
    for i in range(positions.shape[0]):
        out[positions[i]] += g[i]


@numba.njit(cache=True)
def put_kernel(out, positions, values):
    for i in range(positions.shape[0]):
        out[positions[i]] = values[i]


@numba.njit(cache=True, error_model="numpy")
def first_out_of_range(indices, size, ignore_index):
    """Position of the first index outside [0, size) that is not `ignore_index`; -1 if none."""
    for i in range(indices.shape[0]):
        t = indices[i]
        if (t < 0 or t >= size) and t != ignore_index:
            return i
    return -1


def flat_positions(shape, index):
    """Flat C-order positions of `index` applied to an array of `shape` (NumPy semantics)."""
    try:
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[index]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None


# --- basic indexing: a view ---------------------------------------------------------------

def _basic_index(x, index):
    return x[index]


def _basic_index_vjp(g, node):
    shape, dtype = node.input_meta[0]
    result = np.zeros(shape, g.dtype)
    copy_into(result[node.params["index"]], g)
    return result


# --- gathers and scatters ----------------------------------------------------------------

def _take_infer(x, positions):
    return positions.shape, x.dtype


def _take_forward(x, positions):
    out = np.empty(positions.shape, x.dtype)
    take_kernel(flat_contiguous(x), positions.reshape(-1), out.reshape(-1))
    return out


def _take_vjp(node, g):
    shape, _ = node.input_meta[0]
    result = np.zeros(shape, g.dtype)
    scatter_add_kernel(flat_contiguous(g), node.params["positions"].reshape(-1), result.reshape(-1))
    return (result,)


def _put_infer(x, values, positions):
    np.broadcast_shapes(values.shape, positions.shape)
    return x.shape, x.dtype


def put_values(out, values, positions):
    """Write `values` (broadcast to the index's shape) at `positions` of C-contiguous `out`."""
    try:
        values = np.broadcast_to(values.astype(out.dtype, copy=False), positions.shape)
    except ValueError:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(values.shape)} cannot be "
                           f"broadcast to indexing result of shape {list(positions.shape)}") from None
    put_kernel(out.reshape(-1), positions.reshape(-1), flat_contiguous(values))


def _put_forward(x, values, positions):
    out = np.empty(x.shape, x.dtype)
    copy_into(out, x)
    put_values(out, values, positions)
    return out


def _put_vjp(node, g):
    positions = node.params["positions"]
    grad_x = grad_v = None
    if node.needs[0]:
        grad_x = np.ascontiguousarray(g).copy()
        put_kernel(grad_x.reshape(-1), positions.reshape(-1), np.zeros(positions.size, g.dtype))
    if node.needs[1]:
        grad_v = _take_forward(g, positions)
    return grad_x, grad_v


PRIMS = {
    "basic_index": view_primitive("basic_index", "SliceBackward0", _basic_index,
                                  _basic_index_vjp),
    "take": register(Primitive("take", "IndexBackward0", _take_infer, _take_forward,
                               _take_vjp)),
    "index_put": register(Primitive("index_put", "CopySlices", _put_infer, _put_forward,
                                    _put_vjp, differentiable=(0, 1))),
}
