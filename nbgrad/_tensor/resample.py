"""Padding, resizing and channel dropout: `nn.functional.pad`, `interpolate`, `dropout1d`
and `dropout2d`.

Padding and nearest resizing move elements by index, so they are the `take` and
`index_put` primitives (ops/indexing.py) on flat positions computed here, under PyTorch's
grad_fn names: each output element reads one input element (or, for constant padding, the
input is written into a filled output), and the VJPs scatter the gradient back. The
positions depend only on shapes and arguments, so they are cached.
"""
import functools
import operator
import warnings

import numpy as np

from .._core import tracing as _tracing
from ..ops import PRIMITIVES
from ..ops.indexing import flat_positions
from . import random as _random
from .arithmetic import mul
from .dispatch import dispatch
from .indexing import getitem
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
    positions = _gather_positions(tuple(input.shape), pairs, mode)
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
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


@functools.lru_cache(maxsize=32)
def _gather_positions(shape, pairs, mode):
    """Flat positions in the input of each element of the padded output."""
    axes = [np.arange(size) for size in shape]
    for dim, left, right in pairs:
        axes[dim] = _SOURCES[mode](np.arange(shape[dim] + left + right), shape[dim], left, right)
    return flat_positions(shape, np.ix_(*axes))


def _constant_pad(input, pairs, value):
    """The input (cropped where a pad is negative) written into an output filled with `value`:
    `index_put` on a constant, whose VJP takes the gradient at the input's positions."""
    shape = input.shape
    crop = [slice(None)] * input.ndim
    out_shape = list(shape)
    for dim, left, right in pairs:
        kept = shape[dim] + min(left, 0) + min(right, 0)
        if kept < 0:
            raise RuntimeError("narrow(): length must be non-negative.")
        crop[dim] = slice(max(-left, 0), max(-left, 0) + kept)
        out_shape[dim] = shape[dim] + left + right
    if any(part != slice(None) for part in crop):
        input = getitem(input, tuple(crop))
    dtype = _meta(input).dtype
    # A zero-strided stand-in: the constant costs no memory (index_put copies it once).
    filled = Tensor._wrap(np.broadcast_to(np.array(value).astype(dtype), tuple(out_shape)))
    positions = _constant_positions(tuple(out_shape), tuple(input.shape), pairs)
    return dispatch(PRIMITIVES["index_put"], (filled, input), {"positions": positions},
                    grad_fn_name="ConstantPadNdBackward0")


@functools.lru_cache(maxsize=32)
def _constant_positions(out_shape, kept_shape, pairs):
    """Flat positions in the padded output of each element of the (cropped) input."""
    axes = [np.arange(size) for size in kept_shape]
    for dim, left, _ in pairs:
        axes[dim] = axes[dim] + max(left, 0)
    return flat_positions(out_shape, np.ix_(*axes))


# --- channel dropout ---------------------------------------------------------------------

_mul_ = inplace_form(mul)


def _feature_dropout(input, p, training, inplace, channel_dims=2):
    """PyTorch's feature_dropout: whole channels (input[n, c], or input[c] of an unbatched
    input with `channel_dims` 1) zeroed with probability p and the rest scaled by 1/(1-p), as
    `input * noise` (MulBackward0) with noise of shape (N, C, 1, ...) drawn as PyTorch draws
    it (the same seed gives the same channels)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if input.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    dtype = _meta(input).dtype
    if p == 1.0:
        noise = np.zeros((), dtype)
    else:
        _tracing.graph_break("dropout draws random numbers, which fusion would freeze")
        noise_shape = tuple(input.shape[:channel_dims]) + (1,) * (input.ndim - channel_dims)
        keep = _random.bernoulli_mask(noise_shape, 1.0 - p)
        noise = (keep * (1.0 / (1.0 - p))).astype(dtype)
    return (_mul_ if inplace else mul)(input, Tensor._wrap(noise))


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
    # An unbatched (C, L) input draws as one sample of a batch (in place: without the view).
    if inplace:
        return _feature_dropout(input, p, training, inplace, channel_dims=1)
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
