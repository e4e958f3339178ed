"""Helpers of the distributions (torch.distributions.utils): parameters broadcast together,
probabilities and logits converted into each other, lazily computed parameters."""
import functools

from .._core.dtype import get_default_dtype
from .._tensor import api as _api
from .._tensor.tensor import Size, Tensor
from ..autograd.grad_mode import enable_grad
from ..nn import functional as F

__all__ = ["broadcast_all", "logits_to_probs", "clamp_probs", "probs_to_logits", "lazy_property"]

_NUMBER = (int, float)
_NO_SHAPE = Size()  # the default sample_shape, torch.Size()


def broadcast_all(*values):
    """Tensors and numbers broadcast together; a number becomes a tensor of the first tensor's
    dtype (of the default dtype when all are numbers)."""
    if not all(isinstance(v, (Tensor, *_NUMBER)) for v in values):
        raise ValueError("Input arguments must all be instances of Number, torch.Tensor or "
                         "objects implementing __torch_function__.")
    dtype = next((v.dtype for v in values if isinstance(v, Tensor)), None) or get_default_dtype()
    tensors = [v if isinstance(v, Tensor) else _api.tensor(v, dtype=dtype) for v in values]
    return _api.broadcast_tensors(*tensors)


def _standard_normal(shape, dtype):
    """N(0, 1) values drawn as PyTorch's distributions draw them (`empty(shape).normal_()`)."""
    return _api.empty(shape, dtype=dtype).normal_()


def _sum_rightmost(value, dim):
    """`value` summed over its `dim` rightmost dimensions."""
    if dim == 0:
        return value
    return value.reshape(tuple(value.shape[:-dim]) + (-1,)).sum(-1)


def _extended(shape, *more):
    """A Size of `shape` followed by the other shapes."""
    return Size(tuple(shape) + sum((tuple(m) for m in more), ()))


def logits_to_probs(logits, is_binary=False):
    if is_binary:
        return _api.sigmoid(logits)
    return F.softmax(logits, dim=-1)


def clamp_probs(probs):
    """Probabilities clamped into [eps, 1 - eps] of their dtype."""
    eps = _api.finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs, is_binary=False):
    clamped = clamp_probs(probs)
    if is_binary:
        return _api.log(clamped) - _api.log1p(-clamped)
    return _api.log(clamped)


class lazy_property:
    """A property computed on first use (with gradients recorded, as PyTorch) and then kept as
    an instance attribute: `Categorical(logits=...)` computes `probs` only when asked."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        functools.update_wrapper(self, wrapped)

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        with enable_grad():
            value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value
