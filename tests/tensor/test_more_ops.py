"""The shape, linear-algebra, indexing and order-statistics functions built from other
functions (`diagonal`, `addmm`, `index_add`, `median`, `unique`, ...): values, dtypes, node
names and gradients against torch, in float32 and float64 (and integer inputs where torch
takes them); edge inputs (empty, 0-d, NaN, ties); errors with torch's types and messages.

A case is `make(L, *leaves)` on the arrays given: float arrays become leaves that require
grad (in the case's dtype), others plain tensors; the outputs (a tensor or a nest of them)
are compared, then `backward` of a weighted sum of the floating ones, and the leaves'
gradients. Ties get their gradient where torch's choice of index puts it.
"""
import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, grad_fn_name
from nbgrad.fuse import deferred
from test_factories import assert_same_outcome

RNG = np.random.default_rng(0)


class _Plain:
    """A float input that is no leaf requiring grad (a tensor of the case's dtype)."""

    def __init__(self, array):
        self.array = array


def _randn(*shape):
    return RNG.standard_normal(shape)


def _ints(*shape, high=5):
    return RNG.integers(0, high, shape)


M34, M43, V3, V4 = _randn(3, 4), _randn(4, 3), _randn(3), _randn(4)
T234 = _randn(2, 3, 4)
# Ties among 20 elements (beyond 16, PyTorch's std::sort reorders them), NaN, inf and -inf.
TIES_NO_NAN = np.random.default_rng(14).integers(0, 3, (3, 20)).astype(np.float64)
TIES_NO_NAN[1, [0, 7]] = [np.inf, -np.inf]
TIES = TIES_NO_NAN.copy()
TIES[0, [3, 11]] = np.nan

