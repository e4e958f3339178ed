"""PyTorch's legacy typed tensor classes, one per dtype (`FloatTensor`, `LongTensor`, ...,
made from the dtype table), and the type queries `is_tensor` and `numel`.

A class constructs a tensor of its dtype: `FloatTensor([1, 2])` from data, `FloatTensor(2, 3)`
uninitialized of that shape, `FloatTensor()` empty, `FloatTensor(t)` an alias of a tensor of
its dtype. `isinstance(x, FloatTensor)` is true exactly for float32 tensors (nbgrad's are all
on the CPU), and `x.type(LongTensor)` casts.
"""
import numbers

import numpy as np

from .._core import dtype as _dtype
from .device import device as _device
from .factories import empty, tensor
from .tensor import Size, Tensor

_SIGNATURES = """, but expected one of:
 * (*, torch.device device = None)
 * (Tensor other)
 * (tuple of ints size, *, torch.device device = None)
 * (object data, *, torch.device device = None)
"""


def _is_size(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _tensor_options(dtype):
    """How PyTorch's messages show the options of a CPU tensor of `dtype`."""
    return (f"TensorOptions(dtype={_dtype.C_TYPE_NAMES[dtype.name]}, device=cpu, layout=Strided, "
            "requires_grad=false (default), pinned_memory=false (default), "
            "memory_format=(nullopt))")


class _LegacyTensorType(type):
    """The type of the legacy classes (PyTorch's `torch.tensortype`): calling a class makes a
    tensor of its dtype, and `isinstance` tells a tensor of its dtype."""

    def __call__(cls, *args, device=None):
        if device is not None and _device(device).type != "cpu":
            raise RuntimeError("legacy constructor expects device type: cpu but device type: "
                               f"{_device(device).type} was passed")
        if not args:
            return empty(0, dtype=cls.dtype)
        if all(_is_size(arg) for arg in args) or (len(args) == 1 and isinstance(args[0], Size)):
            return empty(*args, dtype=cls.dtype)
        if len(args) > 1:
            got = ", ".join(type(arg).__name__ for arg in args)
            raise TypeError(f"new() received an invalid combination of arguments - got ({got})"
                            + _SIGNATURES)
        data = args[0]
        if isinstance(data, Tensor):
            if data.dtype != cls.dtype:
                raise TypeError(f"expected {_tensor_options(cls.dtype)} (got "
                                f"{_tensor_options(data.dtype)})")
            return data[...]  # PyTorch's alias: the same memory (AliasBackward0)
        if isinstance(data, str):
            raise TypeError("new(): invalid data type 'str'")
        if not isinstance(data, (list, tuple, range, np.ndarray)):
            raise TypeError(f"new(): data must be a sequence (got {type(data).__name__})")
        return tensor(data, dtype=cls.dtype)

    def __instancecheck__(cls, instance):
        return isinstance(instance, Tensor) and instance.dtype == cls.dtype

    def __repr__(cls):
        return f"<class 'nbgrad.{cls.__name__}'>"


LEGACY_CLASSES = tuple(
    _LegacyTensorType(f"{dtype.scalar_type}Tensor", (),
                      {"dtype": dtype, "is_cuda": False, "is_sparse": False,
                       "__module__": "nbgrad", "__slots__": ()})
    for dtype in _dtype.ALL)
globals().update({cls.__name__: cls for cls in LEGACY_CLASSES})

__all__ = [cls.__name__ for cls in LEGACY_CLASSES] + ["is_tensor", "numel"]


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    if not isinstance(input, Tensor):
        raise TypeError("numel(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    return input.numel()
