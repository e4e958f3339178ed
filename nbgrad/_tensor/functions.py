"""The PyTorch-level functions (`nbgrad.exp`, `nbgrad.cat`, ...) and the Tensor methods and
operators built from them. Each either calls one primitive through `dispatch` or is a
composite of such calls; none has a VJP of its own.
"""
import builtins

import numpy as np

from .._core import dtype as _dtype, tracing as _tracing
from ..ops import PRIMITIVES as P
from ..ops.linalg import grad_fn_name as _matmul_name
from ..ops.reduction import normalize_dims
from ..ops.shape import flat_positions, put_values
from .mode import run_pending
from ..autograd.grad_mode import state as _grad_state
from .tensor import Tensor, dispatch, as_tensor_arg, result_dtype, _check_dim, _meta, Size

# --- operands ---------------------------------------------------------------------------------


def _tensor(value, dtype):
    return value if isinstance(value, Tensor) else as_tensor_arg(value, dtype.np)


def _binary(name, a, b, grad_fn_name=None):
    """Call an elementwise primitive; Python scalars become constants of the result dtype."""
    if not isinstance(b, Tensor):
        np_dtype = _meta(a).dtype
        if (type(b) is float or type(b) is int) and np_dtype.kind == "f":
            # The common case (x * 2.0) skips the general promotion rules.
            b = as_tensor_arg(b, np_dtype)
        elif isinstance(b, (int, float, bool, np.number, np.bool_)):
            b = _constant(b, a, name)
        else:
            b = _from_other(b)
            if b is NotImplemented:
                return NotImplemented
    elif not isinstance(a, Tensor):
        a = _constant(a, b, name)
    return dispatch(P[name], (a, b), grad_fn_name=grad_fn_name)


def _constant(scalar, tensor, name):
    """A Python scalar operand of `tensor` in primitive `name` as a 0-d constant of the
    result dtype. For a row that refuses bool operands a bool stays bool, so that the row
    sees it (`int_tensor - True`); elsewhere one dtype keeps the call on the fast path."""
    if isinstance(scalar, (bool, np.bool_)) and P[name].meta.bool_errors is not None:
        return as_tensor_arg(scalar, np.bool_)
    return as_tensor_arg(scalar, result_dtype(tensor, scalar).np)


def _from_other(value):
    if isinstance(value, np.ndarray):
        return Tensor._wrap(value)
    if isinstance(value, (list, tuple)):
        return tensor(value)
    return NotImplemented


def _unary(name):
    def op(input):
        return dispatch(P[name], (input,))
    op.__name__ = name
    return op


exp, log, sqrt, sin, cos, tanh, sigmoid, relu, reciprocal, neg = (
    _unary(n) for n in ("exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu",
                        "reciprocal", "neg"))
negative = neg


def abs(input):
    return dispatch(P["abs"], (input,))


absolute = abs


def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("add", input, other)


