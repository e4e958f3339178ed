"""Reductions over dimensions (`sum`, `mean`, `max`, `var`, `logsumexp`, `all`, `norm`, ...),
the functions along one dimension (the softmax family, `cumsum`, `cumprod`, `logcumsumexp`,
`diff`, `sort`, `topk`), order statistics (`median`, `kthvalue`, `mode`, `quantile`,
`cummax`, ...), histograms and counts (`bincount`, `count_nonzero`), and the searches and
sets (`searchsorted`, `bucketize`, `isin`, `unique`). The norms of the `nbgrad.linalg`
namespace (`linalg_norm`, `vector_norm`, `matrix_norm`) are here too, with `norm`, which
calls them."""
import builtins  # `sum`, `max`, `any`, ... below are the reductions
import math
import operator
import warnings

import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.histogram import BINARY_SEARCH, LINEAR_INTERPOLATION_WITH_LOCAL_SEARCH
from ..ops.reduction import normalize_dims
from ..ops.sorting import KTH, MEDIAN, MODE, NANMEDIAN
from .arithmetic import (ceil, div, floor, isnan, logical_not, logical_xor, masked_fill, maximum,
                         minimum, nan_to_num, ne, round, where)
from .factories import empty_like, full_like, zeros
from .operands import binary, result_dtype
from .shape import broadcast_tensors, cat
from .dispatch import dispatch
from .tensor import Tensor, _check_dim, _meta, sizes_of

__all__ = ["sum", "prod", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "var", "std",
           "var_mean", "std_mean", "logsumexp", "all", "any", "norm", "softmax", "log_softmax",
           "cumsum", "cumprod", "sort", "argsort", "topk", "histc", "histogram"]


def _return_type(name, fields):
    """A tuple class with named fields and PyTorch's repr, as torch.return_types.`name`."""
    def __repr__(self):
        items = ",\n".join(f"{field}={value!r}" for field, value in zip(fields, self))
        return f"torch.return_types.{name}(\n{items})"

    namespace = {field: property(operator.itemgetter(i)) for i, field in enumerate(fields)}
    return type(name, (tuple,), {**namespace, "__slots__": (), "__repr__": __repr__,
                                 "__module__": __name__})


_RETURN_TYPES = {name: _return_type(name, ("values", "indices"))
                 for name in ("max", "min", "sort", "topk")}
_Histogram = _return_type("histogram", ("hist", "bin_edges"))


def _numpy_aliases(name, dim, keepdim, axis, keepdims):
    """dim and keepdim from NumPy's names for them, `axis` and `keepdims`, which PyTorch
    accepts too (not both names of one argument: PyTorch's TypeError)."""
    if axis is not None:
        if dim is not None and dim != ():
            raise TypeError(f"{name}() got an unexpected keyword argument 'axis'")
        dim = axis
    if keepdims is not None:
        if keepdim:
            raise TypeError(f"{name}() got an unexpected keyword argument 'keepdims'")
        keepdim = keepdims
    return dim, keepdim


def _reduce(name, input, dim, keepdim, grad_fn_name=None, **params):
    params["dims"] = normalize_dims(dim, input.ndim)
    params["keepdim"] = keepdim
    return dispatch(PRIMITIVES[name], (input,), params, grad_fn_name)


# NOTE: each function takes `axis=` and `keepdims=` and resolves them first, with one test of
# both against None on the common path (sum and mean run every training step).