CASES = {
    # shape and views
    "broadcast_tensors": (lambda L, a, b, c: L.broadcast_tensors(a, b, c), [M34, V4, _randn(1, 1)]),
    "reshape_as": (lambda L, a, b: a.reshape_as(b), [M34, M43]),
    "ravel_strided": (lambda L, a: L.ravel(a.t()), [M34]),
    "ravel_method_0d": (lambda L, a: a.ravel(), [np.array(1.5)]),
    "atleast_1d": (lambda L, a, b: L.atleast_1d(a, b), [np.array(2.0), V3]),
    "atleast_2d": (lambda L, a, b, c: L.atleast_2d([a, b, c]), [np.array(2.0), V3, M34]),
    "atleast_3d": (lambda L, a, b, c, d: L.atleast_3d(a, b, c, d),
                   [np.array(2.0), V3, M34, T234]),
    "atleast_3d_one": (lambda L, a: L.atleast_3d(a), [V3]),
    "fliplr_flipud": (lambda L, a: (L.fliplr(a), a.flipud()), [T234]),
    "rot90": (lambda L, a: [L.rot90(a, k, dims) for k, dims in
                            ((1, (0, 1)), (2, (1, 2)), (-1, (2, 0)), (0, (0, 1)), (5, [1, -1]))],
              [T234]),
    "tensor_split_sections": (lambda L, a: L.tensor_split(a, 3, dim=1), [_randn(2, 7)]),
    "tensor_split_indices": (lambda L, a: a.tensor_split([1, -2, 9, 3], 1), [_randn(2, 7)]),
    "tensor_split_tensor": (lambda L, a: L.tensor_split(a, L.tensor([2, 5])), [_randn(7)]),
    "tensor_split_tensor_0d": (lambda L, a: L.tensor_split(a, L.tensor(3)), [_randn(7)]),
    "hvd_split": (lambda L, a: (L.hsplit(a, 2), a.vsplit([1]), L.dsplit(a, [1, 3])), [_randn(2, 4, 4)]),
    "hsplit_1d": (lambda L, a: L.hsplit(a, 2), [V4]),
    "diagonal": (lambda L, a: [L.diagonal(a, o, d1, d2) for o, d1, d2 in
                               ((0, 0, 1), (1, 0, 2), (-1, 2, 0), (2, -1, 1), (9, 0, 1))],
                 [T234]),
    "diagonal_method_grad_of_view_write": (lambda L, a: _diagonal_write(a), [M34]),
    "unfold_grad_of_view_write": (lambda L, a: _unfold_write(a), [M34]),
    "diag_of_vector": (lambda L, a: [L.diag(a), L.diag(a, 1), a.diag(-2)], [V3]),
    "diag_of_matrix": (lambda L, a: [L.diag(a), L.diag(a, 2), a.diag(-1), L.diag(a, -5)], [M34]),
    "diag_int": (lambda L, a: (L.diag(a), L.diag(a.reshape(2, 2))), [np.arange(4)]),
    "diag_embed": (lambda L, a: [L.diag_embed(a), L.diag_embed(a, 1, 0, 2),
                                 a.diag_embed(-2, 2, -3)], [M34]),
    "trace": (lambda L, a: (L.trace(a), a[:, :3].trace()), [M34]),
    "trace_int": (lambda L, a: L.trace(a), [_ints(3, 3).astype(np.int32)]),
    "tri_indices": (lambda L: [L.tril_indices(3, 4), L.tril_indices(3, 4, 1),
                               L.triu_indices(4, 3, -1), L.triu_indices(3, 3, dtype=L.int32),
                               L.tril_indices(0, 3), L.triu_indices(3, 4, -5)], []),
    # linear algebra
    "addmm": (lambda L, c, a, b: (L.addmm(c, a, b), c.addmm(a, b, beta=0.5, alpha=-2),
                                  L.addmm(c[0], a, b, alpha=0)), [_randn(3, 5), M34, _randn(4, 5)]),
    "addmm_beta_0_ignores_nan": (lambda L, c, a, b: L.addmm(c, a, b, beta=0),
                                 [np.full(5, np.nan), M34, _randn(4, 5)]),
    "addmm_int": (lambda L, c, a, b: (L.addmm(c, a, b), L.addmm(c, a, b, beta=2, alpha=0.5)),
                  [_ints(5), _ints(3, 4), _ints(4, 5)]),
    "addmv": (lambda L, c, a, b: (L.addmv(c, a, b), c.addmv(a, b, beta=0, alpha=1.5),
                                  L.addmv(c[:1], a, b, beta=2)), [V3, M34, V4]),
    "addr": (lambda L, c, a, b: (L.addr(c, a, b), c.addr(a, b, beta=-1, alpha=3),
                                 L.addr(c[0], a, b, beta=0)), [M34, V3, V4]),
    "addr_int_and_promotion": (lambda L, c, a, b, f, g: (L.addr(c, a, b, beta=2, alpha=3),
                                                         L.addr(c, f, g)),
                               [_ints(3, 4), _ints(3), _ints(4), V3, V4]),
    "addr_bool": (lambda L, c, a, b: [L.addr(c, a, b, beta=be, alpha=al) for be, al in
                                      ((True, True), (False, True), (True, False))],
                  [_ints(3, 4, high=2).astype(bool), np.array([True, False, True]),
                   np.array([False, True, True, False])]),
    "baddbmm": (lambda L, c, a, b: (L.baddbmm(c, a, b), c[0].baddbmm(a, b, beta=0.5, alpha=2)),
                [_randn(2, 3, 5), T234, _randn(2, 4, 5)]),
    "addbmm": (lambda L, c, a, b: (L.addbmm(c, a, b), c.addbmm(a, b, beta=0, alpha=2)),
               [_randn(3, 5), T234, _randn(2, 4, 5)]),
    "add_products_in_place": (lambda L, c, a, b, v, w: ((c * 1).addmm_(a, b.t(), beta=0.5),
                                                        L.addmv_(v * 1, a, w, alpha=2),
                                                        (c * 1).addr_(v, w[:3]),
                                                        (c * 1).addbmm_(a[None], b.t()[None]),
                                                        (c[None] * 1).baddbmm_(a[None], b.t()[None])),
                              [_randn(3, 3), M34, _randn(3, 4), V3, V4]),
    "tensordot": (lambda L, a, b: (L.tensordot(a, b.permute(1, 0, 2), 1), L.tensordot(a, b, 0),
                                   L.tensordot(a, b, ([0, 2], [0, 1])),
                                   L.tensordot(a, b, dims=L.tensor([[2], [1]])),
                                   L.tensordot(a, b.permute(2, 1, 0), 2)),
                  [T234, _randn(2, 4, 3)]),
    "inner": (lambda L, a, b, c, s: (L.inner(a, b), a.inner(c), L.inner(s, a), L.inner(c, c)),
              [M34, T234, V4, np.array(1.5)]),
    "kron": (lambda L, a, b, c: (L.kron(a, b), a.kron(c), L.kron(c, c)), [M34, T234, V3]),
    "cross": (lambda L, a, b: (L.cross(a, b, dim=0), a.cross(b[:1], -1)),
              [_randn(3, 3), _randn(3, 3)]),
    "cross_int": (lambda L, a, b: L.cross(a, b, dim=1), [_ints(2, 3), _ints(2, 3)]),
    "vdot": (lambda L, a, b: (L.vdot(a, b), a.vdot(a)), [V4, _randn(4)]),
    # indexing
    "take_along_dim": (lambda L, a: (L.take_along_dim(a, L.tensor([[0], [3], [1]]), 1),
                                     a.take_along_dim(L.tensor([[2, 0, 2, 1]]), 0),
                                     L.take_along_dim(a, L.tensor([5, 11, 4, 4]))), [M34]),
    "take_along_dim_wraps": (lambda L, a: L.take_along_dim(a, L.tensor([[5, -5, 400]]), 1), [M34]),
    "take_along_dim_broadcast": (lambda L, a: L.take_along_dim(a, L.tensor([[[1], [0]]]), 2),
                                 [_randn(2, 1, 3)]),
    "masked_select": (lambda L, a: (L.masked_select(a, a > 0), a.masked_select(L.tensor([True, False, True, True])),
                                    L.masked_select(a[0], L.tensor([[True], [False]]))), [M34]),
    "masked_select_int": (lambda L, a: L.masked_select(a, a > 1), [_ints(3, 4)]),
    "index_add": (lambda L, a, s: (L.index_add(a, 1, L.tensor([0, 2, 0]), s),
                                   a.index_add(-1, L.tensor([3, 3, 1], dtype=L.int32), s, alpha=-2)),
                  [M34, _randn(3, 3)]),
    "index_add_scalars": (lambda L, a, s, t: (L.index_add(a, 0, L.tensor(0), s),
                                              L.index_add(t, 0, L.tensor(1), s.reshape(1))),
                          [np.array(1.5), np.array(2.0), V3]),
    "index_add_int": (lambda L, a, s: L.index_add(a, 0, L.tensor([1, 1]), s, alpha=2.5),
                      [_ints(3, 2), _ints(2, 2)]),
    "index_add_inplace": (lambda L, a, s: (a * 1).index_add_(0, L.tensor([2, 0]), s), [M34, _randn(2, 4)]),
    "index_copy": (lambda L, a, s: (L.index_copy(a, 0, L.tensor([2, 0]), s),
                                    a.index_copy(0, L.tensor([1, 1]), s)), [M34, _randn(2, 4)]),
    "index_copy_scalars": (lambda L, a, s, t: (L.index_copy(a, 0, L.tensor(0), s),
                                               L.index_copy(t, 0, L.tensor(1), s)),
                           [np.array(1.5), np.array(2.0), V3]),
    "index_copy_inplace": (lambda L, a, s: (a * 1).index_copy_(1, L.tensor([3]), s), [M34, _randn(3, 1)]),
    "repeat_interleave_int": (lambda L, a: (L.repeat_interleave(a, 2), a.repeat_interleave(3, dim=1),
                                            L.repeat_interleave(a, 2, 0, output_size=6),
                                            L.repeat_interleave(a, 0, 1)), [M34]),
    "repeat_interleave_tensor": (lambda L, a: (L.repeat_interleave(a, L.tensor([1, 0, 2]), dim=0),
                                               a.repeat_interleave(L.tensor([2])),
                                               L.repeat_interleave(a, L.tensor(2), dim=-1, output_size=8)),
                                 [M34]),
    "repeat_interleave_0d": (lambda L, a: (L.repeat_interleave(a, 2),
                                           L.repeat_interleave(a, L.tensor([3]))), [np.array(1.5)]),
    "repeat_interleave_counts": (lambda L: (L.repeat_interleave(L.tensor([1, 2, 0, 1])),
                                            L.repeat_interleave(L.tensor([], dtype=L.int64))), []),
    "argwhere": (lambda L, a: (L.argwhere(a), a.argwhere(), L.argwhere(a[0, 0] * 0 + 1)),
                 [np.array([[0.0, 1.5], [np.nan, 0.0]])]),
    # counts, NaN-ignoring reductions, differences
    "count_nonzero": (lambda L, a: (L.count_nonzero(a), a.count_nonzero(0), L.count_nonzero(a, (0, 1)),
                                    L.count_nonzero(a, ()), L.count_nonzero(a[0, 0])),
                      [np.array([[0.0, 1.5, np.nan], [-2.0, 0.0, 0.0]])]),
    "count_nonzero_int": (lambda L, a: L.count_nonzero(a, -1), [_ints(3, 4, high=2)]),
    "nansum_nanmean": (lambda L, a: (L.nansum(a), a.nansum(1), L.nansum(a, 0, keepdim=True),
                                     L.nanmean(a), a.nanmean(1), L.nanmean(a, (0, 1), True),
                                     L.nansum(a, dtype=L.float64)),
                       [np.array([[1.0, np.nan, 2.5], [np.nan, -1.0, np.nan]])]),
    # (an all-NaN slice: NaN, and so is its gradient: g / 0 times 0)
    "nanmean_all_nan": (lambda L, a: L.nanmean(a, 1), [np.array([[1.0, np.nan], [np.nan, np.nan]])]),
    "nansum_int": (lambda L, a: (L.nansum(a), L.nansum(a, 0)), [_ints(3, 4)]),
    "diff": (lambda L, a, p, q: (L.diff(a), a.diff(2, 0), L.diff(a, 1, 0, prepend=p, append=q),
                                 L.diff(a, n=0), L.diff(a, 5), L.diff(a, append=a[:, :2])),
             [M34, _randn(1, 4), _randn(2, 4)]),
    "diff_int_and_bool": (lambda L, a: (L.diff(a), L.diff(a > 2), L.diff(a, 2, 0),
                                        L.diff(a, prepend=L.ones(3, 1))), [_ints(3, 4)]),
    # membership, bins and searches
    "isin": (lambda L, a, b: (L.isin(a, b), L.isin(a, b, invert=True), L.isin(a, 2),
                              L.isin(3, b), L.isin(a.float(), b)), [_ints(3, 4), np.array([0, 2, 7])]),
    "isin_nan": (lambda L: L.isin(L.tensor([[1.0, float("nan")]]), L.tensor([float("nan"), 1.0])), []),
    "bincount": (lambda L, a: (L.bincount(a), a.bincount(minlength=9),
                               L.bincount(a, L.arange(6.0)),
                               L.bincount(a, L.arange(6.0, dtype=L.float64)),
                               L.bincount(a, L.arange(6)), L.bincount(a[:0], minlength=3),
                               L.bincount(a.int())), [np.array([0, 3, 3, 1, 5, 3])]),
    "bucketize": (lambda L, a, b: (L.bucketize(a, b), L.bucketize(a, b, right=True),
                                   L.bucketize(a, b, out_int32=True), L.bucketize(2.5, b),
                                   L.bucketize(a, b[:0])),
                  [np.array([[1, 5], [3, 9]]), np.array([1, 3, 5, 7])]),
    "searchsorted": (lambda L, s, v: (L.searchsorted(s, v), L.searchsorted(s, v, right=True),
                                      L.searchsorted(s, v, side="right", out_int32=True),
                                      L.searchsorted(s[0], v), L.searchsorted(s[0], 2.0)),
                     [np.array([[1.0, 3.0, 3.0, np.nan], [-1.0, 0.0, 2.0, 8.0]]),
                      np.array([[3.0, np.nan, np.inf, 0.0], [2.0, 2.0, -5.0, 9.0]])]),
    "searchsorted_sorter": (lambda L, s, v: (L.searchsorted(s, v, sorter=L.argsort(s)),
                                             L.searchsorted(s, v, sorter=L.argsort(s), side="right")),
                            [np.array([5, 1, 3, 3]), np.array([[3, 6], [1, 0]])]),
    # (torch records a node whose backward raises; here the results need no gradient)
    "unique": (lambda L, a: (L.unique(a), a.unique(return_inverse=True),
                             L.unique(a, sorted=False, return_counts=True),
                             L.unique(a, return_inverse=True, return_counts=True)),
               [_Plain(np.array([[3.0, np.nan, 1.0], [np.nan, 3.0, -0.5]]))]),
    "unique_dim": (lambda L, a: (L.unique(a, dim=0, return_inverse=True, return_counts=True),
                                 L.unique(a, dim=1, return_counts=True), L.unique(a[:0], dim=0),
                                 L.unique(a[0, 0]), L.unique(a[:0])),
                   [np.array([[1, 2, 1], [1, 2, 1], [0, 5, 0]])]),
    "unique_consecutive": (lambda L, a: (L.unique_consecutive(a), a.unique_consecutive(
        return_inverse=True, return_counts=True), L.unique_consecutive(a.reshape(2, 4), dim=1,
                                                                        return_inverse=True)),
                           [_Plain(np.array([1.0, 1.0, np.nan, np.nan, 2.0, 2.0, 1.0, 1.0]))]),
    "unique_consecutive_dim": (lambda L, a: L.unique_consecutive(a, dim=0, return_counts=True),
                               [np.array([[1, 2], [1, 2], [0, 5], [1, 2]])]),
    # order statistics: ties (beyond 16 elements, PyTorch's sorts reorder them), NaN
    "kthvalue": (lambda L, a: [L.kthvalue(a, k, 1) for k in (1, 7, 20)] + [a.kthvalue(2, 0, True)],
                 [TIES]),
    "kthvalue_0d_and_int": (lambda L, a, b: (L.kthvalue(a, 1), L.kthvalue(b, 3, 0)),
                            [np.array(1.5), _ints(6, 3, high=3)]),
    "median_dim": (lambda L, a: (L.median(a, 1), a.median(0, keepdim=True), L.median(a[:, :5], -1),
                                 L.median(a[:, :4], 1)), [TIES]),
    "nanmedian_dim": (lambda L, a: (L.nanmedian(a, 1), a.nanmedian(0, keepdim=True)), [TIES]),
    "nanmedian_all_nan_rows": (lambda L, a: L.nanmedian(a, 1), [np.full((3, 6), np.nan)]),
    "median_all": (lambda L, a: (L.median(a), a[1:].median(), L.median(a[0, :6] * 0 + 2),
                                 L.nanmedian(a), L.nanmedian(a[1:]), a.median(0)[0].median()),
                   [TIES]),
    "median_int": (lambda L, a: (L.median(a), L.median(a, 0), L.nanmedian(a, 1)), [_ints(5, 4, high=3)]),
    "mode": (lambda L, a: (L.mode(a), a.mode(0, True), L.mode(a[:, :6])), [TIES]),
    "mode_int_and_bool": (lambda L, a: (L.mode(a), L.mode(a > 1, 0)), [_ints(4, 25, high=4)]),
    "cummax_cummin": (lambda L, a: (L.cummax(a, 1), a.cummin(0), L.cummax(a[0, 0], 0)), [TIES]),
    "cummax_int": (lambda L, a: (L.cummax(a, 0), L.cummin(a > 1, 1)), [_ints(4, 5, high=3)]),
    "logcumsumexp": (lambda L, a, b: (L.logcumsumexp(a, 1), a.logcumsumexp(0), L.logcumsumexp(b, -1),
                                      L.logcumsumexp(a[0, 0], 0)),
                     [_randn(3, 5) * 30, np.array([[-np.inf, -np.inf, 1.0, np.inf, 2.0],
                                                   [0.5, np.nan, 1.0, -np.inf, 700.0]])]),
    "msort": (lambda L, a: (L.msort(a), a.t().msort()), [TIES]),
    "aminmax": (lambda L, a: (L.aminmax(a), a.aminmax(dim=1), L.aminmax(a, dim=0, keepdim=True),
                              L.aminmax(a, keepdim=True), L.aminmax(a[0, 0])), [TIES]),
    "quantile": (lambda L, a, q: [L.quantile(a, 0.3), a.quantile(q, 1), L.quantile(a, q, 0, True),
                                  L.quantile(a, 0.5, 1, keepdim=True), L.quantile(a[1], q),
                                  L.quantile(a, q, keepdim=True)] +
                 [L.quantile(a, q, -1, interpolation=mode) for mode in
                  ("lower", "higher", "midpoint", "nearest")], [TIES_NO_NAN, _Plain(np.array([0.0, 0.25, 0.5, 1.0]))]),
    "quantile_nan": (lambda L, a: (L.quantile(a, 0.4, 1), L.nanquantile(a, 0.4, 1),
                                   L.nanquantile(a, 0.9, 0, interpolation="midpoint"),
                                   L.nanquantile(a[:1].expand(2, 20) * np.nan, 0.5, 1)), [TIES]),
    "quantile_0d_q_and_input": (lambda L, a, q: (L.quantile(a, q), L.quantile(a[0, 0], 0.5, 0)),
                                [TIES_NO_NAN, _Plain(np.array(0.75))]),
    # misc
    "logspace": (lambda L: [L.logspace(0, 2, 3), L.logspace(-1, 1.5, 6, base=2, dtype=L.float64),
                            L.logspace(0, 2, 3, dtype=L.int64), L.logspace(0, 2, 0),
                            L.logspace(1, 2, 1), L.logspace(0.0, 1, 4, requires_grad=True)], []),
    "detach": (lambda L, a: (L.detach(a * 2),), [V3]),
    # (torch 2.13's vander raises in backward (its cumprod's input is written in place after
    # it is saved); its gradient is checked against powers in test_vander_gradient)
    "vander": (lambda L, a: (L.vander(a), L.vander(a, 2, True), L.vander(a, 0), L.vander(a, 1),
                             L.vander(a, 5)),
               [_Plain(np.array([1.5, 0.0, -2.0]))]),
    "vander_int_and_bool": (lambda L, a: (L.vander(a), L.vander(a.int(), 4, increasing=True),
                                          L.vander(a > 1)), [np.array([1, 2, 3])]),
    "cartesian_prod": (lambda L, a, b, c: (L.cartesian_prod(a, b), L.cartesian_prod(a, b, c),
                                           L.cartesian_prod(a)), [V3, V4, _randn(2)]),
    "combinations": (lambda L, a: (L.combinations(a), L.combinations(a, 3), L.combinations(a, 5),
                                   L.combinations(a, 0), L.combinations(a, with_replacement=True)),
                     [V4]),
    "block_diag": (lambda L, a, b, c: (L.block_diag(a, b, c), L.block_diag(c), L.block_diag()),
                   [M34, np.array(2.5), V3]),
    "block_diag_promotion": (lambda L, a, b: L.block_diag(a, b), [_ints(2, 2), V3]),
}


