"""nbgrad.save / nbgrad.load against torch.save / torch.load(weights_only=True), both ways:
values, dtypes, shapes, strides, storage offsets and sharing of views; model and optimizer
state dicts; and files that must not load (code in the pickle, truncated or foreign files)."""
import io
import os
import pickle
import struct
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
          "uint8", "bool")
# Each dtype's edge values: extremes, zero and, for floats, -0, inf and nan.
EDGES = {
    "float": [0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), float("nan")],
    "int64": [0, 1, -1, 2 ** 63 - 1, -2 ** 63],
    "int32": [0, -1, 2 ** 31 - 1, -2 ** 31],
    "int16": [0, -1, 2 ** 15 - 1, -2 ** 15],
    "int8": [0, -1, 127, -128],
    "uint8": [0, 1, 255],
    "bool": [True, False, True],
}


def checkpoint(lib):
    """The same checkpoint built with `lib`, torch or nbgrad: views of one storage (rows,
    strided columns, a transpose, a 0-d element, an expanded row, an empty slice), a tensor
    of each dtype, Parameters, a state dict, and the Python values torch's loader reads."""
    x = lib.arange(24, dtype=lib.float32).reshape(4, 6)
    row = lib.tensor([1.0, 2.0, 3.0])
    weights = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    tensors = {
        "x": x, "rows": x[1:3], "columns": x[:, 1::2], "t": x.t(), "element": x[2, 3],
        "expanded": row.expand(2, 3), "row": row, "empty": x[4:], "requires_grad":
        lib.ones(2, dtype=lib.float64, requires_grad=True),
        "parameter": lib.nn.Parameter(lib.tensor(weights)),
        "frozen": lib.nn.Parameter(lib.tensor(weights[0]), requires_grad=False),
    }
    for name in DTYPES:
        values = EDGES["float" if name.startswith(("float", "bfloat")) else name]
        tensors[name] = lib.tensor(values, dtype=getattr(lib, name))
    state = OrderedDict(weight=lib.tensor(weights), bias=lib.zeros(2))
    return {
        "tensors": tensors,
        "same_object_twice": [x, x],
        "state": state,
        "values": [None, True, False, 0, 255, 65536, -7, 2 ** 40, -2 ** 70, 2.5, float("-inf"),
                   "text é", b"\x00\xffbytes", bytearray(b"ab"), 1 + 2j, {3, 4}, (1, (2,)),
                   (1, 2, 3, 4), lib.Size([2, 3]), lib.float16, lib.bfloat16, lib.bool,
                   lib.int32, lib.device("cpu"), Counter("abca")],
    }