def sub(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("sub", input, other)


subtract = sub


def mul(input, other):
    return _binary("mul", input, other)


multiply = mul


def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        raise NotImplementedError("div(rounding_mode=...) is not supported by nbgrad")
    return _binary("div", input, other)


divide = true_divide = div


def pow(input, exponent):
    if not isinstance(input, Tensor):
        return _binary("pow", input, exponent, grad_fn_name="PowBackward2")
    if isinstance(exponent, Tensor):
        return _binary("pow", input, exponent, grad_fn_name="PowBackward1")
    if input.dtype.category == 1 and not isinstance(exponent, float) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    return _binary("pow", input, exponent)


def rsub(input, other):
    return _binary("rsub", input, other)


def maximum(input, other):
    return _binary("maximum", input, other)


def minimum(input, other):
    return _binary("minimum", input, other)


def square(input):
    return pow(input, 2)


def clamp(input, min=None, max=None, *, _grad_fn_name="ClampBackward1"):
    if min is None and max is None:
        raise RuntimeError("At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # Tensor bounds: the gradient goes to whichever operand is selected, as in PyTorch.
        out = input
        if min is not None:
            out = where(lt(out, min), min, out)
        if max is not None:
            out = where(gt(out, max), max, out)
        return out
    # NOTE: dtypes and layouts from `_meta`, never `_data`: reading a deferred input's array
    # runs the tape, and a graph that runs early is never fused.
    floating = _meta(input).dtype.kind == "f"
    info = np.iinfo(np.int64)
    lo = (-np.inf if floating else info.min) if min is None else min
    hi = (np.inf if floating else info.max) if max is None else max
    return dispatch(P["clamp"], (input,), {"lo": lo, "hi": hi}, grad_fn_name=_grad_fn_name)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min, _grad_fn_name="ClampMinBackward0")


def clamp_max(input, max):
    return clamp(input, max=max, _grad_fn_name="ClampMaxBackward0")


def where(condition, input=None, other=None):
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    dtype = result_dtype(input, other)
    input, other = _tensor(input, dtype), _tensor(other, dtype)
    if condition.dtype is not _dtype.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {condition.dtype.name}")
    return dispatch(P["where"], (condition, input, other))


def nonzero(input, *, as_tuple=False):
    indices = np.nonzero(input._data)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(np.int64)) for i in indices)
    return Tensor._wrap(np.stack(indices, axis=1).astype(np.int64))


def _comparison(name):
    def op(input, other):
        return _binary(name, input, other)
    op.__name__ = name
    return op


eq, ne, lt, le, gt, ge = (_comparison(n) for n in ("eq", "ne", "lt", "le", "gt", "ge"))
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def logical_not(input):
    return dispatch(P["logical_not"], (input,))


def logical_and(input, other):
    return _binary("logical_and", input, other)


def logical_or(input, other):
    return _binary("logical_or", input, other)