# Composites whose last node is one of their parts, where torch records one node of its own:
# the outputs' node names are not compared (values and gradients are).
COMPOSITE_NODES = {
    "trace": "diagonal().sum(): SumBackward0 (torch: TraceBackward0)",
    **{name: "beta * input + alpha * product: AddBackward0 (torch: AddmmBackward0, ...)"
       for name in ("addmm", "addmm_beta_0_ignores_nan", "addmv", "addr", "baddbmm", "addbmm",
                    "addr_int_and_promotion", "add_products_in_place")},
    "cross": "rolled products, subtracted: SubBackward0 (torch: LinalgCrossBackward0)",
    "median_all": "the max (mean if NaN) of the tied elements: AmaxBackward0 (torch: "
                  "MedianBackward0, NanmedianBackward0)",
    "median_int": "the max of the tied elements: AmaxBackward0 (torch: MedianBackward0)",
    **{name: "PyTorch's composite, out of place: SqueezeBackward1/ViewBackward0/... (torch: "
             "SqueezeBackward4, an in-place squeeze_)"
       for name in ("quantile", "quantile_nan", "quantile_0d_q_and_input")},
    **{name: "zero blocks joined by cat: CatBackward0 (torch: BlockDiagBackward0)"
       for name in ("block_diag", "block_diag_promotion")},
}


