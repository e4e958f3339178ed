"""embedding: rows of weight (num_embeddings, dim) picked by int64 indices of any shape. A
primitive for speed: its backward scatter-adds into a (num_embeddings, dim) array instead of
the full-size positions `take` would compute. Its fused rule calls the same two kernels.
(embedding_bag, below, has none yet: a step that calls it runs eagerly.)

NOTE: Numba does not bounds-check. The indices are validated in Python (with a small njit
scan) before a kernel uses them, at forward and again at backward: the saved indices may
share memory with a NumPy array (`from_numpy`) that the user changed in between, which no
version counter sees.
"""
import functools

import numba
import numpy as np

from .indexing import first_out_of_range, scattered
from .primitive import TORCH_TYPE_NAMES, Primitive, register
from .shape import flat_contiguous

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def embedding_kernel(weight, indices, out):
    # NOTE: element by element, not `out[i, :] = weight[row, :]`: Numba compiles an array
    # assigned into a slice with its shape-mismatch error, whose message formatting took
    # 3.7 s of a cold compile (and again in each fused step that called the kernel).
    for i in range(indices.shape[0]):
        row = indices[i]
        for d in range(out.shape[1]):
            out[i, d] = weight[row, d]


@_jit
def embedding_backward_kernel(g, indices, padding_idx, by_frequency, grad_weight):
    """The rows of g added at their indices' rows (not padding_idx's); with `by_frequency`
    (scale_grad_by_freq), each divided by how often its index occurs in `indices`."""
    grad_weight[:] = 0.0
    counts = np.zeros(grad_weight.shape[0] if by_frequency else 0, np.int64)
    for i in range(indices.shape[0] * by_frequency):
        counts[indices[i]] += 1
    for i in range(indices.shape[0]):
        row = indices[i]
        if row != padding_idx:
            for d in range(g.shape[1]):  # (element by element: see embedding_kernel)
                grad_weight[row, d] += g[i, d] / counts[row] if by_frequency else g[i, d]


# How PyTorch names a tensor's type in embedding's message about the indices.
_INDEX_TYPE_NAMES = {"float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
                     "bool": "CPUBoolType"}


def _embedding_infer(weight, indices, padding_idx=-1, by_frequency=False):
    if indices.dtype.kind not in "iu":
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {_INDEX_TYPE_NAMES[indices.dtype.name]} "
                           "instead (while checking arguments for embedding)")
    if weight.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    return indices.shape + weight.shape[1:], weight.dtype


def _check_embedding_indices(flat, num_embeddings):
    """PyTorch's errors for indices outside [0, num_embeddings) (padding_idx rows are read too)."""
    if not flat.size:
        return
    if num_embeddings == 0:
        raise RuntimeError("index_select(): self indexing axis dim should be positive")
    # NOTE: the scan's "ignored" value is 0, an index that is valid whenever the table has
    # rows, so it excuses nothing.
    if first_out_of_range(flat, num_embeddings, 0) >= 0:
        raise IndexError("index out of range in self")


def _embedding_check(weight, indices, padding_idx=-1, by_frequency=False):
    """The index errors of a deferred call, at the call (its kernel runs later)."""
    _check_embedding_indices(flat_contiguous(indices), weight.shape[0])


def _embedding_forward(weight, indices, padding_idx=-1, by_frequency=False):
    shape, dtype = _embedding_infer(weight, indices, padding_idx)
    flat = flat_contiguous(indices)
    _check_embedding_indices(flat, weight.shape[0])
    out = np.empty((flat.shape[0], weight.shape[1]), dtype)
    embedding_kernel(weight, flat, out)
    return out.reshape(shape)


def _embedding_vjp(node, g):
    (indices,) = node.saved
    weight_shape = node.input_meta[0][0]
    flat = flat_contiguous(indices)
    # NOTE: PyTorch's backward skips indices that went out of range since forward; an error
    # is better than a gradient that silently lacks them.
    _check_embedding_indices(flat, weight_shape[0])  # see the module's NOTE
    grad = np.empty(weight_shape, g.dtype)
    embedding_backward_kernel(np.ascontiguousarray(g).reshape(-1, weight_shape[1]), flat,
                              node.params["padding_idx"], node.params["by_frequency"], grad)
    return grad, None


def _embedding_differentiable_vjp(node, g, saved):
    """`_embedding_vjp` as Tensor operations (create_graph=True): the rows of g added into
    zeros at their indices' rows, but the padding_idx ones."""
    (indices,) = saved
    weight_shape = node.input_meta[0][0]
    flat = flat_contiguous(indices.numpy())
    _check_embedding_indices(flat, weight_shape[0])  # see the module's NOTE
    rows = np.flatnonzero(flat != node.params["padding_idx"])
    width = weight_shape[1]
    positions = flat[rows, None] * width + np.arange(width)
    picked = g.reshape(-1, width)[rows]
    if node.params["by_frequency"]:
        counts = np.bincount(flat, minlength=weight_shape[0])
        picked = picked / g.new_tensor(counts[flat[rows], None].astype(np.float64)).to(g.dtype)
    return scattered(picked, positions, weight_shape), None


