"""Reductions over dimensions (`sum`, `mean`, `max`, `var`, `logsumexp`, ...) and the
functions along one dimension: the softmax family and `cumsum`."""
import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.reduction import normalize_dims
from .arithmetic import maximum, minimum
from .dispatch import dispatch
from .tensor import Tensor, _check_dim, sizes_of

__all__ = ["sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "var", "std",
           "logsumexp", "softmax", "log_softmax", "cumsum"]


def _reduce(name, input, dim, keepdim, grad_fn_name=None, **params):
    params["dims"] = normalize_dims(dim, input.ndim)
    params["keepdim"] = keepdim
    return dispatch(PRIMITIVES[name], (input,), params, grad_fn_name)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("sum", input, dim, keepdim, "SumBackward0" if dim is None else None)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("mean", input, dim, keepdim, "MeanBackward0" if dim is None else None)


def sum_to_size(input, *size):
    """`input` summed over the dimensions that broadcasting `size` to its shape would
    expand (Tensor.sum_to_size; the engine's broadcast undo, `sum_to`, as an API)."""
    size = sizes_of(size)
    shape = input.shape
    lead = len(shape) - len(size)
    if lead < 0 or any(s != n and s != 1 for s, n in zip(size, shape[lead:])):
        raise RuntimeError(f"size {{{list(size)}}} is not expandable to size {{{list(shape)}}}.")
    if tuple(size) == tuple(shape):
        return input
    # As PyTorch: a sum over dimensions kept (SumBackward1), then a view without the leading
    # ones (ViewBackward0) if there are any.
    summed = dispatch(PRIMITIVES["sum_to"], (input,),
                      {"shape": (1,) * lead + tuple(int(s) for s in size)})
    return summed.view(size) if lead else summed


def amax(input, dim=(), keepdim=False):
    return _reduce("amax", input, dim, keepdim)


def amin(input, dim=(), keepdim=False):
    return _reduce("amin", input, dim, keepdim)


class ValuesAndIndices(tuple):
    """torch.return_types.max / min: (values, indices) with named fields."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _max_or_min(which, input, dim, keepdim, other):
    """`max` or `min` (`which`): of two tensors elementwise, of all elements, or along `dim`
    with the indices."""
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return (maximum if which == "max" else minimum)(input, other)
    if dim is None:
        # Without dim, ties share the gradient evenly (PyTorch's MaxBackward1).
        return _reduce("a" + which, input, None, False, grad_fn_name=which.capitalize() + "Backward1")
    d = _check_dim(dim, input.ndim)
    indices = _reduce("arg" + which, input, d, True)
    # With dim, the gradient goes to the selected index only (MaxBackward0).
    positions = np.take_along_axis(np.arange(input.numel(), dtype=np.int64).reshape(input.shape),
                                   indices._data, axis=d) if input.ndim else np.zeros((), np.int64)
    if not keepdim and input.ndim:
        positions = positions.squeeze(d)
        indices = Tensor._wrap(indices._data.squeeze(d))
    values = dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                      grad_fn_name=which.capitalize() + "Backward0")
    return ValuesAndIndices((values, indices))


def max(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("max", input, dim, keepdim, other)


def min(input, dim=None, keepdim=False, *, other=None):
    return _max_or_min("min", input, dim, keepdim, other)


def argmax(input, dim=None, keepdim=False):
    if dim is None:
        return _reduce("argmax", input.reshape(-1), 0, False)
    return _reduce("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    if dim is None:
        return _reduce("argmin", input.reshape(-1), 0, False)
    return _reduce("argmin", input, dim, keepdim)


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _reduce("var", input, dim, keepdim, correction=_correction(unbiased, correction))


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _reduce("std", input, dim, keepdim, correction=_correction(unbiased, correction))


def logsumexp(input, dim, keepdim=False):
    return _reduce("logsumexp", input, dim, keepdim)


# --- along one dimension ------------------------------------------------------------------------


def _softmax_like(name, input, dim, dtype):
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        raise TypeError(f"{name}() missing required argument 'dim'")
    return dispatch(PRIMITIVES[name], (input,), {"dim": _check_dim(dim, input.ndim) if input.ndim else 0})


def softmax(input, dim=None, dtype=None):
    return _softmax_like("softmax", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    return _softmax_like("log_softmax", input, dim, dtype)


def cumsum(input, dim, *, dtype=None):
    return dispatch(PRIMITIVES["cumsum"], (input,), {
        "dim": _check_dim(dim, input.ndim),
        "dtype": None if dtype is None else _dtype.as_dtype(dtype).np})