def _diagonal_write(a):
    """A write through a diagonal reaches its base (PyTorch's diagonal is a view)."""
    b = a * 2
    d = b.diagonal()
    d.mul_(3)
    return b, d


def _unfold_write(a):
    """A write through windows that do not overlap reaches their base, and the base's
    gradient sees it (PyTorch's unfold is a view)."""
    b = a * 2
    windows = b.unfold(1, 2, 2)
    windows.mul_(3)
    return b, windows


def _leaves(lib, arrays, dtype):
    leaves = []
    for array in arrays:
        if isinstance(array, _Plain):
            leaves.append(lib.tensor(array.array.astype(dtype)))
        elif np.issubdtype(array.dtype, np.floating):
            leaves.append(lib.tensor(array.astype(dtype), requires_grad=True))
        else:
            leaves.append(lib.tensor(array))
    return leaves


def _flat(outputs):
    if isinstance(outputs, (tuple, list)):
        return [t for part in outputs for t in _flat(part)]
    return [outputs]


def _run(lib, make, arrays, dtype):
    leaves = _leaves(lib, arrays, dtype)
    outputs = _flat(make(lib, *leaves))
    weights = np.random.default_rng(1)
    loss = None
    for out in outputs:
        if isinstance(out, lib.Tensor) and out.requires_grad:
            w = lib.tensor(weights.standard_normal(tuple(out.shape)).astype(dtype))
            term = (out * w).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()
    return outputs, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(case, dtype):
    make, arrays = CASES[case]
    expected, expected_grads = _run(torch, make, arrays, dtype)
    actual, actual_grads = _run(nbgrad, make, arrays, dtype)
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        if not isinstance(e, torch.Tensor):
            assert a == e, k
            continue
        assert_close(a, e, dtype=dtype)
        if case not in COMPOSITE_NODES:
            assert grad_fn_name(a) == grad_fn_name(e), k
    for a, e in zip(actual_grads, expected_grads):
        assert (a is None) == (e is None)
        if e is not None:
            assert_close(a, e, dtype=dtype)


