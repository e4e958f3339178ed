"""`nbgrad.load`: read a PyTorch zip checkpoint without PyTorch, and without running its code.

A pickle is a program: loading one with `pickle` can call any function it names. This reader
interprets the opcodes itself, as `torch.load(weights_only=True)` does, and accepts only what
that loader accepts of the kinds nbgrad has: the globals in `_GLOBALS` (torch's tensor and
Parameter rebuild functions, storage types, dtypes, `Size`, `device`, OrderedDict, and the
builtins protocol 2 needs), called only through `_CALLABLES`; BUILD only on an OrderedDict;
appends only to lists, items only into dicts. Anything else raises `pickle.UnpicklingError`
naming what it found.

NOTE: `pickle.Unpickler` with an allowlist in `find_class` is not enough: BUILD would still set
attributes on whatever `find_class` returned (the dtype singletons, `Size`, ...).
"""
import contextlib
import io
import mmap as _mmap
import os
import pickle
import pickletools
import struct
import sys
import zipfile
import zlib
from collections import Counter, OrderedDict

import numpy as np

from .._core.dtype import ALL
from .._tensor.device import device as _device
from .._tensor.tensor import Size, Tensor
from ..nn.parameter import Parameter
from . import format

__all__ = ["load"]

_UNSAFE = ("nbgrad.load reads checkpoints with weights_only=True only: weights_only=False would "
           "unpickle arbitrary Python objects, which runs code named in the file. Tensors, "
           "state dicts, optimizer state dicts and containers of them load with "
           "weights_only=True (the default)")


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None):
    """Read what `torch.save` (or `nbgrad.save`) wrote to `f`, a path or a readable, seekable
    binary file: tensors (as views of shared storages, with their strides), Parameters,
    state dicts, optimizer state dicts, and the containers and Python values holding them.

    `map_location` may be None, "cpu", a `device`, a dict from saved locations to devices,
    or `lambda storage, location: storage`: every tensor loads on the CPU. With `mmap=True`
    (`f` a path) tensors are views of the file mapped copy-on-write, as in PyTorch."""
    if weights_only is False:
        raise ValueError(_UNSAFE)
    if pickle_module is not None:
        raise RuntimeError("Can not safely load weights when explicit pickle_module is specified")
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as file:
            return _load(file, map_location, bool(mmap))
    if mmap:
        raise ValueError("f must be a file path in order to use the mmap argument")
    if not f.seekable():
        raise io.UnsupportedOperation(
            "You can only nbgrad.load from a file that is seekable. Please pre-load the data "
            "into a buffer like io.BytesIO and try to load from it instead.")
    return _load(f, map_location, False)


def _load(file, map_location, mmap):
    _check_start(file)
    # Copy-on-write, as torch maps by default: writes to the tensors stay in memory.
    mapped = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_COPY) if mmap else None
    archive = _Archive(file, mapped)
    byteorder = archive.read(format.BYTEORDER) if archive.has(format.BYTEORDER) else b"little"
    if byteorder not in (b"little", b"big"):
        raise ValueError("Unknown endianness type: " + byteorder.decode(errors="replace"))
    storages = _Storages(archive, map_location, swap=byteorder.decode() != sys.byteorder)
    loaded = _Unpickler(archive.read(format.PICKLE), storages.load).load()
    _check_no_bare_storage(loaded)
    return loaded


def _check_start(file):
    """Tell a zip checkpoint from an empty file, a legacy (PyTorch < 1.6) checkpoint and
    anything else, each with its own error."""
    start = file.tell()
    head = file.read(4)
    file.seek(start)
    if not head:
        raise EOFError("Ran out of input: the checkpoint file is empty")
    if head.startswith(b"PK"):
        return
    if head[:1] == pickle.PROTO:
        raise RuntimeError(
            "this checkpoint is in PyTorch's legacy format (torch < 1.6, or torch.save with "
            "_use_new_zipfile_serialization=False), which nbgrad.load does not read. Load it with "
            "torch.load and save it again with torch.save, which writes the zip format.")
    raise RuntimeError("PytorchStreamReader failed reading zip archive: not a zip archive. A "
                       f"PyTorch checkpoint starts with 'PK', this file with {head!r}")


# What Python's zipfile (and zlib under it) raises on a damaged archive: a bad header, CRC or
# directory, a record that ends early, a name that is not UTF-8 (a ValueError), an unknown
# version or compression (NotImplementedError), a seek before the start or past what an
# offset can hold (OverflowError), a bad deflate stream.
_DAMAGED = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError,
            OverflowError, zlib.error, struct.error)