@functools.lru_cache(maxsize=256)
def _indices_check(num_embeddings):
    """`_check_embedding_indices` for one table size, as one object per size: a fused step's
    forward and backward rules add it once."""
    return lambda indices: _check_embedding_indices(flat_contiguous(indices), num_embeddings)


class _EmbeddingFusion:
    """The eager kernels, called on the step's arrays. The indices are an argument of the
    step that changes from call to call: they are range-checked in Python before each call
    (see the module's NOTE)."""

    @staticmethod
    def _checked_indices(em, indices, num_embeddings):
        name = em.ref(indices)
        check = (_indices_check(num_embeddings), name)
        if check not in em.preconditions:
            em.precondition(*check)
        return f"{name}.reshape({indices.size})"

    def forward(self, em, arrays, params, out):
        weight, indices = arrays
        flat = self._checked_indices(em, indices, weight.shape[0])
        em.emit(f"{em.kernel(embedding_kernel)}({em.ref(weight)}, {flat}, "
                f"{em.out(out)}.reshape({(indices.size, weight.shape[1])}))")

    def vjp(self, em, node, g, input_grads):
        grad = input_grads[0]
        if grad is None:
            return
        (indices,) = node.saved
        flat = self._checked_indices(em, indices, grad.shape[0])
        em.emit(f"{em.kernel(embedding_backward_kernel)}("
                f"{em.ref(g)}.reshape({(indices.size, grad.shape[1])}), {flat}, "
                f"{em.scalar(node.params['padding_idx'])}, "
                f"{em.scalar(node.params['by_frequency'])}, {em.out(grad)})")


# --- embedding_bag ---------------------------------------------------------------------------
# Bags of rows reduced without the (indices, dim) array of their rows: bag b reads
# indices[bounds[b]:bounds[b + 1]] (ids equal to padding_idx left out), summed (scaled by
# per_sample_weights), averaged or maximized per column. A primitive for the same reason as
# embedding (PyTorch's EmbeddingBagBackward0 scatter-adds into the weight's rows).

EMBEDDING_BAG_MODES = ("sum", "mean", "max")


@_jit
def embedding_bag_kernel(weight, indices, bounds, per_sample_weights, mode, padding_idx, out,
                         argmax):
    """out[b] = the bag's reduction (zeros for a bag without rows); in max mode argmax[b, d]
    is the row whose column d is the maximum (the first of ties, as PyTorch: a later one
    must be larger; -1 for an empty bag)."""
    weighted = per_sample_weights.shape[0] > 0
    for b in range(out.shape[0]):
        out[b, :] = 0.0
        taken = 0
        for i in range(bounds[b], bounds[b + 1]):
            row = indices[i]
            if row == padding_idx:
                continue
            if mode == 2:
                for d in range(out.shape[1]):
                    value = weight[row, d]
                    if taken == 0 or value > out[b, d]:
                        out[b, d] = value
                        argmax[b, d] = row
            elif weighted:
                for d in range(out.shape[1]):
                    out[b, d] += weight[row, d] * per_sample_weights[i]
            else:
                for d in range(out.shape[1]):  # (element by element: see embedding_kernel)
                    out[b, d] += weight[row, d]
            taken += 1
        for d in range(out.shape[1] * (mode == 1 and taken > 0)):
            out[b, d] /= taken
        if mode == 2 and taken == 0:
            argmax[b, :] = -1


@_jit
def embedding_bag_backward_kernel(g, indices, bounds, per_sample_weights, mode, padding_idx,
                                  by_frequency, argmax, grad_weight):
    """The weight's gradient: g[b] (over the bag's size in mean mode, times the id's weight,
    over the id's count in `indices` with `by_frequency`) added into each of its ids' rows;
    in max mode g[b, d] into the row of column d's maximum."""
    grad_weight[:] = 0.0
    if mode == 2:
        for b in range(g.shape[0]):
            for d in range(g.shape[1]):
                if argmax[b, d] >= 0:
                    grad_weight[argmax[b, d], d] += g[b, d]
        return
    counts = np.zeros(grad_weight.shape[0] if by_frequency else 0, np.int64)
    for i in range(indices.shape[0] * by_frequency):
        counts[indices[i]] += 1
    weighted = per_sample_weights.shape[0] > 0
    for b in range(g.shape[0]):
        taken = 0
        for i in range(bounds[b], bounds[b + 1]):
            taken += indices[i] != padding_idx
        for i in range(bounds[b], bounds[b + 1]):
            row = indices[i]
            if row == padding_idx:
                continue
            scale = 1.0
            if mode == 1:
                scale /= taken
            if weighted:
                scale *= per_sample_weights[i]
            if by_frequency:
                scale /= counts[row]
            for d in range(g.shape[1]):
                grad_weight[row, d] += g[b, d] * scale