def equal(input, other):
    return input.shape == other.shape and bool(np.array_equal(input._data, other._data))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(np.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return Tensor._wrap(np.isclose(input._data, other._data, rtol=rtol, atol=atol,
                                   equal_nan=equal_nan))


# --- reductions ---------------------------------------------------------------------------


def _reduce(name, input, dim, keepdim, grad_fn_name=None, **params):
    params["dims"] = normalize_dims(dim, input.ndim)
    params["keepdim"] = keepdim
    return dispatch(P[name], (input,), params, grad_fn_name)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("sum", input, dim, keepdim, "SumBackward0" if dim is None else None)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("mean", input, dim, keepdim, "MeanBackward0" if dim is None else None)


def amax(input, dim=(), keepdim=False):
    return _reduce("amax", input, dim, keepdim)


def amin(input, dim=(), keepdim=False):
    return _reduce("amin", input, dim, keepdim)


class _MinMax(tuple):
    """torch.return_types.max / min: (values, indices) with named fields."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _extreme(which, input, dim, keepdim, other):
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return (maximum if which == "max" else minimum)(input, other)
    if dim is None:
        # Without dim, ties share the gradient evenly (PyTorch's MaxBackward1).
        return _reduce("a" + which, input, None, False, grad_fn_name=which.capitalize() + "Backward1")
    d = _check_dim(dim, input.ndim)
    indices = _reduce("arg" + which, input, d, True)
    # With dim, the gradient goes to the selected index only (MaxBackward0).
    positions = np.take_along_axis(np.arange(input.numel(), dtype=np.int64).reshape(input.shape),
                                   indices._data, axis=d) if input.ndim else np.zeros((), np.int64)
    if not keepdim and input.ndim:
        positions = positions.squeeze(d)
        indices = Tensor._wrap(indices._data.squeeze(d))
    values = dispatch(P["take"], (input,), {"positions": positions},
                      grad_fn_name=which.capitalize() + "Backward0")
    return _MinMax((values, indices))


def max(input, dim=None, keepdim=False, *, other=None):
    return _extreme("max", input, dim, keepdim, other)


def min(input, dim=None, keepdim=False, *, other=None):
    return _extreme("min", input, dim, keepdim, other)


def argmax(input, dim=None, keepdim=False):
    if dim is None:
        return _reduce("argmax", input.reshape(-1), 0, False)
    return _reduce("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    if dim is None:
        return _reduce("argmin", input.reshape(-1), 0, False)
    return _reduce("argmin", input, dim, keepdim)


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _reduce("var", input, dim, keepdim, correction=_correction(unbiased, correction))


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _reduce("std", input, dim, keepdim, correction=_correction(unbiased, correction))


def logsumexp(input, dim, keepdim=False):
    return _reduce("logsumexp", input, dim, keepdim)


def _softmax_like(name, input, dim, dtype):
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        raise TypeError(f"{name}() missing required argument 'dim'")
    return dispatch(P[name], (input,), {"dim": _check_dim(dim, input.ndim) if input.ndim else 0})


def softmax(input, dim=None, dtype=None):
    return _softmax_like("softmax", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    return _softmax_like("log_softmax", input, dim, dtype)


# --- matmul -------------------------------------------------------------------------------


def matmul(input, other):
    if not isinstance(other, Tensor):
        other = _from_other(other)
    return dispatch(P["matmul"], (input, other),
                    grad_fn_name=_matmul_name(input.ndim, other.ndim))


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError("self must be a matrix")
    return matmul(input, mat2)


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    return matmul(input, mat2)


# --- shapes -------------------------------------------------------------------------------


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _infer_size(shape, numel):
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if int(np.prod(shape)) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input, *shape):
    shape = _infer_size(_shape_args(shape), input.numel())
    return dispatch(P["reshape"], (input,), {"shape": shape})


def view(input, *shape):
    shape = _infer_size(_shape_args(shape), input.numel())
    if not input.is_contiguous():
        # As PyTorch, a strided tensor has a view of `shape` when its strides allow one: then
        # NumPy's reshape is a view of the same memory, else it is a copy.
        data = input._data
        if data.size and not np.may_share_memory(data.reshape(shape), data):
            raise RuntimeError("view size is not compatible with input tensor's size and stride "
                               "(at least one dimension spans across two contiguous subspaces). "
                               "Use .reshape(...) instead.")
    return dispatch(P["reshape"], (input,), {"shape": shape})


def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return reshape(input, 1)
    start, end = _check_dim(start_dim, input.ndim), _check_dim(end_dim, input.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.shape
    return reshape(input, shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])


def squeeze(input, dim=None):
    shape = input.shape
    if dim is None:
        dims = [d for d, s in enumerate(shape) if s == 1]
    else:
        dims = [_check_dim(d, input.ndim) for d in ((dim,) if isinstance(dim, int) else dim)]
        dims = [d for d in dims if input.ndim and shape[d] == 1]
    new_shape = tuple(s for d, s in enumerate(shape) if d not in dims)
    return dispatch(P["reshape"], (input,), {"shape": new_shape},
                    grad_fn_name="SqueezeBackward0" if dim is None else "SqueezeBackward1")


def unsqueeze(input, dim):
    d = _check_dim(dim, input.ndim + 1)
    shape = input.shape
    return dispatch(P["reshape"], (input,), {"shape": shape[:d] + (1,) + shape[d:]},
                    grad_fn_name="UnsqueezeBackward0")


def permute(input, *dims):
    dims = tuple(_check_dim(d, input.ndim) for d in _shape_args(dims))
    if sorted(dims) != list(range(input.ndim)):
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {input.ndim} is not equal to len(dims) = {len(dims)}")
    return dispatch(P["permute"], (input,), {"dims": dims})


def transpose(input, dim0, dim1):
    order = list(range(input.ndim))
    if input.ndim:
        d0, d1 = _check_dim(dim0, input.ndim), _check_dim(dim1, input.ndim)
        order[d0], order[d1] = order[d1], order[d0]
    return dispatch(P["permute"], (input,), {"dims": tuple(order)},
                    grad_fn_name="TransposeBackward0")


swapaxes = swapdims = transpose


def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return dispatch(P["permute"], (input,), {"dims": tuple(range(input.ndim))[::-1]},
                    grad_fn_name="TBackward0")


def _T(input):
    return dispatch(P["permute"], (input,), {"dims": tuple(range(input.ndim))[::-1]})


def _mT(input):
    return transpose(input, -2, -1)


def expand(input, *sizes):
    sizes = _shape_args(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(f"expand(nbgrad.{input.dtype.name}{{{list(input.shape)}}}, size={list(sizes)}): "
                           "the number of sizes provided must be greater or equal to the number "
                           "of dimensions in the tensor")
    shape = tuple(input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return dispatch(P["expand"], (input,), {"shape": shape})


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, size):
    return expand(input, size)


def contiguous(input, memory_format=None):
    if input.is_contiguous():
        return input
    return clone(input)


def clone(input, *, memory_format=None):
    return dispatch(P["to_copy"], (input,), {"dtype": _meta(input).dtype},
                    grad_fn_name="CloneBackward0")


def _legacy_empty(x):
    return x.ndim == 1 and x.numel() == 0


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    # PyTorch lets 1-D empty tensors join tensors of any shape (a legacy rule kept for
    # compatibility), and still gives them their empty gradient: each joins as an empty
    # block of the others' shape, so it stays in the graph.
    shaped = next((x for x in tensors if not _legacy_empty(x)), tensors[0])
    d = _check_dim(dim, shaped.ndim)
    empty_block = shaped.shape[:d] + (0,) + shaped.shape[d + 1:]
    blocks = tuple(reshape(x, empty_block) if _legacy_empty(x) and x.shape != empty_block else x
                   for x in tensors)
    return dispatch(P["concat"], blocks, {"dim": d, "stack": False})


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    d = _check_dim(dim, tensors[0].ndim + 1)
    return dispatch(P["concat"], tuple(tensors), {"dim": d, "stack": True},
                    grad_fn_name="StackBackward0")


def split(input, split_size_or_sections, dim=0):
    d = _check_dim(dim, input.ndim)
    size = input.shape[d]
    if isinstance(split_size_or_sections, int):
        sections = [split_size_or_sections] * (size // split_size_or_sections)
        if size % split_size_or_sections:
            sections.append(size % split_size_or_sections)
    else:
        sections = list(split_size_or_sections)
    starts = np.cumsum([0] + sections[:-1])
    lead = (slice(None),) * d
    return tuple(input[lead + (slice(int(s), int(s) + n),)] for s, n in zip(starts, sections))


def chunk(input, chunks, dim=0):
    size = input.shape[_check_dim(dim, input.ndim)]
    return split(input, -(-size // chunks), dim)


def unbind(input, dim=0):
    d = _check_dim(dim, input.ndim)
    lead = (slice(None),) * d
    return tuple(input[lead + (i,)] for i in range(input.shape[d]))


# --- indexing -----------------------------------------------------------------------------


def _index_parts(index):
    """Tensors inside an index become NumPy arrays; report whether the index is advanced."""
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


_BASIC_NAMES = {int: "SelectBackward0", slice: "SliceBackward0", type(None): "UnsqueezeBackward0"}


def _basic_name(index):
    """PyTorch applies an index part by part and names the node after the last real step."""
    steps = [p for p in index if p is not Ellipsis and p != slice(None)]
    if steps:
        return _BASIC_NAMES[type(steps[-1])]
    return "SliceBackward0" if slice(None) in index else "AliasBackward0"


def getitem(input, index):
    index, advanced = _index_parts(index)
    if advanced:
        positions = flat_positions(input.shape, index)
        return dispatch(P["take"], (input,), {"positions": positions})
    if Ellipsis not in index:
        # NOTE: a trailing Ellipsis makes NumPy return a 0-d view, not a copied scalar.
        index = index + (Ellipsis,)
    try:
        input._data[index]
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None
    return dispatch(P["basic_index"], (input,), {"index": index},
                    grad_fn_name=_basic_name(index))


def _check_inplace(target):
    # Deferred ops that read this memory run before it changes.
    run_pending()
    if _grad_state.enabled and target._requires_grad and target.grad_fn is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                           "operation.")


def _recording(*tensors):
    return _grad_state.enabled and builtins.any(
        isinstance(x, Tensor) and x._requires_grad for x in tensors)


def _snapshot(target):
    """The value `target` has before an in-place write, at the same place in the graph."""
    before = Tensor._wrap(target._data.copy(), target._requires_grad)
    before.grad_fn = target.grad_fn
    return before


def _write_back(target, result):
    """Finish an in-place op: copy `result` into `target`'s memory, adopt its graph node."""
    if result.shape != target.shape:
        raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the broadcast "
                           f"shape {list(result.shape)}")
    if result._data.dtype != target._data.dtype and \
            _dtype.promote_types(target.dtype, result.dtype) is not target.dtype:
        raise RuntimeError(f"result type {result.dtype.name} can't be cast to the desired output "
                           f"type {target.dtype.name}")
    from ..ops.elementwise import COPY, run
    run(COPY, (result._data,), (), target._data.shape, target._data.dtype, out=target._data)
    target._version_counter[0] += 1
    if result.grad_fn is not None:
        target.grad_fn = result.grad_fn
        target._requires_grad = True
    return target