def sum(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("sum", dim, keepdim, axis, keepdims)
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("sum", input, dim, keepdim, "SumBackward0" if dim is None else None)


def prod(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """The product of all elements, or along one dim (PyTorch takes no tuple of dims)."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("prod", dim, keepdim, axis, keepdims)
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise TypeError(f"prod(): argument 'dim' must be int, not {type(dim).__name__}")
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("prod", input, dim, keepdim, "ProdBackward0" if dim is None else None)


def mean(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("mean", dim, keepdim, axis, keepdims)
    if dtype is not None:
        input = input.to(dtype)
    return _reduce("mean", input, dim, keepdim, "MeanBackward0" if dim is None else None)


def sum_to_size(input, *size):
    """`input` summed over the dimensions that broadcasting `size` to its shape would
    expand (Tensor.sum_to_size; the engine's broadcast undo, `sum_to`, as an API)."""
    size = sizes_of(size)
    shape = input.shape
    lead = len(shape) - len(size)
    if lead < 0 or builtins.any(s != n and s != 1 for s, n in zip(size, shape[lead:])):
        raise RuntimeError(f"size {{{list(size)}}} is not expandable to size {{{list(shape)}}}.")
    if tuple(size) == tuple(shape):
        return input
    # As PyTorch: a sum over dimensions kept (SumBackward1), then a view without the leading
    # ones (ViewBackward0) if there are any.
    summed = dispatch(PRIMITIVES["sum_to"], (input,),
                      {"shape": (1,) * lead + tuple(int(s) for s in size)})
    return summed.view(size) if lead else summed


def amax(input, dim=(), keepdim=False, *, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("amax", dim, keepdim, axis, keepdims)
    return _reduce("amax", input, dim, keepdim)


def amin(input, dim=(), keepdim=False, *, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("amin", dim, keepdim, axis, keepdims)
    return _reduce("amin", input, dim, keepdim)


def _gather_along(input, indices, dim, grad_fn_name, keepdim=True):
    """input's elements at `indices` along `dim` (an index per position of the result),
    through the `take` primitive, whose VJP scatters the gradient back to them; without
    `keepdim`, `dim` (of size 1) is left out."""
    if not input.ndim:
        positions = np.zeros((), np.int64)
    else:
        positions = np.take_along_axis(
            np.arange(input.numel(), dtype=np.int64).reshape(input.shape), indices._data, axis=dim)
        if not keepdim:
            positions = positions.squeeze(dim)
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name=grad_fn_name)


def _max_or_min(which, input, dim, keepdim, other, axis, keepdims):
    """`max` or `min` (`which`): of two tensors elementwise, of all elements, or along `dim`
    with the indices."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases(which, dim, keepdim, axis, keepdims)
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
    values = _gather_along(input, indices, d, which.capitalize() + "Backward0", keepdim)
    if not keepdim and input.ndim:
        indices = Tensor._wrap(indices._data.squeeze(d))
    return _RETURN_TYPES[which]((values, indices))


def max(input, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    return _max_or_min("max", input, dim, keepdim, other, axis, keepdims)


def min(input, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    return _max_or_min("min", input, dim, keepdim, other, axis, keepdims)


def _arg_extreme(name, input, dim, keepdim, axis, keepdims):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases(name, dim, keepdim, axis, keepdims)
    if _meta(input).dtype == np.bool_:
        raise RuntimeError(f"{name}(): does not support bool input")
    if dim is None:
        # (Over all elements; keepdim keeps every dimension, of size 1.)
        flat = _reduce(name, input.reshape(-1), 0, False)
        return flat.reshape((1,) * input.ndim) if keepdim else flat
    return _reduce(name, input, dim, keepdim)


def argmax(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _arg_extreme("argmax", input, dim, keepdim, axis, keepdims)


def argmin(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _arg_extreme("argmin", input, dim, keepdim, axis, keepdims)


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def _spread(name, input, dim, unbiased, keepdim, correction, axis, keepdims, grad_fn_name=None,
            called=None):
    """var or std (`name`), under `grad_fn_name` if given; `called`: the function's name in
    PyTorch's warning (var_mean, std_mean)."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases(name, dim, keepdim, axis, keepdims)
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    correction = _correction(unbiased, correction)
    shape = _meta(input).shape
    if math.prod(shape[d] for d in normalize_dims(dim, len(shape))) - correction <= 0:
        warnings.warn(f"{called or name}(): degrees of freedom is <= 0. Correction should be "
                      "strictly less than the reduction factor (input numel divided by output "
                      "numel).", UserWarning, stacklevel=3 + (called is not None))
    return _reduce(name, input, dim, keepdim, grad_fn_name, correction=correction)


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    return _spread("var", input, dim, unbiased, keepdim, correction, axis, keepdims)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    return _spread("std", input, dim, unbiased, keepdim, correction, axis, keepdims)


def _spread_and_mean(name, input, dim, unbiased, keepdim, correction, axis, keepdims):
    """(var or std, mean), both under PyTorch's one grad_fn name (VarMeanBackward0)."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases(name + "_mean", dim, keepdim, axis, keepdims)
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    grad_fn_name = name.capitalize() + "MeanBackward0"
    return (_spread(name, input, dim, unbiased, keepdim, correction, None, None, grad_fn_name,
                    name + "_mean"),
            _reduce("mean", input, dim, keepdim, grad_fn_name))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
             keepdims=None):
    return _spread_and_mean("var", input, dim, unbiased, keepdim, correction, axis, keepdims)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
             keepdims=None):
    return _spread_and_mean("std", input, dim, unbiased, keepdim, correction, axis, keepdims)


def logsumexp(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("logsumexp", dim, keepdim, axis, keepdims)
    if dim is None:  # required, but may come as `axis`
        raise TypeError('logsumexp() missing 1 required positional arguments: "dim"')
    if not _dtype.from_numpy_dtype(_meta(input).dtype).is_floating_point:
        input = input.to(_dtype.get_default_dtype())  # (PyTorch's, for integers and bools)
    return _reduce("logsumexp", input, dim, keepdim)


def _logical(name, input, dim, keepdim, axis, keepdims):
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases(name, dim, keepdim, axis, keepdims)
    return _reduce(name, input, dim, keepdim)


def all(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _logical("all", input, dim, keepdim, axis, keepdims)


def any(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _logical("any", input, dim, keepdim, axis, keepdims)


# --- norms ------------------------------------------------------------------------------


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """torch.linalg.vector_norm: (sum |x|**ord)**(1/ord) over `dim` (every dim by default);
    ord inf/-inf: the largest/smallest magnitude, 0: the count of nonzeros."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("linalg_vector_norm", dim, keepdim, axis, keepdims)
    if isinstance(ord, (str, bool)) or not isinstance(ord, (int, float, np.number)):
        raise TypeError("linalg_vector_norm(): argument 'ord' (position 2) must be Number, not "
                        f"{type(ord).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    return _reduce("vector_norm", x, dim, keepdim, ord=float(ord))


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, axis=None,
                keepdims=None):
    """torch.linalg.matrix_norm: 'fro', or ord 1/-1 (largest/smallest column sum of
    magnitudes), inf/-inf (row sums), over the two dims `dim`. Orders +-2 and 'nuc' need
    singular values, which nbgrad does not compute."""
    if axis is not None or keepdims is not None:
        default = axis is not None and dim == (-2, -1)  # gives way to axis
        dim, keepdim = _numpy_aliases("linalg_matrix_norm", None if default else dim, keepdim,
                                      axis, keepdims)
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 "
                           "dimensions.")
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if len(dims) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got "
                           f"{' '.join(str(d) for d in dims)}")
    rows, columns = (_check_dim(d, A.ndim) for d in dims)
    if rows == columns:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dims[0]}, "
                           f"{dims[1]})")
    if dtype is not None:
        A = A.to(dtype)
    if ord == "fro":
        return vector_norm(A, 2, (rows, columns), keepdim)
    if ord in (1, -1, math.inf, -math.inf) and not isinstance(ord, bool):
        # As PyTorch: the magnitudes summed along one dim, then the extreme along the other.
        summed, extreme = (rows, columns) if abs(ord) == 1 else (columns, rows)
        sums = A.abs().sum(summed, keepdim=keepdim)
        if not keepdim and summed < extreme:
            extreme -= 1
        return (amax if ord > 0 else amin)(sums, extreme, keepdim)
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(f"linalg.matrix_norm: ord={ord!r} needs singular values, "
                                  "which nbgrad does not compute")
    raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")


