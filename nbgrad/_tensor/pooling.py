"""Pooling functions (torch.nn.functional's max_pool1d/2d, avg_pool1d/2d and the adaptive
forms) over the primitives of `nbgrad.ops.pooling`.

The arguments are checked and made (H, W) pairs here; the 1-D forms are the 2-D primitives
with a window of one row, recorded under PyTorch's name for them (it unsqueezes, pools and
squeezes: `SqueezeBackward1`). The `*_with_indices` forms always return the indices.
torch's own top-level forms, which differ from F's where torch's do (no return_indices;
`torch.adaptive_max_pool1d` always returns the indices), are in `TORCH_LEVEL`.
"""
import numpy as np

from ..ops import PRIMITIVES
from ..ops.pooling import output_size
from .dispatch import dispatch
from .reductions import mean

_ONE_D = "SqueezeBackward1"


# Where each argument is in PyTorch's signatures (its TypeError names the position).
_POSITIONS = {"kernel_size": 2, "output_size": 2, "stride": 3, "padding": 4, "dilation": 5}


def _ints(value, count, function, argument):
    """`value` (an int, or a sequence of one or `count` ints) as a tuple of `count` ints,
    with PyTorch's errors."""
    if type(value) is int:  # (the common case first: this runs at every call)
        return (value,) * count
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"{function}(): argument '{argument}' (position {_POSITIONS[argument]}) "
                        f"must be tuple of ints, not {type(value).__name__}")
    if len(values) == 1:
        values *= count
    if len(values) != count:
        if count == 1:
            raise RuntimeError(f"{function}() argument '{argument}' should contain one int "
                               f"(got {len(values)})")
        raise RuntimeError(f"{function}: {argument} must either be a single int, or a tuple of "
                           f"two ints")
    return tuple(int(v) for v in values)


def _sliding_params(function, ndim, kernel_size, stride, padding, dilation):
    """Kernel size, stride (default: the kernel size), padding and dilation as (H, W) pairs;
    a 1-D form's H window is one row."""
    kernel = _ints(kernel_size, ndim, function, "kernel_size")
    no_stride = stride is None or isinstance(stride, (tuple, list)) and not stride
    steps = kernel if no_stride else _ints(stride, ndim, function, "stride")
    pads = _ints(padding, ndim, function, "padding")
    dilations = _ints(dilation, ndim, function, "dilation")
    if ndim == 1:
        return (1,) + kernel, (1,) + steps, (0,) + pads, (1,) + dilations
    return kernel, steps, pads, dilations


def _check_max_pool1d(input, kernel, step, pad, spacing, ceil_mode):
    """max_pool1d's own checks and messages (PyTorch's max_pool1d without indices)."""
    if input.ndim not in (2, 3) or 0 in input.shape[input.ndim - 2:]:
        raise RuntimeError(f"max_pool1d: Expected 2D or 3D (batch mode) tensor with optional 0 dim "
                           f"batch size for input, but got:{list(input.shape)}")
    for value, what in ((kernel, "kernel_size"), (step, "stride")):
        if value <= 0:
            raise RuntimeError(f"max_pool1d() {what} must be greater than zero, but got {value}")
    if pad < 0:
        raise RuntimeError(f"max_pool1d() padding must be non-negative, but got {pad}")
    if pad > kernel // 2:
        raise RuntimeError(f"max_pool1d() padding should be at most half of kernel size, but got "
                           f"padding={pad} and kernel_size={kernel}")
    if spacing <= 0:
        raise RuntimeError(f"max_pool1d() dilation must be greater than zero, but got {spacing}")
    size = output_size(input.shape[-1], kernel, step, pad, spacing, ceil_mode)
    if size <= 0:
        raise RuntimeError(f"max_pool1d() Invalid computed output size: {size}")


