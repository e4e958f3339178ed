"""Devices: `nbgrad.device`, the default device, and the check every `device=` argument goes
through. nbgrad computes on the CPU only; any other device gets the error PyTorch raises on a
machine without that backend, so that `device = "cuda" if torch.cuda.is_available() else "cpu"`
picks the CPU and code that asks for a GPU anyway stops at once."""
import builtins
import re

__all__ = ["device", "set_default_device", "get_default_device"]

# PyTorch's device types, in its own order (its message lists them).
_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve", "fpga",
          "maia", "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia", "privateuseone")
_DEVICE_STRING = re.compile(r"([a-z]+)(?::(\d+))?")


class device:
    """torch.device: `device("cpu")`, `device("cpu:0")`, `device("cpu", 0)`,
    `device(type="cpu", index=0)`, or another device. Only "cpu" can hold tensors."""

    __slots__ = ("_type", "_index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, int) and not isinstance(type, bool):
            # A bare index means "the accelerator's device number i"; there is none.
            raise RuntimeError("Cannot access accelerator device when none is available.")
        elif isinstance(type, str):
            match = _DEVICE_STRING.fullmatch(type)
            if match is None or match.group(1) not in _TYPES:
                if match is not None or ":" not in type:
                    raise RuntimeError(f"Expected one of {', '.join(_TYPES)} device type at start "
                                       f"of device string: {type}")
                raise RuntimeError(f"Invalid device string: '{type}'")
            type = match.group(1)
            if match.group(2) is not None:
                if index is not None:
                    raise RuntimeError(f"type (string) must not include an index because index was "
                                       f"passed explicitly: {match.group(0)}")
                index = int(match.group(2))
        else:
            raise TypeError(f"device() received an invalid combination of arguments - got "
                            f"({builtins.type(type).__name__})")
        if index is not None and index < 0:
            raise RuntimeError("Device index must not be negative")
        self._type, self._index = type, index

    @property
    def type(self):
        return self._type

    @property
    def index(self):
        return self._index

    def __eq__(self, other):
        # NOTE: as PyTorch, a device never equals a string: `x.device == "cpu"` is False.
        if not isinstance(other, device):
            return NotImplemented
        return (self._type, self._index) == (other._type, other._index)

    def __hash__(self):
        return hash((self._type, self._index))

    def __str__(self):
        return self._type if self._index is None else f"{self._type}:{self._index}"

    def __repr__(self):
        if self._index is None:
            return f"device(type='{self._type}')"
        return f"device(type='{self._type}', index={self._index})"

    def __reduce__(self):
        return (device, (self._type, self._index))


CPU = device("cpu")


def _missing_backend(type, creating):
    """PyTorch's error for a device type this (CPU-only) build lacks."""
    if type == "cuda":
        return AssertionError("Torch not compiled with CUDA enabled")
    if type == "mps" and creating:
        return NotImplementedError("Could not run 'aten::empty.memory_format' with arguments from "
                                   "the 'MPS' backend. nbgrad runs on the CPU only.")
    if type == "mps":
        return RuntimeError("PyTorch is not linked with support for mps devices")
    return RuntimeError(f"nbgrad runs on the CPU only: no {type} backend")


def checked(where, creating=True):
    """`where` (None, a string, an index or a device) as the device to use: the default device
    for None, the CPU for any "cpu" device; another device raises PyTorch's error for a missing
    backend (`creating`: the error of a factory, else the error of a copy, `.to`)."""
    if where is None:
        return _default
    where = where if isinstance(where, device) else device(where)
    if where.type != "cpu":
        raise _missing_backend(where.type, creating)
    return CPU


_default = CPU


def set_default_device(device):
    """Make `device` the default of the factories. Only the CPU (or None, the CPU) can be.

    NOTE: PyTorch accepts any device here and fails at the first factory call; nbgrad fails
    here, where the line to change is."""
    global _default
    _default = CPU if device is None else checked(device)


def get_default_device():
    return _default