def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """torch.linalg.norm: a vector norm over one dim (or, without `ord`, every dim), a matrix
    norm over two; without `dim` but with `ord`, the input must be 1-D or 2-D."""
    if axis is not None or keepdims is not None:
        dim, keepdim = _numpy_aliases("linalg_norm", dim, keepdim, axis, keepdims)
    if dim is not None:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        if len(dims) not in (1, 2):
            raise RuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. "
                               f"Got {list(dims)}")
    elif ord is not None:
        if A.ndim not in (1, 2):
            raise RuntimeError("linalg.norm: If dim is not specified but ord is, the input must "
                               f"be 1D or 2D. Got {A.ndim}D.")
        dims = tuple(range(A.ndim))
    if ord is None:  # the 2-norm of a vector and the Frobenius norm of a matrix are one norm
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if len(dims) == 2:
        return matrix_norm(A, ord, dims, keepdim, dtype=dtype)
    return vector_norm(A, ord, dims, keepdim, dtype=dtype)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """torch.norm / Tensor.norm: a vector norm over `dim` (every dim by default), as PyTorch
    now computes it ('fro' is the 2-norm); other strings are matrix norms."""
    if isinstance(p, str):
        if p == "fro" and (dim is None or isinstance(dim, int) or len(dim) <= 2):
            return vector_norm(input, 2, dim, keepdim, dtype=dtype)
        return matrix_norm(input, p, tuple(range(input.ndim)) if dim is None else dim, keepdim,
                           dtype=dtype)
    return vector_norm(input, 2 if p is None else p, dim, keepdim, dtype=dtype)


# --- along one dimension ------------------------------------------------------------------------


def _softmax_like(name, input, dim, dtype):
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        raise TypeError(f'{name}() missing 1 required positional arguments: "dim"')
    return dispatch(PRIMITIVES[name], (input,), {"dim": _check_dim(dim, input.ndim)})


