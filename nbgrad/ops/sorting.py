"""Sorting along one dimension: the indices of `sort` (and `argsort`), of `topk`, and of
the order statistics `kthvalue`, `median`, `nanmedian` and `mode`.

The primitives give the indices only (integers, no gradient); the values are then gathered
through those indices (`take`), whose VJP scatters the gradient back, under PyTorch's grad_fn
names (SortBackward0, TopkBackward0), as max(dim) does.

They are a family of their own, not row programs (`reduction.ROW_KERNELS`), because ties
must come out in PyTorch's order, and that order is the one of the C++ standard library
algorithms PyTorch's CPU kernels call: `std::sort` (introsort: not stable beyond 16
elements) for `sort(stable=False)`, `std::nth_element` then `std::sort` of the first k - 1,
or `std::partial_sort` when k * 64 <= n, for `topk`. Those are ported here from libstdc++
(bits/stl_algo.h, bits/stl_heap.h) step by step, with PyTorch's comparators (NaN is the
largest value). A stable sort has one answer, a merge sort's.
"""
import math

import numba
import numpy as np

from .._core.dtype import is_half
from .primitive import Primitive, register
from .reduction import as_rows

# NOTE: a call with a constant argument (`f(v, 0)`) compiles a specialization of the callee
# for that literal value, and of everything it calls with it: a position 0 is passed as
# `np.int64(0)` (typed, not a literal), which halves the compile time of these kernels.
_jit = numba.njit(cache=True)


# libstdc++'s _S_threshold: introsort leaves ranges of this many elements to insertion sort.
_THRESHOLD = 16


# `_before`'s orders beside True (descending) and False (ascending): `a < b` alone, the
# comparator of PyTorch's mode kernel, under which NaN is unordered.
PLAIN_LESS = np.int64(2)


@_jit
def _before(a, b, descending):
    """PyTorch's comparators (KeyValueCompAsc/Desc, topk's lambdas): NaN is the largest; or
    with `descending` PLAIN_LESS, `a < b`."""
    if descending == PLAIN_LESS:
        return a < b
    if descending:
        return (a != a and b == b) or a > b
    return (a == a and b != b) or a < b


@_jit
def _swap(v, ix, i, j):
    v[i], v[j] = v[j], v[i]
    ix[i], ix[j] = ix[j], ix[i]


@_jit
def _floor_log2(n):
    result = 0
    while n > 1:
        n >>= 1
        result += 1
    return result


@_jit
def _unguarded_linear_insert(v, ix, last, descending):
    value, index = v[last], ix[last]
    previous = last - 1
    while _before(value, v[previous], descending):
        v[last], ix[last] = v[previous], ix[previous]
        last = previous
        previous -= 1
    v[last], ix[last] = value, index


@_jit
def _insertion_sort(v, ix, first, last, descending):
    if first == last:
        return
    for i in range(first + 1, last):
        if _before(v[i], v[first], descending):
            value, index = v[i], ix[i]
            for j in range(i, first, -1):
                v[j], ix[j] = v[j - 1], ix[j - 1]
            v[first], ix[first] = value, index
        else:
            _unguarded_linear_insert(v, ix, i, descending)


@_jit
def _move_median_to_first(v, ix, result, a, b, c, descending):
    if _before(v[a], v[b], descending):
        if _before(v[b], v[c], descending):
            _swap(v, ix, result, b)
        elif _before(v[a], v[c], descending):
            _swap(v, ix, result, c)
        else:
            _swap(v, ix, result, a)
    elif _before(v[a], v[c], descending):
        _swap(v, ix, result, a)
    elif _before(v[b], v[c], descending):
        _swap(v, ix, result, c)
    else:
        _swap(v, ix, result, b)


