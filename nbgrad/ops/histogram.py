"""Histograms: `histc` and `histogram` (its counts and its bin edges).

All elements fall into bins found by one kernel, ported from PyTorch's CPU histogram kernel
(aten/src/ATen/native/cpu/HistogramKernel.cpp) so that an element on or near an edge lands in
PyTorch's bin: with evenly spaced edges the bin is computed by a division (`histc`), and then
checked against the neighbouring edges (`histogram` with a number of bins); with given edges
it is found by binary search. The edges themselves are PyTorch's linspace, computed in the
input's dtype as it does (or a copy of the given ones: like the counts, they are a result
of the op). The range is chosen from the data (as PyTorch does), so these are
primitives. Neither has a gradient: `histc`'s result does not require one, and the results
of `histogram` do but raise in backward, as in PyTorch (grad_fn "NotImplemented").
"""
from fractions import Fraction

import numba
import numpy as np

from .._core.dtype import C_TYPE_NAMES
from .primitive import TORCH_TYPE_NAMES, Primitive, register

# The C++ names of the dtypes, as some of PyTorch's histogram messages spell them.
# How an element's bin is found (PyTorch's BIN_SELECTION_ALGORITHM).
BINARY_SEARCH, LINEAR_INTERPOLATION, LINEAR_INTERPOLATION_WITH_LOCAL_SEARCH = 0, 1, 2


@numba.njit(cache=True)
def _upper_bound(edges, first, last, value):
    """The first position in edges[first:last] whose edge is greater than `value`."""
    while first < last:
        middle = (first + last) // 2
        if value < edges[middle]:
            last = middle
        else:
            first = middle + 1
    return first


@numba.njit(cache=True)
def histogram_kernel(x, edges, weight, use_weight, algorithm, bin_count, hist):
    """Add each element of 1-D `x` (its weight, or 1) to its bin of `hist`; elements outside
    [edges[0], edges[-1]] are skipped. `bin_count` is the number of bins typed like `x`, so
    the division runs in the input's precision, as PyTorch's does."""
    edge_count = edges.shape[0]
    left, right = edges[0], edges[edge_count - 1]
    for i in range(x.shape[0]):
        value = x[i]
        if not (value >= left and value <= right):
            continue
        if algorithm == BINARY_SEARCH:
            position = _upper_bound(edges, np.int64(0), edge_count, value) - 1
        else:
            position = int((value - left) * bin_count / (right - left))
            if algorithm == LINEAR_INTERPOLATION_WITH_LOCAL_SEARCH:
                position = _upper_bound(edges, max(0, position - 1),
                                        min(position + 2, edge_count), value) - 1
        if position == edge_count - 1:  # the last bin holds its right edge
            position -= 1
        hist[position] += weight[i] if use_weight else 1


def linspace(start, end, steps, dtype):
    """PyTorch's CPU linspace in `dtype`, value for value: the first half counted up from
    `start`, the second half down from `end`, each value rounded once, as its compiled kernel
    computes it (a fused multiply-add). NOTE: an element equal to an edge lands in
    PyTorch's bin only with PyTorch's edges to the last bit."""
    kind = np.dtype(dtype).type
    start, end = kind(start), kind(end)
    halfway = steps // 2
    # A range wider than the largest value has an infinite step (and NaN edges), as in PyTorch.
    with np.errstate(over="ignore", invalid="ignore"):
        step = (end - start) / kind(steps - 1)
        if not np.isfinite(step):
            return np.array([start + step * kind(i) if i < halfway else
                             end - step * kind(steps - 1 - i) for i in range(steps)], dtype)
    exact_start, exact_end, exact_step = (Fraction(float(v)) for v in (start, end, step))
    return np.array([_rounded(exact_start + exact_step * i if i < halfway else
                              exact_end - exact_step * (steps - 1 - i), kind)
                     for i in range(steps)], dtype)


def _rounded(value, kind):
    """The exact `value` (a Fraction) rounded once to `kind`: to the nearest, ties to even.
    (float() rounds to float64 correctly; rounding that to float32 could round twice.)"""
    near = kind(float(value))
    bits = np.dtype(f"u{np.dtype(kind).itemsize}")  # the last bit says even or odd
    return min((np.nextafter(near, kind(-np.inf)), near, np.nextafter(near, kind(np.inf))),
               key=lambda c: (abs(Fraction(float(c)) - value), int(c.view(bits)) & 1))