def softmax(input, dim=None, dtype=None):
    return _softmax_like("softmax", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    return _softmax_like("log_softmax", input, dim, dtype)


def _cumulative(name, input, dim, dtype, axis):
    if axis is not None:
        dim, _ = _numpy_aliases(name, dim, False, axis, None)
    if dim is None:  # required, but may come as `axis`
        raise TypeError(f'{name}() missing 1 required positional arguments: "dim"')
    return dispatch(PRIMITIVES[name], (input,), {
        "dim": _check_dim(dim, input.ndim),
        "dtype": None if dtype is None else _dtype.as_dtype(dtype).np})


def cumsum(input, dim=None, *, dtype=None, axis=None):
    return _cumulative("cumsum", input, dim, dtype, axis)


def cumprod(input, dim=None, *, dtype=None, axis=None):
    return _cumulative("cumprod", input, dim, dtype, axis)


def sort(input, dim=-1, descending=False, *, stable=None):
    """(values, indices) sorted along `dim`; ties in PyTorch's order (see ops.sorting).
    (PyTorch's node is SortBackward1 whenever `stable` is given.)"""
    d = _check_dim(dim, input.ndim)
    indices = dispatch(PRIMITIVES["argsort"], (input,),
                       {"dim": d, "descending": bool(descending), "stable": bool(stable)})
    name = "SortBackward0" if stable is None else "SortBackward1"
    return _RETURN_TYPES["sort"]((_gather_along(input, indices, d, name), indices))


def argsort(input, dim=-1, descending=False, *, stable=False):
    return dispatch(PRIMITIVES["argsort"], (input,), {
        "dim": _check_dim(dim, input.ndim), "descending": bool(descending),
        "stable": bool(stable)})


def topk(input, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (smallest) along `dim`, picked and ordered as
    PyTorch does (see ops.sorting)."""
    d = _check_dim(dim, input.ndim)
    indices = dispatch(PRIMITIVES["topk_indices"], (input,), {
        "dim": d, "k": operator.index(k), "largest": bool(largest), "ordered": bool(sorted)})
    return _RETURN_TYPES["topk"]((_gather_along(input, indices, d, "TopkBackward0"), indices))


# --- histograms -------------------------------------------------------------------------


def histc(input, bins=100, min=0, max=0):
    """Counts in `bins` equal bins over [min, max] (the data's range if min == max)."""
    return dispatch(PRIMITIVES["histc"], (input,),
                    {"bins": operator.index(bins), "min": float(min), "max": float(max)})


def histogram(input, bins=100, *, range=None, weight=None, density=False):
    """(hist, bin_edges): `bins` equal bins over `range` (the data's range by default), or
    the bins between the edges of a tensor `bins`; weighted, or a density."""
    if isinstance(bins, Tensor):
        if range is not None:  # the edges say it
            raise TypeError("histogram(): a tensor of bin edges takes no 'range'")
        edges = dispatch(PRIMITIVES["histogram_bin_edges"], (input, bins),
                         {"bins": None, "range": None})
        algorithm = BINARY_SEARCH
    elif isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        edges = dispatch(PRIMITIVES["histogram_bin_edges"], (input,), {
            "bins": int(bins),
            "range": None if range is None else (float(range[0]), float(range[1]))})
        algorithm = LINEAR_INTERPOLATION_WITH_LOCAL_SEARCH
    else:
        raise TypeError(f"histogram(): argument 'bins' must be int or Tensor, not "
                        f"{type(bins).__name__}")
    inputs = (input, edges) if weight is None else (input, edges, weight)
    hist = dispatch(PRIMITIVES["histogram"], inputs,
                    {"density": bool(density), "algorithm": algorithm})
    return _Histogram((hist, edges))


# --- counts, NaN-ignoring reductions, differences -----------------------------------------------
# NOTE: composites; nansum's node is the sum's (SumBackward0/1, PyTorch: NansumBackward0).

def count_nonzero(input, dim=None):
    """The number of nonzero elements (int64) over `dim` (an int or a tuple; every dim by
    default)."""
    return sum(ne(input, 0), dim)


def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """The sum with NaNs counted as zero. A NaN's gradient is PyTorch's: g times 0, NaN where
    g is not finite (nanmean of an all-NaN slice: g / 0); nan_to_num's gradient is exactly
    that at a NaN, where (or masked_fill) would give 0."""
    if not (_meta(input).dtype.kind == "f" or _dtype.is_half(_meta(input).dtype)):
        return sum(input, dim, keepdim, dtype=dtype)
    if dtype is not None:
        input = input.to(dtype)
    # (PyTorch's node, over the NaNs made zeros: its name, not its links)
    return _reduce("sum", where(isnan(input), nan_to_num(input, 0.0), input), dim, keepdim,
                   "NansumBackward0")


def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """The mean of the elements that are not NaN (PyTorch's composite: nansum divided by
    their count)."""
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"nanmean(): expected input to have floating point or complex dtype "
                           f"but got {input.dtype.scalar_type}")
    return div(nansum(input, dim, keepdim, dtype=dtype), sum(logical_not(isnan(input)), dim,
                                                              keepdim))


def diff(input, n=1, dim=-1, prepend=None, append=None):
    """The n-th forward difference along `dim` (of booleans, n-th exclusive or), after
    `prepend` and `append` are joined to input there."""
    if input.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    if n < 0:
        raise RuntimeError(f"order must be non-negative but got {n}")
    d = _check_dim(dim, input.ndim)
    for name, other in (("prepend", prepend), ("append", append)):
        if other is None:
            continue
        if not isinstance(other, Tensor):
            raise TypeError(f"diff(): argument '{name}' must be Tensor, not {type(other).__name__}")
        if other.ndim != input.ndim:
            raise RuntimeError("diff expects prepend or append to be the same dimension as input")
        for k, (a, b) in enumerate(zip(input.shape, other.shape)):
            if k != d and a != b:
                raise RuntimeError(f"diff expects the shape of tensor to prepend or append to "
                                   f"match that of input except along the differencing "
                                   f"dimension; input.size({k}) = {a}, but got tensor.size({k}) "
                                   f"= {b}")
    joined = [x for x in (prepend, input, append) if x is not None]
    if len(joined) > 1:
        dtype = result_dtype(*joined)
        input = cat([x.to(dtype) for x in joined], d)
    if n == 0:  # (a copy, as PyTorch's: a new tensor written by copy_)
        return empty_like(input).copy_(input)
    for _ in range(n):
        size = input.shape[d]
        if size == 0:
            break
        later, earlier = input.narrow(d, 1, size - 1), input.narrow(d, 0, size - 1)
        input = logical_xor(later, earlier) if input.dtype.name == "bool" else later - earlier
    return input


# --- the trapezoidal rule, as PyTorch composes it (ATen's Integration.cpp) --------------------

def _trapezoid_spacing(name, y, x, dx, dim):
    """`dim` wrapped, and the sample spacing: `dx` as a float (1 without either), or the
    differences of `x` along `dim`, x viewed as y's rank first (a 1-D x along `dim`, one
    of lower rank with 1s in front) so that they broadcast against y's. (`name`: the
    function's, for the TypeError; trapz's other errors say trapezoid, as PyTorch's.)"""
    function = "trapezoid" if name == "trapz" else name
    if y.ndim == 0:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    d = _check_dim(dim, y.ndim)
    if x is not None and dx is not None:
        raise TypeError(f"{name}() received an invalid combination of arguments - got (Tensor, "
                        f"Tensor, dx={type(dx).__name__}), but expected one of:\n"
                        " * (Tensor y, Tensor x, *, int dim = -1)\n"
                        " * (Tensor y, *, Number dx = 1, int dim = -1)")
    if x is None:
        if y.dtype.name == "bool":
            raise RuntimeError(f"{function}: received a bool input for `y`, but bool is not "
                               "supported")
        if isinstance(dx, (bool, np.bool_, complex)):
            raise RuntimeError(f"{function}: Currently, we only support dx as a real number.")
        return d, 1.0 if dx is None else float(dx)
    if "bool" in (y.dtype.name, x.dtype.name):
        raise RuntimeError(f"{function}: received a bool input for `x` or `y`, but bool is not "
                           "supported")
    if x.ndim == 1:
        if x.shape[0] != y.shape[d]:
            raise RuntimeError(f"{function}: There must be one `x` value for each sample point")
        x = x.reshape([x.shape[0] if k == d else 1 for k in range(y.ndim)])
    elif x.ndim < y.ndim:
        x = x.reshape((1,) * (y.ndim - x.ndim) + tuple(x.shape))
    left, right = _trapezoid_sides(x, d)
    return d, right - left


def _by_number(name, tensor, number):
    """`tensor` times (or divided by) a Python number as ATen's C++ composition records it:
    the Scalar overload (MulBackward1, DivBackward1; Python's `x * 2` is MulBackward0)."""
    return binary(name, tensor, number, grad_fn_name=f"{name.capitalize()}Backward1")


def _trapezoid_sides(y, d):
    """The left and right ends of y's intervals along dim `d` (none where y has no
    samples there)."""
    size = y.shape[d]
    return y.narrow(d, 0, builtins.max(size - 1, 0)), y.narrow(d, builtins.min(size, 1),
                                                                builtins.max(size - 1, 0))


def trapezoid(y, x=None, *, dx=None, dim=-1):
    """The integral of y along `dim` by the trapezoidal rule, at spacing `dx` or at the
    sample points `x`."""
    return _trapezoid("trapezoid", y, x, dx, dim)


def trapz(y, x=None, *, dx=None, dim=-1):
    """trapezoid's older name (its `dx` is any number: True is 1)."""
    return _trapezoid("trapz", y, x, None if dx is None else float(dx), dim)


def _trapezoid(name, y, x, dx, dim):
    d, spacing = _trapezoid_spacing(name, y, x, dx, dim)
    if y.shape[d] == 0:  # (no samples: 0, as NumPy's)
        return zeros([n for k, n in enumerate(y.shape) if k != d], dtype=y.dtype)
    if isinstance(spacing, float):
        ends = y.select(d, 0) + y.select(d, -1)
        return _by_number("mul", y.sum(d) - _by_number("mul", ends, 0.5), spacing)
    left, right = _trapezoid_sides(y, d)
    return _by_number("div", (spacing * (left + right)).sum(d), 2.0)


def cumulative_trapezoid(y, x=None, *, dx=None, dim=-1):
    """The running integral of y along `dim` by the trapezoidal rule (one element fewer
    than y there), at spacing `dx` or at the sample points `x`."""
    d, spacing = _trapezoid_spacing("cumulative_trapezoid", y, x, dx, dim)
    left, right = _trapezoid_sides(y, d)
    if isinstance(spacing, float):
        return _by_number("mul", left + right, spacing / 2.0).cumsum(d)
    return _by_number("div", (spacing * (left + right)).cumsum(d), 2.0)


# --- membership, bins and searches (no gradient) ------------------------------------------

def _array_of(x):
    return x._data if isinstance(x, Tensor) else np.asarray(x)


def isin(elements, test_elements, *, assume_unique=False, invert=False):
    """Whether each element of `elements` is in `test_elements` (either may be a number)."""
    return Tensor._wrap(np.isin(_array_of(elements), _array_of(test_elements),
                                assume_unique=assume_unique, invert=invert))


def bincount(input, weights=None, minlength=0):
    """The count of each value 0..max of a 1-D non-negative integer tensor (at least
    `minlength` of them), or the sum of `weights` at each."""
    if input.dtype.is_floating_point or input.dtype.name == "bool":
        raise NotImplementedError(f"\"bincount_cpu\" not implemented for "
                                  f"'{input.dtype.scalar_type}'")
    data = input._data
    if data.ndim != 1 or (data.size and data.min() < 0):
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    if weights is None:
        return Tensor._wrap(np.bincount(data, minlength=minlength).astype(np.int64))
    if weights.ndim != 1 or weights.shape[0] != data.size:
        raise RuntimeError("weights should be 1-d and have the same length as input")
    # (float32 weights give float32 counts; other dtypes, float64)
    dtype = np.float32 if weights.dtype.name == "float32" else np.float64
    return Tensor._wrap(np.bincount(data, weights._data.astype(np.float64),
                                    minlength=minlength).astype(dtype))


def _bounds(boundaries, values, right, sorter):
    """PyTorch's binary search of each row of `values` (R, m) in the sorted row of
    `boundaries` (R or 1, n), read through `sorter` if given: the first position whose value
    is >= (with `right`, >) the value. NaNs compare as PyTorch's comparisons do (a NaN
    value goes to the end), which NumPy's searchsorted, ordering NaNs last, does not."""
    n = boundaries.shape[1]
    lo = np.zeros(values.shape, np.int64)
    hi = np.full(values.shape, n, np.int64)
    active = lo < hi
    while active.any():
        mid = (lo + hi) >> 1
        picked = np.minimum(mid, n - 1)
        if sorter is not None:
            picked = np.take_along_axis(np.broadcast_to(sorter, (values.shape[0], n)), picked, 1)
        middle = np.take_along_axis(np.broadcast_to(boundaries, (values.shape[0], n)), picked, 1)
        with np.errstate(invalid="ignore"):
            after = ~(middle > values) if right else ~(middle >= values)
        lo = np.where(active & after, mid + 1, lo)
        hi = np.where(active & ~after, mid, hi)
        active = lo < hi
    return lo


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None,
                 out=None):
    """Where each value of `input` goes in the sorted last dimension of `sorted_sequence`
    (one sorted row per row of `input`, or one for all)."""
    if out is not None:
        raise TypeError("searchsorted(): nbgrad takes no out=")
    if side not in (None, "left", "right"):
        raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but got "
                           f"{side}")
    if side == "left" and right:
        raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, got "
                           "side of left while right was True")
    right = right or side == "right"
    boundaries = sorted_sequence._data
    values = _array_of(input)
    if values.ndim == 0 and boundaries.ndim != 1:
        raise RuntimeError(f"torch.searchsorted(): input value can be a scalar only when "
                           f"boundaries tensor dimension is 1, but we got boundaries tensor "
                           f"dim({boundaries.ndim}) and input value's dim(0) numel(1)")
    if boundaries.ndim != 1 and boundaries.shape[:-1] != values.shape[:-1]:
        raise RuntimeError(f"torch.searchsorted(): boundaries tensor should be 1 dimension or "
                           f"the first N-1 dimensions of boundaries tensor and input value tensor "
                           f"must match, but we got boundaries tensor {list(boundaries.shape)} "
                           f"and input value tensor {list(values.shape)}")
    order = None
    if sorter is not None:
        if sorter.dtype.name != "int64":
            raise RuntimeError(f"torch.searchsorted(): sorter must be a tensor of long dtype but "
                               f"got dtype {sorter.dtype.scalar_type}")
        if sorter.shape != sorted_sequence.shape:
            raise RuntimeError(f"torch.searchsorted(): boundary and sorter must have the same "
                               f"size, but got boundary tensor {list(boundaries.shape)}and got "
                               f"sorter tensor {list(sorter.shape)}")
        order = sorter._data.reshape(-1, boundaries.shape[-1]) if boundaries.size else None
        if order.size and (order.min() < 0 or order.max() >= boundaries.shape[-1]):
            raise RuntimeError("torch.searchsorted(): sorter index out of range")
    rows = 1 if boundaries.ndim == 1 else math.prod(boundaries.shape[:-1])
    n = boundaries.shape[-1]
    positions = _bounds(boundaries.reshape(rows, n), values.reshape(rows, values.size // rows),
                        right, order)
    return Tensor._wrap(positions.reshape(values.shape).astype(np.int32 if out_int32 else np.int64))


def bucketize(input, boundaries, *, out_int32=False, right=False, out=None):
    """The bucket of each value among the sorted 1-D `boundaries`: i where
    boundaries[i-1] < x <= boundaries[i] (with `right`, boundaries[i-1] <= x < boundaries[i])."""
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right, out=out)


