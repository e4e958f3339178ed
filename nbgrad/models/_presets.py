"""The preprocessing that torchvision's classification weights were evaluated with
(`ResNet18_Weights.DEFAULT.transforms()`), on tensor images: resize the shorter edge, crop the
center, rescale to [0, 1], normalize by ImageNet's mean and standard deviation.

The steps are torchvision's tensor code paths (transforms/_presets.py, transforms/functional.py):
an integer image is resized in float32 and rounded back to its dtype before it is rescaled; a
crop larger than the image pads it with zeros first. PIL images are not taken (nbgrad has no
PIL conversion): pass a (C, H, W) or (N, C, H, W) tensor, as `torchvision.io.read_image` gives.
"""
import enum

from .. import nn
from .._core.dtype import float32, float64, int8, int16, int32, int64, uint8
from .._tensor.factories import tensor
from .._tensor.tensor import Tensor
from ..nn import functional as F

__all__ = ["ImageClassification", "InterpolationMode"]

# What an integer image's largest value means (it becomes 1.0), as torchvision's _max_value.
_INTEGER_MAX = {uint8: 255, int8: 127, int16: 2 ** 15 - 1, int32: 2 ** 31 - 1, int64: 2 ** 63 - 1}


class InterpolationMode(enum.Enum):
    """The resampling filters that `F.interpolate` has (torchvision's names)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"


class ImageClassification(nn.Module):
    """Resize the shorter edge to `resize_size` (`interpolation`, with `antialias` when
    bilinear), crop the central `crop_size` square, rescale to float32 in [0, 1] and normalize
    each channel: (x - mean) / std."""

    def __init__(self, *, crop_size, resize_size=256, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), interpolation=InterpolationMode.BILINEAR,
                 antialias=True):
        super().__init__()
        self.crop_size = [crop_size]
        self.resize_size = [resize_size]
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = InterpolationMode(interpolation)
        self.antialias = antialias

    def forward(self, img):
        if not isinstance(img, Tensor):
            raise TypeError(f"ImageClassification takes an image tensor of shape (C, H, W) or "
                            f"(N, C, H, W), not {type(img).__name__} (PIL images are not "
                            "supported: convert one with nbgrad.tensor(numpy.asarray(image))"
                            ".permute(2, 0, 1))")
        if img.ndim not in (3, 4):
            raise ValueError(f"ImageClassification takes an image tensor of shape (C, H, W) or "
                             f"(N, C, H, W), got shape {tuple(img.shape)}")
        img = _resize(img, self.resize_size[0], self.interpolation, self.antialias)
        img = _center_crop(img, self.crop_size[0])
        img = _to_float(img)
        return _normalize(img, self.mean, self.std)

    def __repr__(self):
        return (f"{self.__class__.__name__}(\n    crop_size={self.crop_size}\n"
                f"    resize_size={self.resize_size}\n    mean={self.mean}\n    std={self.std}\n"
                f"    interpolation={self.interpolation}\n)")

    def describe(self):
        return ("Accepts batched ``(B, C, H, W)`` and single ``(C, H, W)`` image ``torch.Tensor`` "
                f"objects. The images are resized to ``resize_size={self.resize_size}`` using "
                f"``interpolation={self.interpolation}``, followed by a central crop of "
                f"``crop_size={self.crop_size}``. Finally the values are first rescaled to "
                f"``[0.0, 1.0]`` and then normalized using ``mean={self.mean}`` and "
                f"``std={self.std}``.")


def _resize(img, size, interpolation, antialias):
    """The shorter edge to `size`, the longer in proportion (rounded down), as torchvision."""
    height, width = img.shape[-2:]
    short, long = sorted((height, width))
    new_short, new_long = size, int(size * long / short)
    new_size = [new_long, new_short] if width <= height else [new_short, new_long]
    if new_size == [height, width]:
        return img
    single = img.ndim == 3
    resized = img.unsqueeze(0) if single else img
    integer = img.dtype not in (float32, float64)
    if integer:
        resized = resized.to(float32)
    bilinear = interpolation is InterpolationMode.BILINEAR
    resized = F.interpolate(resized, size=new_size, mode=interpolation.value,
                            align_corners=False if bilinear else None,
                            antialias=bool(antialias) and bilinear)
    if single:
        resized = resized.squeeze(0)
    # An integer image stays one: rounded, not truncated, back to its dtype.
    return resized.round().to(img.dtype) if integer else resized


def _center_crop(img, size):
    height, width = img.shape[-2:]
    if size > height or size > width:
        # Zeros around the image (the odd one on the right and bottom) up to the crop's size.
        pad_width, pad_height = max(size - width, 0), max(size - height, 0)
        img = F.pad(img, [pad_width // 2, (pad_width + 1) // 2,
                          pad_height // 2, (pad_height + 1) // 2], value=0)
        height, width = img.shape[-2:]
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return img[..., top:top + size, left:left + size]


def _to_float(img):
    """float32, an integer image divided by its dtype's largest value."""
    if img.dtype.is_floating_point:
        return img.to(float32)
    return img.to(float32) / _INTEGER_MAX[img.dtype]


def _normalize(img, mean, std):
    mean = tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    std = tensor(std, dtype=img.dtype).view(-1, 1, 1)
    if (std == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {img.dtype}, leading to "
                         "division by zero.")
    return (img - mean) / std
