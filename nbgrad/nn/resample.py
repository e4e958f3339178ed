"""Padding, upsampling, pixel-shuffle and channel- and alpha-dropout modules (PyTorch's torch.nn
names and reprs), on F.pad, F.interpolate, F.pixel_shuffle/pixel_unshuffle and F.dropout1d/2d/3d,
F.alpha_dropout and F.feature_alpha_dropout."""
from . import functional as F
from .layers import Dropout
from .module import Module


def _per_side(padding, sides):
    """`padding` as a tuple: an int for every side, or a sequence as it is (as PyTorch)."""
    return tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * sides


class _PadNd(Module):
    """Padding of the last `dims` dimensions in `mode` (a class attribute of each module)."""
    mode = dims = None

    def __init__(self, padding):
        super().__init__()
        self.padding = _per_side(padding, 2 * self.dims)

    def forward(self, input):
        return F.pad(input, self.padding, self.mode)

    def extra_repr(self):
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    mode = "constant"

    def __init__(self, padding, value):
        super().__init__(padding)
        self.value = value

    def forward(self, input):
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


def _padding_module(name, base, dims, mode=None):
    attributes = {"dims": dims, "__doc__": f"F.pad of the last {dims} dimension(s) "
                  f"({mode or base.mode} mode)."}
    if mode is not None:
        attributes["mode"] = mode
    return type(name, (base,), attributes)


ZeroPad1d, ZeroPad2d, ZeroPad3d = (_padding_module(f"ZeroPad{d}d", _ZeroPadNd, d) for d in (1, 2, 3))
ConstantPad1d, ConstantPad2d, ConstantPad3d = (
    _padding_module(f"ConstantPad{d}d", _ConstantPadNd, d) for d in (1, 2, 3))
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = (
    _padding_module(f"ReflectionPad{d}d", _PadNd, d, "reflect") for d in (1, 2, 3))
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = (
    _padding_module(f"ReplicationPad{d}d", _PadNd, d, "replicate") for d in (1, 2, 3))
CircularPad1d, CircularPad2d, CircularPad3d = (
    _padding_module(f"CircularPad{d}d", _PadNd, d, "circular") for d in (1, 2, 3))


class Upsample(Module):
    """F.interpolate with the module's size or scale_factor, mode and align_corners."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            # As PyTorch: a scale factor of 0 counts as none.
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self):
        if self.scale_factor is not None:
            return f"scale_factor={self.scale_factor!r}, mode={self.mode!r}"
        return f"size={self.size!r}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class Dropout1d(Dropout):
    """Zeroes whole channels (input[n, c]) with probability p while training, scaling the
    rest by 1/(1-p); the identity in eval mode."""

    def forward(self, input):
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(Dropout):
    __doc__ = Dropout1d.__doc__

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(Dropout):
    __doc__ = Dropout1d.__doc__

    def forward(self, input):
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(Dropout):
    """Alpha dropout while training (for SELU networks: dropped elements go to SELU's
    saturation, and the result keeps zero mean and unit variance); the identity in eval mode."""

    def forward(self, input):
        return F.alpha_dropout(input, self.p, self.training)


class FeatureAlphaDropout(Dropout):
    """Alpha dropout of whole channels (input[n, c]) while training; the identity in eval
    mode."""

    def forward(self, input):
        return F.feature_alpha_dropout(input, self.p, self.training)


class PixelShuffle(Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input):
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input):
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"
