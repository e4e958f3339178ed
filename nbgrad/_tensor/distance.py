"""Distances between tensors: `cosine_similarity`, `pairwise_distance`, `dist`, `cdist`.

Composites of norms and elementwise ops, written as PyTorch composes them (ATen's
Distance.cpp), so the values and gradients are its own. `dist` and `cdist` are nodes of
their own in PyTorch (DistBackward0, CdistBackward0): here their last step is the vector
norm under that name, whose gradient is PyTorch's norm_backward (DistBackward0's formula;
cdist's too, except at ties of its infinity norm, where PyTorch gives each tied element the
whole gradient and the norm shares it, and for p = 0, where PyTorch's gradient is zeros and
the norm's is none).
"""
import numpy as np

from ..autograd.grad_mode import no_grad
from ..ops.primitive import TORCH_TYPE_NAMES
from .arithmetic import div, where
from .conversion import result_type, to
from .factories import ones_like
from .operands import binary
from .reductions import _reduce, sum as _sum, vector_norm
from .shape import cat, clone, expand, reshape, unsqueeze

__all__ = ["cosine_similarity", "pairwise_distance", "dist", "cdist"]


def scalar_operation(name, tensor, number):
    """`tensor (+|-|*|/) number` as ATen's C++ writes it (PyTorch's Scalar overload, whose
    node `AddBackward1` links the tensor alone); Python's operators record the Tensor
    overload."""
    return binary(name, tensor, number, grad_fn_name=f"{name.capitalize()}Backward1")


def _type_name(dtype):
    return TORCH_TYPE_NAMES[dtype.name]


def broadcast_shape(a, b):
    """The broadcast shape of tensors `a` and `b`; the elementwise ops' error (PyTorch's
    message) where they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))
    except ValueError:
        a + b
        raise


def broadcast_pair(a, b):
    """`a` and `b` expanded to their broadcast shape (ATen's expand_outplace: both, where
    their shapes differ)."""
    if a.shape == b.shape:
        return a, b
    shape = broadcast_shape(a, b)
    return expand(a, shape), expand(b, shape)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    common = result_type(x1, x2)
    if not common.is_floating_point:
        raise RuntimeError(f"expected common dtype to be floating point, yet common dtype is "
                           f"{_type_name(common)}")
    # vector_norm takes floats only: integers (and bools) are cast first.
    x1, x2 = (x if x.dtype.is_floating_point else to(x, common) for x in (x1, x2))
    x1, x2 = broadcast_pair(x1, x2)
    # Each divided by its norm first (the result stays within [-1, 1]); the norms are
    # clamped outside autograd, so the gradient flows through the unclamped norm.
    norms = [clone(vector_norm(x, 2, dim, keepdim=True)) for x in (x1, x2)]
    with no_grad():
        for norm in norms:
            norm.clamp_min_(eps)
    return _sum(div(x1, norms[0]) * div(x2, norms[1]), dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm of x1 - x2 + eps along the last dimension of the broadcast pair (PyTorch's
    at::norm: NormBackward1)."""
    innermost = max(x1.ndim, x2.ndim) - 1
    difference = scalar_operation("add", x1 - x2, eps)
    return _reduce("vector_norm", difference, innermost, keepdim, grad_fn_name="NormBackward1",
                   ord=float(p))


def dist(input, other, p=2):
    """The p-norm of input - other over all elements."""
    difference = input - other
    if not difference.dtype.is_floating_point:
        raise RuntimeError(f"norm(): input dtype should be either floating point or complex. "
                           f"Got {_type_name(difference.dtype)} instead.")
    return _reduce("vector_norm", difference, None, False, grad_fn_name="DistBackward0",
                   ord=float(p))


_COMPUTE_MODES = {"use_mm_for_euclid_dist_if_necessary": 0, "use_mm_for_euclid_dist": 1,
                  "donot_use_mm_for_euclid_dist": 2}


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """The p-norm distance between each row of x1 and each row of x2, batched over the
    leading dimensions. p = 2 with more than 25 rows (or compute_mode
    'use_mm_for_euclid_dist') goes through a matrix product, as PyTorch's; otherwise each
    difference is formed."""
    if compute_mode not in _COMPUTE_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    for name, x in (("X1", x1), ("X2", x2)):
        if x.ndim < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: {x.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} "
                           f"X2: {x2.shape[-1]}")
    if not x1.dtype.is_floating_point:
        raise RuntimeError(f"cdist only supports floating-point dtypes, X1 got: "
                           f"{_type_name(x1.dtype)}")
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    if x2.dtype != x1.dtype:
        raise RuntimeError(f"expected scalar type {_type_name(x1.dtype)} but found "
                           f"{_type_name(x2.dtype)}")
    mode = _COMPUTE_MODES[compute_mode]
    rows1, rows2 = x1.shape[-2], x2.shape[-2]
    batch = tuple(np.broadcast_shapes(tuple(x1.shape[:-2]), tuple(x2.shape[:-2])))
    x1 = expand(x1, batch + tuple(x1.shape[-2:]))
    x2 = expand(x2, batch + tuple(x2.shape[-2:]))
    matrix_product = p == 2 and (mode == 1 or (mode == 0 and (rows1 > 25 or rows2 > 25)))
    if matrix_product and x1.numel() and x2.numel():
        return _euclidean_distances(x1, x2)
    differences = unsqueeze(x1, -2) - unsqueeze(x2, -3)
    return _reduce("vector_norm", differences, -1, False, grad_fn_name="CdistBackward0",
                   ord=float(p))


def _euclidean_distances(x1, x2):
    """PyTorch's _euclidean_dist: |a|^2 - 2 a.b + |b|^2 by one matrix product, clamped at 0
    and rooted. Its gradient (EuclideanDistBackward0) is 0 where a distance is 0, which the
    square root's is not: the root is taken of 1 there and the result masked. NaN (from NaN
    or infinite inputs) stays NaN, as PyTorch's clamp_min keeps it."""
    norms1 = _sum(x1 * x1, -1, keepdim=True)
    norms2 = _sum(x2 * x2, -1, keepdim=True)
    left = cat([scalar_operation("mul", x1, -2), norms1, ones_like(norms1)], -1)
    right = cat([x2, ones_like(norms2), norms2], -1)
    squared = left @ right.transpose(-2, -1)
    rooted = (squared > 0) | squared.isnan()
    distances = where(rooted, where(rooted, squared, 1.0).sqrt(), 0.0)
    return reshape(distances, tuple(distances.shape))

