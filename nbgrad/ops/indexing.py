"""Indexing primitives: `x[index]` and writes through an index. Basic indexing (ints,
slices, None, Ellipsis) is a view; gathers (`take`) and scatters (`index_put`, `scatter_add`)
go through flat element positions computed once in Python, so NumPy's indexing rules (and its
bounds checks) decide what an index means before any kernel sees it. The ops that pick along
one dimension (gather, scatter, index_select, index_fill) and the rearrangements (repeat,
flip, roll) are these same primitives on positions from `positions_along` or NumPy.

NOTE: Numba does not bounds-check. Indices that reach a kernel are validated in Python first
(`flat_positions` through NumPy, `first_out_of_range` with a small njit scan).
"""
import math

import numba
import numpy as np

from .primitive import Primitive, register
from .shape import copy_into, flat_contiguous, index_source, view_primitive


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


def _check_masks(shape, index):
    """PyTorch's IndexError for a boolean mask whose shape is not that of the dimensions it
    indexes. NOTE: NumPy takes an empty mask for any size (as an empty list of indices):
    `x[mask_of_0] = v` would write nothing where PyTorch refuses."""
    def dims_taken(part):
        if part is None or part is Ellipsis or isinstance(part, bool):
            return 0
        if isinstance(part, np.ndarray):
            return part.ndim if part.dtype == np.bool_ else 1
        return 1
    ellipsis = sum(part is Ellipsis for part in index)
    rest = len(shape) - sum(dims_taken(part) for part in index)
    dim = 0
    for part in index:
        if part is Ellipsis:
            dim += max(rest, 0) if ellipsis == 1 else 0
            continue
        if isinstance(part, np.ndarray) and part.dtype == np.bool_:
            for k, size in enumerate(part.shape):
                if dim + k < len(shape) and size != shape[dim + k]:
                    raise IndexError(f"The shape of the mask {list(part.shape)} at index {k} "
                                     f"does not match the shape of the indexed tensor "
                                     f"{list(shape)} at index {dim + k}")
        dim += dims_taken(part)


def torch_stages(index):
    """`index` (a tuple NumPy reads) as two to apply one after the other, array[basic][rest],
    where NumPy would read it otherwise than PyTorch does; else None.

    NOTE: NumPy counts an integer (and a 0-d mask, x[True]) as an advanced index, and puts
    the dimensions of advanced indices that are not side by side first: x[1, :, [0, 2]] of
    a (4, 4, 3) array is (2, 4) there. PyTorch selects an integer's dimension first (and
    unsqueezes for a 0-d mask), then indexes with the arrays alone: (4, 2). So `basic` is the
    index with each array replaced by whole slices over its dimensions (a 0-d mask by None),
    and `rest` indexes that view with the arrays (a 0-d mask as [0] or [])."""
    arrays = [isinstance(part, np.ndarray) and part.ndim > 0 for part in index]
    scalars = [isinstance(part, (int, np.integer)) or
               (isinstance(part, np.ndarray) and part.ndim == 0) for part in index]
    if not any(arrays) or not any(scalars):
        return None
    basic, rest = [], []
    for part, is_array in zip(index, arrays):
        if is_array:
            basic += [slice(None)] * (part.ndim if part.dtype == np.bool_ else 1)
            rest.append(part)
        elif isinstance(part, np.ndarray) and part.dtype == np.bool_:  # a 0-d mask
            basic.append(None)
            rest.append(np.zeros(int(part), np.int64))
        elif isinstance(part, (int, np.integer, np.ndarray)):  # (or a 0-d integer array)
            basic.append(int(part))
        else:  # a slice, None or Ellipsis: a view dimension (or dimensions) kept whole
            basic.append(part)
            rest.append(part if part is Ellipsis else slice(None))
    return tuple(basic), tuple(rest)


def flat_positions(shape, index):
    """Flat C-order positions of `index` applied to an array of `shape` (PyTorch's reading:
    see torch_stages)."""
    _check_masks(shape, index)
    positions = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    stages = torch_stages(index)
    try:
        return positions[index] if stages is None else positions[stages[0]][stages[1]]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None


def is_index_array(array):
    """Whether `array` holds indices PyTorch takes along a dimension: int32 or int64."""
    return array.dtype.kind in "iu" and array.dtype.itemsize >= 4


