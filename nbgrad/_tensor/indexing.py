"""Indexing: `tensor[index]` (`getitem`), `tensor[index] = value` (`setitem`), `nonzero`,
the ops that pick or write along one dimension (`gather`, `scatter`, `scatter_add`,
`index_select`, `index_fill`, `index_add`, `index_copy`, `take_along_dim`, and their in-place
forms), `masked_select`, `repeat_interleave`, and `one_hot`.

All of them are the `take`, `index_put` and `scatter_add` primitives on flat positions that
are computed and checked here, from the index's values, before any kernel sees them.
"""
import numpy as np

from .._core import tracing as _tracing
from .._core.dtype import is_half
from ..ops import PRIMITIVES
from ..ops.indexing import (first_out_of_range, flat_positions, is_index_array, positions_along,
                            put_values, torch_stages)
from ..ops.primitive import TORCH_TYPE_NAMES
from ..ops.shape import refuse_expand
from .conversion import to
from .inplace import (checked_fill_value, check_inplace, check_overlap, inplace_form, is_recording,
                      read_apart, snapshot, write_back)
from .dispatch import dispatch
from .operands import as_tensor_arg
from .shape import broadcast_tensors
from .tensor import Tensor, _check_dim, _meta

__all__ = ["nonzero", "gather", "scatter", "scatter_add", "index_select", "index_fill", "index_put",
           "index_put_"]


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
        stages = torch_stages(index)
        if stages is None:
            input._data[index] = value._data
        else:
            input._data[stages[0]][stages[1]] = value._data  # (a view, then its elements)
    input._version_counter[0] += 1


def index_put(input, indices, values, accumulate=False):
    """`input` with `values` written at `input[indices]` (a tuple of index tensors), or added
    there with `accumulate=True`, where repeated positions add up."""
    if not isinstance(indices, (tuple, list)):
        raise TypeError(f"index_put_(): argument 'indices' (position 1) must be tuple of Tensors, "
                        f"not {type(indices).__name__}")
    for i, index in enumerate(indices):
        if not isinstance(index, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got "
                            f"{type(index).__name__}")
    if not isinstance(values, Tensor):
        raise TypeError(f"index_put_(): argument 'values' (position 2) must be Tensor, not "
                        f"{type(values).__name__}")
    if values.dtype != input.dtype:
        raise RuntimeError(f"Index put requires the source and destination dtypes match, got "
                           f"{input.dtype.scalar_type} for the destination and "
                           f"{values.dtype.scalar_type} for the source.")
    for index in indices:
        if index.dtype.is_floating_point or index.dtype.name in ("float16", "bfloat16"):
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if len(indices) > input.ndim:
        raise IndexError(f"too many indices for tensor of dimension {input.ndim} (got "
                         f"{len(indices)})")
    positions = flat_positions(input.shape, tuple(index._data for index in indices))
    try:
        fits = np.broadcast_shapes(tuple(values.shape), positions.shape) == positions.shape
    except ValueError:
        fits = False
    if not fits:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(values.shape)} cannot be "
                           f"broadcast to indexing result of shape {list(positions.shape)}")
    if accumulate:
        if values.shape != positions.shape:
            values = values.expand(positions.shape)
        return dispatch(PRIMITIVES["scatter_add"], (input, values), {"positions": positions},
                        grad_fn_name="IndexPutBackward0")
    return dispatch(PRIMITIVES["index_put"], (input, values), {"positions": positions},
                    grad_fn_name="IndexPutBackward0")


index_put_ = inplace_form(index_put)


