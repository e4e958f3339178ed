"""Indexing: `tensor[index]` (`getitem`), `tensor[index] = value` (`setitem`), and `nonzero`."""
import numpy as np

from ..ops import PRIMITIVES
from ..ops.indexing import flat_positions, put_values
from .inplace import check_inplace, is_recording, snapshot, write_back
from .dispatch import dispatch
from .operands import as_tensor_arg
from .tensor import Tensor

__all__ = ["nonzero"]


def _numpy_index(index):
    """`index` as a tuple NumPy reads, with tensors inside it as arrays (a 0-d integer
    tensor as an int), and whether it is an advanced index."""
    parts = index if isinstance(index, tuple) else (index,)
    converted = []
    advanced = False
    for part in parts:
        if isinstance(part, Tensor):
            if part.ndim == 0 and part._data.dtype.kind == "i":
                part = int(part._data)
            else:
                part = part._data
                advanced = True
        elif isinstance(part, (list, np.ndarray)):
            part = np.asarray(part)
            advanced = True
        elif isinstance(part, slice) and part.step is not None and part.step <= 0:
            raise ValueError("step must be greater than zero")
        converted.append(part)
    return tuple(converted), advanced


_NODE_NAMES = {int: "SelectBackward0", slice: "SliceBackward0", type(None): "UnsqueezeBackward0"}


def _basic_index_node_name(index):
    """PyTorch applies an index part by part and names the node after the last real step."""
    steps = [p for p in index if p is not Ellipsis and p != slice(None)]
    if steps:
        return _NODE_NAMES[type(steps[-1])]
    return "SliceBackward0" if slice(None) in index else "AliasBackward0"


def getitem(input, index):
    index, advanced = _numpy_index(index)
    if advanced:
        positions = flat_positions(input.shape, index)
        return dispatch(PRIMITIVES["take"], (input,), {"positions": positions})
    if Ellipsis not in index:
        # NOTE: a trailing Ellipsis makes NumPy return a 0-d view, not a copied scalar.
        index = index + (Ellipsis,)
    try:
        input._data[index]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None
    return dispatch(PRIMITIVES["basic_index"], (input,), {"index": index},
                    grad_fn_name=_basic_index_node_name(index))


def setitem(input, index, value):
    check_inplace(input)
    index, _ = _numpy_index(index)
    if not isinstance(value, Tensor):
        value = as_tensor_arg(value, input._data.dtype) if np.isscalar(value) else \
            Tensor._wrap(np.asarray(value))
    positions = flat_positions(input.shape, index)
    if is_recording(input, value):
        result = dispatch(PRIMITIVES["index_put"], (snapshot(input), value), {"positions": positions})
        write_back(input, result)
        return
    if input._data.flags.c_contiguous:
        put_values(input._data, value._data, positions)
    else:
        input._data[index] = value._data
    input._version_counter[0] += 1


def nonzero(input, *, as_tuple=False):
    indices = np.nonzero(input._data)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(np.int64)) for i in indices)
    return Tensor._wrap(np.stack(indices, axis=1).astype(np.int64))