@_jit
def embedding_bag_sample_weights_backward_kernel(g, weight, indices, bounds, padding_idx, grad):
    """per_sample_weights' gradient: the dot product of its bag's g and its id's row (0 for
    padding_idx and for ids in no bag)."""
    grad[:] = 0.0
    for b in range(g.shape[0]):
        for i in range(bounds[b], bounds[b + 1]):
            row = indices[i]
            if row != padding_idx:
                total = 0.0
                for d in range(g.shape[1]):
                    total += g[b, d] * weight[row, d]
                grad[i] = total


def _tensor_type(array_or_dtype):
    return f"torch.{TORCH_TYPE_NAMES[np.dtype(getattr(array_or_dtype, 'dtype', array_or_dtype)).name]}Tensor"


def _embedding_bag_infer(weight, indices, offsets, per_sample_weights, mode, padding_idx=-1,
                         by_frequency=False, include_last_offset=False):
    # As PyTorch, the ids and offsets are read in their promoted type, which must be an
    # int or a long (int8 ids with int64 offsets are taken; int8 both are not).
    floating = [array.dtype for array in (indices, offsets) if array.dtype.kind not in "iub"]
    common = floating[0] if floating else np.promote_types(indices.dtype, offsets.dtype)
    if common not in (np.int32, np.int64):
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the "
                           f"following scalar types: Long, Int; but got {_tensor_type(common)} "
                           "instead (while checking arguments for embedding_bag)")
    if weight.dtype.kind != "f":
        raise RuntimeError("Expected tensor for argument #1 'weight' to have one of the following "
                           "scalar types: Half, BFloat16, Float, Double; but got "
                           f"{_tensor_type(weight)} instead (while checking arguments for "
                           "embedding_bag)")
    if per_sample_weights.size and per_sample_weights.dtype != weight.dtype:
        raise RuntimeError("Expected tensor for argument #1 'weight' to have the same type as "
                           "tensor for argument #1 'per_sample_weights'; but type "
                           f"{_tensor_type(weight)} does not equal "
                           f"{_tensor_type(per_sample_weights)} (while checking arguments for "
                           "embedding_bag)")
    if include_last_offset and not offsets.shape[0]:
        raise RuntimeError("include_last_offset: number of offset should be at least 1")
    bags = offsets.shape[0] - include_last_offset
    return (bags, weight.shape[1]), weight.dtype


def _bag_bounds(num_embeddings, indices, offsets, include_last_offset):
    """Where each bag starts and ends in `indices` (int64, one more than the bags), after
    PyTorch's checks of the offsets and the ids; the ids as contiguous int64."""
    offsets = flat_contiguous(offsets).astype(np.int64, copy=False)
    ids = flat_contiguous(indices).astype(np.int64, copy=False)
    if offsets.size:
        if offsets[0] != 0:
            raise RuntimeError("offsets[0] has to be 0, i.e., the first sequence in the mini-batch "
                               f"has to start from position 0. However, got {offsets[0]}")
        if offsets[-1] > ids.size:
            raise RuntimeError(f"offsets[-1] can not be greater than input's length {ids.size} "
                               f"but got offsets[-1] of {offsets[-1]}")
        # NOTE: PyTorch's CPU kernels assert on decreasing offsets in sum and mean mode
        # ("Expected i < index_size to be true") and read garbage in max mode; a kernel
        # here would read out of range.
        falls = np.flatnonzero(np.diff(offsets) < 0)
        if falls.size:
            raise RuntimeError(f"embedding_bag: offsets must not decrease, but offsets"
                               f"[{falls[0] + 1}] = {offsets[falls[0] + 1]} follows "
                               f"{offsets[falls[0]]}")
    bounds = offsets if include_last_offset else np.append(offsets, ids.size)
    if bounds.size > 1:
        used = ids[:bounds[-1]]
        if used.size:
            wrong = first_out_of_range(used, num_embeddings, 0)
            if wrong >= 0:
                raise RuntimeError("embedding_bag: Expected idx >= 0 && idx < num_embeddings but "
                                   f"found idx to be {used[wrong]}")
    return ids, bounds


def _embedding_bag_check(weight, indices, offsets, per_sample_weights, mode, padding_idx=-1,
                         by_frequency=False, include_last_offset=False):
    _bag_bounds(weight.shape[0], indices, offsets, include_last_offset)


