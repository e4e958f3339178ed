"""Convolutions: `conv1d` and `conv2d` (torch.conv1d/conv2d and F.conv1d/conv2d), both the
`convolution` primitive of `nbgrad.ops.conv`, and `conv_transpose1d`/`conv_transpose2d`, its
`conv_transpose` primitive. An unbatched input (no N dim) gets one, as PyTorch does, so its
grad_fn is the squeeze that takes it away. And F.unfold/F.fold, its `im2col` and `col2im`
primitives (which take an unbatched input as it is, as PyTorch's)."""
import warnings

from ..ops import PRIMITIVES
from ..ops.conv import check_bias, check_transposed_bias
from .dispatch import dispatch
from .operands import absent
from .resample import pad as _pad

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _spatial(value, name, dims):
    """A stride/padding/dilation argument as a tuple.
    NOTE: an int stands for every spatial dim of the function (conv2d's stride=1 is [1, 1]);
    the primitive checks a tuple's length against the weight's dims, as PyTorch does."""
    kind = type(value)
    if kind is int:  # (the common cases first: this runs at every call)
        return (value,) * dims
    if kind is tuple and all(type(v) is int for v in value):
        return value
    if _is_int(value):
        return (value,) * dims
    values = tuple(value)
    if not all(_is_int(v) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    return values


def _same_padding(x, weight, dims, dilation):
    """padding='same' as PyTorch does it: half the total on each side, and where a total is
    odd, the extra one on the right (bottom) by an explicit pad of the input first."""
    dilation = dilation * dims if len(dilation) == 1 else dilation
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    extra = [total % 2 for total in totals]
    if any(extra):
        warnings.warn("Using padding='same' with even kernel lengths and odd dilation may require a "
                      "zero-padded copy of the input be created", UserWarning, stacklevel=4)
        x = _pad(x, [side for right in reversed(extra) for side in (0, right)])
    return x, tuple(total // 2 for total in totals)


def _batched(name, dims, input, groups):
    """The input with its N dim (added to an unbatched one), and whether it had one."""
    ndim = input.ndim
    if ndim not in (dims + 1, dims + 2):
        raise RuntimeError(f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to "
                           f"{name}, but got input of size: {list(input.shape)}")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    batched = ndim == dims + 2
    return (input if batched else input.unsqueeze(0)), batched


def _bias_or_absent(bias, weight, dtype):
    if bias is None:
        return absent(dtype.np)
    if bias.numel() == 0:
        # (The primitive takes a zero-size bias for none; a real one has out_channels >= 1.)
        check_bias(tuple(weight.shape), tuple(bias.shape))
    return bias


def _convolution(dims, input, weight, bias, stride, padding, dilation, groups):
    x, batched = _batched(f"conv{dims}d", dims, input, groups)
    stride, dilation = _spatial(stride, "stride", dims), _spatial(dilation, "dilation", dims)
    if padding == "same":
        if any(step != 1 for step in stride):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        if weight.ndim == x.ndim:  # else the primitive raises PyTorch's rank error
            x, padding = _same_padding(x, weight, dims, dilation)
    elif padding == "valid":
        padding = 0
    elif isinstance(padding, str):
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    params = {"stride": stride, "padding": _spatial(padding, "padding", dims), "dilation": dilation,
              "groups": groups}
    out = dispatch(PRIMITIVES["convolution"], (x, weight, _bias_or_absent(bias, weight, input.dtype)),
                   params)
    return out if batched else out.squeeze(0)


def _transposed(dims, input, weight, bias, stride, padding, output_padding, groups, dilation):
    name = f"conv_transpose{dims}d"
    x, batched = _batched(name, dims, input, groups)
    if isinstance(padding, str):
        raise TypeError(f"{name}(): argument 'padding' must be tuple of ints, not str")
    params = {"stride": _spatial(stride, "stride", dims), "padding": _spatial(padding, "padding", dims),
              "output_padding": _spatial(output_padding, "output_padding", dims),
              "dilation": _spatial(dilation, "dilation", dims), "groups": groups}
    if bias is not None and bias.numel() == 0:  # (else taken for the absent stand-in)
        check_transposed_bias(tuple(weight.shape), groups, tuple(bias.shape))
    if bias is not None and bias.dtype != input.dtype:
        bias = bias.to(input.dtype)  # (PyTorch's transposed convolution converts it)
    out = dispatch(PRIMITIVES["conv_transpose"],
                   (x, weight, absent(input.dtype.np) if bias is None else bias), params)
    return out if batched else out.squeeze(0)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _convolution(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _convolution(2, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    return _transposed(1, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    return _transposed(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


def _pair(value, name, op, position):
    """F.unfold's and F.fold's `_pair` of an int or a sequence, with PyTorch's errors for
    what its im2col and col2im take as a 2-tuple of ints."""
    values = tuple(value) if hasattr(value, "__iter__") else (value, value)
    for at, v in enumerate(values):
        if not _is_int(v):
            raise TypeError(f"{op}(): argument '{name}' (position {position}) must be tuple of "
                            f"ints, but found element of type {type(v).__name__} at pos {at}")
    if len(values) != 2:
        raise RuntimeError(f"It is expected {name} equals to 2, but got size {len(values)}")
    return values


def _fold_params(op, kernel_size, dilation, padding, stride, first):
    return {name: _pair(value, name, op, position)
            for position, (name, value) in enumerate((("kernel_size", kernel_size),
                                                      ("dilation", dilation),
                                                      ("padding", padding),
                                                      ("stride", stride)), first)}


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """F.unfold: the sliding (kernel_size) blocks of a (N, C, H, W) or (C, H, W) input as the
    columns of (N, C * KH * KW, L), PyTorch's im2col."""
    return dispatch(PRIMITIVES["im2col"], (input,),
                    _fold_params("im2col", kernel_size, dilation, padding, stride, 2))


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """F.fold: unfold's adjoint, PyTorch's col2im: the columns of (N, C * KH * KW, L) or
    (C * KH * KW, L) added into (N, C, *output_size) where unfold reads them."""
    output_size = _pair(output_size, "output_size", "col2im", 2)
    return dispatch(PRIMITIVES["col2im"], (input,),
                    {"output_size": output_size,
                     **_fold_params("col2im", kernel_size, dilation, padding, stride, 3)})
