"""Shape and indexing primitives. Views (reshape, permute, expand, basic indexing) share
memory and PyTorch's version counter with their input; gathers and scatters go through
flat element positions computed once in Python, so NumPy's indexing rules (and its
bounds checks) decide what an index means before any kernel sees it.
"""
import functools

import numba
import numpy as np

from .._core.dtype import from_numpy_dtype, promote_types
from .primitive import Primitive, register
from . import elementwise


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


def _copy_into(target, source):
    elementwise.run(elementwise.COPY, (source,), (), target.shape, target.dtype, out=target)


def flat_positions(shape, index):
    """Flat C-order positions of `index` applied to an array of `shape` (NumPy semantics)."""
    try:
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[index]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None


def flat_contiguous(x):
    """`x` as a 1-D C-contiguous array: a view when it already is contiguous, else a copy."""
    return x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)


# --- views ------------------------------------------------------------------------------

def _view(name, grad_fn, make, undo):
    """A view primitive: `make(x, **params)` gives the view, `undo(g, node)` the VJP."""
    def infer(x, **params):
        # A zero-strided stand-in has the right shape without touching (or allocating) data.
        return make(np.broadcast_to(np.zeros((), x.dtype), x.shape), **params).shape, x.dtype

    return register(Primitive(name, grad_fn, infer, make, lambda node, g: (undo(g, node),),
                              view=True))


def _reshape(x, shape):
    try:
        return x.reshape(shape)
    except ValueError:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {x.size}") from None


def _expand(x, shape):
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        raise RuntimeError(f"The expanded size of the tensor ({shape[-1]}) must match the existing "
                           f"size ({x.shape[-1] if x.ndim else 1}) at non-singleton dimension; "
                           f"target sizes: {list(shape)}. Tensor sizes: {list(x.shape)}") from None


def _basic_index(x, index):
    return x[index]


def _basic_index_vjp(g, node):
    shape, dtype = node.input_meta[0]
    result = np.zeros(shape, g.dtype)
    _copy_into(result[node.params["index"]], g)
    return result


PRIMS = {
    "reshape": _view("reshape", "ViewBackward0", _reshape,
                     lambda g, node: g.reshape(node.input_meta[0][0])),
    "permute": _view("permute", "PermuteBackward0", lambda x, dims: x.transpose(dims),
                     lambda g, node: g.transpose(np.argsort(node.params["dims"]))),
    # The engine sums a gradient back to the input's shape, so expand's VJP is the identity.
    "expand": _view("expand", "ExpandBackward0", _expand, lambda g, node: g),
    "basic_index": _view("basic_index", "SliceBackward0", _basic_index, _basic_index_vjp),
}


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
    _copy_into(out, x)
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


PRIMS["take"] = register(Primitive("take", "IndexBackward0", _take_infer, _take_forward,
                                   _take_vjp))
PRIMS["index_put"] = register(Primitive("index_put", "CopySlices", _put_infer, _put_forward,
                                        _put_vjp, differentiable=(0, 1)))


# --- cat / stack ---------------------------------------------------------------------------

def _concat_plan(shapes, dim, stack):
    first = shapes[0]
    if stack:
        for i, s in enumerate(shapes):
            if s != first:
                raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                                   f"{list(first)} at entry 0 and {list(s)} at entry {i}")
        return first[:dim] + (len(shapes),) + first[dim:]
    for i, s in enumerate(shapes):
        if len(s) != len(first):
            raise RuntimeError(f"Tensors must have same number of dimensions: got {len(first)} "
                               f"and {len(s)}")
        for d, (a, b) in enumerate(zip(first, s)):
            if d != dim and a != b:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. "
                                   f"Expected size {a} but got size {b} for tensor number {i} "
                                   "in the list.")
    return first[:dim] + (sum(s[dim] for s in shapes),) + first[dim + 1:]


def _pieces(dim, sizes, stack):
    """The index of each input's block inside the output."""
    start = 0
    for size in sizes:
        lead = (slice(None),) * dim
        # The trailing Ellipsis keeps 0-d blocks as views rather than NumPy scalars.
        yield lead + ((start,) if stack else (slice(start, start + size),)) + (Ellipsis,)
        start += 1 if stack else size


def _concat_dtype(arrays):
    # PyTorch's promotion, not NumPy's: cat of int64 and float32 is float32.
    return functools.reduce(promote_types, [from_numpy_dtype(a.dtype) for a in arrays]).np


def _concat_infer(*arrays, dim, stack):
    return _concat_plan([a.shape for a in arrays], dim, stack), _concat_dtype(arrays)


def _concat_forward(*arrays, dim, stack):
    shape = _concat_plan([a.shape for a in arrays], dim, stack)
    out = np.empty(shape, _concat_dtype(arrays))
    sizes = [1 if stack else a.shape[dim] for a in arrays]
    for array, where in zip(arrays, _pieces(dim, sizes, stack)):
        if array.size:
            _copy_into(out[where], array)
    return out


def _concat_vjp(node, g):
    dim, stack = node.params["dim"], node.params["stack"]
    sizes = [1 if stack else shape[dim] for shape, _ in node.input_meta]
    return tuple(g[where] if needed else None
                 for where, needed in zip(_pieces(dim, sizes, stack), node.needs))


class _AllInputs(tuple):
    """`differentiable` for variadic primitives: every position is."""

    def __contains__(self, item):
        return True


PRIMS["concat"] = register(Primitive("concat", "CatBackward0", _concat_infer, _concat_forward,
                                     _concat_vjp, differentiable=_AllInputs()))


class _ReshapeFusion:
    """reshape/view/squeeze/unsqueeze/flatten: a view inside the fused step too."""

    def forward(self, em, arrays, params, out):
        em.define(out, f"{em.ref(arrays[0])}.reshape({out.shape!r})")

    def vjp(self, em, node, g, raw):
        em.define(raw[0], f"{em.ref(g)}.reshape({raw[0].shape!r})")


PRIMS["reshape"].fuse = _ReshapeFusion()
