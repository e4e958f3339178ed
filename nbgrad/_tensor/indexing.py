"""Indexing: `tensor[index]` (`getitem`), `tensor[index] = value` (`setitem`), `nonzero`,
the ops that pick or write along one dimension (`gather`, `scatter`, `scatter_add`,
`index_select`, `index_fill`, and their in-place forms), and `one_hot`.

All of them are the `take`, `index_put` and `scatter_add` primitives on flat positions that
are computed and checked here, from the index's values, before any kernel sees them.
"""
import numpy as np

from .._core import tracing as _tracing
from .._core.dtype import is_half
from ..ops import PRIMITIVES
from ..ops.indexing import (first_out_of_range, flat_positions, is_index_array, positions_along,
                            put_values)
from ..ops.primitive import TORCH_TYPE_NAMES
from ..ops.shape import refuse_expand
from .conversion import to
from .inplace import (check_inplace, check_overlap, inplace_form, is_recording, read_apart,
                      snapshot, write_back)
from .dispatch import dispatch
from .operands import as_tensor_arg
from .tensor import Tensor, _check_dim, _meta

__all__ = ["nonzero", "gather", "scatter", "scatter_add", "index_select", "index_fill"]


def _read_as_tuple(index):
    """PyTorch's legacy rule (treatSequenceAsTuple): a list of fewer than 32 items that holds
    a sequence, tensor, slice, None or Ellipsis is read as a tuple: x[[[0, 1], [1, 2]]] is
    x[[0, 1], [1, 2]] (NumPy would read a 2-D index)."""
    return isinstance(index, list) and len(index) < 32 and any(
        part is None or part is Ellipsis or isinstance(part, (Tensor, list, tuple, range, slice,
                                                               np.ndarray))
        for part in index)


def _numpy_index(index):
    """`index` as a tuple NumPy reads, with tensors inside it as arrays (a 0-d integer
    tensor as an int), and whether it is an advanced index."""
    parts = index if isinstance(index, tuple) else \
        tuple(index) if _read_as_tuple(index) else (index,)
    converted = []
    advanced = False
    for part in parts:
        if isinstance(part, Tensor):
            if part.ndim == 0 and part._data.dtype.kind == "i":
                part = int(part._data)
            else:
                part = part._data
                advanced = True
        elif isinstance(part, (bool, list, range, np.ndarray)):  # x[range(n), targets]
            # (A Python bool, as PyTorch: a 0-d mask, an advanced index: x[True] is a copy.)
            part = np.asarray(part)
            if part.size == 0 and part.dtype.kind == "f":  # x[[]]: NumPy's [] is float
                part = part.astype(np.int64)
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
    # The index checked on the array, or for a deferred input on a zero-strided stand-in of
    # its shape: reading its array would run the tape, and a graph with slices could not fuse.
    pending = input._pending
    try:
        (input._data if pending is None else
         np.broadcast_to(np.zeros((), pending.dtype), pending.shape))[index]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None
    return dispatch(PRIMITIVES["basic_index"], (input,), {"index": index},
                    grad_fn_name=_basic_index_node_name(index))


def _index_put_node_name(index, advanced):
    """PyTorch applies an index's basic parts first, as a view, and writes through it
    (CopySlices); an index with only advanced parts (and whole slices, Ellipsis) writes into
    the tensor itself (IndexPutBackward0); x[True] is an unsqueezed view. NOTE: a slice
    that spells out the whole range (0:n) counts as a view here, where PyTorch skips it."""
    whole = all(part.ndim > 0 if isinstance(part, np.ndarray) else
                part is Ellipsis or part == slice(None) for part in index)
    return "IndexPutBackward0" if advanced and whole else None


def setitem(input, index, value):
    check_inplace(input)
    index, advanced = _numpy_index(index)
    if not isinstance(value, Tensor):
        value = as_tensor_arg(value, input._data.dtype) if np.isscalar(value) else \
            Tensor._wrap(np.asarray(value))
    positions = flat_positions(input.shape, index)
    # (After the index is checked.) As PyTorch: a value over part of the memory written
    # (`x[1:] = x[:-1]`) is an error; the memory written is the indexed view (`...` keeps a
    # full integer index a 0-d view), or for an advanced index the whole tensor.
    written = input._data if advanced else input._data[
        index if any(part is Ellipsis for part in index) else index + (Ellipsis,)]
    check_overlap(written, (value,), None)
    if value.ndim > positions.ndim:
        # As PyTorch, the value's leading size-1 dimensions do not count: `logits[i] = v`
        # takes a v of shape [1, 27] into a row of 27.
        extra = value.ndim - positions.ndim
        if any(size != 1 for size in value.shape[:extra]):
            raise RuntimeError(f"expand(torch.{TORCH_TYPE_NAMES[value.dtype.name]}Tensor"
                               f"{{{list(value.shape)}}}, "
                               f"size={list(positions.shape)}): the number of sizes provided "
                               f"({positions.ndim}) must be greater or equal to the number of "
                               f"dimensions in the tensor ({value.ndim})")
        value = value.reshape(value.shape[extra:])
    if not advanced:
        # A basic index writes a view: the value is expanded to it (PyTorch's copy_), whose
        # error names the sizes.
        try:
            fits = np.broadcast_shapes(tuple(value.shape), positions.shape) == positions.shape
        except ValueError:
            fits = False
        if not fits:
            refuse_expand(tuple(value.shape), positions.shape)
    if is_recording(input, value):
        result = dispatch(PRIMITIVES["index_put"], (snapshot(input), value), {"positions": positions},
                          grad_fn_name=_index_put_node_name(index, advanced))
        write_back(input, result)
        return
    # NOTE: a write into the array itself, which a trace does not see (and its positions may
    # come from values of the step, a mask): nbgrad.compile runs such a step eagerly.
    _tracing.graph_break("an indexed write outside autograd (x[index] = value with no "
                         "gradient to record)")
    # NOTE: Numba has no float16 or bfloat16: NumPy writes those.
    if input._data.flags.c_contiguous and not is_half(input._data.dtype):
        put_values(input._data, read_apart(value._data, input._data), positions)
    else:
        input._data[index] = value._data
    input._version_counter[0] += 1