def _base(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _storage_offset(tensor):
    array = tensor._data
    pointer = array.__array_interface__["data"][0]
    return (pointer - _base(array).__array_interface__["data"][0]) // array.itemsize


def _tensors(obj):
    """Every tensor in `obj`, in a fixed order."""
    if isinstance(obj, (torch.Tensor, nbgrad.Tensor)):
        return [obj]
    if isinstance(obj, dict):
        return [t for value in obj.values() for t in _tensors(value)]
    if isinstance(obj, (list, tuple)):
        return [t for value in obj for t in _tensors(value)]
    return []


def assert_same(torch_side, nbgrad_side):
    """A torch object and an nbgrad object hold the same things: values, types, dtypes,
    shapes, strides, storage offsets, requires_grad."""
    if isinstance(torch_side, torch.Tensor):
        assert isinstance(nbgrad_side, nbgrad.Tensor)
        assert isinstance(nbgrad_side, nn.Parameter) == isinstance(torch_side, torch.nn.Parameter)
        assert nbgrad_side.dtype.name == str(torch_side.dtype).removeprefix("torch.")
        assert tuple(nbgrad_side.shape) == tuple(torch_side.shape)
        assert nbgrad_side.stride() == torch_side.stride()
        assert _storage_offset(nbgrad_side) == torch_side.storage_offset()
        assert nbgrad_side.requires_grad == torch_side.requires_grad
        if torch_side.dtype.is_floating_point:  # bfloat16 has no NumPy dtype in torch
            np.testing.assert_array_equal(nbgrad_side._data.astype(np.float64),
                                          torch_side.detach().to(torch.float64).numpy())
        else:
            np.testing.assert_array_equal(nbgrad_side._data, torch_side.numpy())
    elif isinstance(torch_side, torch.dtype):
        assert nbgrad_side is getattr(nbgrad, str(torch_side).removeprefix("torch."))
    elif isinstance(torch_side, torch.device):
        assert isinstance(nbgrad_side, nbgrad.device) and str(nbgrad_side) == str(torch_side)
    elif isinstance(torch_side, torch.Size):
        assert type(nbgrad_side) is nbgrad.Size and tuple(nbgrad_side) == tuple(torch_side)
    elif isinstance(torch_side, dict):
        assert type(nbgrad_side) is type(torch_side) and list(nbgrad_side) == list(torch_side)
        for key in torch_side:
            assert_same(torch_side[key], nbgrad_side[key])
        if type(torch_side) is OrderedDict:  # a state dict's _metadata
            assert_same(dict(vars(torch_side)), dict(vars(nbgrad_side)))
    elif isinstance(torch_side, (list, tuple)):
        assert type(nbgrad_side) is type(torch_side) and len(nbgrad_side) == len(torch_side)
        for a, b in zip(torch_side, nbgrad_side):
            assert_same(a, b)
    else:
        assert type(nbgrad_side) is type(torch_side) and nbgrad_side == torch_side


def assert_same_sharing(torch_obj, nbgrad_obj):
    """Two tensors share a storage in one exactly where they share one in the other."""
    def storages(tensors, key):
        return [[key(a) == key(b) for b in tensors] for a in tensors]
    assert (storages(_tensors(torch_obj), lambda t: t.untyped_storage().data_ptr())
            == storages(_tensors(nbgrad_obj), lambda t: id(_base(t._data))))


@pytest.mark.parametrize("target", ["path", "file"])
def test_torch_save_loads_in_nbgrad(tmp_path, target):
    saved = checkpoint(torch)
    saved["state"]._metadata = OrderedDict({"": {"version": 1}})  # as torch's state_dict() sets
    f = tmp_path / "model.pt" if target == "path" else io.BytesIO()
    torch.save(saved, f)
    if target == "file":
        f.seek(0)
    loaded = nbgrad.load(f)
    assert_same(saved, loaded)
    assert_same_sharing(saved, loaded)
    assert loaded["same_object_twice"][0] is loaded["same_object_twice"][1]
    # And saved again by nbgrad, torch reads it as it was (the state dict's _metadata too).
    again = io.BytesIO()
    nbgrad.save(loaded, again)
    again.seek(0)
    assert_same(torch.load(again, weights_only=True), loaded)
    # Views of one storage are views of one array: a write shows through all of them.
    loaded["tensors"]["x"][1, 1] = 100.0
    assert loaded["tensors"]["rows"][0, 1].item() == 100.0


@pytest.mark.parametrize("target", ["path", "file", "stream"])
def test_nbgrad_save_loads_in_torch(tmp_path, target):
    saved = checkpoint(nbgrad)
    if target == "path":
        f = tmp_path / "model.pt"
        nbgrad.save(saved, f)
        assert zipfile.ZipFile(f).namelist()[0] == "model/data.pkl"  # torch's archive name
    else:
        buffer = io.BytesIO()
        # A stream that cannot seek gets the archive in one piece.
        nbgrad.save(saved, buffer if target == "file" else _Unseekable(buffer))
        f = io.BytesIO(buffer.getvalue())
    loads = [dict(weights_only=True), dict(weights_only=True, mmap=True)]
    for options in loads if target == "path" else loads[:1]:
        if target != "path":
            f.seek(0)
        loaded = torch.load(f, **options)
        assert_same(loaded, saved)
        assert_same_sharing(loaded, saved)
        assert loaded["same_object_twice"][0] is loaded["same_object_twice"][1]


def test_archive_directory_named_as_torch_names_it(tmp_path):
    for name in ("model.pt", "my.model.pth", "noext", "é.pt"):
        directories = []
        for lib in (torch, nbgrad):
            (tmp_path / lib.__name__).mkdir(exist_ok=True)
            lib.save(1, tmp_path / lib.__name__ / name)
            directories.append(zipfile.ZipFile(tmp_path / lib.__name__ / name).namelist()[0])
        assert directories[0].split("/")[0] == directories[1].split("/")[0], name


class _Unseekable(io.RawIOBase):
    def __init__(self, target):
        self._target = target

    def writable(self):
        return True

    def write(self, data):
        return self._target.write(data)


def test_nbgrad_round_trip_with_mmap(tmp_path):
    saved = checkpoint(nbgrad)
    nbgrad.save(saved, tmp_path / "model.pt")
    loaded = nbgrad.load(tmp_path / "model.pt", mmap=True)
    reference = torch.load(tmp_path / "model.pt", weights_only=True)
    assert_same(reference, loaded)
    assert_same_sharing(reference, loaded)
    loaded["tensors"]["x"].add_(1.0)  # copy-on-write: the file stays as saved
    assert nbgrad.load(tmp_path / "model.pt")["tensors"]["x"][0, 0].item() == 0.0


def test_views_a_storage_cannot_express_are_saved_as_copies(tmp_path):
    x = nbgrad.arange(6.0)
    flipped, reversed_rows = x.flip(0), nbgrad.from_numpy(x._data.reshape(2, 3)[::-1])
    nbgrad.save([x, flipped, reversed_rows], tmp_path / "a.pt")
    loaded = torch.load(tmp_path / "a.pt", weights_only=True)
    assert loaded[1].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert loaded[2].tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    assert loaded[0].untyped_storage().data_ptr() != loaded[2].untyped_storage().data_ptr()


def test_one_storage_as_two_dtypes_is_refused_as_torch_does(tmp_path):
    array = np.arange(4, dtype=np.float32)
    with pytest.raises(RuntimeError) as expected:
        t = torch.from_numpy(array)
        torch.save([t, t.view(torch.int32)], tmp_path / "t.pt")
    with pytest.raises(RuntimeError) as got:
        nbgrad.save([nbgrad.from_numpy(array), nbgrad.from_numpy(array.view(np.int32))],
                    tmp_path / "n.pt")
    assert str(got.value) == str(expected.value)


def test_what_load_cannot_read_does_not_save():
    with pytest.raises(TypeError, match="cannot save a builtin_function_or_method"):
        nbgrad.save({"fn": print}, io.BytesIO())


def test_save_into_a_missing_directory(tmp_path):
    errors = []
    for lib in (torch, nbgrad):
        with pytest.raises(RuntimeError) as caught:
            lib.save(1, tmp_path / "missing" / "x.pt")
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


def _mlp(lib):
    return lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))


