"""Collation: `default_collate` (samples -> one batch) and `default_convert` (one sample without
batching), as PyTorch's: tensors are stacked, NumPy arrays and scalars become tensors, Python
floats float64 and ints int64 (bools bool), strings stay lists, dicts, named tuples and
sequences are collated field by field."""
import collections.abc
import copy
import re

import numpy as np

from .._core.dtype import float64
from .._tensor.factories import as_tensor, tensor
from .._tensor.shape import stack
from .._tensor.tensor import Tensor

__all__ = ["default_collate", "default_convert"]

# NumPy dtypes that hold strings or objects, which do not become tensors.
_STRING_OR_OBJECT = re.compile(r"[SaUO]")
_UNSUPPORTED = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                "lists; found {}")


def _is_numpy(value):
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ not in ("str_", "string_")


def default_collate(batch):
    """One batch from a list of samples of one structure."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if _is_numpy(elem):
        if isinstance(elem, np.ndarray) and _STRING_OR_OBJECT.search(elem.dtype.str):
            raise TypeError(_UNSUPPORTED.format(elem.dtype))
        if elem.shape == ():  # a NumPy scalar
            return as_tensor(np.array(batch))
        return stack([as_tensor(b) for b in batch], 0)
    if isinstance(elem, float):
        return tensor(batch, dtype=float64)
    if isinstance(elem, int):  # bools too: tensor() keeps them bool
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(collated)
        except TypeError:
            return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a named tuple
        return type(elem)(*(default_collate(samples) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        collated = [default_collate(samples) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return collated  # PyTorch gives a list for tuples (backwards compatibility)
        try:
            return type(elem)(collated)
        except TypeError:
            return collated
    raise TypeError(_UNSUPPORTED.format(type(elem)))


def default_convert(data):
    """One sample as `DataLoader(batch_size=None)` gives it: NumPy arrays and scalars as
    tensors, inside dicts, named tuples and sequences too; anything else as it is."""
    if isinstance(data, Tensor):
        return data
    if _is_numpy(data):
        if isinstance(data, np.ndarray) and _STRING_OR_OBJECT.search(data.dtype.str):
            return data
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(data[key]) for key in data}
        if isinstance(data, collections.abc.MutableMapping):
            clone = copy.copy(data)
            clone.update(converted)
            return clone
        return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    return data