def positions_along(shape, dim, index, op, src_shape=None):
    """Flat C-order positions, in an array of `shape`, of the elements that integer array
    `index` picks along `dim` (gather's rule: result[i0, .., ik, ..] is
    x[i0, .., index[i0, .., ik, ..], ..]), after PyTorch's checks of `op` ("gather" or
    "scatter", with `src_shape` for a scatter from a tensor) on the index's dtype, rank, sizes
    and values. `index` may be smaller than `shape` in every dimension but `dim`."""
    if index.size == 0:  # (as PyTorch: an empty index is not checked, not even its dtype)
        return np.zeros(index.shape, np.int64)
    if not is_index_array(index):
        raise RuntimeError(f"{op}(): Expected dtype int32/int64 for index")
    # As PyTorch, a 0-d array counts as one of shape [1] here.
    result_shape, shape, index = index.shape, shape or (1,), index.reshape(index.shape or (1,))
    for other, other_shape in (("input" if op == "gather" else "self", shape), ("src", src_shape)):
        if other_shape is not None and index.ndim != len(other_shape or (1,)):
            raise RuntimeError(f"Index tensor must have the same number of dimensions as {other} "
                               "tensor")
    too_large = [d for d, (n, s) in enumerate(zip(index.shape, shape)) if d != dim and n > s]
    if too_large or (src_shape is not None and
                     any(n > s for n, s in zip(index.shape, src_shape or (1,)))):
        sizes = (f"index {list(index.shape)} to be no larger than self {list(shape)} apart from "
                 f"dimension {dim}")
        if op == "gather":
            raise RuntimeError(f"Size does not match at dimension {too_large[0]} expected {sizes}")
        than_src = "" if src_shape is None else f" and to be no larger size than src {list(src_shape)}"
        raise RuntimeError(f"Expected {sizes}{than_src}")
    flat = flat_contiguous(index)
    if flat.size:
        # NOTE: the scan's "ignored" value is 0, an index that is always valid here.
        first = first_out_of_range(flat, shape[dim], 0)
        if first >= 0:
            raise RuntimeError(f"index {flat[first]} is out of bounds for dimension {dim} "
                               f"with size {shape[dim]}")
    strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
    positions = index.astype(np.int64) * strides[dim]
    for d, extent in enumerate(index.shape):
        if d != dim:
            positions += (np.arange(extent) * strides[d]).reshape((-1,) + (1,) * (index.ndim - d - 1))
    return positions.reshape(result_shape)


# --- differentiable VJPs (create_graph=True): the kernels' scatters as Tensor indexing ----

def _summed_groups(positions):
    """The repeated positions of flat `positions` in groups: a list of (where, picks), where
    the values at `positions` indexes `picks` (an (n, width) array, each row the indices of
    one position's occurrences in order, padded with `positions.size`) add up to the value
    at `where[row]`. Groups are by count rounded up to a power of two, so that padding at
    most doubles them and there are log2(most repeats) + 1 of them at most."""
    size = positions.size
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, size])
    widths = 1 << np.ceil(np.log2(counts)).astype(np.int64)
    group_of = np.repeat(np.arange(starts.size), counts)  # of each element, in sorted order
    rank = np.arange(size) - np.repeat(starts, counts)  # its occurrence within its position
    groups = []
    for width in np.unique(widths):
        members = np.flatnonzero(widths == width)
        row_of = np.full(starts.size, -1)
        row_of[members] = np.arange(members.size)
        elements = np.flatnonzero(widths[group_of] == width)
        picks = np.full((members.size, width), size)
        picks[row_of[group_of[elements]], rank[elements]] = order[elements]
        groups.append((ordered[starts[members]], picks))
    return groups


def scattered(g, positions, shape):
    """`scatter_add_kernel` as Tensor operations: zeros of `shape` plus Tensor `g` (of the
    shape of `positions`) added at flat `positions`, so differentiable again. Indexed
    writes keep one value per position, so a position's values are summed first (rows of
    a matrix of them padded with zeros, by `sum`, whose kernel may reassociate: the last
    bits may differ from the scatter kernel's), and each position is written once."""
    flat, positions = g.reshape(-1), positions.reshape(-1)
    result = g.new_zeros((math.prod(shape),))
    if not positions.size:
        return result.reshape(shape)
    padded = g.new_zeros((positions.size + 1,))  # g, then a zero the padding picks
    padded[:positions.size] = flat
    for where, picks in _summed_groups(positions):
        result[where] = padded[picks].sum(1)
    return result.reshape(shape)


def picked(g, positions):
    """`take` of Tensor `g` at flat `positions` (an array of any shape), by Tensor indexing."""
    return g.reshape(-1)[positions]


def _take_differentiable_vjp(node, g, saved):
    return (scattered(g, node.params["positions"], node.input_meta[0][0]),)


def _scatter_add_differentiable_vjp(node, g, saved):
    return (g if node.needs[0] else None,
            picked(g, node.params["positions"]) if node.needs[1] else None)


def _put_differentiable_vjp(node, g, saved):
    positions = node.params["positions"]
    grad_x = None
    if node.needs[0]:
        grad_x = g.reshape(-1).clone()
        grad_x[positions.reshape(-1)] = 0.0
        grad_x = grad_x.reshape(node.input_meta[0][0])
    return grad_x, picked(g, positions) if node.needs[1] else None


def _basic_index_differentiable_vjp(g, node):
    result = g.new_zeros(node.input_meta[0][0])
    result[node.params["index"]] = g
    return result