def test_model_and_adam_state_dicts_both_ways(tmp_path):
    """A torch checkpoint resumes training in nbgrad as it would in torch, and back."""
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((5, 4)).astype(np.float32),
                rng.standard_normal((5, 3)).astype(np.float32)) for _ in range(3)]

    def step(lib, model, optimizer, batch):
        inputs, targets = (lib.tensor(a) for a in batch)
        optimizer.zero_grad()
        loss = ((model(inputs) - targets) ** 2).mean()
        loss.backward()
        optimizer.step()

    def run(lib, start, batch):
        """A model and Adam resumed from the checkpoint `start`, after one step on `batch`;
        and the checkpoint of where they are."""
        model = _mlp(lib)
        optimizer = lib.optim.Adam(model.parameters(), lr=0.01)
        if start is not None:
            checkpoint = lib.load(start, weights_only=True)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
        step(lib, model, optimizer, batch)
        path = tmp_path / f"{lib.__name__}{len(os.listdir(tmp_path))}.pt"
        lib.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        return model, path

    torch.manual_seed(0)
    _, torch_start = run(torch, None, batches[0])
    nbgrad_model, nbgrad_checkpoint = run(nbgrad, torch_start, batches[1])
    torch_model, _ = run(torch, torch_start, batches[1])
    _assert_same_parameters(torch_model, nbgrad_model)
    # nbgrad's checkpoint goes on in torch as torch's own would.
    torch_from_nbgrad, _ = run(torch, nbgrad_checkpoint, batches[2])
    nbgrad_model_2, _ = run(nbgrad, nbgrad_checkpoint, batches[2])
    _assert_same_parameters(torch_from_nbgrad, nbgrad_model_2)
    inputs = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(nbgrad_model_2(nbgrad.tensor(inputs)).detach().numpy(),
                               torch_from_nbgrad(torch.tensor(inputs)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def _assert_same_parameters(torch_model, nbgrad_model):
    for (name, a), (_, b) in zip(torch_model.named_parameters(), nbgrad_model.named_parameters()):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


# --- files that must not load ------------------------------------------------------------------


def _torch_saved(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewritten(data, changes=None, drop=()):
    """The checkpoint `data` with each record whose name ends in a key of `changes` replaced
    by `changes[key](record)`, and the records whose names end in `drop` left out."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            record = source.read(info)
            for ending, change in (changes or {}).items():
                if info.filename.endswith("/" + ending):
                    record = change(record)
            if not info.filename.endswith(drop):
                archive.writestr(info.filename, record)
    return buffer.getvalue()


def _errors(data, **options):
    """The errors torch.load(weights_only=True) and nbgrad.load raise on the bytes `data`."""
    errors = []
    for load in (torch.load, nbgrad.load):
        with pytest.raises(Exception) as caught:
            load(io.BytesIO(data), weights_only=True, **options)
        errors.append(caught.value)
    return errors


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_code_in_a_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "ran"
    torch_error, nbgrad_error = _errors(_torch_saved({"x": torch.ones(1),
                                                     "payload": _RunsCode(marker)}))
    assert type(nbgrad_error) is type(torch_error) is pickle.UnpicklingError
    assert f"Unsupported global: GLOBAL {os.system.__module__}.system" in str(nbgrad_error)
    assert not marker.exists()


# Pickles torch's weights_only loader refuses: a BUILD that would set a dtype's attributes, a
# call of something that is not an allowed function, an append to a dict, items set on a list,
# a persistent id that is not a storage, protocol 4 (frames), data.pkl cut short.
REFUSED = {
    "build_on_a_dtype": b"\x80\x02ctorch\nfloat32\n}X\x04\x00\x00\x00nameX\x03\x00\x00\x00badsb.",
    "call_a_dict": b"\x80\x02})R.",
    "append_to_dict": b"\x80\x02}K\x01a.",
    "setitem_on_list": b"\x80\x02]K\x01K\x02s.",
    "persistent_id_not_storage": b"\x80\x02X\x03\x00\x00\x00fooQ.",
    "protocol_4": pickle.dumps({"a": 1}, protocol=4),
    "cut_short": b"\x80\x02}X\x03\x00\x00\x00",
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # torch's, before it refuses
@pytest.mark.parametrize("name", REFUSED)
def test_refused_pickles(name):
    data = _rewritten(_torch_saved(1), {"data.pkl": lambda _: REFUSED[name]})
    torch_error, nbgrad_error = _errors(data)
    assert type(nbgrad_error) is type(torch_error), (torch_error, nbgrad_error)
    assert nbgrad.float32.name == "float32"


# Malformed pickles torch answers with IndexError or KeyError (or, for bytearray(n), by
# allocating n bytes, for set(tensor) by iterating the tensor): nbgrad's loader raises
# pickle's own errors.
MALFORMED = {
    "stack_underflow": (b"\x80\x02a.", "unpickling stack underflow"),
    "missing_memo": (b"\x80\x02h\x05.", "Memo value not found at index 5"),
    "odd_setitems": (b"\x80\x02}(K\x01u.", "SETITEMS needs pairs"),
    "bytearray_of_size": (b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R.",
                          r"bytearray may only be called on \(bytes\)"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_pickles(name):
    pickled, message = MALFORMED[name]
    data = _rewritten(_torch_saved(1), {"data.pkl": lambda _: pickled})
    with pytest.raises(pickle.UnpicklingError, match=message):
        nbgrad.load(io.BytesIO(data))


def test_broken_files_get_torch_errors():
    good = _torch_saved({"x": torch.arange(4.0)})
    cases = {
        "truncated": (good[:len(good) // 2], "PytorchStreamReader failed reading zip archive"),
        "no_data_pkl": (_rewritten(good, drop=("data.pkl",)),
                        "PytorchStreamReader failed locating file data.pkl: file not found"),
        "not_in_a_directory": (_zip_with_first_record("stray"), "not in a subdirectory: stray"),
        "empty": (b"", "Ran out of input"),
    }
    for name, (data, message) in cases.items():
        torch_error, nbgrad_error = _errors(data)
        assert type(nbgrad_error) is type(torch_error), name
        assert message in str(nbgrad_error), name


def _damaged(case):
    """A checkpoint of {"x": arange(4.0)} damaged as `case` says, and the undamaged one."""
    good = _torch_saved({"x": torch.arange(4.0)})
    name = next(n for n in zipfile.ZipFile(io.BytesIO(good)).namelist() if n.endswith("data/0"))
    central = good.index(b"PK\x01\x02")  # the first record's central directory entry
    field, value = {"version_needed_11.6": (6, 116), "stored_record_marked_deflated": (10, 8),
                    "unknown_compression_method": (10, 99)}.get(case, (None, None))
    if field is None:  # "name_not_utf8"
        return good.replace(name.encode(), name.encode()[:-3] + b"\xdc/0"), good
    data = bytearray(good)
    data[central + field:central + field + 2] = struct.pack("<H", value)
    return bytes(data), good


@pytest.mark.parametrize("case", ["name_not_utf8", "version_needed_11.6",
                                  "stored_record_marked_deflated", "unknown_compression_method"])
def test_damaged_archives_raise_runtime_errors(case):
    # What Python's zipfile raises on these (UnicodeDecodeError, NotImplementedError,
    # zlib.error) comes out as one RuntimeError. PyTorch raises RuntimeError for an unknown
    # compression method, UnicodeDecodeError for the name, UnpicklingError for the deflate
    # flag, and loads the file with the version field changed.
    data, good = _damaged(case)
    with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading .* the file "
                                           "is truncated or corrupted"):
        nbgrad.load(io.BytesIO(data))
    np.testing.assert_array_equal(nbgrad.load(io.BytesIO(good))["x"].numpy(), np.arange(4.0))


def _zip_with_first_record(name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, b"")
        archive.writestr("archive/data.pkl", pickle.dumps(1, protocol=2))
    return buffer.getvalue()


def test_files_nbgrad_does_not_read():
    legacy = io.BytesIO()
    torch.save({"x": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match="legacy format"):
        nbgrad.load(io.BytesIO(legacy.getvalue()))
    with pytest.raises(RuntimeError, match="not a zip archive"):
        nbgrad.load(io.BytesIO(b"hello, this is not a checkpoint"))
    # A storage whose bytes changed fails its record's CRC check.
    good = _torch_saved(torch.arange(4.0))
    corrupted = bytearray(good)
    corrupted[good.index(np.arange(4.0, dtype=np.float32).tobytes()) + 5] ^= 0xFF
    with pytest.raises(RuntimeError, match="failed reading file data/0"):
        nbgrad.load(io.BytesIO(bytes(corrupted)))


def test_options_torch_refuses_or_nbgrad_does_not_have():
    data = _torch_saved(torch.ones(2))
    with pytest.raises(ValueError, match="would unpickle arbitrary Python objects"):
        nbgrad.load(io.BytesIO(data), weights_only=False)
    for options in (dict(pickle_module=pickle), dict(mmap=True)):
        torch_error, nbgrad_error = _errors(data, **options)
        assert type(nbgrad_error) is type(torch_error)
        assert str(nbgrad_error) == str(torch_error)


def test_map_location():
    saved = torch.arange(3.0)
    on_gpu = _rewritten(_torch_saved(saved), {
        "data.pkl": lambda pickled: pickled.replace(b"X\x03\x00\x00\x00cpu",
                                                    b"X\x06\x00\x00\x00cuda:0")})
    for map_location in (None, "cuda", {"cuda:0": "cuda:1"}):
        torch_error, nbgrad_error = _errors(on_gpu, map_location=map_location)
        assert type(nbgrad_error) is type(torch_error) is RuntimeError
        assert "Attempting to deserialize object on a CUDA device" in str(nbgrad_error)
    for map_location in ("cpu", nbgrad.device("cpu"), {"cuda:0": "cpu"},
                         lambda storage, location: storage):
        assert nbgrad.load(io.BytesIO(on_gpu), map_location=map_location).tolist() == [0, 1, 2]


def test_big_endian_checkpoint():
    """A checkpoint whose byteorder record says "big" has its storages byte-swapped."""
    saved = {"f": torch.arange(4.0), "i": torch.tensor([1, -2], dtype=torch.int16),
             "b": torch.tensor([True, False]), "h": torch.tensor([1.5], dtype=torch.bfloat16)}
    big = _rewritten(_torch_saved(saved), {"byteorder": lambda _: b"big"})
    assert_same(torch.load(io.BytesIO(big), weights_only=True), nbgrad.load(io.BytesIO(big)))