@contextlib.contextmanager
def _damaged(what):
    """Turn a damaged archive's error while reading `what` into PyTorch's RuntimeError."""
    try:
        yield
    except _DAMAGED as error:
        raise RuntimeError(f"PytorchStreamReader failed reading {what}: {error} "
                           f"({type(error).__name__}): the file is truncated or corrupted"
                           ) from None


class _Archive:
    """The records of a checkpoint: a zip archive whose records sit in one directory."""

    def __init__(self, file, mapped):
        with _damaged("zip archive"):
            self._zip = zipfile.ZipFile(file)
        self._mapped = mapped
        names = self._zip.namelist()
        # torch's reader takes the directory of the first record as the archive's.
        directory, slash, _ = names[0].partition("/") if names else ("archive", "/", "")
        if not slash:
            raise RuntimeError(f"PytorchStreamReader failed reading zip archive: file in archive "
                               f"is not in a subdirectory: {names[0]}")
        self._directory = directory

    def _info(self, record):
        try:
            return self._zip.getinfo(f"{self._directory}/{record}")
        except KeyError:
            raise RuntimeError(f"PytorchStreamReader failed locating file {record}: file not "
                               f"found") from None

    def has(self, record):
        try:
            self._zip.getinfo(f"{self._directory}/{record}")
        except KeyError:
            return False
        return True

    def read(self, record):
        info = self._info(record)
        with _damaged(f"file {record}"):
            return self._zip.read(info)

    def storage(self, record, nbytes):
        """The record's bytes as a writable uint8 array: a copy-on-write view of the mapped
        file, or read into new memory."""
        info = self._info(record)
        if info.file_size != nbytes:
            raise RuntimeError(f"PytorchStreamReader: record {record} holds {info.file_size} bytes "
                               f"but its storage has {nbytes}")
        if self._mapped is not None:
            if info.compress_type != zipfile.ZIP_STORED:
                raise RuntimeError(f"mmap=True needs uncompressed records, and {record} is "
                                   f"compressed: load it without mmap")
            with _damaged(f"file {record}"):
                # The data follows the local header: 30 bytes, the name and an extra field.
                name_size, extra_size = struct.unpack_from("<HH", self._mapped,
                                                           info.header_offset + 26)
                start = info.header_offset + 30 + name_size + extra_size
                return np.frombuffer(self._mapped, np.uint8, nbytes, start)
        data = np.empty(nbytes, np.uint8)
        view = memoryview(data)
        with _damaged(f"file {record}"), self._zip.open(info) as stream:
            filled = 0
            while filled < nbytes:
                count = stream.readinto(view[filled:])
                if not count:
                    raise EOFError("the record ends early")
                filled += count
            stream.read(1)  # at the end, which checks the record's CRC
        return data


class _StorageType:
    """What a storage global (`torch.FloatStorage`) loads as: the dtype of its elements."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    """A storage while the pickle loads: its elements as a 1-D NumPy array. Only the tensor
    rebuild functions take one; none reaches the caller."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


class _Storages:
    """The storages of a checkpoint by key, each read (and placed) once."""

    def __init__(self, archive, map_location, swap):
        self._archive, self._map_location, self._swap = archive, map_location, swap
        self._by_key = {}

    def load(self, persistent_id):
        """The storage a persistent id ("storage", storage type, key, location, numel) names."""
        if type(persistent_id) is not tuple or len(persistent_id) != 5:
            raise pickle.UnpicklingError(f"persistent_load id must be a 5-tuple, but got "
                                         f"{persistent_id!r:.80}")
        kind, storage_type, key, location, numel = persistent_id
        if kind not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"Only persistent_load of storage is allowed, but got "
                                         f"{kind!r:.80}")
        if (type(storage_type) is not _StorageType or type(key) is not str
                or type(location) is not str or type(numel) is not int or numel < 0):
            raise pickle.UnpicklingError(f"invalid storage persistent id {persistent_id!r:.200}")
        dtype = storage_type.dtype
        found = self._by_key.get(key)
        if found is not None:
            if found.array.dtype != dtype.np or found.array.size != numel:
                raise pickle.UnpicklingError(f"storage {key} is named with two dtypes or sizes")
            return found
        data = self._archive.storage(format.storage_record(key), numel * dtype.itemsize)
        if self._swap and dtype.itemsize > 1:
            data.view(f"u{dtype.itemsize}").byteswap(inplace=True)
        storage = self._by_key[key] = _Storage(data.view(dtype.np))
        self._place(storage.array, location)
        return storage

    def _place(self, array, location):
        """Check that the storage saved at `location` loads on the CPU, where
        `map_location` puts it."""
        map_location = self._map_location
        if callable(map_location):
            if map_location(array, location) is not array:
                raise TypeError("nbgrad.load: a map_location function must return the storage "
                                "it is given (lambda storage, location: storage): nbgrad keeps "
                                "every tensor on the CPU")
            return
        if isinstance(map_location, dict):
            target = map_location.get(location, location)
        else:
            target = location if map_location is None else map_location
        target = _device(target)
        if target.type != "cpu":
            name = "a CUDA" if target.type == "cuda" else f"a {target.type}"
            raise RuntimeError(
                f"Attempting to deserialize object on {name} device but nbgrad runs on the CPU "
                f"only (nbgrad.cuda.is_available() is False). Please use nbgrad.load with "
                f"map_location=nbgrad.device('cpu') to map your storages to the CPU.")