@_jit
def _partition_around_first(v, ix, first, last, descending):
    """libstdc++'s __unguarded_partition_pivot: the median of three moved to `first`, then
    the range after it partitioned around it; returns the cut."""
    _move_median_to_first(v, ix, first, first + 1, first + (last - first) // 2, last - 1,
                          descending)
    pivot = first
    first += 1
    while True:
        while _before(v[first], v[pivot], descending):
            first += 1
        last -= 1
        while _before(v[pivot], v[last], descending):
            last -= 1
        if not first < last:
            return first
        _swap(v, ix, first, last)
        first += 1


@_jit
def _adjust_heap(v, ix, first, hole, length, value, index, descending):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if _before(v[first + child], v[first + child - 1], descending):
            child -= 1
        v[first + hole], ix[first + hole] = v[first + child], ix[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        v[first + hole], ix[first + hole] = v[first + child - 1], ix[first + child - 1]
        hole = child - 1
    # __push_heap
    parent = (hole - 1) // 2
    while hole > top and _before(v[first + parent], value, descending):
        v[first + hole], ix[first + hole] = v[first + parent], ix[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    v[first + hole], ix[first + hole] = value, index


@_jit
def _pop_heap(v, ix, first, last, result, descending):
    value, index = v[result], ix[result]
    v[result], ix[result] = v[first], ix[first]
    _adjust_heap(v, ix, first, np.int64(0), last - first, value, index, descending)


@_jit
def _heap_select(v, ix, first, middle, last, descending):
    length = middle - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(v, ix, first, parent, length, v[first + parent], ix[first + parent],
                         descending)
            if parent == 0:
                break
            parent -= 1
    for i in range(middle, last):
        if _before(v[i], v[first], descending):
            _pop_heap(v, ix, first, middle, i, descending)


@_jit
def _partial_sort(v, ix, first, middle, last, descending):
    """std::partial_sort: the first `middle - first` elements in order."""
    _heap_select(v, ix, first, middle, last, descending)
    while middle - first > 1:
        middle -= 1
        _pop_heap(v, ix, first, middle, middle, descending)


@_jit
def _std_sort(v, ix, first, last, descending):
    """std::sort: introsort, then a final insertion sort."""
    if first == last:
        return
    # libstdc++ recurses on the right part and loops on the left; the parts are disjoint, so
    # a stack of pending ranges (lo, hi, depth) gives the same result. Its depths decrease
    # from bottom to top, so it never holds more than depth + 1 ranges.
    depth = 2 * _floor_log2(last - first)
    stack = np.empty((depth + 1, 3), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = first, last, depth
    size = 1
    while size:
        size -= 1
        lo, hi, depth = stack[size, 0], stack[size, 1], stack[size, 2]
        while hi - lo > _THRESHOLD:
            if depth == 0:
                _partial_sort(v, ix, lo, hi, hi, descending)
                break
            depth -= 1
            cut = _partition_around_first(v, ix, lo, hi, descending)
            stack[size, 0], stack[size, 1], stack[size, 2] = cut, hi, depth
            size += 1
            hi = cut
    if last - first > _THRESHOLD:
        _insertion_sort(v, ix, first, first + _THRESHOLD, descending)
        for i in range(first + _THRESHOLD, last):
            _unguarded_linear_insert(v, ix, i, descending)
    else:
        _insertion_sort(v, ix, first, last, descending)


@_jit
def _nth_element(v, ix, first, nth, last, descending):
    if first == last or nth == last:
        return
    depth = 2 * _floor_log2(last - first)
    while last - first > 3:
        if depth == 0:
            _heap_select(v, ix, first, nth + 1, last, descending)
            _swap(v, ix, first, nth)
            return
        depth -= 1
        cut = _partition_around_first(v, ix, first, last, descending)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(v, ix, first, last, descending)


@_jit
def _stable_sort(v, ix, descending):
    """A bottom-up merge sort: equal values keep their order (std::stable_sort's result).
    Returns the sorted indices (the buffers alternate, so not necessarily `ix`)."""
    n = v.shape[0]
    v_out, ix_out = np.empty_like(v), np.empty_like(ix)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            middle, hi = min(lo + width, n), min(lo + 2 * width, n)
            left, right = lo, middle
            for out in range(lo, hi):
                # from the right part only if strictly before: ties stay in order
                if right < hi and (left >= middle or _before(v[right], v[left], descending)):
                    v_out[out], ix_out[out] = v[right], ix[right]
                    right += 1
                else:
                    v_out[out], ix_out[out] = v[left], ix[left]
                    left += 1
        v, v_out = v_out, v
        ix, ix_out = ix_out, ix
        width *= 2
    return ix


@_jit
def order_kernel(x3, indices3, descending, stable, k, select, ordered):
    """For each row x3[o, :, i], the indices PyTorch's CPU kernels give: of the sorted row
    (sort: std::sort, or a stable sort), or with `select` of its k largest (`descending`) or
    smallest (topk: std::partial_sort if k * 64 <= n, else std::nth_element, then std::sort
    of the first k - 1 if `ordered`). NOTE: one kernel for both, as each entry point compiles
    all the algorithms it calls again (seconds)."""
    n = x3.shape[1]
    for o in range(x3.shape[0]):
        for i in range(x3.shape[2]):
            row = x3[o, :, i].copy()
            index = np.arange(n)
            start = np.int64(0)
            if not select:
                if stable:
                    index = _stable_sort(row, index, descending)
                else:
                    _std_sort(row, index, start, n, descending)
            elif k * 64 <= n:
                _partial_sort(row, index, start, k, n, descending)
            else:
                _nth_element(row, index, start, k - 1, n, descending)
                if ordered:
                    _std_sort(row, index, start, k - 1, descending)
            for j in range(indices3.shape[1]):  # (not a slice assignment: see embedding_kernel)
                indices3[o, j, i] = index[j]


# Order statistics along a dim: the index of each row's k-th smallest (kthvalue), median
# (median, nanmedian) or most frequent (mode) value, chosen among ties as PyTorch's CPU
# kernels choose (Sorting.cpp), which decides where the gradient goes.
KTH, MEDIAN, NANMEDIAN, MODE = range(4)


@_jit
def _greater_or_nan(a, b):
    return (a != a and b == b) or a > b


@_jit
def _quick_select(v, ix, k):
    """PyTorch's quick_select_template (Sedgewick's partition, median-of-three pivot): the
    k-th smallest (NaN largest) of v moved to v[k], with its index to ix[k]."""
    lo, hi = np.int64(0), v.shape[0] - 1
    while True:
        if hi <= lo:
            return
        if hi == lo + 1:
            if _greater_or_nan(v[lo], v[hi]):
                _swap(v, ix, lo, hi)
            return
        _swap(v, ix, (lo + hi) >> 1, lo + 1)
        if _greater_or_nan(v[lo + 1], v[hi]):
            _swap(v, ix, lo + 1, hi)
        if _greater_or_nan(v[lo], v[hi]):
            _swap(v, ix, lo, hi)
        if _greater_or_nan(v[lo + 1], v[lo]):
            _swap(v, ix, lo + 1, lo)
        i, j = lo + 1, hi
        pivot = v[lo]
        while True:
            i += 1
            while _greater_or_nan(pivot, v[i]):
                i += 1
            j -= 1
            while _greater_or_nan(v[j], pivot):
                j -= 1
            if j < i:
                break
            _swap(v, ix, i, j)
        _swap(v, ix, lo, j)
        if j <= k:
            lo = i
        if j >= k:
            hi = j - 1


@_jit
def _statistic_index(row, kind, k):
    """The index in `row` of its statistic `kind` (KTH: the k-th smallest, 1-based)."""
    n = row.shape[0]
    v, ix = row.copy(), np.arange(n)
    start = np.int64(0)
    if kind == KTH:
        _quick_select(v, ix, k - 1)
        return ix[k - 1]
    if kind == MODE:
        # std::sort by `<`, then of the runs of equal values the first longest, and the
        # index of its last element
        _std_sort(v, ix, start, n, PLAIN_LESS)
        best, best_count, count = np.int64(0), np.int64(0), np.int64(0)
        for i in range(n):
            count += 1
            if i == n - 1 or v[i] != v[i + 1]:
                if count > best_count:
                    best, best_count = ix[i], count
                count = 0
        return best
    nans = np.int64(0)
    for i in range(n):
        if row[i] != row[i]:
            if kind == MEDIAN:  # the first NaN is the median
                return i
            nans += 1
    if nans == n:  # std::nth_element of all-equivalent NaNs, position 0
        _nth_element(v, ix, start, start, n, False)
        return ix[0]
    # nth_element ordering by (value, index), NaNs last: a stable sort's position
    return _stable_sort(v, ix, False)[(n - nans - 1) // 2]


@_jit
def statistic_kernel(x3, indices3, kind, k):
    for o in range(x3.shape[0]):
        for i in range(x3.shape[2]):
            indices3[o, 0, i] = _statistic_index(x3[o, :, i], kind, k)


# ---------------------------------------------------------------------------------------
# Primitives (no gradient: they give indices).

def _rows(x, dim):
    return as_rows(x, (dim,) if x.ndim else ())[0]


def _keys(x, dim):
    """x's rows as the kernels take them: C-contiguous, float64 (floats) or int64 (integers
    and bools), which keeps every order and tie. NOTE: the ported algorithms are large, and
    each layout and dtype is a compile of several seconds; this keeps it to two."""
    # (bfloat16's NumPy kind is "V": is_half, or its values would be cast to integers)
    floating = x.dtype.kind == "f" or is_half(x.dtype)
    return np.ascontiguousarray(_rows(x, dim), np.float64 if floating else np.int64)


def _argsort_infer(x, dim, descending, stable):
    return x.shape, np.dtype(np.int64)


def _argsort_forward(x, dim, descending, stable):
    indices = np.empty(x.shape, np.int64)
    if indices.size:
        order_kernel(_keys(x, dim), _rows(indices, dim), descending, stable, 0, False, False)
    return indices


def _topk_shape(x, dim, k):
    shape = list(x.shape)
    if x.ndim:  # (a 0-d input gives its element, for k = 0 too, as PyTorch)
        shape[dim] = k
    return tuple(shape)


def _topk_infer(x, dim, k, largest, ordered):
    size = x.shape[dim] if x.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError("selected index k out of range")
    return _topk_shape(x, dim, k), np.dtype(np.int64)


def _topk_forward(x, dim, k, largest, ordered):
    _topk_infer(x, dim, k, largest, ordered)
    if not x.ndim:
        return np.zeros((), np.int64)
    indices = np.empty(_topk_shape(x, dim, k), np.int64)
    if indices.size:
        order_kernel(_keys(x, dim), _rows(indices, dim), largest, False, k, True, ordered)
    return indices


_STATISTIC_NAMES = {KTH: "kthvalue", MEDIAN: "median", NANMEDIAN: "nanmedian", MODE: "mode"}


def _statistic_infer(x, dim, kind, k):
    """The index of each row's statistic along `dim`, which is kept (of size 1)."""
    size = x.shape[dim] if x.ndim else 1
    if size == 0 and math.prod(n for d, n in enumerate(x.shape) if d != dim):
        raise IndexError(f"{_STATISTIC_NAMES[kind]}(): Expected reduction dim {dim} to have "
                         "non-zero size.")
    if kind == KTH and not 1 <= k <= size:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {dim}")
    return _topk_shape(x, dim, 1), np.dtype(np.int64)


def _statistic_forward(x, dim, kind, k):
    shape, _ = _statistic_infer(x, dim, kind, k)
    indices = np.zeros(shape, np.int64)
    if x.ndim and indices.size:
        statistic_kernel(_keys(x, dim), _rows(indices, dim), kind, k)
    return indices


PRIMS = {
    "argsort": register(Primitive("argsort", None, _argsort_infer, _argsort_forward)),
    "topk_indices": register(Primitive("topk_indices", None, _topk_infer, _topk_forward)),
    "statistic_indices": register(Primitive("statistic_indices", None, _statistic_infer,
                                            _statistic_forward)),
}