def _embedding_bag_forward_saving(weight, indices, offsets, per_sample_weights, mode,
                                  padding_idx=-1, by_frequency=False, include_last_offset=False):
    shape, dtype = _embedding_bag_infer(weight, indices, offsets, per_sample_weights, mode,
                                        include_last_offset=include_last_offset)
    ids, bounds = _bag_bounds(weight.shape[0], indices, offsets, include_last_offset)
    out = np.empty(shape, dtype)
    argmax = np.empty(shape if mode == "max" else (0, 0), np.int64)
    embedding_bag_kernel(weight, ids, bounds, flat_contiguous(per_sample_weights),
                         EMBEDDING_BAG_MODES.index(mode), padding_idx, out, argmax)
    return out, argmax


def _embedding_bag_forward(*arrays, **params):
    return _embedding_bag_forward_saving(*arrays, **params)[0]


def _saved_bags(node):
    """The saved ids and bag bounds, checked again (see the module's NOTE)."""
    _, indices, offsets = node.saved[:3]
    return _bag_bounds(node.input_meta[0][0][0], indices, offsets,
                       node.params["include_last_offset"])


def _embedding_bag_vjp(node, g):
    weight, _, _, per_sample_weights, argmax = node.saved
    ids, bounds = _saved_bags(node)
    params = node.params
    g = np.ascontiguousarray(g)
    grad_weight = grad_samples = None
    if node.needs[0]:
        grad_weight = np.empty(node.input_meta[0][0], g.dtype)
        embedding_bag_backward_kernel(
            g, ids, bounds, flat_contiguous(per_sample_weights),
            EMBEDDING_BAG_MODES.index(params["mode"]), params["padding_idx"],
            params["by_frequency"], argmax, grad_weight)
    if node.needs[3]:
        grad_samples = np.empty(ids.shape, g.dtype)
        embedding_bag_sample_weights_backward_kernel(g, np.ascontiguousarray(weight), ids, bounds,
                                                     params["padding_idx"], grad_samples)
    return grad_weight, None, None, grad_samples


def _embedding_bag_differentiable_vjp(node, g, saved):
    """`_embedding_bag_vjp` as Tensor operations (create_graph=True): the bags' rows of g,
    scaled as the kernel scales them, added into zeros at their ids' rows; the sample
    weights' gradient the row-wise dot products of g's and the weight's rows."""
    weight, _, _, per_sample_weights, argmax = saved
    ids, bounds = _saved_bags(node)
    params = node.params
    weight_shape = node.input_meta[0][0]
    width = weight_shape[1]
    grad_weight = grad_samples = None
    if params["mode"] == "max":
        argmax = argmax.numpy()
        kept = np.flatnonzero(argmax.reshape(-1) >= 0)
        positions = argmax.reshape(-1)[kept] * width + kept % width
        return scattered(g.reshape(-1)[kept], positions, weight_shape), None, None, None
    bag_of = np.repeat(np.arange(bounds.size - 1), np.diff(bounds))
    members = np.flatnonzero(ids[:bounds[-1]] != params["padding_idx"])
    rows, bags = ids[members], bag_of[members]
    picked = g[bags]
    if node.needs[0]:
        scale = np.ones(members.size)
        if params["mode"] == "mean":
            scale /= np.bincount(bags, minlength=bounds.size - 1)[bags]
        if params["by_frequency"]:
            scale /= np.bincount(ids, minlength=weight_shape[0])[rows]
        rows_of_g = picked * g.new_tensor(scale[:, None]).to(g.dtype)
        if per_sample_weights.numel():
            rows_of_g = rows_of_g * per_sample_weights[members][:, None]
        grad_weight = scattered(rows_of_g, rows[:, None] * width + np.arange(width), weight_shape)
    if node.needs[3]:
        grad_samples = g.new_zeros(ids.shape)
        grad_samples[members] = (picked * weight[rows]).sum(1)
    return grad_weight, None, None, grad_samples


PRIMS = {
    "embedding": register(Primitive("embedding", "EmbeddingBackward0", _embedding_infer,
                                    _embedding_forward, _embedding_vjp, save=(1,),
                                    check=_embedding_check, fuse=_EmbeddingFusion(),
                                    differentiable_vjp=_embedding_differentiable_vjp)),
    # Inputs: weight, ids (1-D), offsets (1-D), per_sample_weights (size 0 when absent).
    "embedding_bag": register(Primitive(
        "embedding_bag", "EmbeddingBagBackward0", _embedding_bag_infer, _embedding_bag_forward,
        _embedding_bag_vjp, save=(0, 1, 2, 3, "extra"),
        save_for=((1, 2, 3, "extra"), (), (), (0, 1, 2)), differentiable=(0, 3),
        check=_embedding_bag_check, forward_saving=_embedding_bag_forward_saving,
        differentiable_vjp=_embedding_bag_differentiable_vjp)),
}