def _require_float(kernel_name, dtype):
    if dtype.kind != "f":
        raise NotImplementedError(f'"{kernel_name}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES.get(dtype.name, dtype.name)}'")


def _require_bins(bins):
    if bins <= 0:
        raise RuntimeError(f"torch.histogram(): bins must be > 0, but got {bins} for dimension 0")


def _count(x, edges, weight, algorithm):
    hist = np.zeros(edges.shape[0] - 1, x.dtype)
    flat = np.ascontiguousarray(x).reshape(-1)
    use_weight = weight is not None
    weight = np.ascontiguousarray(weight).reshape(-1) if use_weight else flat
    histogram_kernel(flat, edges, weight, use_weight, algorithm,
                     x.dtype.type(edges.shape[0] - 1), hist)
    return hist


def _extrema(x):
    return (float(x.min()), float(x.max())) if x.size else None


# --- histc ----------------------------------------------------------------------------

def _histc_infer(x, bins, min, max):
    _require_float("histogram_cpu", x.dtype)
    _require_bins(bins)
    return (bins,), x.dtype


def _histc_forward(x, bins, min, max):
    _histc_infer(x, bins, min, max)
    left, right = float(min), float(max)
    if left == right and x.size:  # min == max (both 0 by default): the data's range
        left, right = _extrema(x)
    if left == right:
        left, right = left - 1, right + 1
    if not (np.isfinite(left) and np.isfinite(right)):
        raise RuntimeError(f"torch.histc: range of [{left:g}, {right:g}] is not finite")
    if not left < right:
        raise RuntimeError("torch.histc: max must be larger than min")
    return _count(x, linspace(left, right, bins + 1, x.dtype), None, LINEAR_INTERPOLATION)


# --- histogram: the bin edges, then the counts ------------------------------------------

def _not_differentiable(node, g, saved=None):
    """PyTorch's error, with create_graph=True too (it is also the differentiable VJP)."""
    raise RuntimeError("derivative for aten::histogram is not implemented")


def _edges_infer(x, *given, bins, range):
    """The shape of the bin edges: `bins` + 1 evenly spaced, or a copy of the `given` ones."""
    _require_float("histogramdd", x.dtype)
    if given:
        return given[0].shape, given[0].dtype
    _require_bins(bins)
    return (bins + 1,), x.dtype


def _edges_forward(x, *given, bins, range):
    _edges_infer(x, *given, bins=bins, range=range)
    if given:
        return given[0].copy()
    left, right = range if range is not None else _extrema(x) or (0.0, 1.0)
    if not (np.isfinite(left) and np.isfinite(right)):
        raise RuntimeError(f"torch.histogramdd: dimension 0's range [{left:g}, {right:g}] is "
                           "not finite")
    if left > right:
        raise RuntimeError(f"torch.histogramdd: min should not exceed max, but got min {left:g} "
                           f"max {right:g} for dimension 0")
    if left == right:  # as NumPy: an empty range grows to one unit
        left, right = left - 0.5, right + 0.5
    return linspace(left, right, bins + 1, x.dtype)


def _histogram_infer(x, edges, *weight, density, algorithm):
    _require_float("histogramdd", x.dtype)
    if edges.dtype != x.dtype:
        raise RuntimeError(
            "torch.histogramdd: input tensor and bins tensors should have the same dtype, but "
            f"got input with dtype {TORCH_TYPE_NAMES[x.dtype.name].lower()} and bins for "
            f"dimension 0 with dtype {TORCH_TYPE_NAMES[edges.dtype.name].lower()}")
    if len(edges.shape) != 1:
        raise RuntimeError("torch.histogramdd: bins tensor should have one dimension, but got "
                           f"{len(edges.shape)} dimensions in the bins tensor for dimension 0")
    if edges.shape[0] < 2:
        _require_bins(edges.shape[0] - 1)
    if weight and weight[0].dtype != x.dtype:
        raise RuntimeError(
            "torch.histogramdd: if weight tensor is provided, input tensor and weight tensor "
            f"should have the same dtype, but got input({C_TYPE_NAMES[x.dtype.name]}), and "
            f"weight({C_TYPE_NAMES[weight[0].dtype.name]})")
    if weight and tuple(weight[0].shape) != tuple(x.shape):
        raise RuntimeError("torch.histogram: if weight tensor is provided it should have the "
                           f"same shape as the input tensor, but got input with shape "
                           f"{list(x.shape)} and weight with shape {list(weight[0].shape)}")
    return (edges.shape[0] - 1,), x.dtype


def _histogram_forward(x, edges, *weight, density, algorithm):
    _histogram_infer(x, edges, *weight, density=density, algorithm=algorithm)
    hist = _count(x, edges, weight[0] if weight else None, algorithm)
    if density:
        hist = hist / hist.sum() / np.diff(edges)
    return hist


PRIMS = {
    "histc": register(Primitive("histc", None, _histc_infer, _histc_forward)),
    "histogram_bin_edges": register(Primitive(
        "histogram_bin_edges", "NotImplemented", _edges_infer, _edges_forward,
        _not_differentiable, differentiable=(0, 1), differentiable_vjp=_not_differentiable)),
    "histogram": register(Primitive("histogram", "NotImplemented", _histogram_infer,
                                    _histogram_forward, _not_differentiable,
                                    differentiable=(0, 1, 2),
                                    differentiable_vjp=_not_differentiable)),
}
