"""Padding, resizing and channel and alpha dropout: `nn.functional.pad`, `interpolate`,
`dropout1d`, `dropout2d`, `dropout3d`, `alpha_dropout` and `feature_alpha_dropout`.

Every padding mode but constant, and every interpolation mode, resamples each dimension by
taps: output index o along it reads sum_k weight[o, k] * input[index[o, k]] (one tap of
weight 1 for the gathering pads and nearest modes, two or more for the linear modes): the
`resample` primitive (ops/resample.py), under PyTorch's grad_fn names. The taps, computed
here with PyTorch's index rules, are per dimension and depend only on sizes and arguments,
so they are small and cached. Constant padding copies the input into a filled output
(`pad_constant`).
"""
import functools
import math
import operator
import warnings

import numpy as np

from .._core import tracing as _tracing
from .._core.dtype import is_half
from ..ops import PRIMITIVES
from ..ops.primitive import TORCH_TYPE_NAMES
from ..ops.resample import Taps
from . import random as _random
from .arithmetic import mul
from .dispatch import dispatch
from .inplace import inplace_form
from .tensor import Tensor, _meta

__all__ = []

# --- pad ------------------------------------------------------------------------------------

_GATHER_MODES = ("reflect", "replicate", "circular")

# What each gathering mode reads for output index j of a dimension of `size` padded by
# (left, right), as `source(j, size, left, right)`. Reflect and replicate read the whole
# input however it is cropped; circular (as PyTorch's slice copies) wraps around the part
# that a negative pad leaves.
_SOURCES = {
    "reflect": lambda j, size, left, right: (size - 1) - np.abs((size - 1) - np.abs(j - left)),
    "replicate": lambda j, size, left, right: np.clip(j - left, 0, size - 1),
    "circular": lambda j, size, left, right: max(-left, 0) + np.mod(
        j - max(left, 0), size + min(left, 0) + min(right, 0)),
}

# PyTorch's grad_fn names by mode and number of padded dimensions (its circular padding is
# a composite of slice copies).
_GRAD_FN = {"reflect": "ReflectionPad{}DBackward0", "replicate": "ReplicationPad{}DBackward0",
            "circular": "CopySlices"}

_SUPPORTED_RANKS = ("Supported combinations for non-constant padding:\n"
                    "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
                    "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
                    "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")


def _pad_pairs(pad, ndim):
    """`pad` (last dimension first, as PyTorch) as (dim, left, right) per padded dimension,
    after PyTorch's checks of its type and length."""
    if not isinstance(pad, (tuple, list)):
        raise TypeError(f"pad(): argument 'pad' (position 2) must be tuple of ints, not "
                        f"{type(pad).__name__}")
    for position, amount in enumerate(pad):
        if isinstance(amount, bool) or not isinstance(amount, (int, np.integer, Tensor)):
            raise TypeError(f"pad(): argument 'pad' (position 2) must be tuple of ints, but found "
                            f"element of type {type(amount).__name__} at pos {position}")
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    return [(ndim - 1 - k, operator.index(pad[2 * k]), operator.index(pad[2 * k + 1]))
            for k in range(len(pad) // 2)]


def pad(input, pad, mode="constant", value=None):
    """PyTorch's `F.pad`: `pad` = (left, right) of the last dimension, then of the one before
    it, ...; negative amounts crop."""
    if mode != "constant" and mode not in _GATHER_MODES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    pairs = _pad_pairs(pad, input.ndim)
    if mode != "constant" and value is not None and value != 0:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    if len(pairs) > input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(pad)} and input of dimension "
                           f"{input.ndim}")
    pairs = tuple(pairs)
    if mode == "constant":
        return _constant_pad(input, pairs, 0 if value is None else value)
    padded = len(pairs)
    if input.ndim not in (padded + 1, padded + 2) or padded > 3:
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {input.ndim}D "
                                  f"input tensor.\n{_SUPPORTED_RANKS}")
    _check_gather_pad(input, pairs, mode)
    taps = tuple(Taps(dim, *_pad_taps(input.shape[dim], left, right, mode))
                 for dim, left, right in pairs)
    return dispatch(PRIMITIVES["resample"], (input,), {"taps": taps},
                    grad_fn_name=_GRAD_FN[mode].format(padded))