def fill_diagonal_(input, fill_value, wrap=False):
    """`input` with `fill_value` on its main diagonal (all dimensions equal beyond 2-D); with
    `wrap`, a tall matrix's diagonal starts again below each square block, as PyTorch's (and
    NumPy's fill_diagonal)."""
    if input.ndim < 2:
        raise RuntimeError("dimensions must larger than 1")
    if input.ndim > 2 and len(set(input.shape)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    if input._requires_grad and input.grad_fn is None and is_recording(input):
        # (PyTorch fills a strided view of the diagonal: its error names a view.)
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    check_inplace(input)
    height, width = input.shape[:2]
    step = sum(int(np.prod(input.shape[d + 1:])) for d in range(input.ndim))  # C-order strides
    count = min(height, width)
    if wrap and input.ndim == 2 and height > width + 1:
        count = -(-input.numel() // step)
    positions = np.arange(count, dtype=np.int64) * step
    value = Tensor._wrap(np.asarray(checked_fill_value(fill_value, input._data.dtype), input._data.dtype))
    # As PyTorch's fill_ of a diagonal view: CopySlices where autograd records it.
    source = snapshot(input) if is_recording(input) else input
    return write_back(input, dispatch(PRIMITIVES["index_put"], (source, value),
                                      {"positions": positions}))


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


# --- more picks and writes along a dimension ------------------------------------------------

def take_along_dim(input, indices, dim=None):
    """input's elements at `indices` along `dim` (input and indices broadcast in the other
    dims), or of the flattened input without `dim`. As PyTorch 2.13's, indices along a dim
    are taken modulo its size (only the flat form checks their range)."""
    if dim is None:  # (gather checks the indices)
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    if indices.dtype.name != "int64":
        raise RuntimeError(f"torch.take_along_dim(): dtype of indices should be Long but got "
                           f"{indices.dtype.scalar_type}")
    if input.ndim != indices.ndim:
        raise RuntimeError(f"torch.take_along_dim(): input and indices should have the same "
                           f"number of dimensions, but got {input.ndim} dimensions for input, and "
                           f"{indices.ndim} dimensions for indices")
    d = _check_dim(dim, input.ndim)
    input_shape, indices_shape = list(input.shape), list(indices.shape)
    input_shape[d] = indices_shape[d] = 1
    shape = broadcast_tensors(Tensor._wrap(np.empty(input_shape, bool)),
                              Tensor._wrap(np.empty(indices_shape, bool)))[0].shape
    input = input.expand(shape[:d] + (input.shape[d],) + shape[d + 1:])
    index = np.broadcast_to(indices._data, shape[:d] + (indices.shape[d],) + shape[d + 1:])
    size = input.shape[d]
    return gather(input, d, Tensor._wrap(index % size if size else index))


def masked_select(input, mask):
    """The elements of `input` where `mask` (broadcast with it) is True, as a 1-D tensor."""
    if mask.dtype.name != "bool":
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    shape = broadcast_tensors(mask, Tensor._wrap(np.empty(input.shape, bool)))[0].shape
    positions = np.broadcast_to(np.arange(input.numel(), dtype=np.int64).reshape(input.shape),
                                shape)[np.broadcast_to(mask._data, shape)]
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name="MaskedSelectBackward0")


def _slice_positions(name, input, dim, index, source, vector_message):
    """The positions of the slices `index` picks along `dim`, in the layout of `source`
    (which must have input's shape but `len(index)` along `dim`), after PyTorch's checks of
    the index (an int vector or scalar, in range) and source's sizes. A 0-d input counts as
    one of shape [1]."""
    d = _check_dim(dim, input.ndim)
    index = index._data
    if index.ndim > 1:
        raise IndexError(vector_message(index))
    index = index.reshape(-1)
    shape, source_shape = input.shape or (1,), source.shape or (1,)
    if source.ndim != input.ndim or any(
            s != n for k, (s, n) in enumerate(zip(source_shape, shape)) if k != d):
        raise RuntimeError(f"source tensor shape must match self tensor shape, excluding the "
                           f"specified dimension. Got self.shape = {list(input.shape)} "
                           f"source.shape = {list(source.shape)}")
    if index.size != source_shape[d]:
        raise RuntimeError(f"{name}(): Number of indices ({index.size}) should be equal to "
                           f"source.size(dim): ({source_shape[d]}), for dim: {d}")
    first = first_out_of_range(index, shape[d], 0) if index.size else -1
    if first >= 0:
        raise RuntimeError(f"index {index[first]} is out of bounds for dimension {d} with size "
                           f"{shape[d]}")
    positions = flat_positions(shape, (slice(None),) * d + (index,))
    return positions.reshape(source.shape)


def index_add(input, dim, index, source, *, alpha=1):
    """`input` with `alpha * source`'s slices added at `index` along `dim` (repeats add up)."""
    if not is_index_array(index._data):
        raise RuntimeError(f"index_add_(): Expected dtype int32/int64 for index but got: "
                           f"{index.dtype.scalar_type}")
    if source.dtype != input.dtype:
        raise RuntimeError(f"index_add_(): self ({input.dtype.scalar_type}) and source "
                           f"({source.dtype.scalar_type}) must have the same scalar type")
    positions = _slice_positions(
        "index_add_", input, dim, index, source,
        lambda i: f"index_add_(): Index is supposed to be a vector, but got dim: {i.ndim} with "
                  f"type: {index.dtype.scalar_type} and size: {list(i.shape)}")
    if alpha != 1:
        source = source * (alpha if input.dtype.is_floating_point else int(alpha))
    return dispatch(PRIMITIVES["scatter_add"], (input, source), {"positions": positions},
                    grad_fn_name="IndexAddBackward0")


def index_copy(input, dim, index, source):
    """`input` with `source`'s slices written at `index` along `dim` (of repeats, the last)."""
    if index.dtype.name != "int64":
        raise RuntimeError(f"index_copy_(): Expected a long tensor for index, but got "
                           f"{index.dtype.scalar_type}")
    if index.ndim > 1:
        raise IndexError(f"index_copy_(): Index should have dimension 1 or 0 (got {index.ndim})")
    d = _check_dim(dim, input.ndim)
    if input.ndim and source.ndim and source.ndim != input.ndim:
        raise IndexError(f"index_copy_(): When source and destination are not scalars, their "
                         f"dimensionality must match. Source dimensionality ({source.ndim}), "
                         f"destination dimensionality ({input.ndim})")
    if input.ndim > 1 and any(s != n for k, (s, n) in enumerate(zip(source.shape, input.shape))
                              if k != d):
        def rest(shape):
            return " ".join(str(n) for k, n in enumerate(shape) if k != d)
        raise RuntimeError(f"index_copy_(): Source/destination tensor must have same slice "
                           f"shapes. Destination slice shape: {rest(input.shape)} at dimension "
                           f"{d} and source slice shape: {rest(source.shape)} at dimension 0.")
    count = source.shape[d] if source.ndim else 1
    if index.numel() != count:
        raise IndexError(f"index_copy_(): Number of indices ({index.numel()}) should be equal "
                         f"to source.size(dim) ({count})")
    if source.dtype != input.dtype:
        raise RuntimeError(f"index_copy_(): self and source expected to have the same dtype, but "
                           f"got (self) {input.dtype.scalar_type} and (source) "
                           f"{source.dtype.scalar_type}")
    index = index._data.reshape(-1)
    size = input.shape[d] if input.ndim else 1
    first = first_out_of_range(index, size, 0) if index.size else -1
    if first >= 0:
        raise IndexError(f"index_copy_(): index {index[first]} is out of bounds for dimension "
                         f"{d} with size {size}")
    positions = np.zeros((), np.int64) if input.ndim == 0 else _slices_along(input, d, index)
    return dispatch(PRIMITIVES["index_put"], (input, source.reshape(positions.shape)),
                    {"positions": positions}, grad_fn_name="IndexCopyBackward0")


index_add_, index_copy_ = inplace_form(index_add), inplace_form(index_copy)


def _repeat_counts(repeats, size):
    """Tensor `repeats` as one non-negative count per slice of a dimension of `size`."""
    if not repeats.dtype.is_floating_point and repeats.dtype.name != "bool":
        counts = repeats._data
    else:
        raise NotImplementedError(f"\"repeat_interleave_cpu\" not implemented for "
                                  f"'{repeats.dtype.scalar_type}'")
    if counts.ndim > 1:
        raise RuntimeError("repeats must be 0-dim or 1-dim tensor")
    counts = counts.reshape(-1)
    if counts.size == 1:
        counts = np.broadcast_to(counts, (size,))
    if counts.size != size:
        raise RuntimeError(f"repeats must have the same size as input along dim, but got "
                           f"repeats.size(0) = {counts.size} and input.size(0) = {size}")
    if counts.size and counts.min() < 0:
        raise RuntimeError("repeats can not be negative")
    return counts.astype(np.int64)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each slice of `input` along `dim` (of the flattened input without it) repeated
    `repeats` times, in place; `repeat_interleave(counts)`: each index `counts[i]` times."""
    if repeats is None:  # the one-argument form: input holds the counts
        if input.ndim != 1:
            raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
        counts = _repeat_counts(input, input.shape[0])
        return Tensor._wrap(np.repeat(np.arange(counts.size, dtype=np.int64), counts))
    if dim is None:
        input, d = input.reshape(-1), 0
    else:
        d = _check_dim(dim, input.ndim)
    size = input.shape[d] if input.ndim else 1
    if isinstance(repeats, Tensor):
        if input.ndim == 0:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        counts = _repeat_counts(repeats, size)
        total = int(counts.sum())
        if output_size is not None and output_size != total:
            raise RuntimeError("allocated size does not match required size")
        index = Tensor._wrap(np.repeat(np.arange(size, dtype=np.int64), counts))
        return index_select(input, d, index)
    if repeats < 0:
        raise RuntimeError("Repeats must be non-negative")
    if output_size is not None and output_size != size * repeats:
        raise RuntimeError(f"repeat_interleave: Invalid output_size, expected {size * repeats} "
                           f"but got {output_size}")
    # As PyTorch's: each slice expanded along a new dim after `d`, copied, and flattened.
    shape = input.shape
    expanded = input.unsqueeze(d + 1).expand(shape[:d + 1] + (repeats,) + shape[d + 1:])
    return expanded.clone().reshape(shape[:d] + (size * repeats,) + shape[d + 1:])


def argwhere(input):
    return nonzero(input)


__all__ += ["take_along_dim", "masked_select", "index_add", "index_copy", "repeat_interleave",
            "argwhere"]