def _max_pool(function, ndim, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices):
    kernel, steps, pads, dilations = _sliding_params(function, ndim, kernel_size, stride,
                                                     padding, dilation)
    if ndim == 1 and not return_indices:
        _check_max_pool1d(input, kernel[1], steps[1], pads[1], dilations[1], bool(ceil_mode))
    params = {"kernel_size": kernel, "stride": steps, "padding": pads, "dilation": dilations,
              "ceil_mode": bool(ceil_mode), "ndim": ndim}
    values = dispatch(PRIMITIVES["max_pool2d"], (input,), params, _ONE_D if ndim == 1 else None)
    if return_indices:
        return values, dispatch(PRIMITIVES["max_pool2d_indices"], (input,), params)
    return values


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_pool(function, ndim, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    kernel, steps, pads, _ = _sliding_params(function, ndim, kernel_size, stride, padding, 1)
    params = {"kernel_size": kernel, "stride": steps, "padding": pads,
              "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad),
              "divisor_override": None if divisor_override is None else int(divisor_override),
              "ndim": ndim}
    return dispatch(PRIMITIVES["avg_pool2d"], (input,), params, _ONE_D if ndim == 1 else None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def _output_size(function, ndim, input, output_size):
    """The adaptive output size as (OH, OW) (1-D: (1, OL)); None entries take the input's
    size, as PyTorch's."""
    if output_size is None:
        raise TypeError("object of type 'NoneType' has no len()")
    entries = (output_size,) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if None in entries:
        if input.ndim <= len(entries):
            raise ValueError(f"Input dimension should be at least {len(entries) + 1}")
        entries = tuple(input.shape[input.ndim - len(entries) + i] if size is None else size
                        for i, size in enumerate(entries))
    if ndim == 2 and isinstance(output_size, (tuple, list)) and len(entries) != 2:
        raise RuntimeError("adaptive_avg_pool2d: output_size must be 2" if "avg" in function else
                           "adaptive_max_pool2d(): internal error: output_size.size() must be 2")
    sizes = _ints(entries if len(entries) > 1 else entries[0], ndim, function, "output_size")
    if min(sizes) < 0:
        if function.startswith("adaptive_avg"):
            listed = ", ".join(str(s) for s in ((1,) if ndim == 1 else ()) + sizes)
            raise RuntimeError(f"adaptive_avg_pool2d: elements of output_size must be greater "
                               f"than or equal to 0 but received {{{listed}}}")
        shape = list(input.shape[:input.ndim - ndim]) + ([1] if ndim == 1 else []) + list(sizes)
        raise RuntimeError(f"Trying to create tensor with negative dimension {min(sizes)}: {shape}")
    return ((1,) + sizes) if ndim == 1 else sizes


def adaptive_avg_pool2d(input, output_size):
    sizes = _output_size("adaptive_avg_pool2d", 2, input, output_size)
    if sizes == (1, 1):
        # As PyTorch: a mean over H and W (its MeanBackward1), for any rank.
        return mean(input, (-1, -2), keepdim=True)
    return dispatch(PRIMITIVES["adaptive_avg_pool2d"], (input,),
                    {"output_size": sizes, "ndim": 2})


def adaptive_avg_pool1d(input, output_size):
    sizes = _output_size("adaptive_avg_pool1d", 1, input, output_size)
    return dispatch(PRIMITIVES["adaptive_avg_pool2d"], (input,),
                    {"output_size": sizes, "ndim": 1}, _ONE_D)


def _adaptive_max_pool(function, ndim, input, output_size, return_indices):
    params = {"output_size": _output_size(function, ndim, input, output_size), "ndim": ndim}
    values = dispatch(PRIMITIVES["adaptive_max_pool2d"], (input,), params,
                      _ONE_D if ndim == 1 else None)
    if return_indices:
        return values, dispatch(PRIMITIVES["adaptive_max_pool2d_indices"], (input,), params)
    return values


def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive_max_pool("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max_pool("adaptive_max_pool1d", 1, input, output_size, return_indices)


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def adaptive_max_pool1d_with_indices(input, output_size):
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size):
    return adaptive_max_pool2d(input, output_size, True)


# ---------------------------------------------------------------------------------------
# torch's top-level forms (torch.max_pool2d, ...), which api.py puts in `nbgrad`.

def _torch_max_pool2d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)


def _torch_max_pool1d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode)


TORCH_LEVEL = {"max_pool1d": _torch_max_pool1d, "max_pool2d": _torch_max_pool2d,
               "max_pool1d_with_indices": max_pool1d_with_indices,
               "avg_pool1d": avg_pool1d, "adaptive_avg_pool1d": adaptive_avg_pool1d,
               "adaptive_max_pool1d": adaptive_max_pool1d_with_indices}