def _check_gather_pad(input, pairs, mode):
    """PyTorch's errors for reflect, replicate and circular padding of these sizes."""
    shape, dtype = input.shape, _meta(input).dtype
    out_sizes = [shape[dim] + left + right for dim, left, right in pairs]
    if mode == "circular":
        for dim, left, right in pairs:
            if left > shape[dim] or right > shape[dim]:
                raise RuntimeError("Padding value causes wrapping around more than once.")
        if min(out_sizes) < 0:
            raise RuntimeError("Negative padding value is resulting in an empty dimension")
        for dim, left, right in pairs:
            # NOTE: a pad longer than what the negative pads leave would wrap more than once
            # (PyTorch then fails on overlapping copies, or, when nothing is left, returns
            # uninitialized memory); the gather would index past the input.
            kept = shape[dim] + min(left, 0) + min(right, 0)
            if max(left, right) > kept:
                raise RuntimeError(f"Padding value causes wrapping around more than once: "
                                   f"padding ({left}, {right}) of dimension {dim} wraps around "
                                   f"the {kept} element(s) of {shape[dim]} that the negative "
                                   f"padding leaves")
        return
    if dtype == np.bool_:
        kernel = "reflection" if mode == "reflect" else "replication"
        raise NotImplementedError(f'"{kernel}_pad{len(pairs)}d" not implemented for \'Bool\'')
    batched = input.ndim == len(pairs) + 2
    if 0 in shape[int(batched):]:
        raise RuntimeError(f"Expected {len(pairs) + 1}D or {len(pairs) + 2}D (batch mode) tensor "
                           f"with possibly 0 batch size and other non-zero dimensions for input, "
                           f"but got: {list(shape)}")
    if mode == "reflect":
        for k, (dim, left, right) in enumerate(pairs):
            if left >= shape[dim] or right >= shape[dim]:
                raise RuntimeError(f"Argument #{4 + 2 * k}: Padding size should be less than the "
                                   f"corresponding input dimension, but got: padding ({left}, "
                                   f"{right}) at dimension {dim} of input {list(shape)}")
    if max(out_sizes) < 1:
        names = "DHW"[-len(pairs):]
        sizes = ", ".join(f"{n}: {shape[dim]}" for n, (dim, _, _) in zip(names, pairs[::-1]))
        outs = " ".join(f"{n}: {size}" for n, size in zip(names, out_sizes[::-1]))
        raise RuntimeError(f"input ({sizes}) is too small. Calculated output {outs}")
    if min(out_sizes) < 0:
        out_shape = list(shape)
        for (dim, _, _), size in zip(pairs, out_sizes):
            out_shape[dim] = size
        raise RuntimeError(f"Trying to create tensor with negative dimension {min(out_sizes)}: "
                           f"{out_shape}")


def _index_taps(source):
    """Taps that read input index source[o] for output index o."""
    return source[:, None].astype(np.int64), np.ones((source.shape[0], 1), np.float32)


@functools.lru_cache(maxsize=64)
def _pad_taps(size, left, right, mode):
    """The taps of one dimension of `size` padded by (left, right) in `mode`."""
    return _index_taps(_SOURCES[mode](np.arange(size + left + right), size, left, right))