def _inplace(op):
    def method(self, other, *args, **kwargs):
        _check_inplace(self)
        source = _snapshot(self) if _recording(self, other) else self
        return _write_back(self, op(source, other, *args, **kwargs))
    method.__name__ = op.__name__ + "_"
    return method


def setitem(input, index, value):
    _check_inplace(input)
    index, _ = _index_parts(index)
    if not isinstance(value, Tensor):
        value = as_tensor_arg(value, input._data.dtype) if np.isscalar(value) else \
            Tensor._wrap(np.asarray(value))
    positions = flat_positions(input.shape, index)
    if _recording(input, value):
        result = dispatch(P["index_put"], (_snapshot(input), value), {"positions": positions})
        _write_back(input, result)
        return
    if input._data.flags.c_contiguous:
        put_values(input._data, value._data, positions)
    else:
        input._data[index] = value._data
    input._version_counter[0] += 1


def fill_(input, value):
    _check_inplace(input)
    value = value.item() if isinstance(value, Tensor) else value
    if _tracing.current is not None:
        _tracing.current.fill(input, input._data, value)
    input._data[...] = value
    input._version_counter[0] += 1
    return input


def zero_(input):
    return fill_(input, 0)


def copy_(input, src, non_blocking=False):
    _check_inplace(input)
    src = src if isinstance(src, Tensor) else tensor(src)
    return _write_back(input, expand(to(src, input.dtype), input.shape))