ERRORS = {
    "broadcast_shapes_mismatch": lambda L: L.broadcast_shapes((2, 3), (3, 2)),
    "broadcast_shapes_negative": lambda L: L.broadcast_shapes((-1, 3)),
    "broadcast_shapes": lambda L: (L.broadcast_shapes((2, 1), 3, ()), L.broadcast_shapes()),
    "broadcast_tensors_mismatch": lambda L: L.broadcast_tensors(L.zeros(2, 3), L.zeros(3, 2)),
    "reshape_as_size": lambda L: L.zeros(3).reshape_as(L.zeros(2, 2)),
    "fliplr_1d": lambda L: L.fliplr(L.zeros(3)),
    "flipud_0d": lambda L: L.flipud(L.zeros(())),
    "rot90_1d": lambda L: L.rot90(L.zeros(3)),
    "rot90_one_dim": lambda L: L.rot90(L.zeros(3, 3), 1, [0]),
    "rot90_same_dims": lambda L: L.rot90(L.zeros(3, 3), 1, [0, 0]),
    "rot90_same_dims_wrapped": lambda L: L.rot90(L.zeros(3, 3), 1, [0, -2]),
    "rot90_dim_out_of_range": lambda L: L.rot90(L.zeros(3, 3), 1, [0, 3]),
    "tensor_split_0d": lambda L: L.tensor_split(L.zeros(()), 2),
    "tensor_split_no_sections": lambda L: L.tensor_split(L.zeros(5), 0),
    "tensor_split_2d_tensor": lambda L: L.tensor_split(L.zeros(5), L.tensor([[1]])),
    "tensor_split_float_tensor": lambda L: L.tensor_split(L.zeros(5), L.tensor([1.0])),
    "hsplit_indivisible": lambda L: L.hsplit(L.zeros(4, 4), 3),
    "hsplit_0d": lambda L: L.hsplit(L.zeros(()), 3),
    "vsplit_1d": lambda L: L.vsplit(L.zeros(4), 2),
    "dsplit_2d": lambda L: L.dsplit(L.zeros(4, 4), 2),
    "vsplit_zero": lambda L: L.vsplit(L.zeros(4, 4), 0),
    "diagonal_1d": lambda L: L.diagonal(L.zeros(3)),
    "diagonal_same_dims": lambda L: L.diagonal(L.zeros(3, 4), 0, 1, 1),
    "diag_3d": lambda L: L.diag(L.zeros(2, 2, 2)),
    "diag_0d": lambda L: L.diag(L.zeros(())),
    "diag_embed_0d": lambda L: L.diag_embed(L.zeros(())),
    "diag_embed_same_dims": lambda L: L.diag_embed(L.zeros(2, 3), 1, 0, 0),
    "trace_1d": lambda L: L.trace(L.zeros(3)),
    "trace_bool": lambda L: L.trace(L.zeros(2, 2, dtype=L.bool)),
    "tril_indices_negative": lambda L: L.tril_indices(3, -1),
    "triu_indices_negative_row": lambda L: L.triu_indices(-2, 3),
    "tril_indices_float": lambda L: L.tril_indices(3, 4, dtype=L.float32),
    "addmm_vector": lambda L: L.addmm(L.zeros(3), L.ones(3, 2), L.ones(2)),
    "addmm_sizes": lambda L: L.addmm(L.zeros(3, 5), L.zeros(3, 4), L.zeros(3, 4)),
    "addmm_input_size": lambda L: L.addmm(L.zeros(2, 5), L.zeros(3, 4), L.zeros(4, 5)),
    "addmm_dtypes": lambda L: L.addmm(L.zeros(3), L.ones(3, 2, dtype=L.float64), L.ones(2, 3)),
    "addmm_input_dtype": lambda L: L.addmm(L.zeros(3), L.ones(3, 2), L.ones(2, 3, dtype=L.float64)),
    "addmv_sizes": lambda L: L.addmv(L.zeros(3), L.ones(3, 4), L.ones(3)),
    "addmv_input_size": lambda L: L.addmv(L.zeros(2), L.ones(3, 4), L.ones(4)),
    "addmv_ranks": lambda L: L.addmv(L.zeros(3), L.ones(3, 4, 2), L.ones(4)),
    "addmv_dtypes": lambda L: L.addmv(L.zeros(3, dtype=L.float64), L.ones(3, 2), L.ones(2)),
    # matmul's dtype errors are those of the kernel it folds the call into
    "mv_dtypes": lambda L: L.mv(L.ones(3, 2), L.ones(2, dtype=L.float64)),
    "matmul_batch_vector_dtypes": lambda L: L.ones(2, 3, 2, dtype=L.int64) @ L.ones(2),
    "matmul_vector_batch_dtypes": lambda L: L.matmul(L.ones(2), L.ones(4, 2, 3, dtype=L.float64)),
    "matmul_batched_dtypes": lambda L: L.ones(4, 3, 2, dtype=L.float64) @ L.ones(4, 2, 3),
    "matmul_batch_matrix_dtypes": lambda L: L.ones(4, 3, 2) @ L.ones(2, 3, dtype=L.float64),
    "addr_matrix": lambda L: L.addr(L.zeros(3, 4), L.ones(3), L.ones(4, 1)),
    "addr_int_alpha": lambda L: L.addr(L.zeros(3, 2, dtype=L.int64), L.ones(3, dtype=L.int64),
                                       L.ones(2, dtype=L.int64), alpha=1.5),
    "addr_bool_beta": lambda L: L.addr(L.zeros(3, 2), L.ones(3), L.ones(2), beta=True),
    "baddbmm_2d": lambda L: L.baddbmm(L.zeros(3), L.ones(3, 2), L.ones(1, 2, 3)),
    "baddbmm_batches": lambda L: L.baddbmm(L.zeros(3, 5), L.ones(2, 3, 4), L.ones(3, 4, 5)),
    "baddbmm_dtypes": lambda L: L.baddbmm(L.zeros(3, dtype=L.float64), L.ones(1, 3, 2),
                                          L.ones(1, 2, 3)),
    "addbmm_batches": lambda L: L.addbmm(L.zeros(3), L.ones(2, 3, 2), L.ones(1, 2, 3)),
    "addbmm_sizes": lambda L: L.addbmm(L.zeros(3, 5), L.ones(2, 3, 4), L.ones(2, 5, 5)),
    "addbmm_input_size": lambda L: L.addbmm(L.zeros(3, 5), L.ones(3, 4), L.ones(2, 4, 5)),
    "tensordot_dims_too_many": lambda L: L.tensordot(L.ones(3, 4), L.ones(4, 5), 3),
    "tensordot_dims_negative": lambda L: L.tensordot(L.ones(3, 4), L.ones(4, 5), -1),
    "tensordot_sizes": lambda L: L.tensordot(L.ones(3, 4), L.ones(3, 5), ([0], [1])),
    "tensordot_lists": lambda L: L.tensordot(L.ones(3, 4), L.ones(3, 5), ([0], [0, 1])),
    "tensordot_dtypes": lambda L: L.tensordot(L.ones(3, 4), L.ones(3, 5, dtype=L.float64), 0),
    "inner_sizes": lambda L: L.inner(L.ones(3, 4), L.ones(3, 5)),
    "cross_no_size_3": lambda L: L.cross(L.ones(4, 4), L.ones(4, 4)),
    "cross_sizes": lambda L: L.cross(L.ones(4, 3), L.ones(4, 2), dim=1),
    "cross_ranks": lambda L: L.cross(L.ones(4, 3), L.ones(3), dim=1),
    "cross_dtypes": lambda L: L.cross(L.ones(4, 3, dtype=L.float64), L.ones(4, 3), dim=1),
    "cross_broadcast": lambda L: L.cross(L.ones(4, 3), L.ones(1, 3), dim=1),
    "tensordot_negative_dims": lambda L: L.tensordot(L.ones(3, 4), L.ones(3, 5), ([-2], [-1])),
    "tensordot_int_dims": lambda L: L.tensordot(L.ones(3, 4), L.ones(3, 5), 2),
    "linalg_cross_default_dim": lambda L: L.cross(L.ones(3, 4), L.ones(3, 4), dim=-1),
    "vdot_sizes": lambda L: L.vdot(L.ones(3), L.ones(4)),
    "vdot_2d": lambda L: L.vdot(L.ones(3, 1), L.ones(3)),
    "vdot_dtypes": lambda L: L.vdot(L.ones(3, dtype=L.int64), L.ones(3)),
    "take_along_dim_float_indices": lambda L: L.take_along_dim(L.zeros(3, 4), L.zeros(3, 1), 1),
    "take_along_dim_int32_indices": lambda L: L.take_along_dim(L.zeros(3, 4),
                                                               L.tensor([[1]], dtype=L.int32), 1),
    "take_along_dim_ranks": lambda L: L.take_along_dim(L.zeros(3, 4), L.zeros(3, dtype=L.long), 1),
    "take_along_dim_broadcast": lambda L: L.take_along_dim(L.zeros(3, 4), L.tensor([[1], [2]]), 1),
    "take_along_dim_flat_range": lambda L: L.take_along_dim(L.zeros(3, 4), L.tensor([[13]])),
    "masked_select_int_mask": lambda L: L.masked_select(L.zeros(3), L.tensor([1, 0, 1])),
    "masked_select_broadcast": lambda L: L.masked_select(L.zeros(3), L.tensor([True, False])),
    "index_add_count": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0, 2]), L.ones(3, 2)),
    "index_add_shape": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0, 2]), L.ones(2, 3)),
    "index_add_rank": lambda L: L.index_add(L.zeros(3, 2, 4), 1, L.tensor([0, 1]), L.ones(2, 2)),
    "index_add_range": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0, 3]), L.ones(2, 2)),
    "index_add_negative": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0, -1]), L.ones(2, 2)),
    "index_add_float_index": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0.0, 1]), L.ones(2, 2)),
    "index_add_2d_index": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([[0, 1]]), L.ones(2, 2)),
    "index_add_dtypes": lambda L: L.index_add(L.zeros(3, 2), 0, L.tensor([0, 1]),
                                              L.ones(2, 2, dtype=L.float64)),
    "index_add_0d_source": lambda L: L.index_add(L.zeros(3), 0, L.tensor(1), L.tensor(5.0)),
    "index_add_0d_self": lambda L: L.index_add(L.zeros(()), 0, L.tensor([0]), L.tensor([5.0])),
    "index_copy_range": lambda L: L.index_copy(L.zeros(3, 2), 0, L.tensor([0, 3]), L.ones(2, 2)),
    "index_copy_int32": lambda L: L.index_copy(L.zeros(3, 2), 0, L.tensor([0, 1], dtype=L.int32),
                                               L.ones(2, 2)),
    "index_copy_count": lambda L: L.index_copy(L.zeros(3, 2), 0, L.tensor([0, 2]), L.ones(3, 2)),
    "index_copy_slices": lambda L: L.index_copy(L.zeros(3, 2, 4), 1, L.tensor([0, 1]), L.ones(2, 2, 5)),
    "index_copy_rank": lambda L: L.index_copy(L.zeros(3, 2, 4), 1, L.tensor([0, 1]), L.ones(2, 2)),
    "index_copy_2d_index": lambda L: L.index_copy(L.zeros(3), 0, L.tensor([[0]]), L.ones(1)),
    "index_copy_dtypes": lambda L: L.index_copy(L.zeros(3, 2), 0, L.tensor([0, 2]),
                                                L.ones(2, 2, dtype=L.float64)),
    "repeat_interleave_negative": lambda L: L.repeat_interleave(L.zeros(3), -1),
    "repeat_interleave_negative_tensor": lambda L: L.repeat_interleave(L.zeros(3), L.tensor([1, -1, 2])),
    "repeat_interleave_2d_repeats": lambda L: L.repeat_interleave(L.zeros(3), L.tensor([[1, 1, 2]])),
    "repeat_interleave_sizes": lambda L: L.repeat_interleave(L.zeros(3), L.tensor([1, 2])),
    "repeat_interleave_float_repeats": lambda L: L.repeat_interleave(L.zeros(3), L.tensor([1.0, 2, 3])),
    "repeat_interleave_output_size": lambda L: L.repeat_interleave(L.zeros(3), 2, output_size=5),
    "repeat_interleave_output_size_tensor": lambda L: L.repeat_interleave(
        L.zeros(3), L.tensor([1, 1, 1]), output_size=5),
    "repeat_interleave_2d_counts": lambda L: L.repeat_interleave(L.tensor([[1, 2]])),
    "repeat_interleave_float_counts": lambda L: L.repeat_interleave(L.tensor([1.0, 2])),
    "repeat_interleave_dim": lambda L: L.repeat_interleave(L.zeros(2, 3), 2, dim=2),
    "repeat_interleave_0d_dim": lambda L: L.repeat_interleave(L.tensor(1.5), 3, 0),
    "repeat_interleave_0d_dim_tensor": lambda L: L.repeat_interleave(L.tensor(1.5), L.tensor([3]), 0),
    "count_nonzero_repeated_dims": lambda L: L.count_nonzero(L.zeros(2, 3), (0, 0)),
    "nanmean_int": lambda L: L.nanmean(L.tensor([1, 2])),
    "diff_0d": lambda L: L.diff(L.zeros(())),
    "diff_negative_order": lambda L: L.diff(L.zeros(3), n=-1),
    "diff_prepend_rank": lambda L: L.diff(L.zeros(3, 2), prepend=L.zeros(3)),
    "diff_append_shape": lambda L: L.diff(L.zeros(3, 2), append=L.zeros(2, 2)),
    "diff_append_number": lambda L: L.diff(L.zeros(3, 2), dim=0, append=2),
    "bincount_negative": lambda L: L.bincount(L.tensor([-1, 2])),
    "bincount_2d": lambda L: L.bincount(L.tensor([[1, 2]])),
    "bincount_float": lambda L: L.bincount(L.tensor([1.0, 2])),
    "bincount_minlength": lambda L: L.bincount(L.tensor([1, 2]), minlength=-1),
    "bincount_weights": lambda L: L.bincount(L.tensor([1, 2]), L.tensor([1.0])),
    "bucketize_2d_boundaries": lambda L: L.bucketize(L.tensor([1, 2]), L.tensor([[1, 2]])),
    "searchsorted_leading_dims": lambda L: L.searchsorted(L.tensor([[1, 2], [3, 4]]),
                                                          L.tensor([[1, 2, 3]])),
    "searchsorted_1d_values": lambda L: L.searchsorted(L.tensor([[1, 2]]), L.tensor([1, 2])),
    "searchsorted_scalar": lambda L: L.searchsorted(L.tensor([[1, 2], [3, 4]]), 2),
    "searchsorted_side": lambda L: L.searchsorted(L.tensor([1, 2]), L.tensor([1]), side="middle"),
    "searchsorted_side_and_right": lambda L: L.searchsorted(L.tensor([1, 2]), L.tensor([1]),
                                                            side="left", right=True),
    "searchsorted_sorter_range": lambda L: L.searchsorted(L.tensor([1, 2]), L.tensor([1]),
                                                          sorter=L.tensor([0, 2])),
    "searchsorted_sorter_size": lambda L: L.searchsorted(L.tensor([1, 2]), L.tensor([1]),
                                                         sorter=L.tensor([[0, 1]])),
    "searchsorted_sorter_dtype": lambda L: L.searchsorted(L.tensor([1, 2]), L.tensor([1]),
                                                          sorter=L.tensor([0, 1], dtype=L.int32)),
    "unique_dim_range": lambda L: L.unique(L.zeros(2, 3), dim=2),
    "unique_0d_dim": lambda L: L.unique(L.zeros(()), dim=0),
    "unique_empty_other_dim": lambda L: L.unique(L.zeros(2, 0), dim=0),
    "kthvalue_k_too_large": lambda L: L.kthvalue(L.zeros(3), 4),
    "kthvalue_k_zero": lambda L: L.kthvalue(L.zeros(3), 0),
    "kthvalue_empty": lambda L: L.kthvalue(L.zeros(0), 1),
    "kthvalue_empty_rows": lambda L: L.kthvalue(L.zeros(2, 0), 1, 0),
    "kthvalue_bool": lambda L: L.kthvalue(L.tensor([True, False]), 1),
    "median_empty": lambda L: L.median(L.zeros(0)),
    "median_empty_rows": lambda L: L.median(L.zeros(0, 3), 1),
    "median_empty_dim": lambda L: L.median(L.zeros(3, 0), 1),
    "median_bool": lambda L: L.median(L.tensor([True, False, True])),
    "mode_empty": lambda L: L.mode(L.zeros(0)),
    "mode_empty_rows": lambda L: L.mode(L.zeros(3, 0), 0),
    "cummax_empty": lambda L: L.cummax(L.zeros(0), 0),
    "aminmax_empty": lambda L: L.aminmax(L.zeros(0)),
    "aminmax_empty_dim": lambda L: L.aminmax(L.zeros(2, 0), dim=1),
    "logcumsumexp_int": lambda L: L.logcumsumexp(L.tensor([1, 2]), 0),
    "quantile_int": lambda L: L.quantile(L.tensor([1, 2]), 0.5),
    "quantile_q_range": lambda L: L.quantile(L.zeros(3), 1.5),
    "quantile_q_tensor_range": lambda L: L.quantile(L.zeros(3), L.tensor([0.5, -0.1])),
    "quantile_q_2d": lambda L: L.quantile(L.zeros(3), L.tensor([[0.5]])),
    "quantile_q_dtype": lambda L: L.quantile(L.zeros(3), L.tensor([0.5], dtype=L.float64)),
    "quantile_empty": lambda L: L.quantile(L.zeros(0), 0.5),
    "quantile_interpolation": lambda L: L.quantile(L.zeros(3), 0.5, interpolation="cubic"),
    "nanquantile_int": lambda L: L.nanquantile(L.tensor([1, 2]), 0.5),
    "logspace_negative_steps": lambda L: L.logspace(0, 2, -1),
    "vander_negative": lambda L: L.vander(L.tensor([1.0, 2]), -1),
    "vander_2d": lambda L: L.vander(L.tensor([[1.0, 2]])),
    "cartesian_prod_2d": lambda L: L.cartesian_prod(L.tensor([[1, 2]])),
    "cartesian_prod_none": lambda L: L.cartesian_prod(),
    "combinations_negative": lambda L: L.combinations(L.tensor([1, 2, 3]), -1),
    "combinations_2d": lambda L: L.combinations(L.tensor([[1, 2, 3]])),
    "block_diag_3d": lambda L: L.block_diag(L.zeros(2, 2, 2)),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_match_torch(case):
    assert_same_outcome(ERRORS[case])