def nonzero(input, *, as_tuple=False):
    data = input._data
    if data.ndim == 0:  # (as PyTorch: no coordinates, one row if nonzero; as_tuple: as 1-D)
        if as_tuple:
            return (Tensor._wrap(np.zeros(int(data != 0), np.int64)),)
        return Tensor._wrap(np.zeros((int(data != 0), 0), np.int64))
    indices = np.nonzero(data)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(np.int64)) for i in indices)
    return Tensor._wrap(np.stack(indices, axis=1).astype(np.int64))


# --- along one dimension -------------------------------------------------------------------

def gather(input, dim, index, *, sparse_grad=False):
    if sparse_grad:
        raise NotImplementedError("gather(sparse_grad=True): nbgrad has no sparse tensors")
    positions = positions_along(input.shape, _check_dim(dim, input.ndim), index._data, "gather")
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name="GatherBackward0")


def _scatter_source(input, dim, index, src):
    """The positions of `index` along `dim` and the part of `src` that goes there."""
    if _meta(src).dtype != _meta(input).dtype:
        raise RuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    positions = positions_along(input.shape, _check_dim(dim, input.ndim), index._data, "scatter",
                                src.shape)
    if not positions.size:  # (an empty index, of any rank: no element of src is read)
        src = src.reshape(-1)[:0].reshape(positions.shape)
    elif src.shape != positions.shape:
        # As PyTorch: only the leading block of `src`, of the index's shape, is read.
        src = getitem(src, tuple(slice(0, n) for n in positions.shape))
    return positions, src


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    if reduce is not None:
        if reduce not in ("add", "multiply"):
            raise RuntimeError("reduce argument must be either add or multiply.")
        raise NotImplementedError(f"scatter(reduce={reduce!r}) is not supported by nbgrad (PyTorch "
                                  "has no gradient for it); use scatter_add")
    if (src is None) == (value is None):
        raise TypeError("scatter() takes one of src (a tensor) or value (a number)")
    if src is not None and not isinstance(src, Tensor):
        value = src  # scatter(input, dim, index, 2.0), as in PyTorch
    if value is not None:
        if isinstance(value, Tensor):
            value = value.item()
        positions = positions_along(input.shape, _check_dim(dim, input.ndim), index._data,
                                    "scatter")
        return dispatch(PRIMITIVES["index_put"], (input, as_tensor_arg(value, _meta(input).dtype)),
                        {"positions": positions}, grad_fn_name="ScatterBackward1")
    positions, src = _scatter_source(input, dim, index, src)
    return dispatch(PRIMITIVES["index_put"], (input, src), {"positions": positions},
                    grad_fn_name="ScatterBackward0")


def scatter_add(input, dim, index, src):
    positions, src = _scatter_source(input, dim, index, src)
    return dispatch(PRIMITIVES["scatter_add"], (input, src), {"positions": positions})


def _slices_along(input, dim, index):
    """The flat positions of the slices `index` (a NumPy array) picks along `dim`."""
    return flat_positions(input.shape, (slice(None),) * dim + (index,))


def index_select(input, dim, index):
    index = index._data
    if not is_index_array(index):
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    d = _check_dim(dim, input.ndim)
    index = index.reshape(-1)
    size = input.shape[d] if input.ndim else 1
    if input.ndim == 0 and index.size != 1:
        raise RuntimeError(f"index_select(): Index to scalar can have only 1 value, got "
                           f"{index.size} value(s)")
    # NOTE: index_select refuses negative indices, which NumPy (and so flat_positions) accepts.
    first = first_out_of_range(index, size, 0) if index.size else -1
    if first >= 0:
        # (PyTorch's two kernels: along dim 0 its IndexError, along the others its RuntimeError.)
        if d == 0:
            raise IndexError("index out of range in self")
        raise RuntimeError(f"INDICES element is out of DATA bounds, id={index[first]} axis_dim={size}")
    positions = np.zeros((), np.int64) if input.ndim == 0 else _slices_along(input, d, index)
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name="IndexSelectBackward0")


def index_fill(input, dim, index, value):
    index = index._data
    if index.dtype != np.int64:
        raise IndexError("index_fill_(): Expected dtype int64 for index.")
    if index.ndim > 1:
        raise RuntimeError("Index has to be a vector/scalar")
    positions = _slices_along(input, _check_dim(dim, input.ndim), index.reshape(-1))
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got "
                               f"tensor with {value.ndim} dimension(s).")
        value, name = to(value, input.dtype), "IndexFillBackward1"
    else:
        value, name = as_tensor_arg(value, _meta(input).dtype), "IndexFillBackward0"
    return dispatch(PRIMITIVES["index_put"], (input, value), {"positions": positions},
                    grad_fn_name=name)


scatter_, scatter_add_, index_fill_ = (inplace_form(f) for f in (scatter, scatter_add, index_fill))


def one_hot(tensor, num_classes=-1):
    """`nn.functional.one_hot`: int64, one trailing dimension of `num_classes`."""
    labels = tensor._data
    if labels.dtype != np.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if not labels.size:
        if num_classes <= 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
    elif labels.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    elif num_classes == -1:
        num_classes = int(labels.max()) + 1
    elif labels.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return Tensor._wrap((labels[..., None] == np.arange(num_classes)).astype(np.int64))