# --- dtype conversion ---------------------------------------------------------------------


def to(input, *args, dtype=None, copy=False, **kwargs):
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif isinstance(arg, str):
            if arg not in ("cpu",):
                raise RuntimeError(f"nbgrad runs on the CPU only; got device {arg!r}")
        elif arg is not None:
            dtype = arg
    device = kwargs.pop("device", None)
    if device not in (None, "cpu"):
        raise RuntimeError(f"nbgrad runs on the CPU only; got device {device!r}")
    if dtype is None:
        return clone(input) if copy else input
    dtype = _dtype.as_dtype(dtype)
    if dtype.np == _meta(input).dtype and not copy:
        return input
    return dispatch(P["to_copy"], (input,), {"dtype": dtype.np})


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
               "bool": "BoolTensor"}


def type_(input, dtype=None):
    if dtype is None:
        return "torch." + _TYPE_NAMES[input.dtype.name]
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        dtype = next(_dtype.as_dtype(k) for k, v in _TYPE_NAMES.items() if v == name)
    return to(input, dtype)


# --- factories ----------------------------------------------------------------------------

# Re-exported: `nbgrad.zeros` and the rest (see __all__ below).
from .factories import (  # noqa: E402, F401
    tensor, from_numpy, as_tensor, zeros, ones, full, empty, eye, arange, linspace, rand, randn,
    randint, zeros_like, ones_like, full_like, empty_like, rand_like, randn_like, randint_like,
    manual_seed)


