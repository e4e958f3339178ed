"""`nbgrad.save`: PyTorch's zip checkpoint, written with the standard library.

The pickle is written opcode by opcode rather than with `pickle.Pickler`: torch's names
(`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`, ...) must appear in it without
torch installed, which `pickle` does not allow. It writes only what `nbgrad.load` and
`torch.load(weights_only=True)` read back, so a file that saves also loads.
"""
import io
import numbers
import os
import pickle
import struct
import sys
import zipfile
from collections import Counter, OrderedDict

import numpy as np

from .._core.dtype import dtype as _dtype, from_numpy_dtype
from .._tensor import device as devices
from .._tensor.tensor import Size, Tensor
from ..nn.parameter import Parameter
from . import format

__all__ = ["save"]

# Records start on this boundary of the archive, as torch aligns them, so that a checkpoint
# opened with `mmap=True` gives aligned tensors. torch.load does not need it.
_ALIGNMENT = 64
# The padding goes in an extra field of the record's local header, as torch writes it.
_PADDING_FIELD = b"FB"
_LOCAL_HEADER_SIZE = 30  # the fixed part of a zip local file header


def save(obj, f):
    """Write `obj` (tensors, Parameters, state dicts, optimizer state dicts, and dicts, lists,
    tuples, sets, numbers, strings, bytes, None, dtypes, devices and `Size`s holding them) to
    `f`, a path or a writable binary file, in the format `torch.save` writes.

    Tensors that share memory are saved as views of one storage, as PyTorch does: they load
    as views of one storage again, and a view saves its whole base, as in PyTorch."""
    storages = _Storages()
    pickled = _Pickler(storages).dump(obj)
    records = [(format.PICKLE, pickled), (format.BYTEORDER, sys.byteorder.encode())]
    records += [(format.storage_record(key), data) for key, data in storages.records()]
    records.append((format.VERSION, format.FORMAT_VERSION))
    if isinstance(f, (str, os.PathLike)):
        parent = os.path.dirname(os.path.abspath(f))
        if not os.path.isdir(parent):
            raise RuntimeError(f"Parent directory {parent} does not exist.")
        with open(f, "wb") as file:
            _write_archive(file, _archive_name(f), records)
    else:
        _write_archive(f, "archive", records)


def _archive_name(path):
    """torch's name for the archive's directory: the file name up to its last dot, or
    "archive" for a name that is not ASCII."""
    name = os.path.basename(os.fspath(path))
    stem = name.rpartition(".")[0] if "." in name else name
    # NOTE: torch refuses a file name with nothing before its dot (".pt"); its reader takes
    # any directory name, so nbgrad writes "archive" there.
    return stem if stem and stem.isascii() else "archive"


def _write_archive(file, name, records):
    # zipfile finishes each record's header by seeking back to it; a stream that cannot seek
    # gets the archive in one piece.
    seekable = file.seekable() if hasattr(file, "seekable") else False
    target = file if seekable else io.BytesIO()
    start = target.tell()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for record, data in records:
            info = zipfile.ZipInfo(f"{name}/{record}", date_time=(1980, 1, 1, 0, 0, 0))
            header_end = target.tell() - start + _LOCAL_HEADER_SIZE + len(info.filename.encode())
            padding = -(header_end + 4) % _ALIGNMENT  # the field's own 4 bytes come first
            info.extra = _PADDING_FIELD + struct.pack("<H", padding) + b"Z" * padding
            archive.writestr(info, data)
    if not seekable:
        file.write(target.getbuffer())