def _constant_pad(input, pairs, value):
    """The input (cropped where a pad is negative) copied into an output filled with
    `value` (the `pad_constant` primitive)."""
    shape = input.shape
    # (start, stop) per dimension, not slices: parameters must hash (deferred graph keys).
    crop, interior = [(0, size) for size in shape], [(0, size) for size in shape]
    out_shape = list(shape)
    for dim, left, right in pairs:
        kept = shape[dim] + min(left, 0) + min(right, 0)
        if kept < 0:
            raise RuntimeError("narrow(): length must be non-negative.")
        crop[dim] = (max(-left, 0), max(-left, 0) + kept)
        interior[dim] = (max(left, 0), max(left, 0) + kept)
        out_shape[dim] = shape[dim] + left + right
    return dispatch(PRIMITIVES["pad_constant"], (input,), {
        "crop": tuple(crop), "interior": tuple(interior), "out_shape": tuple(out_shape),
        "value": value})


# --- interpolate ----------------------------------------------------------------------------

_NEAREST_MODES = ("nearest", "nearest-exact")
# The linear modes and the rank of their input.
_LINEAR_MODES = {"linear": 3, "bilinear": 4, "trilinear": 5}
_ALL_MODES = "nearest | linear | bilinear | bicubic | trilinear | lanczos | area | nearest-exact"


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """PyTorch's `F.interpolate` in every mode but lanczos, with its source-index rules,
    checks and grad_fn names."""
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    out_sizes, scales = _output_sizes(input, size, scale_factor, recompute_scale_factor)
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and input.ndim == 4):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos modes "
                         "and requires a 4-D tensor as input")
    _check_mode_and_rank(input, mode)
    if mode == "lanczos":
        raise NotImplementedError("interpolate(mode='lanczos') is not supported by nbgrad")
    if mode == "area":
        return _area(input, out_sizes)
    _check_resample_input(input, out_sizes, mode, antialias)
    rank = input.ndim - 2
    if antialias:
        name = f"Upsample{mode.capitalize()}2DAa"
    elif mode in _NEAREST_MODES:
        name = f"UpsampleNearest{'Exact' if mode == 'nearest-exact' else ''}{rank}D"
    else:
        name = f"Upsample{mode.capitalize()}{rank}D"
    return _resample(input, out_sizes, scales, _ANTIALIAS_TAPS[mode] if antialias else _TAPS[mode],
                     align_corners, f"{name}Backward0")


def _resample(input, out_sizes, scales, taps_of, align_corners, grad_fn_name):
    """The `resample` primitive with the taps `taps_of(in_size, out_size, align_corners,
    scale_factor, dtype)` of each spatial dimension, last one first (as PyTorch's separable
    kernels), computed in PyTorch's opmath type."""
    dtype = np.dtype(np.float64 if _meta(input).dtype == np.float64 else np.float32)
    dims = list(zip(range(2, input.ndim), out_sizes, scales))[::-1]
    taps = tuple(Taps(dim, *taps_of(input.shape[dim], out, align_corners, scale, dtype))
                 for dim, out, scale in dims)
    return dispatch(PRIMITIVES["resample"], (input,), {"taps": taps}, grad_fn_name=grad_fn_name)