# --- basic indexing: a view ---------------------------------------------------------------

def _basic_index(x, index):
    return x[index]


class _BasicIndexFusion:
    """x[1:, ::2], x[:, 0], x[None]: a copy in the fused step, read through the view (see
    shape._CopiedViewFusion: a step that reads it after a write into its memory runs
    eagerly); its gradient, zeros with g copied into the view's place."""
    copies_view = True

    def forward(self, em, arrays, params, out):
        x = arrays[0]
        where = f"{em.ref(x)}[{index_source(params['index'], x.shape)}]"
        name = em.out(out)
        # (an index that picks one element reads a number)
        em.copy(where if out.ndim == 0 else (em.local_view(where), out.shape), name, out.shape)

    def vjp(self, em, node, g, input_grads):
        grad = input_grads[0]
        if grad is None:
            return
        name = em.out(grad)
        em.elementwise(em.literal(0, grad.dtype), {}, name, grad.shape, name)
        where = f"{name}[{index_source(node.params['index'], grad.shape)}]"
        if g.ndim == 0:
            em.emit(f"{where} = {em.ref(g)}.reshape(1)[0]")
        else:
            em.copy((em.ref(g), g.shape), em.local_view(where), g.shape)


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


def _scatter_add_infer(x, src, positions):
    if src.dtype != x.dtype:
        raise RuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    if src.shape != positions.shape:
        raise RuntimeError(f"scatter_add: src of shape {list(src.shape)} does not match the "
                           f"index's shape {list(positions.shape)}")
    return x.shape, x.dtype


def _scatter_add_forward(x, src, positions):
    _scatter_add_infer(x, src, positions)
    out = np.empty(x.shape, x.dtype)
    copy_into(out, x)
    scatter_add_kernel(flat_contiguous(src), positions.reshape(-1), out.reshape(-1))
    return out


def _scatter_add_vjp(node, g):
    return (g if node.needs[0] else None,
            _take_forward(g, node.params["positions"]) if node.needs[1] else None)


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


# --- unfold: windows along one dimension, as a view (Tensor.unfold) ------------------------

def unfold_view(x, dimension, size, step):
    """The windows of `size` elements, one every `step`, along `dimension` of array `x`
    (checked by the caller to fit): that dimension counts the windows, a new last one holds
    each window's elements. A strided view of x's memory (windows that overlap share it)."""
    if x.ndim == 0:
        return x.reshape(1)  # (PyTorch's: a 0-d tensor is one window of one element)
    count = (x.shape[dimension] - size) // step + 1
    stride = x.strides[dimension]
    return np.lib.stride_tricks.as_strided(
        x, x.shape[:dimension] + (count,) + x.shape[dimension + 1:] + (size,),
        x.strides[:dimension] + (stride * step,) + x.strides[dimension + 1:] + (stride,))


def _unfold_positions(node):
    """The flat position in the input of each element of the unfolded view."""
    shape = node.input_meta[0][0]
    return np.ascontiguousarray(unfold_view(np.arange(math.prod(shape)).reshape(shape),
                                            **node.params))


def _unfold_vjp(g, node):
    # Overlapping windows (step < size) read an element more than once: its gradients add up.
    result = np.zeros(node.input_meta[0][0], g.dtype)
    scatter_add_kernel(flat_contiguous(g), _unfold_positions(node).reshape(-1),
                       result.reshape(-1))
    return result


PRIMS = {
    # No fused rule: a step that unfolds runs the view eagerly.
    "unfold": view_primitive("unfold", "UnfoldBackward0", unfold_view, _unfold_vjp,
                             differentiable_undo=lambda g, node: scattered(
                                 g, _unfold_positions(node), node.input_meta[0][0])),
    "basic_index": view_primitive("basic_index", "SliceBackward0", _basic_index,
                                  _basic_index_vjp, fuse=_BasicIndexFusion(),
                                  differentiable_undo=_basic_index_differentiable_vjp),
    "take": register(Primitive("take", "IndexBackward0", _take_infer, _take_forward,
                               _take_vjp, differentiable_vjp=_take_differentiable_vjp)),
    "index_put": register(Primitive("index_put", "CopySlices", _put_infer, _put_forward,
                                    _put_vjp, differentiable=(0, 1),
                                    differentiable_vjp=_put_differentiable_vjp,
                                    scalar_overloads={"ScatterBackward1": (0,),
                                                      "IndexFillBackward0": (0,)})),
    # scatter_add: `out = x.clone(); out.flat[positions] += src`, with repeated positions
    # adding up (index_put would keep one of them). `src` has the positions' shape.
    "scatter_add": register(Primitive("scatter_add", "ScatterAddBackward0", _scatter_add_infer,
                                      _scatter_add_forward, _scatter_add_vjp,
                                      differentiable=(0, 1),
                                      differentiable_vjp=_scatter_add_differentiable_vjp)),
}