def _unique_result(values, inverse, counts, return_inverse, return_counts):
    kept = [Tensor._wrap(values)]
    if return_inverse:
        kept.append(Tensor._wrap(inverse.astype(np.int64)))
    if return_counts:
        kept.append(Tensor._wrap(counts.astype(np.int64)))
    return kept[0] if len(kept) == 1 else tuple(kept)


def _rows_along(input, dim, name):
    """input's slices along `dim` as the rows of a 2-D array, and how to shape rows back."""
    if input.ndim == 0:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    d = _check_dim(dim, input.ndim)
    moved = np.moveaxis(input._data, d, 0)
    if moved.size == 0 and moved.shape[0]:
        raise RuntimeError(f"There are 0 sized dimensions, and they aren't selected, so {name} "
                           "cannot be applied")
    return moved.reshape(moved.shape[0], math.prod(moved.shape[1:])), lambda rows: np.moveaxis(
        rows.reshape(rows.shape[:1] + moved.shape[1:]), 0, d)


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements (or slices along `dim`), sorted, with where each element went
    and how often each occurs. (PyTorch's CPU kernels sort whatever `sorted` says, and so
    does this; NaNs are all distinct, as PyTorch's.)"""
    if dim is None:
        data = input._data.reshape(-1)
        values, inverse, counts = np.unique(data, return_inverse=True, return_counts=True,
                                            equal_nan=False)
        inverse = inverse.reshape(input.shape)
    else:
        rows, shaped = _rows_along(input, dim, "unique")
        values, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True, axis=0)
        values, inverse = shaped(values), inverse.reshape(-1)
    return _unique_result(values, inverse, counts, return_inverse, return_counts)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """The first element (or slice along `dim`) of each run of equal ones, with the run
    each element belongs to and the runs' lengths."""
    if dim is None:
        rows, shaped = input._data.reshape(-1, 1), lambda kept: kept.reshape(-1)
    else:
        rows, shaped = _rows_along(input, dim, "unique_consecutive")
    starts = np.ones(rows.shape[0], bool)
    starts[1:] = (rows[1:] != rows[:-1]).any(axis=1)  # (NaN != NaN: each NaN a run)
    inverse = np.cumsum(starts) - 1
    counts = np.diff(np.append(np.flatnonzero(starts), rows.shape[0]))
    return _unique_result(shaped(rows[starts]), inverse.reshape(input.shape if dim is None else -1),
                          counts, return_inverse, return_counts)


