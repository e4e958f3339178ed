"""Conversion between dtypes and devices: `to`, and `Tensor.type` and `Tensor.cpu`; the
public dtype functions (`result_type`, `promote_types`, `finfo`, ...)."""
from .._core import dtype as _dtype, tracing as _tracing
from .._core.dtype import can_cast, finfo, iinfo, promote_types
from ..autograd.grad_mode import state as _grad_state
from ..ops import PRIMITIVES
from . import device as _device
from .shape import clone
from .dispatch import dispatch
from .tensor import Tensor, _meta

__all__ = ["to", "result_type", "promote_types", "can_cast", "is_floating_point", "finfo",
           "iinfo"]


def to(input, *args, dtype=None, device=None, non_blocking=False, copy=False):
    """`to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)`. Devices other than the CPU
    raise PyTorch's error for a missing backend; `non_blocking` means nothing on the CPU."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif isinstance(arg, (str, int, _device.device)) and not isinstance(arg, bool):
            device = arg
        elif arg is not None:
            dtype = arg
    _device.checked(device, creating=False)
    if dtype is None:
        return clone(input) if copy else input
    dtype = _dtype.as_dtype(dtype)
    source = _meta(input).dtype
    if dtype.np == source and not copy:
        return input
    if dtype in _dtype.HALF or _dtype.is_half(source):
        return _half_cast(input, dtype)
    return dispatch(PRIMITIVES["to_copy"], (input,), {"dtype": dtype.np})


def _half_cast(input, dtype):
    """A cast from or to float16 or bfloat16, which Numba kernels cannot do: in NumPy, outside
    autograd and compiled steps."""
    if input.requires_grad and _grad_state.enabled:
        raise RuntimeError(f"nbgrad computes no gradients in {dtype.name}: cast to "
                           f"{dtype.name} under nbgrad.no_grad(), or from a tensor that does "
                           f"not require grad")
    _tracing.graph_break(f"a cast to {dtype.name} runs outside compiled code")
    return Tensor._wrap(_dtype.cast(input._data, dtype.np))


def _legacy_type_name(dtype):
    return f"torch.{dtype.scalar_type}Tensor"


def type_name_or_cast(input, dtype=None):
    """`Tensor.type`: PyTorch's legacy type name ("torch.FloatTensor") without `dtype`, else
    `input` cast to `dtype` (a dtype, a legacy type name or class)."""
    if dtype is None:
        return _legacy_type_name(input.dtype)
    if isinstance(dtype, type):  # a legacy class: nbgrad.LongTensor
        if not isinstance(getattr(dtype, "dtype", None), _dtype.dtype):
            raise ValueError(f"invalid type: '{dtype.__name__}'")
        dtype = dtype.dtype
    elif isinstance(dtype, str):
        found = [d for d in _dtype.ALL if _legacy_type_name(d) == dtype]
        if not found:
            raise ValueError(f"invalid type: '{dtype}'")
        dtype = found[0]
    return to(input, dtype)


def result_type(tensor, other):
    """PyTorch's result_type of a tensor and a tensor or Python number."""
    return _dtype.result_type(*(_meta(x) if isinstance(x, Tensor) else x
                                for x in (tensor, other)))


def is_floating_point(input):
    return input.is_floating_point()


def cpu(input):
    """`Tensor.cpu`: nbgrad's tensors are on the CPU already."""
    return input


def cuda(input, device=None, non_blocking=False):
    """`Tensor.cuda`: PyTorch's error on a machine without CUDA."""
    _device.checked("cuda" if device is None else device, creating=False)