# --- attach methods and operators -----------------------------------------------------------


def _reflected(op):
    def method(self, other):
        return op(other, self)
    return method


_METHODS = {
    "exp": exp, "log": log, "sqrt": sqrt, "sin": sin, "cos": cos, "tanh": tanh,
    "sigmoid": sigmoid, "relu": relu, "abs": abs, "neg": neg, "negative": neg,
    "reciprocal": reciprocal, "square": square,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "maximum": maximum,
    "minimum": minimum, "clamp": clamp, "clip": clamp, "clamp_min": clamp_min,
    "clamp_max": clamp_max, "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "logical_not": logical_not, "logical_and": logical_and, "logical_or": logical_or,
    "equal": equal, "allclose": allclose, "isclose": isclose,
    "sum": sum, "mean": mean, "amax": amax, "amin": amin, "max": max, "min": min,
    "argmax": argmax, "argmin": argmin, "var": var, "std": std, "logsumexp": logsumexp,
    "softmax": softmax, "log_softmax": log_softmax,
    "matmul": matmul, "mm": mm, "mv": mv, "dot": dot, "bmm": bmm,
    "reshape": reshape, "view": view, "flatten": flatten, "squeeze": squeeze,
    "unsqueeze": unsqueeze, "permute": permute, "transpose": transpose, "swapaxes": transpose,
    "t": t, "expand": expand, "expand_as": expand_as, "contiguous": contiguous, "clone": clone,
    "split": split, "chunk": chunk, "unbind": unbind, "nonzero": nonzero,
    "fill_": fill_, "zero_": zero_, "to": to, "type": type_,
    "add_": _inplace(add), "sub_": _inplace(sub), "mul_": _inplace(mul), "div_": _inplace(div),
    "pow_": _inplace(pow), "clamp_": _inplace(clamp), "copy_": copy_,
    "__add__": add, "__radd__": _reflected(add), "__iadd__": _inplace(add),
    "__sub__": sub, "__rsub__": rsub, "__isub__": _inplace(sub),
    "__mul__": mul, "__rmul__": _reflected(mul), "__imul__": _inplace(mul),
    "__truediv__": div, "__rtruediv__": lambda self, other: mul(reciprocal(self), other),
    "__itruediv__": _inplace(div),
    "__pow__": pow, "__rpow__": _reflected(pow), "__ipow__": _inplace(pow),
    "__matmul__": matmul, "__rmatmul__": _reflected(matmul),
    "__neg__": neg, "__abs__": abs, "__invert__": logical_not,
    "__and__": logical_and, "__or__": logical_or,
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "__getitem__": getitem, "__setitem__": setitem,
    "where": lambda self, condition, other: where(condition, self, other),
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(_T)
Tensor.mT = property(_mT)
Tensor.float = lambda self: to(self, _dtype.float32)
Tensor.double = lambda self: to(self, _dtype.float64)
Tensor.long = lambda self: to(self, _dtype.int64)
Tensor.bool = lambda self: to(self, _dtype.bool_)
Tensor.cpu = lambda self: self

_INTERNAL = {"dispatch", "as_tensor_arg", "result_dtype", "flat_positions", "put_values",
             "normalize_dims", "getitem", "setitem", "type_", "Tensor", "Size"}
__all__ = [name for name, value in list(globals().items())
           if not name.startswith("_") and name not in _INTERNAL and callable(value)
           and getattr(value, "__module__", "").startswith("nbgrad")]