__all__ += ["count_nonzero", "nansum", "nanmean", "diff", "trapezoid", "trapz",
            "cumulative_trapezoid", "isin", "bincount", "searchsorted",
            "bucketize", "unique", "unique_consecutive"]


# --- order statistics -----------------------------------------------------------------------
# The index of each statistic is chosen among ties as PyTorch's kernels choose it (the
# `statistic_indices` primitive; ops.sorting), and the values are gathered through it, so
# that the gradient goes where PyTorch sends it.

_RETURN_TYPES.update({name: _return_type(name, ("values", "indices")) for name in (
    "kthvalue", "median", "nanmedian", "mode", "cummax", "cummin")})
_MinMax = _return_type("aminmax", ("min", "max"))


def _statistic_along(name, kind, input, dim, keepdim, grad_fn_name, k=0):
    if kind != MODE and input.dtype.name == "bool":
        raise NotImplementedError(f"\"{name}_cpu\" not implemented for 'Bool'")
    d = _check_dim(dim, input.ndim)
    indices = dispatch(PRIMITIVES["statistic_indices"], (input,),
                       {"dim": d, "kind": kind, "k": operator.index(k)})
    values = _gather_along(input, indices, d, grad_fn_name, keepdim)
    if not keepdim and input.ndim:
        indices = indices.squeeze(d)
    return _RETURN_TYPES[name]((values, indices))