def _area(input, out_sizes):
    """mode='area': PyTorch's adaptive average pooling (a 1-D input as 2-D, with one row)."""
    if input.ndim == 3:
        return _area(input.unsqueeze(-2), [1] + out_sizes).squeeze(-2)
    pool = f"adaptive_avg_pool{input.ndim - 2}d"
    if not input.is_floating_point():
        kernel = pool if input.ndim == 4 else pool + "_cpu"
        raise NotImplementedError(f'"{kernel}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[_meta(input).dtype.name]}'")
    for dim in range(2, input.ndim):
        if input.shape[dim] == 0:
            raise RuntimeError(f"{pool}(): Expected input to have non-zero size for non-batch "
                               f"dimensions, but input has sizes {list(input.shape)} with "
                               f"dimension {dim} being empty")
    return _resample(input, out_sizes, [None] * len(out_sizes), _area_taps, False,
                     f"AdaptiveAvgPool{input.ndim - 2}DBackward0")


def _deprecated(name, **fixed):
    """PyTorch's deprecated `upsample*` functions: interpolate (with `fixed` arguments) after
    a warning."""
    def upsample(input, size=None, scale_factor=None, *args, **kwargs):
        warnings.warn(f"`nn.functional.{name}` is deprecated. Use `nn.functional.interpolate` "
                      "instead.", stacklevel=2)
        return interpolate(input, size, scale_factor, *args, **fixed, **kwargs)
    upsample.__name__ = name
    return upsample


upsample = _deprecated("upsample")
upsample_nearest = _deprecated("upsample_nearest", mode="nearest")
upsample_bilinear = _deprecated("upsample_bilinear", mode="bilinear", align_corners=True)


def _is_integer(value):
    return isinstance(value, (int, np.integer)) or (
        isinstance(value, Tensor) and value.ndim == 0 and not value.is_floating_point())


def _output_sizes(input, size, scale_factor, recompute_scale_factor):
    """The output's spatial sizes, and the scale factors PyTorch's kernels read (None where
    the sizes alone decide), after PyTorch's checks of the arguments."""
    dim = input.ndim - 2
    spatial = list(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(f"Input and output must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of {spatial} "
                                 f"and output size of {size}. Please provide input tensor in (N, C, "
                                 "d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format.")
            if not all(_is_integer(s) for s in size):
                raise TypeError("expected size to be one of int or Tuple[int] or Tuple[int, int] or "
                                f"Tuple[int, int, int], but got size with types "
                                f"{[type(s) for s in size]}")
            out_sizes = [operator.index(s) for s in size]
        else:
            out_sizes = [operator.index(size)] * dim
        scales = [None] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(f"Input and scale_factor must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of {spatial} "
                                 f"and scale_factor of shape {scale_factor}. Please provide input "
                                 "tensor in (N, C, d1, d2, ...,dK) format and scale_factor in (s1, "
                                 "s2, ...,sK) format.")
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        # As PyTorch's kernels: the size is the floor of size * scale, in float64.
        out_sizes = [int(n * s) for n, s in zip(spatial, scales)]
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if recompute_scale_factor:
        scales = [None] * dim
    return out_sizes, scales


def _check_mode_and_rank(input, mode):
    ranks = {**{m: (3, 4, 5) for m in ("nearest", "nearest-exact", "area")}, **{
        m: (r,) for m, r in _LINEAR_MODES.items()}, "bicubic": (4,), "lanczos": (4,)}
    if input.ndim in ranks.get(mode, ()):
        return
    needs = {3: "linear", 4: "bilinear", 5: "trilinear"}
    if mode in _LINEAR_MODES and input.ndim in needs:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                  f"{_LINEAR_MODES[mode]}D input")
    raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                              f"{input.ndim}D) for the modes: {_ALL_MODES} (got {mode})")


def _check_resample_input(input, out_sizes, mode, antialias):
    """PyTorch's kernels' errors: a non-floating dtype (but uint8 images), empty channels or
    sizes."""
    uint8 = _meta(input).dtype == np.uint8
    if uint8 and mode in ("bilinear", "bicubic") and input.ndim == 4:
        # NOTE: PyTorch computes these in fixed point, which nbgrad does not reproduce.
        raise NotImplementedError(f"interpolate(mode={mode!r}) of a uint8 tensor is not "
                                  "supported by nbgrad: convert it to a floating dtype first")
    if not input.is_floating_point() and not (uint8 and mode in _NEAREST_MODES):
        if mode == "bicubic" and not antialias:
            kernel = "compute_indices_weights_cubic"
        elif input.ndim == 4 and not antialias:
            kernel = "upsample_{}2d_channels_last".format(
                "nearest" if mode in _NEAREST_MODES else "bilinear")
        elif antialias:
            kernel = "compute_index_ranges_weights"
        else:
            kernel = "compute_indices_weights_{}".format(
                "nearest" if mode in _NEAREST_MODES else "linear")
        raise NotImplementedError(f'"{kernel}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[_meta(input).dtype.name]}'")
    shape = input.shape
    if 0 in shape[1:2]:
        raise RuntimeError(f"Non-empty {input.ndim}D data tensor expected but got a tensor with "
                           f"sizes {list(shape)}")
    names = "DHW"[-len(out_sizes):]
    if min(shape[2:]) < 1 or min(out_sizes) < 1:
        sizes = ", ".join(f"{n}: {s}" for n, s in zip(names, shape[2:]))
        outs = ", ".join(f"{n}: {s}" for n, s in zip(names, out_sizes))
        joint = " and" if len(out_sizes) == 1 else ""
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input "
                           f"({sizes}){joint} output ({outs})")