# --- what a checkpoint may name and call ------------------------------------------------------


def _view(storage, storage_offset, size, stride):
    """The tensor of `size` and `stride` at `storage_offset` of `storage`, with torch's check
    that it lies inside the storage."""
    if type(storage) is not _Storage:
        raise pickle.UnpicklingError(f"a tensor's storage must be a storage, not "
                                     f"{type(storage).__name__}")
    if (type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride)
            or any(type(n) is not int or n < 0 for n in (storage_offset, *size, *stride))):
        raise pickle.UnpicklingError(f"invalid tensor layout: offset {storage_offset!r:.40}, "
                                     f"size {size!r:.80}, stride {stride!r:.80}")
    array = storage.array
    needed = storage_offset + (1 + sum((n - 1) * s for n, s in zip(size, stride))
                               if all(size) else 0)
    if needed > array.size:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                           f"offset {storage_offset}, and itemsize {array.itemsize} requiring a "
                           f"storage size of {needed * array.itemsize} are out of bounds for "
                           f"storage of size {array.nbytes}")
    itemsize = array.itemsize
    return Tensor._wrap(np.ndarray(size, array.dtype, buffer=array, offset=storage_offset * itemsize,
                                   strides=tuple(s * itemsize for s in stride)))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    if backward_hooks:
        raise pickle.UnpicklingError("this checkpoint saved backward hooks with a tensor, which "
                                     "nbgrad.load does not restore")
    if metadata:
        raise pickle.UnpicklingError(f"tensor metadata {metadata!r:.80} (conjugate or negative "
                                     f"views) is not supported by nbgrad")
    tensor = _view(storage, storage_offset, size, stride)
    tensor.requires_grad = _flag(requires_grad)
    return tensor


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if type(data) is not Tensor or backward_hooks:
        raise pickle.UnpicklingError("_rebuild_parameter takes a tensor and no backward hooks")
    return Parameter(data, _flag(requires_grad))


def _flag(value):
    if type(value) is not bool:
        raise pickle.UnpicklingError(f"requires_grad must be a bool, not {value!r:.40}")
    return value


def _size(sizes):
    if type(sizes) is not tuple or any(type(n) is not int for n in sizes):
        raise pickle.UnpicklingError(f"torch.Size takes a tuple of ints, not {sizes!r:.80}")
    return Size(sizes)