class _Storages:
    """The storages of the saved tensors, keyed "0", "1", ... in the order they are met.

    A tensor's storage is the memory of its NumPy base (the array that owns the memory its
    view looks at), so tensors viewing one base share one storage. A view that a storage
    cannot express (negative or unaligned strides) is saved as a copy of its own."""

    def __init__(self):
        self._by_base = {}  # id(base) -> (key, dtype, base): the base is kept alive here

    def place(self, array):
        """(key, storage numel, offset, strides) of `array` in its storage, in elements."""
        base = array
        while isinstance(base.base, np.ndarray):
            base = base.base
        layout = _layout(array, base)
        if layout is None:
            base = np.array(array, order="C")  # a new array: one block, plain strides
            layout = _layout(base, base)
        dtype = from_numpy_dtype(array.dtype)
        found = self._by_base.get(id(base))
        if found is None:
            found = self._by_base[id(base)] = (str(len(self._by_base)), dtype, base)
        elif found[1] is not dtype:
            raise RuntimeError("Cannot save multiple tensors or storages that view the same data "
                               "as different types")
        return (found[0], base.nbytes // array.itemsize) + layout

    def records(self):
        """(key, bytes in memory order) of every storage."""
        return [(key, base.reshape(-1, order="A").view(np.uint8))
                for key, _, base in self._by_base.values()]


def _layout(array, base):
    """(offset, strides) of `array` in elements of its dtype from the start of `base`, or None
    where a storage cannot express them (a base that is not one block of memory, negative or
    unaligned strides)."""
    if not (base.flags.c_contiguous or base.flags.f_contiguous):
        return None
    itemsize = array.itemsize
    offset = array.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if offset < 0 or offset % itemsize or base.nbytes % itemsize:
        return None
    if any(s < 0 or s % itemsize for s in array.strides):
        return None
    return offset // itemsize, tuple(s // itemsize for s in array.strides)


class _Pickler:
    """Pickle protocol 2, as torch.save writes it, for the types a weights-only load reads.

    Containers and tensors are memoized, so an object saved twice loads as one object, and
    a list or dict that contains itself loads that way."""

    def __init__(self, storages):
        self._storages = storages
        self._out = bytearray()
        self._next_index = 0
        self._memo = {}  # id(obj) -> (memo index, obj): the object is kept alive here
        self._globals = {}  # (module, name) -> memo index
        self._persistent_ids = {}  # storage key -> memo index
        self._tuples_in_progress = set()

    def dump(self, obj):
        self._out += pickle.PROTO + bytes([format.PICKLE_PROTOCOL])
        self._save(obj)
        self._out += pickle.STOP
        return bytes(self._out)

    # --- the memo --------------------------------------------------------------------------

    def _put(self):
        """Memoize the object on top of the stack; its memo index."""
        index = self._next_index
        self._next_index += 1
        self._out += (pickle.BINPUT + bytes([index]) if index < 256
                      else pickle.LONG_BINPUT + struct.pack("<I", index))
        return index

    def _get(self, index):
        self._out += (pickle.BINGET + bytes([index]) if index < 256
                      else pickle.LONG_BINGET + struct.pack("<I", index))

    def _remember(self, obj):
        self._memo[id(obj)] = (self._put(), obj)

    def _global(self, name):
        index = self._globals.get(name)
        if index is not None:
            self._get(index)
            return
        module, qualname = name
        self._out += pickle.GLOBAL + f"{module}\n{qualname}\n".encode()
        self._globals[name] = self._put()

    # --- objects ---------------------------------------------------------------------------

    def _save(self, obj):
        memoized = self._memo.get(id(obj))
        if memoized is not None:
            self._get(memoized[0])
            return
        save = self._BY_TYPE.get(type(obj))
        if save is None:
            save = self._by_kind(obj)
        save(self, obj)

    def _by_kind(self, obj):
        """The writer of an object whose exact type has none: a dtype, or a number of another
        type (NumPy's), written as the Python number of the same value."""
        if isinstance(obj, _dtype):
            return _Pickler._dtype
        if isinstance(obj, np.bool_):
            return lambda self, value: self._save(bool(value))
        if isinstance(obj, numbers.Integral):
            return lambda self, value: self._save(int(value))
        if isinstance(obj, numbers.Real):
            return lambda self, value: self._save(float(value))
        raise TypeError(
            f"nbgrad.save cannot save a {type(obj).__qualname__}: it saves tensors, Parameters, "
            f"dicts, OrderedDicts, Counters, lists, tuples, sets, numbers, strings, bytes, None, "
            f"dtypes, devices and Sizes (what torch.load(weights_only=True) reads)")

    def _none(self, obj):
        self._out += pickle.NONE

    def _bool(self, obj):
        self._out += pickle.NEWTRUE if obj else pickle.NEWFALSE

    def _int(self, obj):
        if 0 <= obj < 256:
            self._out += pickle.BININT1 + bytes([obj])
        elif 0 <= obj < 65536:
            self._out += pickle.BININT2 + struct.pack("<H", obj)
        elif -2 ** 31 <= obj < 2 ** 31:
            self._out += pickle.BININT + struct.pack("<i", obj)
        else:
            encoded = obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True)
            if len(encoded) > 255:
                raise OverflowError(f"nbgrad.save cannot save an int of {obj.bit_length()} bits")
            self._out += pickle.LONG1 + bytes([len(encoded)]) + encoded

    def _float(self, obj):
        self._out += pickle.BINFLOAT + struct.pack(">d", obj)

    def _str(self, obj):
        encoded = obj.encode("utf-8", "surrogatepass")
        self._out += pickle.BINUNICODE + struct.pack("<I", len(encoded)) + encoded

    def _call(self, name, *args):
        """`name(*args)`, with the arguments saved as a tuple."""
        self._global(name)
        self._tuple(args, remember=False)
        self._out += pickle.REDUCE

    def _bytes(self, obj):
        self._call(format.ENCODE, obj.decode("latin1"), "latin1")

    def _bytearray(self, obj):
        self._call(format.BYTEARRAY, bytes(obj))
        self._remember(obj)

    def _complex(self, obj):
        self._call(format.COMPLEX, obj.real, obj.imag)

    def _tuple(self, obj, remember=True):
        if id(obj) in self._tuples_in_progress:
            raise ValueError("nbgrad.save cannot save a tuple that contains itself")
        self._tuples_in_progress.add(id(obj))
        if len(obj) <= 3:
            for item in obj:
                self._save(item)
            self._out += (pickle.EMPTY_TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3)[len(obj)]
        else:
            self._out += pickle.MARK
            for item in obj:
                self._save(item)
            self._out += pickle.TUPLE
        self._tuples_in_progress.discard(id(obj))
        if remember:
            self._remember(obj)

    def _list(self, obj):
        self._out += pickle.EMPTY_LIST
        self._remember(obj)
        self._items(obj, pickle.APPENDS)

    def _items(self, items, opcode):
        if items:
            self._out += pickle.MARK
            for item in items:
                self._save(item)
            self._out += opcode

    def _dict(self, obj):
        self._out += pickle.EMPTY_DICT
        self._remember(obj)
        self._dict_items(obj)

    def _dict_items(self, obj):
        if obj:
            self._out += pickle.MARK
            for key, value in obj.items():
                self._save(key)
                self._save(value)
            self._out += pickle.SETITEMS

    def _ordered_dict(self, obj):
        self._call(format.ORDERED_DICT)
        self._remember(obj)
        self._dict_items(obj)
        attributes = vars(obj)
        if attributes:  # a state dict's `_metadata`, as torch's state_dict() sets it
            self._save(attributes)
            self._out += pickle.BUILD

    def _counter(self, obj):
        self._call(format.COUNTER, dict(obj))
        self._remember(obj)

    def _set(self, obj):
        self._call(format.SET, list(obj))
        self._remember(obj)

    def _dtype(self, obj):
        self._global(format.dtype_global(obj))

    def _size(self, obj):
        self._call(format.SIZE, tuple(obj))

    def _device(self, obj):
        self._call(format.DEVICE, *((obj.type,) if obj.index is None else (obj.type, obj.index)))

    def _tensor(self, obj):
        self._rebuild_tensor(obj._data, obj.requires_grad)
        self._remember(obj)

    def _parameter(self, obj):
        # torch's Parameter: _rebuild_parameter(a tensor that does not require grad, flag, hooks)
        self._global(format.REBUILD_PARAMETER)
        self._out += pickle.MARK
        self._rebuild_tensor(obj._data, False)
        self._save(obj.requires_grad)
        self._call(format.ORDERED_DICT)
        self._out += pickle.TUPLE + pickle.REDUCE
        self._remember(obj)

    def _rebuild_tensor(self, array, requires_grad):
        """_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward hooks)."""
        key, numel, offset, strides = self._storages.place(array)
        self._global(format.REBUILD_TENSOR)
        self._out += pickle.MARK
        self._persistent_id(key, from_numpy_dtype(array.dtype), numel)
        self._save(offset)
        self._tuple(array.shape, remember=False)
        self._tuple(strides, remember=False)
        self._save(requires_grad)
        self._call(format.ORDERED_DICT)  # backward hooks: torch never saves any
        self._out += pickle.TUPLE + pickle.REDUCE

    def _persistent_id(self, key, dtype, numel):
        index = self._persistent_ids.get(key)
        if index is not None:
            self._get(index)
        else:
            self._out += pickle.MARK
            self._save("storage")
            self._global(format.storage_global(dtype))
            self._save(key)
            self._save("cpu")
            self._save(numel)
            self._out += pickle.TUPLE
            self._persistent_ids[key] = self._put()
        self._out += pickle.BINPERSID

    _BY_TYPE = {
        type(None): _none, bool: _bool, int: _int, float: _float, str: _str, bytes: _bytes,
        bytearray: _bytearray, complex: _complex, tuple: _tuple, list: _list, dict: _dict,
        OrderedDict: _ordered_dict, Counter: _counter, set: _set, Size: _size,
        devices.device: _device, Tensor: _tensor, Parameter: _parameter,
    }