def _scale(in_size, out_size, align_corners, scale_factor, dtype):
    """PyTorch's area_pixel_compute_scale in its opmath type `dtype`: input steps per output
    step."""
    if align_corners:
        return dtype.type(in_size - 1) / dtype.type(out_size - 1) if out_size > 1 else dtype.type(0)
    if scale_factor is not None and scale_factor > 0:
        return dtype.type(1.0 / scale_factor)
    return dtype.type(in_size) / dtype.type(out_size)


@functools.lru_cache(maxsize=64)
def _nearest_taps(in_size, out_size, align_corners, scale_factor, dtype, offset=0.0):
    """Input index floor((o + offset) * scale) for each output index o, as PyTorch computes
    it (offset 0.5: nearest-exact)."""
    scale = _scale(in_size, out_size, False, scale_factor, dtype)
    source = np.floor((np.arange(out_size).astype(dtype) + dtype.type(offset)) * scale)
    return _index_taps(np.minimum(source.astype(np.int64), in_size - 1))


def _nearest_exact_taps(in_size, out_size, align_corners, scale_factor, dtype):
    return _nearest_taps(in_size, out_size, align_corners, scale_factor, dtype, 0.5)


@functools.lru_cache(maxsize=64)
def _linear_taps(in_size, out_size, align_corners, scale_factor, dtype):
    """(index, weight) of one dimension's linear interpolation, each (out_size, taps), as
    PyTorch computes them in its opmath type `dtype`."""
    output = np.arange(out_size)
    if in_size == out_size:  # PyTorch copies (whatever the scale factor says).
        return np.stack([output, output], 1), np.tile(np.array([1, 0], dtype), (out_size, 1))
    first, far = _source_index(in_size, out_size, align_corners, scale_factor, dtype, cubic=False)
    second = first + (first < in_size - 1)
    return np.stack([first, second], 1), np.stack([dtype.type(1) - far, far], 1)


def _source_index(in_size, out_size, align_corners, scale_factor, dtype, cubic):
    """PyTorch's source index of each output index (area_pixel_compute_source_index and
    guard_index_and_lambda): the input index at or before it, and the fraction past it."""
    scale = _scale(in_size, out_size, align_corners, scale_factor, dtype)
    output = np.arange(out_size).astype(dtype)
    if align_corners:
        source = scale * output
    else:
        half = dtype.type(0.5)
        source = scale * (output + half) - half
        if not cubic:
            source = np.maximum(source, dtype.type(0))
    first = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    fraction = np.clip(source - first.astype(dtype), dtype.type(0), dtype.type(1))
    return first, fraction


def _cubic_near(x, a):
    """Keys' cubic convolution kernel for |x| <= 1 (PyTorch's cubic_convolution1)."""
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x, a):
    """... and for 1 < |x| < 2 (cubic_convolution2)."""
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


@functools.lru_cache(maxsize=64)
def _cubic_taps(in_size, out_size, align_corners, scale_factor, dtype):
    """Bicubic (Keys, a = -0.75) over input indices first-1 .. first+2, clamped to the input,
    as PyTorch."""
    first, t = _source_index(in_size, out_size, align_corners, scale_factor, dtype, cubic=True)
    a, one = dtype.type(-0.75), dtype.type(1)
    weight = np.stack([_cubic_far(t + one, a), _cubic_near(t, a), _cubic_near(one - t, a),
                       _cubic_far(one - t + one, a)], 1)
    return np.clip(first[:, None] + np.arange(-1, 3), 0, in_size - 1), weight.astype(dtype)