def _encode(text, encoding):
    """_codecs.encode as protocol 2 calls it for bytes: `encode(text, "latin1")`."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return text.encode("latin1")


def _builtin(kind, *argument_types):
    """`kind` called as protocol 2 pickles it, on arguments of exactly `argument_types`:
    nothing else a file hands over is iterated or converted (`set(tensor)` would iterate a
    tensor, `bytearray(n)` allocate n bytes)."""
    def build(*arguments):
        if tuple(type(argument) for argument in arguments) != argument_types:
            expected = ", ".join(t.__name__ for t in argument_types)
            raise pickle.UnpicklingError(f"{kind.__name__} may only be called on ({expected}), "
                                         f"not on {arguments!r:.80}")
        return kind(*arguments)
    return build


_CALLABLES = {
    format.REBUILD_TENSOR: _rebuild_tensor_v2,
    format.REBUILD_PARAMETER: _rebuild_parameter,
    format.ORDERED_DICT: _builtin(OrderedDict),
    format.COUNTER: _builtin(Counter, dict),
    format.SIZE: _size,
    format.DEVICE: _device,
    format.ENCODE: _encode,
    format.SET: _builtin(set, list),
    format.BYTEARRAY: _builtin(bytearray, bytes),
    format.COMPLEX: _builtin(complex, float, float),
}
_GLOBALS = {
    **_CALLABLES,
    **{format.dtype_global(dtype): dtype for dtype in ALL},
    **{format.storage_global(dtype): _StorageType(dtype) for dtype in ALL},
}
_CALLABLE_IDS = {id(function) for function in _CALLABLES.values()}
# Protocol 2 names Python 3's builtins module by its Python 2 name.
_PYTHON2_MODULES = {"__builtin__": "builtins"}


# Opcode handlers made from one definition each (the _Unpickler's table uses them).

def _constant(value):
    return lambda self: self._push(value)


def _empty(kind):
    return lambda self: self._push(kind())


def _number(layout):
    size = struct.calcsize(layout)
    return lambda self: self._push(struct.unpack(layout, self._read(size))[0])


def _tuple_of(count):
    def build(self):
        items = tuple(reversed([self._pop() for _ in range(count)]))
        self._push(items)
    return build


def _memo_get(layout):
    size = struct.calcsize(layout)

    def get(self):
        index = struct.unpack(layout, self._read(size))[0]
        if index not in self._memo:
            raise pickle.UnpicklingError(f"Memo value not found at index {index}")
        self._push(self._memo[index])
    return get


def _memo_put(layout):
    size = struct.calcsize(layout)

    def put(self):
        self._memo[struct.unpack(layout, self._read(size))[0]] = self._top()
    return put


class _Unpickler:
    """The opcodes torch's weights_only unpickler reads (protocol 2), with its restrictions.

    Errors of the pickle itself are UnpicklingError or, where it ends early, EOFError; the
    functions it may call raise their own."""

    def __init__(self, data, load_storage):
        self._data = io.BytesIO(data)
        self._load_storage = load_storage
        self._stack = []
        self._marks = []  # the stacks set aside by MARK
        self._memo = {}

    def load(self):
        read = self._data.read
        while True:
            code = read(1)
            if not code:
                raise EOFError("Ran out of input: data.pkl ends before its STOP opcode (the "
                               "checkpoint is truncated or corrupted)")
            if code == pickle.STOP:
                return self._pop()
            handler = self._HANDLERS.get(code)
            if handler is None:
                name = pickletools.code2op.get(code.decode("latin1"))
                raise pickle.UnpicklingError(f"Unsupported operand {code[0]}"
                                             + (f" ({name.name})" if name else ""))
            handler(self)

    def _read(self, count):
        data = self._data.read(count)
        if len(data) != count:
            raise EOFError("Ran out of input: data.pkl ends in the middle of an opcode (the "
                           "checkpoint is truncated or corrupted)")
        return data

    def _line(self):
        line = self._data.readline()
        if not line.endswith(b"\n"):
            raise EOFError("Ran out of input: data.pkl ends in the middle of a GLOBAL opcode")
        return line[:-1].decode("utf-8")

    # --- the stack -------------------------------------------------------------------------

    def _push(self, value):
        self._stack.append(value)

    def _pop(self):
        if not self._stack:
            raise pickle.UnpicklingError("unpickling stack underflow")
        return self._stack.pop()

    def _top(self):
        if not self._stack:
            raise pickle.UnpicklingError("unpickling stack underflow")
        return self._stack[-1]

    def _pop_mark(self):
        if not self._marks:
            raise pickle.UnpicklingError("could not find MARK")
        items = self._stack
        self._stack = self._marks.pop()
        return items

    # --- opcodes ---------------------------------------------------------------------------

    def _proto(self):
        self._read(1)

    def _global(self):
        module, name = self._line(), self._line()
        module = _PYTHON2_MODULES.get(module, module)
        found = _GLOBALS.get((module, name))
        if found is None:
            hint = (" This file holds a whole module: save and load its state_dict() instead."
                    if module.startswith("torch.nn.modules.") else "")
            raise pickle.UnpicklingError(
                f"Weights only load failed: Unsupported global: GLOBAL {module}.{name} was not an "
                f"allowed global. nbgrad.load reads what torch.load(weights_only=True) reads, of "
                f"the kinds nbgrad has: tensors of nbgrad's dtypes, Parameters, dicts, lists, "
                f"tuples, sets and Python values; it never calls what a file names.{hint}")
        self._push(found)

    def _reduce(self):
        arguments = self._pop()
        function = self._pop()
        if id(function) not in _CALLABLE_IDS or type(arguments) is not tuple:
            raise pickle.UnpicklingError(f"Trying to call reduce for unrecognized function "
                                         f"{function!r:.80}")
        self._push(function(*arguments))

    def _build(self):
        state = self._pop()
        instance = self._top()
        if type(instance) is not OrderedDict or type(state) is not dict:
            raise pickle.UnpicklingError(f"Can only build OrderedDict, but got "
                                         f"{type(instance).__name__}")
        if not all(type(key) is str for key in state):
            raise pickle.UnpicklingError("an OrderedDict's attributes must have string names")
        vars(instance).update(state)  # a state dict's `_metadata`

    def _append(self):
        item = self._pop()
        self._list_target().append(item)

    def _appends(self):
        items = self._pop_mark()
        self._list_target().extend(items)

    def _list_target(self):
        target = self._top()
        if type(target) is not list:
            raise pickle.UnpicklingError(f"Can only append to lists, but got "
                                         f"{type(target).__name__}")
        return target

    def _setitem(self):
        value = self._pop()
        key = self._pop()
        self._dict_target()[key] = value

    def _setitems(self):
        items = self._pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS needs pairs of keys and values")
        target = self._dict_target()
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def _dict_target(self):
        target = self._top()
        if type(target) not in (dict, OrderedDict, Counter):
            raise pickle.UnpicklingError(f"Can only set items of dict, collections.OrderedDict, "
                                         f"collections.Counter, but got {type(target).__name__}")
        return target

    def _mark(self):
        self._marks.append(self._stack)
        self._stack = []

    def _tuple(self):
        self._push(tuple(self._pop_mark()))

    def _long1(self):
        self._push(int.from_bytes(self._read(self._read(1)[0]), "little", signed=True))

    def _binunicode(self):
        size = struct.unpack("<I", self._read(4))[0]
        self._push(str(self._read(size), "utf-8", "surrogatepass"))

    def _short_binstring(self):
        self._push(self._read(self._read(1)[0]).decode("utf-8"))

    def _binpersid(self):
        self._push(self._load_storage(self._pop()))

    _HANDLERS = {
        pickle.PROTO: _proto, pickle.GLOBAL: _global, pickle.REDUCE: _reduce,
        pickle.BUILD: _build, pickle.APPEND: _append, pickle.APPENDS: _appends,
        pickle.SETITEM: _setitem, pickle.SETITEMS: _setitems, pickle.MARK: _mark,
        pickle.TUPLE: _tuple, pickle.TUPLE1: _tuple_of(1), pickle.TUPLE2: _tuple_of(2),
        pickle.TUPLE3: _tuple_of(3), pickle.EMPTY_TUPLE: _constant(()),
        pickle.NONE: _constant(None), pickle.NEWFALSE: _constant(False),
        pickle.NEWTRUE: _constant(True), pickle.EMPTY_LIST: _empty(list),
        pickle.EMPTY_DICT: _empty(dict), pickle.EMPTY_SET: _empty(set),
        pickle.BININT: _number("<i"), pickle.BININT1: _number("<B"),
        pickle.BININT2: _number("<H"), pickle.BINFLOAT: _number(">d"), pickle.LONG1: _long1,
        pickle.BINUNICODE: _binunicode, pickle.SHORT_BINSTRING: _short_binstring,
        pickle.BINPERSID: _binpersid, pickle.BINGET: _memo_get("<B"),
        pickle.LONG_BINGET: _memo_get("<I"), pickle.BINPUT: _memo_put("<B"),
        pickle.LONG_BINPUT: _memo_put("<I"),
    }


def _check_no_bare_storage(loaded):
    """A storage saved on its own (`torch.save(t.untyped_storage())`), or a storage type, has
    no nbgrad type to load as."""
    seen = set()
    pending = [loaded]
    while pending:
        obj = pending.pop()
        if type(obj) in (_Storage, _StorageType):
            raise pickle.UnpicklingError("this checkpoint holds a storage (or storage type) on its "
                                         "own, and nbgrad has no storage type: save the tensor "
                                         "instead")
        if isinstance(obj, (list, tuple, set, dict)) and id(obj) not in seen:
            seen.add(id(obj))
            if isinstance(obj, dict):
                pending.extend(obj.keys())
                pending.extend(obj.values())
                if type(obj) is OrderedDict:
                    pending.extend(vars(obj).values())  # what BUILD set
            else:
                pending.extend(obj)
