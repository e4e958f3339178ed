"""Convolutions: `conv1d` and `conv2d` (torch.conv1d/conv2d and F.conv1d/conv2d), both the
`convolution` primitive of `nbgrad.ops.conv`. An unbatched input (no N dim) gets one, as
PyTorch does, so its grad_fn is the squeeze that takes it away."""
from ..ops import PRIMITIVES
from .dispatch import dispatch

__all__ = ["conv1d", "conv2d"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _spatial(value, name, dims):
    """A stride/padding/dilation argument as a tuple (padding may also be 'same'/'valid').
    NOTE: an int stands for every spatial dim of the function (conv2d's stride=1 is [1, 1]);
    the primitive checks a tuple's length against the weight's dims, as PyTorch does."""
    if name == "padding" and isinstance(value, str):
        return value
    if _is_int(value):
        return (value,) * dims
    values = tuple(value)
    if not all(_is_int(v) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    return values


def _convolution(dims, input, weight, bias, stride, padding, dilation, groups):
    if input.ndim not in (dims + 1, dims + 2):
        raise RuntimeError(f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to "
                           f"conv{dims}d, but got input of size: {list(input.shape)}")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    params = {"stride": _spatial(stride, "stride", dims), "padding": _spatial(padding, "padding", dims),
              "dilation": _spatial(dilation, "dilation", dims), "groups": groups}
    batched = input.ndim == dims + 2
    x = input if batched else input.unsqueeze(0)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    out = dispatch(PRIMITIVES["convolution"], inputs, params)
    return out if batched else out.squeeze(0)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _convolution(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _convolution(2, input, weight, bias, stride, padding, dilation, groups)