def _statistic_of_all(name, kind, input):
    """median/nanmedian of every element: as PyTorch, the gradient is shared evenly by the
    elements equal to the result (the NaNs if it is NaN), which is the gradient of the max
    (of their mean if NaN: NaNs' max has a NaN gradient) of those elements.
    NOTE: reads the input's values, to find those elements: a deferred graph runs here."""
    if input.dtype.name == "bool":
        raise NotImplementedError(f"\"{name}_cpu\" not implemented for 'Bool'")
    flat = input.reshape(-1)
    if flat.numel() == 0:
        if flat.dtype.is_floating_point:
            return mean(flat)  # NaN, with an (empty) gradient as PyTorch's
        # PyTorch's NaN cast to the integer dtype, as x86 converts it: the lowest 32- or
        # 64-bit integer, of which a narrower type keeps the low bits, 0.
        dtype = _meta(input).dtype
        return Tensor._wrap(np.array(np.iinfo(dtype).min if dtype.itemsize >= 4 else 0, dtype))
    index = int(dispatch(PRIMITIVES["statistic_indices"], (flat,),
                         {"dim": 0, "kind": kind, "k": 0}).item())
    data = flat._data
    value = data[index]
    tied = data != data if value != value else data == value
    chosen = dispatch(PRIMITIVES["take"], (flat,), {"positions": np.flatnonzero(tied)})
    return mean(chosen) if value != value else amax(chosen)


def kthvalue(input, k, dim=-1, keepdim=False):
    """(values, indices) of the k-th smallest element along `dim` (NaN the largest)."""
    return _statistic_along("kthvalue", KTH, input, dim, keepdim, "KthvalueBackward0", k)


def median(input, dim=None, keepdim=False):
    """The lower median of every element, or (values, indices) along `dim`; NaN if there
    is one."""
    if dim is None:
        return _statistic_of_all("median", MEDIAN, input)
    return _statistic_along("median", MEDIAN, input, dim, keepdim, "MedianBackward1")


def nanmedian(input, dim=None, keepdim=False):
    """median of the values that are not NaN (NaN if all are)."""
    if dim is None:
        return _statistic_of_all("nanmedian", NANMEDIAN, input)
    return _statistic_along("nanmedian", NANMEDIAN, input, dim, keepdim, "NanmedianBackward1")


def mode(input, dim=-1, keepdim=False):
    """(values, indices) of the most frequent value along `dim` (the smallest of the most
    frequent, as PyTorch orders them)."""
    return _statistic_along("mode", MODE, input, dim, keepdim, "ModeBackward0")


