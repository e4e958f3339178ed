"""embedding: rows of weight (num_embeddings, dim) picked by int64 indices of any shape. A
primitive for speed: its backward scatter-adds into a (num_embeddings, dim) array instead of
the full-size positions `take` would compute. (No fused rule yet: a step that calls it runs
eagerly.)

NOTE: Numba does not bounds-check. The indices are validated in Python (with a small njit
scan) before a kernel uses them, at forward and again at backward: the saved indices may
share memory with a NumPy array (`from_numpy`) that the user changed in between, which no
version counter sees.
"""
import functools

import numba
import numpy as np

from .indexing import first_out_of_range, scattered
from .primitive import Primitive, register
from .shape import flat_contiguous

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def embedding_kernel(weight, indices, out):
    for i in range(indices.shape[0]):
        out[i, :] = weight[indices[i], :]


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
            if by_frequency:
                grad_weight[row, :] += g[i, :] / counts[row]
            else:
                grad_weight[row, :] += g[i, :]


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


PRIMS = {
    "embedding": register(Primitive("embedding", "EmbeddingBackward0", _embedding_infer,
                                    _embedding_forward, _embedding_vjp, save=(1,),
                                    check=_embedding_check, fuse=_EmbeddingFusion(),
                                    differentiable_vjp=_embedding_differentiable_vjp)),
}