def test_cross_without_dim_warns_and_takes_the_first_dim_of_size_3():
    a, b = _randn(4, 3, 3), _randn(4, 3, 3)
    # (torch warns once a process; nbgrad as Python warnings do, once a place)
    with pytest.warns(UserWarning, match="Using torch.cross without specifying the dim"):
        result = nbgrad.cross(nbgrad.tensor(a), nbgrad.tensor(b))
    assert_close(result, torch.cross(torch.tensor(a), torch.tensor(b), dim=1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vander_gradient(dtype):
    x = np.array([1.5, 0.0, -2.0, 0.5]).astype(dtype)
    upstream = np.random.default_rng(2).standard_normal((4, 5)).astype(dtype)
    a = nbgrad.tensor(x, requires_grad=True)
    (nbgrad.vander(a, 5) * nbgrad.tensor(upstream)).sum().backward()
    b = torch.tensor(x, requires_grad=True)
    powers = torch.stack([b ** k for k in range(4, -1, -1)], 1)
    (powers * torch.tensor(upstream)).sum().backward()
    assert_close(a.grad, b.grad, dtype=dtype)


# --- the composites whose parts fuse: a deferred loop and nbgrad.compile --------------------

def _fusing_step(L, c, a, b, v):
    """addmm/addmv (beta, alpha: in a matmul's epilogue), kron, diff and nanmean in one
    graph. (nanmean's isnan of a computed value would run the tape at once, as any op
    without gradient on a pending value does: of a leaf here.)"""
    y = L.addmm(c, a, b, beta=0.5, alpha=2)
    z = L.addmv(v, a, b[:, 0], beta=-1)
    d = L.diff(y, dim=1)
    return (L.kron(z, v).reshape(3, 3) * y[:, :3]).sum() + (d * d).sum() + L.nanmean(c, 0).sum()


def _fusing_arrays(i):
    rng = np.random.default_rng(100 + i)
    return [rng.standard_normal(shape).astype(np.float32) for shape in ((3, 5), (3, 4), (4, 5), (3,))]


def _torch_step(arrays):
    leaves = [torch.tensor(x, requires_grad=True) for x in arrays]
    loss = _fusing_step(torch, *leaves)
    loss.backward()
    return loss, [leaf.grad for leaf in leaves]


def _compare_step(loss, leaves, expected, expected_grads):
    # (float32 sums of products, reassociated by fusion: a looser tolerance)
    assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    for leaf, grad in zip(leaves, expected_grads):
        assert_close(leaf.grad, grad, rtol=1e-4, atol=1e-4)


def test_composites_fuse_in_a_deferred_loop(monkeypatch, fused_runs):
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    iterations = deferred.FUSE_AFTER + 2
    for i in range(iterations):
        arrays = _fusing_arrays(i)
        expected, expected_grads = _torch_step(arrays)
        leaves = [nbgrad.tensor(x, requires_grad=True) for x in arrays]
        loss = _fusing_step(nbgrad, *leaves)
        loss.backward()
        _compare_step(loss, leaves, expected, expected_grads)
    assert fused_runs["runs"] == iterations - deferred.FUSE_AFTER


def test_composites_fuse_under_compile(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)

    def step(*leaves):
        loss = _fusing_step(nbgrad, *leaves)
        loss.backward()
        return loss

    compiled = nbgrad.compile(step)
    for i in range(3):
        arrays = _fusing_arrays(i)
        expected, expected_grads = _torch_step(arrays)
        leaves = [nbgrad.tensor(x, requires_grad=True) for x in arrays]
        _compare_step(compiled(*leaves), leaves, expected, expected_grads)
    assert compiled.stats["fused_calls"] == 2, compiled.explain()


HALF_CASES = {
    # (bfloat16's values were once ordered as integers by the sorting kernels)
    "sort_bfloat16": lambda L: L.sort(L.tensor([1.5, 1.25, 1.0, -0.5], dtype=L.bfloat16)),
    "topk_bfloat16": lambda L: L.topk(L.tensor([1.5, 1.25, 1.75], dtype=L.bfloat16), 1),
    "nanmedian_bfloat16": lambda L: L.nanmedian(L.tensor([3.5, float("nan"), 3.25, 1.0],
                                                         dtype=L.bfloat16)),
    "kthvalue_float16": lambda L: L.kthvalue(L.tensor([[1.5, 1.25, 1.75]], dtype=L.float16), 2, 1),
    "mode_bfloat16": lambda L: L.mode(L.tensor([0.5, 0.25, 0.5], dtype=L.bfloat16)),
}


@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_orders_match_torch(case):
    assert_same_outcome(HALF_CASES[case])