def _cumulative_extreme(name, input, dim):
    """cummax/cummin: the running extreme along `dim` and where it was last reached (a
    later equal value or any NaN takes its place, as in PyTorch).
    NOTE: reads the input's values: a deferred graph runs here."""
    d = _check_dim(dim, input.ndim)
    data = input._data
    if data.ndim == 0:
        indices = np.zeros((), np.int64)
    else:
        running = (np.maximum if name == "cummax" else np.minimum).accumulate(data, axis=d)
        reached = (data == running) | (data != data)
        steps = np.arange(data.shape[d]).reshape((-1,) + (1,) * (data.ndim - d - 1))
        indices = np.maximum.accumulate(np.where(reached, steps, 0), axis=d).astype(np.int64)
    values = _gather_along(input, Tensor._wrap(indices), d, name.capitalize() + "Backward0")
    return _RETURN_TYPES[name]((values, Tensor._wrap(indices)))


def cummax(input, dim):
    return _cumulative_extreme("cummax", input, dim)


def cummin(input, dim):
    return _cumulative_extreme("cummin", input, dim)


def logcumsumexp(input, dim):
    """log(cumsum(exp(input))) along `dim`, computed stably (a running log-sum-exp)."""
    return dispatch(PRIMITIVES["logcumsumexp"], (input,), {"dim": _check_dim(dim, input.ndim)})


def msort(input):
    return sort(input, 0).values


def aminmax(input, *, dim=None, keepdim=False):
    """(min, max) over `dim` (every dim by default); ties share the gradient evenly."""
    if dim is None:
        if input.numel() == 0:
            raise RuntimeError("aminmax(): cannot compute aminmax over an empty dimension as the "
                               "operation has no identity.")
        dims = tuple(range(input.ndim))
    else:
        d = _check_dim(dim, input.ndim)
        if input.ndim and input.shape[d] == 0 and input.numel() == 0 and math.prod(
                n for k, n in enumerate(input.shape) if k != d):
            raise IndexError(f"aminmax: Expected reduction dim {d} to have non-zero size.")
        dims = d
    return _MinMax((_reduce("amin", input, dims, keepdim, "AminmaxBackward0"),
                    _reduce("amax", input, dims, keepdim, "AminmaxBackward0")))


_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan):
    """PyTorch's quantile (a composite too): each row sorted, ranks q * (n - 1) (of the
    non-NaN values for nanquantile; the last, NaN, if the row has one for quantile),
    adjusted by `interpolation`, the values at the ranks below and above gathered and
    interpolated. (PyTorch's messages say quantile() for nanquantile too.)"""
    name = "quantile"
    if input.dtype.name not in ("float32", "float64"):
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    if isinstance(q, Tensor):
        if q.ndim > 1:
            raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
        if q.dtype != input.dtype:
            raise RuntimeError(f"{name}() q tensor must be same dtype as the input tensor")
        if q.numel() and not ((q._data >= 0) & (q._data <= 1)).all():
            raise RuntimeError(f"{name}() q values must be in the range [0, 1]")
        quantiles = q.detach().reshape(-1)
    else:
        if not 0 <= q <= 1:
            raise RuntimeError(f"{name}() q must be in the range [0, 1] but got {q}")
        quantiles = Tensor._wrap(np.array([q], _meta(input).dtype))
    if input.numel() == 0:
        raise RuntimeError(f"{name}() input tensor must be non-empty")
    if interpolation not in _INTERPOLATIONS:
        raise RuntimeError(f"{name}() interpolation must be one of linear, lower, higher, "
                           f"midpoint or nearest, but got {interpolation}")
    d = None if dim is None else _check_dim(dim, input.ndim)
    rows = input.reshape(-1) if d is None else input.movedim(d, -1) if input.ndim else \
        input.reshape(1)
    ordered = sort(rows, -1).values
    nan = isnan(ordered)
    if ignore_nan:
        ranks = quantiles * (sum(logical_not(nan), -1, keepdim=True) - 1)
        ranks = masked_fill(ranks, ranks < 0, 0)
    else:
        last = ordered.shape[-1] - 1
        ranks, has_nan = broadcast_tensors(quantiles * last, any(nan, -1, keepdim=True))
        ranks = masked_fill(ranks, has_nan, last)
    if interpolation in ("lower", "higher", "nearest"):
        ranks = {"lower": floor, "higher": ceil, "nearest": round}[interpolation](ranks)
    below = ranks.long()
    result = ordered.gather(-1, below)
    if interpolation in ("linear", "midpoint"):
        weights = full_like(ranks, 0.5) if interpolation == "midpoint" else ranks - below
        result = result.lerp(ordered.gather(-1, ceil(ranks).long()), weights)
    result = result.movedim(-1, 0)  # the quantiles first, then the rows' dims
    if keepdim:
        kept = [1] * input.ndim if d is None else list(result.shape[1:d + 1]) + [1] + list(
            result.shape[d + 1:])
        result = result.reshape([result.shape[0]] + kept)
    return result[0] if not isinstance(q, Tensor) else result.reshape(
        tuple(q.shape) + result.shape[1:])


def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    return _quantile(input, q, dim, keepdim, interpolation, False)


def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    return _quantile(input, q, dim, keepdim, interpolation, True)


__all__ += ["kthvalue", "median", "nanmedian", "mode", "cummax", "cummin", "logcumsumexp", "msort",
            "aminmax", "quantile", "nanquantile"]
