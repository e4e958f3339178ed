"""Conversion between dtypes and devices: `to`, and `Tensor.type` and `Tensor.cpu`."""
from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from .shape import clone
from .dispatch import dispatch
from .tensor import Tensor, _meta

__all__ = ["to"]


def to(input, *args, dtype=None, copy=False, **kwargs):
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif isinstance(arg, str):
            if arg not in ("cpu",):
                raise RuntimeError(f"nbgrad runs on the CPU only; got device {arg!r}")
        elif arg is not None:
            dtype = arg
    device = kwargs.pop("device", None)
    if device not in (None, "cpu"):
        raise RuntimeError(f"nbgrad runs on the CPU only; got device {device!r}")
    if dtype is None:
        return clone(input) if copy else input
    dtype = _dtype.as_dtype(dtype)
    if dtype.np == _meta(input).dtype and not copy:
        return input
    return dispatch(PRIMITIVES["to_copy"], (input,), {"dtype": dtype.np})


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
               "bool": "BoolTensor"}


def type_name_or_cast(input, dtype=None):
    """`Tensor.type`: PyTorch's legacy type name ("torch.FloatTensor") without `dtype`, else
    `input` cast to `dtype` (a dtype or a legacy type name)."""
    if dtype is None:
        return "torch." + _TYPE_NAMES[input.dtype.name]
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        dtype = next(_dtype.as_dtype(k) for k, v in _TYPE_NAMES.items() if v == name)
    return to(input, dtype)


def cpu(input):
    """`Tensor.cpu`: nbgrad's tensors are on the CPU already."""
    return input