def _area_taps(in_size, out_size, align_corners, scale_factor, dtype):
    """Adaptive average pooling: output o averages input [floor(o*in/out), ceil((o+1)*in/out))."""
    output = np.arange(out_size)
    start = output * in_size // out_size
    count = -((output + 1) * in_size // -out_size) - start
    taps = np.arange(int(count.max()) if out_size else 1)
    inside = taps < count[:, None]
    # (-1: past the window's end, skipped by the kernels; see ops/resample.py)
    index = np.where(inside, np.minimum(start[:, None] + taps, in_size - 1), -1)
    weight = np.where(inside, (1 / count.astype(dtype))[:, None], 0)
    return index, weight.astype(dtype)


def _triangle(x):
    return np.maximum(1 - np.abs(x), 0)


def _keys_half(x):
    """PIL's bicubic filter: Keys' kernel with a = -0.5."""
    x, a = np.abs(x), x.dtype.type(-0.5)
    return np.where(x < 1, _cubic_near(x, a), np.where(x < 2, _cubic_far(x, a), 0))


@functools.lru_cache(maxsize=64)
def _antialias_taps(in_size, out_size, align_corners, scale_factor, dtype, filter, width):
    """PyTorch's antialiased weights (as PIL's): `filter` of support `width` / 2, stretched by
    the scale when downsampling, over the input indices it covers, normalized to sum to 1."""
    scale = _scale(in_size, out_size, align_corners, scale_factor, dtype)
    support = dtype.type(width / 2) * (scale if scale >= 1 else dtype.type(1))
    inverse_scale = dtype.type(1) / scale if scale >= 1 else dtype.type(1)
    max_taps = int(np.ceil(support)) * 2 + 1
    half = dtype.type(0.5)
    center = scale * (np.arange(out_size).astype(dtype) + half)
    first = np.maximum(np.trunc(center - support + half).astype(np.int64), 0)
    count = np.clip(np.minimum(np.trunc(center + support + half).astype(np.int64), in_size)
                    - first, 0, max_taps)
    taps = np.arange(max_taps)
    index = first[:, None] + taps
    weight = filter((index.astype(dtype) - center[:, None] + half) * inverse_scale).astype(dtype)
    weight[taps >= count[:, None]] = 0
    total = weight.sum(1, keepdims=True, dtype=dtype)
    weight = np.where(total != 0, weight / np.where(total != 0, total, 1), weight)
    # Taps beyond `count` have weight 0 and index -1 (skipped: see ops/resample.py), but the
    # first, which is a real one.
    index = np.where(taps < np.maximum(count, 1)[:, None], np.minimum(index, in_size - 1), -1)
    return index, weight.astype(dtype)


# Each mode's taps: taps(in_size, out_size, align_corners, scale_factor, opmath dtype).
_TAPS = {"nearest": _nearest_taps, "nearest-exact": _nearest_exact_taps,
         "linear": _linear_taps, "bilinear": _linear_taps, "trilinear": _linear_taps,
         "bicubic": _cubic_taps}
_ANTIALIAS_TAPS = {
    "bilinear": lambda *args: _antialias_taps(*args, _triangle, 2),
    "bicubic": lambda *args: _antialias_taps(*args, _keys_half, 4)}


# --- channel dropout ---------------------------------------------------------------------

_mul_ = inplace_form(mul)


# SELU's negative saturation, -scale * alpha: where alpha dropout sends a dropped element.
_SELU_SATURATION = 1.7580993408473766


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _feature_dropout(input, p, training, inplace, channel_dims=2, alpha=False):
    """PyTorch's feature_dropout: whole channels (input[n, c]; each element with
    `channel_dims` = input.ndim) zeroed with probability p and the rest scaled by 1/(1-p),
    as `input * noise` (MulBackward0) with noise of shape (N, C, 1, ...) drawn as PyTorch
    draws it (the same seed gives the same channels). `alpha`: PyTorch's alpha dropout,
    `input * a * noise + b` (AddBackward0), with a dropped element at SELU's saturation and
    a and b keeping zero mean and unit variance, in the input's dtype as PyTorch computes
    them."""
    _check_p(p)
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if channel_dims > input.ndim:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    dtype = _meta(input).dtype
    multiply = _mul_ if inplace else mul
    if p == 1.0:
        return multiply(input, Tensor._wrap(np.zeros((), dtype)))
    _tracing.graph_break("dropout draws random numbers, which fusion would freeze")
    noise_shape = tuple(input.shape[:channel_dims]) + (1,) * (input.ndim - channel_dims)
    keep = _random.bernoulli_mask(noise_shape, 1.0 - p)
    if not alpha:
        return multiply(input, Tensor._wrap((keep * (1.0 / (1.0 - p))).astype(dtype)))
    if dtype.kind != "f" and not is_half(dtype):
        raise RuntimeError(f"result type Float can't be cast to the desired output type "
                           f"{input.dtype.scalar_type}")
    a = 1.0 / math.sqrt((_SELU_SATURATION ** 2 * p + 1) * (1 - p))
    noise = keep.astype(dtype)
    shift = (noise + dtype.type(-1)) * dtype.type(_SELU_SATURATION * a) \
        + dtype.type(_SELU_SATURATION * a * p)
    return multiply(input, Tensor._wrap(noise * dtype.type(a))).add_(Tensor._wrap(shift))


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _feature_dropout(input, p, training, inplace, channel_dims=input.ndim, alpha=True)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _feature_dropout(input, p, training, inplace, alpha=True)


def dropout1d(input, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D "
                           "input. Note that dropout1d exists to provide channel-wise dropout on "
                           "inputs with 1 spatial dimension, a channel dimension, and an optional "
                           "batch dimension (i.e. 2D or 3D inputs).")
    if input.ndim == 3:
        return _feature_dropout(input, p, training, inplace)
    return _as_batch_of_one(input, p, training, inplace)


def _as_batch_of_one(input, p, training, inplace):
    """Channel dropout of an unbatched input, drawn as one sample of a batch (in place: the
    input unsqueezed and squeezed in place, as PyTorch's)."""
    if inplace:
        return _feature_dropout(input.unsqueeze_(0), p, training, inplace).squeeze_(0)
    return _feature_dropout(input.unsqueeze(0), p, training, inplace).squeeze(0)


def dropout2d(input, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is "
                      "deprecated and will result in an error in a future release. To retain the "
                      "behavior and silence this warning, please use dropout instead. Note that "
                      "dropout2d exists to provide channel-wise dropout on inputs with 2 spatial "
                      "dimensions, a channel dimension, and an optional batch dimension (i.e. 3D "
                      "or 4D inputs).", stacklevel=2)
    if input.ndim == 3:
        # NOTE: as PyTorch, a 3-D input is (N, C, L), not an unbatched (C, H, W).
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                      "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                      "where C is the channel dim. This behavior will change in a future release "
                      "to interpret the input as one without a batch dimension, i.e. shape (C, H, "
                      "W). To maintain the 1D channel-wise dropout behavior, please switch to "
                      "using dropout1d instead.", stacklevel=2)
    return _feature_dropout(input, p, training, inplace)


def dropout3d(input, p=0.5, training=True, inplace=False):
    _check_p(p)
    if input.ndim not in (4, 5):
        warnings.warn(f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is "
                      "deprecated and will result in an error in a future release. To retain the "
                      "behavior and silence this warning, please use dropout instead. Note that "
                      "dropout3d exists to provide channel-wise dropout on inputs with 3 spatial "
                      "dimensions, a channel dimension, and an optional batch dimension (i.e. 4D "
                      "or 5D inputs).", stacklevel=2)
    if input.ndim == 5:
        return _feature_dropout(input, p, training, inplace)
    return _as_batch_of_one(input, p, training, inplace)
