"""What `torch.save` writes, shared by the writer and the reader.

A checkpoint is a zip archive whose records all sit in one directory (torch names it after
the file's stem, or "archive" for a file object):

    <dir>/data.pkl     the saved object, pickled (protocol 2); each tensor's storage is a
                       persistent id ("storage", <dtype>Storage, key, location, numel)
    <dir>/byteorder    "little" or "big": how the storages' bytes are laid out
    <dir>/data/<key>   one storage's raw bytes, for every key
    <dir>/version      the archive format version

NOTE: torch also writes `.format_version` and `.storage_alignment`. nbgrad does not: with them,
torch may compute where each storage starts from the layout of its own zip writer (miniz,
which ends every record with a data descriptor), and Python's zipfile lays records out
otherwise. Without them torch reads each record's offset from the archive.

Nothing here is per dtype: a dtype's torch names come from its row in `_core.dtype` (its
`name` and PyTorch `scalar_type`), so adding a dtype there adds it to checkpoints.
"""
PICKLE_PROTOCOL = 2  # torch.save's default, and the only one torch's weights_only loader reads
PICKLE = "data.pkl"
BYTEORDER = "byteorder"
VERSION = "version"
FORMAT_VERSION = b"3\n"  # what torch 2.x writes in `version`


def storage_record(key):
    return f"data/{key}"


# The globals a checkpoint names, as (module, name), the way torch.save writes them.
REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")
ORDERED_DICT = ("collections", "OrderedDict")
COUNTER = ("collections", "Counter")
SIZE = ("torch", "Size")
DEVICE = ("torch", "device")
ENCODE = ("_codecs", "encode")  # protocol 2 writes bytes as encode(text, "latin1")
SET = ("builtins", "set")
BYTEARRAY = ("builtins", "bytearray")
COMPLEX = ("builtins", "complex")


def dtype_global(dtype):
    """`torch.float32`, ..."""
    return ("torch", dtype.name)


def storage_global(dtype):
    """`torch.FloatStorage`, ...: the storage type that a tensor's persistent id names."""
    return ("torch", f"{dtype.scalar_type}Storage")

