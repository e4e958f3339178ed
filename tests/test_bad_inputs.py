"""Bad inputs, run in subprocesses: PyTorch's exception type, no crash, and a correct call
afterwards in the same process still works.

Each case is two functions of the library `L` (torch or nbgrad): `bad(L)` must raise, and
`good(L)` (run after it, in the same process) returns tensors to compare. The expected
exception type is what `bad(torch)` raises here (nbgrad's must be an instance of its nearest
builtin type), and the expected values are `good(torch)`'s.

The cases of one mode run in one child process (`python tests/test_bad_inputs.py MODE
NAMES...`), which prints a line before and after each case: a case that kills the process
(memory corruption, a segfault) is named by the line before, fails its test, and the child
is started again on the cases after it. Modes: "immediate" (deferral off), "deferred" (the
default) and "compile" (each `bad` inside an `nbgrad.compile` step; cases that build their
own step run it past FUSE_AFTER and through the fused kernel before the bad call).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

MODES = ("immediate", "deferred", "compile")
MODE = None  # set in the child process
FUSE_AFTER = 16  # nbgrad.fuse.deferred.FUSE_AFTER, checked in test_fuse_after_is_current


def F(L):
    return L.nn.functional


def _step(L, fn):
    """`fn` as the mode runs a step: nbgrad.compile'd in compile mode (nbgrad only)."""
    if MODE == "compile" and L.__name__ == "nbgrad":
        return L.compile(fn)
    return fn


def _stepped(bad):
    """Mark a case that builds its own step (compile mode must not wrap it in another)."""
    bad.stepped = True
    return bad


def _warm_then(L, fn, good_args, bad_args):
    """Run step `fn` with good arguments past FUSE_AFTER (the deferred graph and the compiled
    step then run their fused kernels), then once with the bad ones."""
    step = _step(L, fn)
    for _ in range(FUSE_AFTER + 2):
        step(*good_args())
    return step(*bad_args())


def _singular(L):
    """A batch whose second matrix is singular (the second pivot of its LU is 0)."""
    return L.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 4.0]]], requires_grad=True)


def _ce_step(L):
    def step(x, t):
        loss = F(L).cross_entropy(x, t)
        loss.backward()
        return loss
    return step


def _x(L, *shape):
    return L.ones(*shape, dtype=L.float32).requires_grad_()


def _ce_bad_target(target):
    def bad(L):
        return _warm_then(L, _ce_step(L), lambda: (_x(L, 2, 3), L.tensor([0, 2])),
                          lambda: (_x(L, 2, 3), L.tensor(target)))
    return _stepped(bad)


@_stepped
def _nll_bad_target(L):
    def step(x, t):
        loss = F(L).nll_loss(x.log_softmax(1), t, weight=L.tensor([1.0, 2.0, 3.0]))
        loss.backward()
        return loss
    return _warm_then(L, step, lambda: (_x(L, 2, 3), L.tensor([0, 2])),
                      lambda: (_x(L, 2, 3), L.tensor([2, 3])))


def _embedding_bad_id(ids):
    def bad(L):
        weight = L.ones(4, 2).requires_grad_()

        def step(i):
            out = F(L).embedding(i, weight)
            out.sum().backward()
            return out
        return _warm_then(L, step, lambda: (L.tensor([0, 3]),), lambda: (L.tensor(ids),))
    return _stepped(bad)


def _embedding_bag_bad(ids, offsets):
    """A mean of bags in a step, with ids or offsets out of range once the step has fused."""
    def bad(L):
        weight = L.ones(4, 2).requires_grad_()

        def step(i, o):
            out = F(L).embedding_bag(i, weight, o)
            out.sum().backward()
            return out
        return _warm_then(L, step, lambda: (L.tensor([0, 3, 1]), L.tensor([0, 2])),
                          lambda: (L.tensor(ids), L.tensor(offsets)))
    return _stepped(bad)


def _index_bad(index):
    def bad(L):
        def step(x, i):
            out = x[i] * 2.0
            out.sum().backward()
            return out
        return _warm_then(L, step, lambda: (_x(L, 3, 2), L.tensor([0, 2])),
                          lambda: (_x(L, 3, 2), L.tensor(index)))
    return _stepped(bad)


def _setitem_bad(index):
    def bad(L):
        def step(x, i):
            y = x * 1.0
            y[i] = 5.0
            y.sum().backward()
            return y
        return _warm_then(L, step, lambda: (_x(L, 3, 2), L.tensor([0, 2])),
                          lambda: (_x(L, 3, 2), L.tensor(index)))
    return _stepped(bad)


def _along_bad(op, index, *src):
    """`op` (gather, scatter_add, index_select) along dim 1 in a step, with an index out of
    range once the step has fused."""
    def bad(L):
        def step(x, i):
            out = getattr(x, op)(1, i, *(L.ones(*shape) for shape in src)) * 2.0
            out.sum().backward()
            return out
        good = [[0, 1], [1, 0], [1, 1]] if op != "index_select" else [1, 0]
        return _warm_then(L, step, lambda: (_x(L, 3, 2), L.tensor(good)),
                          lambda: (_x(L, 3, 2), L.tensor(index)))
    return _stepped(bad)


def _changed_after_forward(use, value):
    """Indices from a NumPy array that changes after the forward and before backward (item 7):
    backward must never read the changed index. PyTorch's own behaviour differs by op (it
    raises IndexError for cross entropy and indexing, its embedding backward reads the new
    value); nbgrad must either raise PyTorch's IndexError or give the gradient of the indices
    the forward saw (see `CHANGED`)."""
    def bad(L):
        x = _x(L, 4, 3)
        indices = np.array([0, 1])
        out = use(L, x, L.from_numpy(indices))
        indices[1] = value
        out.sum().backward()
        return x.grad
    if value != 1:
        bad.unchanged = _changed_after_forward(use, 1)
    return bad


def _use_cross_entropy(L, x, t):
    return F(L).cross_entropy(x[:2] * 2.0, t)


def _use_nll(L, x, t):
    return F(L).nll_loss((x[:2] * 2.0).log_softmax(1), t)


def _use_embedding(L, w, i):
    return F(L).embedding(i, w) * 2.0


def _use_index(L, x, i):
    return x[i] * 2.0


def _use_setitem(L, x, i):
    y = x * 1.0
    y[i] = 5.0
    return y


def _empty_max(L):
    return L.ones(0, requires_grad=True).max()


def _load_list(L):
    module = L.nn.Linear(2, 1)
    module.load_state_dict({"weight": [[1.0, 2.0]], "bias": [0.0]})


def _mm(shape_a, shape_b):
    def bad(L):
        return _warm_then(L, _mm_step, lambda: (_x(L, *shape_a), _x(L, shape_a[-1], 2)),
                          lambda: (_x(L, *shape_a), _x(L, *shape_b)))
    return _stepped(bad)


def _mm_step(a, b):
    out = a @ b
    out.sum().backward()
    return out


# name -> bad(L). Each must raise in torch.
def _inplace_shifted(L):
    x = L.arange(6.0)
    x[1:].add_(x[:-1])


def _setitem_shifted(L):
    x = L.arange(6.0)
    x[1:] = x[:-1]


BAD = {
    # ---- item 9
    "bool_matmul": lambda L: L.ones(2, 2, dtype=L.bool) @ L.ones(2, 2, dtype=L.bool),
    "softplus_of_int64": lambda L: F(L).softplus(L.ones(2, dtype=L.int64)),
    "sum_to_size_longer": lambda L: _x(L, 2, 3).sum_to_size(2, 2, 3),
    "sum_to_size_not_expandable": lambda L: _x(L, 2, 3).sum_to_size(3, 1),
    "cat_empty_list": lambda L: L.cat([]),
    "max_of_empty": _empty_max,
    "max_of_empty_no_grad": lambda L: L.ones(0).max(),
    "cross_entropy_2d_int_target": lambda L: F(L).cross_entropy(_x(L, 3, 4), L.zeros(3, 4, dtype=L.int64)),
    "alloc_overflow": lambda L: L.zeros(10**12, 10**12),
    "alloc_too_large": lambda L: L.ones(10**6, 10**6),
    "alloc_too_large_randn": lambda L: L.randn(2**31, 2**20),
    "bool_subtraction": lambda L: L.tensor([True, False]) - L.tensor([False, False]),
    "bool_unary_minus": lambda L: -L.tensor([True, False]),
    "softmax_int64": lambda L: L.tensor([1, 2, 3]).softmax(0),
    "log_softmax_int64": lambda L: F(L).log_softmax(L.tensor([1, 2, 3]), 0),
    "load_state_dict_list": _load_list,
    "view_float_size": lambda L: _x(L, 6).view(2.0, 3),
    "reshape_bool_size": lambda L: _x(L, 6).reshape((True, 6)),
    # Tensor.unfold: an as_strided view, so a window past the end would read outside memory
    "unfold_window_too_large": lambda L: _x(L, 3, 4).unfold(1, 5, 1),
    "unfold_window_huge": lambda L: _x(L, 3, 4).unfold(1, 2**40, 1),
    "unfold_step_zero": lambda L: _x(L, 3, 4).unfold(1, 2, 0),
    "unfold_size_negative": lambda L: _x(L, 3, 4).unfold(0, -2, 1),
    # ---- item 7: indices out of range, at the first call and after the step has fused
    "cross_entropy_target_too_large": _ce_bad_target([0, 3]),
    "cross_entropy_target_negative": _ce_bad_target([0, -1]),
    "cross_entropy_target_huge": _ce_bad_target([0, 10**11]),
    "nll_loss_weight_target_too_large": _nll_bad_target,
    # A shape or dtype error comes before an index's (PyTorch checks indices in the kernel;
    # the deferred call checked them first)
    "nll_loss_weight_size_before_target": lambda L: F(L).nll_loss(
        _x(L, 2, 1).log_softmax(1), L.tensor([0, 1]), weight=L.tensor([1.0, 2.0])),
    "nll_loss_weight_dtype_before_target": lambda L: F(L).nll_loss(
        _x(L, 1, 2).log_softmax(1), L.tensor([3]), weight=L.tensor([1.0, 2.0], dtype=L.float64)),
    "embedding_weight_rank_before_id": lambda L: F(L).embedding(L.tensor([5]), _x(L, 2)),
    "embedding_float_ids_before_id": lambda L: F(L).embedding(L.tensor([5.0]), _x(L, 1, 2)),
    "embedding_id_too_large": _embedding_bad_id([0, 4]),
    "embedding_id_negative": _embedding_bad_id([-1, 0]),
    "embedding_id_huge": _embedding_bad_id([0, 10**11]),
    "embedding_bag_id_too_large": _embedding_bag_bad([0, 4, 1], [0, 2]),
    "embedding_bag_id_huge": _embedding_bag_bad([0, 10**11, 1], [0, 2]),
    "embedding_bag_offsets_decrease": _embedding_bag_bad([0, 3, 1], [0, 2, 1]),
    "embedding_bag_offset_past_the_ids": _embedding_bag_bad([0, 3, 1], [0, 4]),
    "index_too_large": _index_bad([0, 3]),
    "index_negative_too_small": _index_bad([-4, 0]),
    "index_huge": _index_bad([10**11, 0]),
    "setitem_index_too_large": _setitem_bad([3]),
    "setitem_index_negative_too_small": _setitem_bad([-4]),
    "setitem_index_huge": _setitem_bad([10**11]),
    "gather_index_too_large": _along_bad("gather", [[0, 2], [1, 0], [1, 1]]),
    "scatter_add_index_negative": _along_bad("scatter_add", [[0, 1], [-1, 0], [1, 1]], (3, 2)),
    "index_select_index_huge": _along_bad("index_select", [10**11, 0]),
    # ---- item 7: indices changed in the NumPy array after forward, before backward
    "changed_cross_entropy_target": _changed_after_forward(_use_cross_entropy, 3),
    "changed_cross_entropy_target_huge": _changed_after_forward(_use_cross_entropy, 10**11),
    "changed_nll_target_negative": _changed_after_forward(_use_nll, -5),
    "changed_embedding_id_huge": _changed_after_forward(_use_embedding, 10**11),
    "changed_index_huge": _changed_after_forward(_use_index, 10**11),
    "changed_setitem_index_huge": _changed_after_forward(_use_setitem, 10**11),
    # ---- shape mismatches
    "matmul_inner_mismatch": _mm((2, 3), (4, 2)),
    "matmul_batch_mismatch": _mm((2, 3, 4), (3, 4, 2)),
    "matmul_0d": lambda L: L.tensor(1.0, requires_grad=True) @ _x(L, 2),
    "linear_mismatch": lambda L: F(L).linear(_x(L, 2, 3), _x(L, 4, 2)),
    "linear_bias_mismatch": lambda L: F(L).linear(_x(L, 2, 3), _x(L, 4, 3), _x(L, 3)),
    "broadcast_mismatch": lambda L: (_x(L, 2, 3) + _x(L, 4)).sum().backward(),
    "broadcast_mismatch_3d": lambda L: _x(L, 2, 3, 1) * _x(L, 4, 2),
    "cat_size_mismatch": lambda L: L.cat([_x(L, 2, 3), _x(L, 2, 4)]),
    "cat_rank_mismatch": lambda L: L.cat([_x(L, 2, 3), _x(L, 3)]),
    "cat_dim_out_of_range": lambda L: L.cat([_x(L, 2, 3)], dim=2),
    "bmm_batch_mismatch": lambda L: L.bmm(_x(L, 2, 2, 3), _x(L, 1, 3, 2)),
    "mv_of_two_matrices": lambda L: L.mv(_x(L, 2, 2), _x(L, 2, 1)),
    # ---- torch.linalg: shapes, dtypes, and matrices that have no inverse or factor
    # (LinAlgError, a RuntimeError naming the batch element and the pivot)
    "linalg_inv_singular": lambda L: L.linalg.inv(_singular(L)).sum().backward(),
    "linalg_inv_not_square": lambda L: L.linalg.inv(_x(L, 2, 3)),
    "linalg_inv_vector": lambda L: L.linalg.inv(_x(L, 3)),
    "linalg_inv_integer": lambda L: L.linalg.inv(L.ones(2, 2, dtype=L.int64)),
    "linalg_inv_half": lambda L: L.linalg.inv(L.eye(2, dtype=L.float16)),
    "linalg_solve_singular": lambda L: L.linalg.solve(_singular(L), _x(L, 2, 2, 1)),
    "linalg_solve_rows_mismatch": lambda L: L.linalg.solve(_x(L, 2, 2), _x(L, 3, 2)),
    "linalg_solve_batch_mismatch": lambda L: L.linalg.solve(_x(L, 3, 2, 2), _x(L, 4, 2, 1)),
    "linalg_solve_dtypes": lambda L: L.linalg.solve(_x(L, 2, 2), L.ones(2, dtype=L.float64)),
    "linalg_det_not_square": lambda L: L.linalg.det(_x(L, 2, 3)),
    "linalg_det_integer": lambda L: L.det(L.ones(2, 2, dtype=L.int32)),
    "linalg_slogdet_vector": lambda L: L.linalg.slogdet(_x(L, 3)),
    "linalg_cholesky_not_positive_definite": lambda L: L.linalg.cholesky(
        L.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]], requires_grad=True)),
    "linalg_cholesky_nan": lambda L: L.linalg.cholesky(
        L.tensor([[float("nan"), 0.0], [0.0, 1.0]], requires_grad=True)),
    "linalg_cholesky_ex_check_errors": lambda L: L.linalg.cholesky_ex(
        L.tensor([[1.0, 2.0], [2.0, 1.0]], requires_grad=True), check_errors=True),
    "linalg_cholesky_not_square": lambda L: L.linalg.cholesky(_x(L, 3, 2)),
    "linalg_eigh_not_square": lambda L: L.linalg.eigh(_x(L, 3, 2)),
    "linalg_eigh_bad_uplo": lambda L: L.linalg.eigh(_x(L, 2, 2), UPLO="X"),
    "linalg_eigvalsh_integer": lambda L: L.linalg.eigvalsh(L.ones(2, 2, dtype=L.int64)),
    "linalg_svd_vector": lambda L: L.linalg.svd(_x(L, 3)),
    "linalg_svd_nan": lambda L: L.linalg.svdvals(
        L.tensor([[[1.0, 0.0], [0.0, 1.0]], [[float("nan"), 0.0], [0.0, 1.0]]])),
    "linalg_qr_bad_mode": lambda L: L.linalg.qr(_x(L, 2, 2), mode="full"),
    "linalg_qr_integer": lambda L: L.linalg.qr(L.ones(3, 2, dtype=L.int32)),
    "linalg_svd_half": lambda L: L.linalg.svd(L.eye(2, dtype=L.float16)),
    "linalg_qr_r_backward": lambda L: L.linalg.qr(_x(L, 3, 2), mode="r").R.sum().backward(),
    "linalg_lstsq_bad_driver": lambda L: L.linalg.lstsq(_x(L, 3, 2), _x(L, 3, 1), driver="gesv"),
    "linalg_lstsq_rows_mismatch": lambda L: L.linalg.lstsq(_x(L, 3, 2), _x(L, 4, 1)),
    "linalg_lstsq_integer": lambda L: L.linalg.lstsq(L.ones(3, 2, dtype=L.int64),
                                                     L.ones(3, 1, dtype=L.int64)),
    "linalg_matrix_rank_vector": lambda L: L.linalg.matrix_rank(_x(L, 3)),
    "linalg_pinv_nan": lambda L: L.linalg.pinv(
        L.tensor([[float("nan"), 0.0], [0.0, 1.0]], requires_grad=True)),
    "linalg_multi_dot_one": lambda L: L.linalg.multi_dot([_x(L, 2, 2)]),
    "linalg_multi_dot_mismatch": lambda L: L.linalg.multi_dot([_x(L, 2, 3), _x(L, 2, 2)]),
    "linalg_multi_dot_3d": lambda L: L.linalg.multi_dot([_x(L, 2, 2, 2), _x(L, 2, 2)]),
    "linalg_matrix_power_not_square": lambda L: L.linalg.matrix_power(_x(L, 2, 3), 2),
    "linalg_qr_complete_tall_backward": lambda L: L.linalg.qr(
        L.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]], requires_grad=True),
        mode="complete").Q.sum().backward(),
    "mask_of_another_size": lambda L: _x(L, 2, 3)[L.ones(3) > 0],
    "empty_mask_setitem": lambda L: (_x(L, 2, 3) * 1.0).__setitem__(L.ones(0) > 0, 1.0),
    "empty_mask_getitem": lambda L: (_x(L, 2, 3) * 1.0)[:, L.ones(0) > 0].sum().backward(),
    "index_select_dim0_out_of_range": lambda L: _x(L, 3, 2).index_select(0, L.tensor([3])),
    "cross_entropy_weight_requires_grad": lambda L: F(L).cross_entropy(
        _x(L, 3, 4), L.tensor([0, 1, 2]), weight=_x(L, 4)),
    "nll_loss_weight_of_another_dtype": lambda L: F(L).nll_loss(
        _x(L, 3, 4), L.tensor([0, 1, 2]), weight=L.ones(4, dtype=L.float64)),
    "cross_entropy_int32_target": lambda L: F(L).cross_entropy(_x(L, 3, 4), L.tensor([0, 1, 2],
                                                                                  dtype=L.int32)),
    "cross_entropy_label_smoothing_above_one": lambda L: F(L).cross_entropy(
        _x(L, 3, 4), L.tensor([0, 1, 2]), label_smoothing=1.5),
    "nll_loss_of_int64": lambda L: F(L).nll_loss(L.ones(3, 4, dtype=L.int64), L.tensor([0, 1, 2])),
    "mse_loss_of_int64": lambda L: F(L).mse_loss(L.ones(3, dtype=L.int64), L.ones(3, dtype=L.int64)),
    "bce_target_above_one": lambda L: F(L).binary_cross_entropy(
        L.full((3,), 0.5, requires_grad=True), L.tensor([0.0, 1.5, 1.0])),
    "bce_target_of_another_dtype": lambda L: F(L).binary_cross_entropy(
        L.full((3,), 0.5, requires_grad=True), L.ones(3, dtype=L.float64)),
    "bce_weight_not_broadcasting": lambda L: F(L).binary_cross_entropy(
        L.full((2, 4), 0.5, requires_grad=True), L.ones(2, 4), weight=L.ones(3)),
    "bce_with_logits_pos_weight_not_broadcasting": lambda L: F(L).binary_cross_entropy_with_logits(
        _x(L, 2, 4), L.ones(2, 4), pos_weight=L.ones(3)),
    "mse_loss_shape_mismatch": lambda L: F(L).mse_loss(_x(L, 2, 3), _x(L, 3, 2)),
    "multi_margin_loss_target_too_large": lambda L: F(L).multi_margin_loss(_x(L, 2, 3), L.tensor([0, 3])),
    "smooth_l1_loss_negative_beta": lambda L: F(L).smooth_l1_loss(_x(L, 2), _x(L, 2), beta=-0.5),
    # ---- in-place writes over overlapping memory
    "inplace_into_expanded": lambda L: L.arange(4.0)[None].expand(3, 4).add_(1),
    "inplace_operand_over_target": lambda L: _inplace_shifted(L),
    "setitem_value_over_target": lambda L: _setitem_shifted(L),
    "copy_into_expanded": lambda L: L.zeros(3).expand(2, 3).copy_(L.ones(2, 3)),
    "normal_into_expanded": lambda L: L.zeros(3).expand(2, 3).normal_(),
    "exponential_into_expanded": lambda L: L.zeros(3).expand(2, 3).exponential_(),
    "exponential_negative_lambda": lambda L: L.zeros(3).exponential_(-1.0),
    "categorical_log_prob_out_of_support": lambda L: L.distributions.Categorical(
        L.ones(3)).log_prob(L.tensor([3])),
    "normal_negative_scale": lambda L: L.distributions.Normal(L.zeros(2), L.tensor([1.0, -1.0])),
    "inplace_into_view_of_leaf": lambda L: L.ones(2, 3, requires_grad=True)[0].mul_(2),
    "detach__of_a_view": lambda L: (L.ones(2, 3, requires_grad=True) * 2)[0].detach_(),
    "addcdiv_of_integers": lambda L: L.addcdiv(L.tensor([1, 2]), L.tensor([1, 2]), L.tensor([1, 1])),
    # ---- joining: hstack, meshgrid
    "hstack_of_nothing": lambda L: L.hstack([]),
    "meshgrid_unknown_indexing": lambda L: L.meshgrid(_x(L, 2), _x(L, 3), indexing="yx"),
    "meshgrid_of_a_matrix": lambda L: L.meshgrid(_x(L, 2, 2), _x(L, 3), indexing="ij"),
    "meshgrid_mixed_dtypes": lambda L: L.meshgrid(_x(L, 2), _x(L, 3).double(), indexing="ij"),
    # ---- views: narrow, select, movedim, unflatten
    "narrow_past_the_end": lambda L: _x(L, 2, 3).narrow(1, 2, 2),
    "narrow_negative_length": lambda L: _x(L, 2, 3).narrow(1, 0, -1),
    "narrow_start_out_of_range": lambda L: _x(L, 2, 3).narrow(1, -4, 1),
    "select_out_of_range": lambda L: _x(L, 2, 3).select(1, 3),
    "movedim_repeated_source": lambda L: _x(L, 2, 3).movedim((0, 0), (0, 1)),
    "movedim_lengths_differ": lambda L: _x(L, 2, 3).movedim((0, 1), (0,)),
    "movedim_tuple_and_int": lambda L: _x(L, 2, 3).movedim((0, 1), 0),
    "unflatten_wrong_product": lambda L: _x(L, 2, 4).unflatten(1, (3, 2)),
    "setitem_into_view_of_leaf": lambda L: L.ones(2, 3, requires_grad=True).view(6)[1:].__setitem__(0, 5.0),
    # ---- fill_: a value tensor with dimensions, values its dtype cannot hold
    "fill_1d_value": lambda L: _x(L, 3).fill_(L.ones(1)),
    "fill_nan_into_int64": lambda L: L.zeros(3, dtype=L.int64).fill_(float("nan")),
    "fill_300_into_uint8": lambda L: L.zeros(3, dtype=L.uint8).fill_(300),
    "fill_1e300_into_float32": lambda L: L.zeros(3).fill_(1e300),
    "fill_1e300_into_bfloat16": lambda L: L.zeros(3, dtype=L.bfloat16).fill_(1e300),
    "fill_complex_into_float32": lambda L: L.zeros(3).fill_(1 + 1j),
    "fill_huge_int": lambda L: L.zeros(3).fill_(2**70),
    # ---- elementwise math and activations: dtypes PyTorch has no kernel for, bad arguments
    "masked_fill_float_mask": lambda L: _x(L, 3).masked_fill(L.ones(3), 1.0),
    "masked_fill_long_mask": lambda L: L.masked_fill(_x(L, 3), L.ones(3, dtype=L.int64), 1.0),
    "masked_fill_1d_value": lambda L: _x(L, 3).masked_fill(L.ones(3) > 0, _x(L, 3)),
    "add_int_float_alpha": lambda L: L.add(L.tensor([1, 2]), L.tensor([1, 2]), alpha=0.5),
    "lerp_mixed_dtypes": lambda L: L.lerp(_x(L, 2), _x(L, 2).double(), 0.5),
    "lerp_of_int64": lambda L: L.lerp(L.tensor([1, 2]), L.tensor([3, 4]), 0.5),
    "floor_of_bool": lambda L: L.tensor([True, False]).floor(),
    "remainder_of_bool": lambda L: L.tensor([True]) % L.tensor([True]),
    "round_decimals_of_int64": lambda L: L.tensor([1, 2]).round(decimals=1),
    "int64_remainder_by_zero": lambda L: L.tensor([1, 2]) % L.tensor([1, 0]),
    "int64_fmod_by_zero": lambda L: L.fmod(L.tensor([1, 2]), 0),
    # (the Scalar_Tensor overload: its node has no derivative)
    "number_remainder_by_tensor_backward": lambda L: (2.5 % _x(L, 2)).sum().backward(),
    "shift_of_float": lambda L: _x(L, 2) << 1,
    "shift_of_bools": lambda L: L.tensor([True]) >> L.tensor([True]),
    "int_shift_by_float": lambda L: L.tensor([1, 2]) << 1.5,
    "nextafter_of_int64": lambda L: L.nextafter(L.tensor([1, 2]), L.tensor([3, 4])),
    "nextafter_of_number": lambda L: L.nextafter(_x(L, 2), 2.0),
    "maximum_of_number": lambda L: L.maximum(1.5, _x(L, 2)),
    "logical_and_of_number": lambda L: L.logical_and(_x(L, 2), 1),
    "isclose_of_number": lambda L: L.isclose(1.0, _x(L, 2)),
    "argmax_of_bools": lambda L: L.tensor([True, False]).argmax(),
    "trapezoid_of_bools": lambda L: L.trapezoid(L.tensor([True, False])),
    "trapezoid_x_of_wrong_size": lambda L: L.trapezoid(_x(L, 3), L.tensor([0.0, 1.0])),
    "trapezoid_of_scalar": lambda L: L.cumulative_trapezoid(L.tensor(1.0)),
    "xor_of_float": lambda L: _x(L, 2) ^ _x(L, 2),
    "and_of_float": lambda L: _x(L, 2) & _x(L, 2),
    "invert_float": lambda L: ~_x(L, 2),
    "bitwise_not_of_float": lambda L: L.bitwise_not(_x(L, 2)),
    "atan2_of_number": lambda L: L.atan2(_x(L, 2), 2.0),
    # the other math functions
    "asin_of_number": lambda L: L.asin(0.5),
    "hypot_of_int64": lambda L: L.hypot(L.tensor([1, 2]), L.tensor([3, 4])),
    "frac_of_int64": lambda L: L.tensor([1, 2]).frac(),
    "logaddexp_of_number": lambda L: L.logaddexp(_x(L, 2), 2.0),
    "fmax_of_number": lambda L: _x(L, 2).fmax(1.0),
    "xlogy_of_two_numbers": lambda L: L.xlogy(2.0, 3.0),
    "copysign_of_number_and_tensor": lambda L: L.copysign(2.0, _x(L, 2)),
    "logit_eps_of_str": lambda L: L.logit(_x(L, 2), "0.1"),
    "asin__of_int64": lambda L: L.tensor([1, 2]).asin_(),
    "asinh__backward": lambda L: (_x(L, 2) * 1).asinh_().sum().backward(),
    "arccosh__backward": lambda L: L.arccosh_(_x(L, 2) * 2).sum().backward(),
    "gelu_of_int64": lambda L: F(L).gelu(L.ones(2, dtype=L.int64)),
    "gelu_bad_approximate": lambda L: F(L).gelu(_x(L, 2), approximate="exact"),
    "leaky_relu_of_int64": lambda L: F(L).leaky_relu(L.ones(2, dtype=L.int64)),
    "hardtanh_of_bool": lambda L: F(L).hardtanh(L.tensor([True])),
    "hardtanh_min_above_max": lambda L: F(L).hardtanh(_x(L, 2), 2.0, 1.0),
    "softshrink_negative_lambd": lambda L: F(L).softshrink(_x(L, 2), -0.5),
    "celu_alpha_0": lambda L: F(L).celu(_x(L, 2), 0.0),
    "glu_odd_dim": lambda L: F(L).glu(_x(L, 2, 3)),
    "glu_of_scalar": lambda L: F(L).glu(_x(L)),
    "prelu_channel_mismatch": lambda L: F(L).prelu(_x(L, 2, 3), _x(L, 2)),
    "prelu_dtype_mismatch": lambda L: L.prelu(_x(L, 2, 3), L.ones(1, dtype=L.float64)),
    "rrelu_lower_above_upper": lambda L: F(L).rrelu(_x(L, 2), 0.5, 0.1, training=True),
    "softmax2d_of_2d": lambda L: L.nn.Softmax2d()(_x(L, 2, 3)),
    "threshold_of_bool": lambda L: L.threshold(L.tensor([True]), 0, 1),
    "unflatten_sizes_mismatch": lambda L: L.nn.Unflatten(1, (2, 4))(_x(L, 2, 6)),
    "module_list_of_number": lambda L: L.nn.ModuleList([L.nn.ReLU(), 3]),
    "isclose_dtype_mismatch": lambda L: L.isclose(_x(L, 2), L.ones(2, dtype=L.float64)),
    # ---- reductions, sorting, norms, histograms
    "topk_k_too_large": lambda L: _x(L, 2, 3).topk(4),
    "sort_dim_out_of_range": lambda L: _x(L, 2, 3).sort(2),
    "norm_of_int64": lambda L: L.tensor([1, 2]).norm(),
    "norm_inf_of_empty_dim": lambda L: L.ones(0, 3).norm(p=float("inf"), dim=0),
    "histc_of_int64": lambda L: L.histc(L.tensor([1, 2]), 3),
    "histogram_range_min_above_max": lambda L: L.histogram(L.ones(3), 2, range=(3.0, 0.0)),
    "sum_dim_and_axis": lambda L: _x(L, 2, 3).sum(0, axis=1),
    "max_keepdim_and_keepdims": lambda L: _x(L, 2, 3).max(0, keepdim=True, keepdims=True),
    "prod_tuple_dim": lambda L: _x(L, 2, 3).prod((0, 1)),
    # ---- convolution (messages are checked in tests/nn/test_conv.py)
    "conv2d_kernel_larger_than_padded_input": lambda L: F(L).conv2d(_x(L, 1, 3, 4, 4), _x(L, 2, 3, 5, 5), padding=0),
    "conv2d_channels_not_divisible_by_groups": lambda L: F(L).conv2d(_x(L, 1, 3, 4, 4), _x(L, 2, 1, 3, 3), groups=2),
    "conv2d_input_rank": lambda L: F(L).conv2d(_x(L, 4, 4), _x(L, 2, 1, 3, 3)),
    "conv1d_weight_shape": lambda L: F(L).conv1d(_x(L, 1, 3, 4), _x(L, 2, 3, 3, 3)),
    "conv2d_same_with_stride": lambda L: F(L).conv2d(_x(L, 1, 3, 4, 4), _x(L, 2, 3, 3, 3), stride=2, padding="same"),
    "conv2d_negative_padding": lambda L: F(L).conv2d(_x(L, 1, 3, 4, 4), _x(L, 2, 3, 3, 3), padding=-1),
    "conv2d_dtype_mismatch": lambda L: F(L).conv2d(_x(L, 1, 3, 4, 4), _x(L, 2, 3, 3, 3).double()),
    "conv2d_module_groups": lambda L: L.nn.Conv2d(3, 4, 3, groups=2),
    "conv_transpose2d_input_channels": lambda L: F(L).conv_transpose2d(_x(L, 1, 3, 4, 4), _x(L, 4, 2, 3, 3)),
    "conv_transpose2d_output_padding_not_below_stride": lambda L: F(L).conv_transpose2d(
        _x(L, 1, 4, 4, 4), _x(L, 4, 2, 3, 3), stride=2, output_padding=2),
    "conv_transpose1d_output_too_small": lambda L: F(L).conv_transpose1d(_x(L, 1, 4, 2), _x(L, 4, 2, 3), padding=3),
    # ---- pooling (messages are checked in tests/nn/test_pooling.py)
    "max_pool2d_pad_above_half_kernel": lambda L: F(L).max_pool2d(_x(L, 1, 2, 4, 4), 2, padding=2),
    "max_pool2d_kernel_larger_than_input": lambda L: F(L).max_pool2d(_x(L, 1, 2, 4, 4), 5),
    "max_pool2d_dilated_output_too_small": lambda L: F(L).max_pool2d(_x(L, 1, 1, 2, 2), 3, padding=1,
                                                                      dilation=2),
    "max_pool2d_input_rank": lambda L: F(L).max_pool2d(_x(L, 4, 4), 2),
    "max_pool2d_stride_zero": lambda L: F(L).max_pool2d(_x(L, 1, 2, 4, 4), 2, stride=0),
    "max_pool2d_negative_kernel": lambda L: F(L).max_pool2d(_x(L, 1, 2, 4, 4), -1),
    "max_pool2d_float_kernel": lambda L: F(L).max_pool2d(_x(L, 1, 2, 4, 4), 2.0),
    "max_pool2d_of_bool": lambda L: F(L).max_pool2d(L.ones(1, 1, 4, 4, dtype=L.bool), 2),
    "max_pool1d_input_rank": lambda L: F(L).max_pool1d(_x(L, 1, 2, 4, 4), 2),
    "avg_pool2d_pad_above_half_kernel": lambda L: F(L).avg_pool2d(_x(L, 1, 2, 4, 4), 2, padding=2),
    "avg_pool1d_kernel_larger_than_input": lambda L: F(L).avg_pool1d(_x(L, 1, 2, 4), 5),
    "avg_pool2d_divisor_zero": lambda L: F(L).avg_pool2d(_x(L, 1, 2, 4, 4), 2, divisor_override=0),
    "adaptive_avg_pool2d_negative_size": lambda L: F(L).adaptive_avg_pool2d(_x(L, 1, 2, 4, 4), -1),
    "adaptive_max_pool2d_empty_dim": lambda L: F(L).adaptive_max_pool2d(_x(L, 1, 2, 0, 4), 2),
    "adaptive_max_pool1d_two_sizes": lambda L: F(L).adaptive_max_pool1d(_x(L, 1, 2, 4), (2, 2)),
    # ---- normalization
    "batch_norm2d_wrong_channels": lambda L: L.nn.BatchNorm2d(3)(_x(L, 2, 4, 3, 3)),
    "batch_norm1d_4d_input": lambda L: L.nn.BatchNorm1d(3)(_x(L, 2, 3, 4, 4)),
    "batch_norm2d_3d_input": lambda L: L.nn.BatchNorm2d(3)(_x(L, 2, 3, 4)),
    "batch_norm_one_value_per_channel": lambda L: L.nn.BatchNorm2d(3)(_x(L, 1, 3, 1, 1)),
    "batch_norm_eval_without_running_stats": lambda L: F(L).batch_norm(_x(L, 2, 3), None, None),
    "batch_norm_weight_mismatch": lambda L: F(L).batch_norm(
        _x(L, 2, 4), L.zeros(4), L.ones(4), _x(L, 3), training=True),
    "batch_norm_of_int64": lambda L: F(L).batch_norm(L.ones(2, 3, dtype=L.int64), L.zeros(3),
                                                     L.ones(3), training=True),
    "batch_norm_momentum_none": lambda L: F(L).batch_norm(_x(L, 2, 3), L.zeros(3), L.ones(3),
                                                          training=True, momentum=None),
    "layer_norm_shape_mismatch": lambda L: F(L).layer_norm(_x(L, 2, 3, 4), (3,)),
    "layer_norm_int_shape": lambda L: F(L).layer_norm(_x(L, 2, 4), 4),
    "layer_norm_weight_mismatch": lambda L: F(L).layer_norm(_x(L, 2, 4), (4,), _x(L, 3)),
    "group_norm_channels_not_divisible": lambda L: F(L).group_norm(_x(L, 2, 4), 3),
    "group_norm_module_channels_not_divisible": lambda L: L.nn.GroupNorm(4, 6),
    "group_norm_one_value_per_group": lambda L: L.nn.GroupNorm(3, 3)(_x(L, 1, 3)),
    # ---- padding, resizing, channel dropout
    "pad_odd_length": lambda L: F(L).pad(_x(L, 2, 3), (1, 2, 3)),
    "pad_longer_than_rank": lambda L: F(L).pad(_x(L, 3), (1, 1, 1, 1)),
    "pad_reflect_as_large_as_input": lambda L: F(L).pad(_x(L, 1, 2, 3), (3, 0), mode="reflect"),
    "pad_reflect_wrong_rank": lambda L: F(L).pad(_x(L, 1, 2, 3, 4), (1, 1), mode="reflect"),
    "pad_replicate_empty_output": lambda L: F(L).pad(_x(L, 1, 2, 3), (-2, -1), mode="replicate"),
    "pad_circular_wraps_twice": lambda L: F(L).pad(_x(L, 1, 2, 3), (4, 0), mode="circular"),
    "pad_unknown_mode": lambda L: F(L).pad(_x(L, 1, 2, 3), (1, 0), mode="mirror"),
    "pad_crop_below_zero": lambda L: F(L).pad(_x(L, 2, 3), (-4, 1)),
    "interpolate_size_and_scale": lambda L: F(L).interpolate(_x(L, 1, 1, 2, 2), size=3, scale_factor=2),
    "interpolate_nearest_align_corners": lambda L: F(L).interpolate(
        _x(L, 1, 1, 2, 2), scale_factor=2, align_corners=True),
    "interpolate_bilinear_3d": lambda L: F(L).interpolate(_x(L, 1, 1, 2), scale_factor=2, mode="bilinear"),
    "interpolate_empty_output": lambda L: F(L).interpolate(_x(L, 1, 1, 4, 5), scale_factor=0.2),
    "interpolate_of_int64": lambda L: F(L).interpolate(L.ones(1, 1, 2, 2, dtype=L.int64), scale_factor=2),
    "dropout1d_of_4d": lambda L: F(L).dropout1d(_x(L, 1, 2, 3, 4)),
    "feature_alpha_dropout_of_1d": lambda L: F(L).feature_alpha_dropout(_x(L, 3), 0.2, True),
    "alpha_dropout_of_int64": lambda L: F(L).alpha_dropout(L.ones(3, dtype=L.int64), 0.2, True),
    "unfold_no_blocks": lambda L: F(L).unfold(_x(L, 1, 2, 3, 4), 5),
    "fold_blocks_mismatch": lambda L: F(L).fold(_x(L, 1, 8, 5), (3, 4), 2),
    "pixel_shuffle_channels": lambda L: F(L).pixel_shuffle(_x(L, 1, 6, 2, 2), 2),
    # ---- writes by index, new in-place forms
    "index_put_out_of_range": lambda L: (_x(L, 3) * 1).index_put_((L.tensor([5]),), L.ones(1)),
    "index_put_accumulate_out_of_range": lambda L: _x(L, 2, 3).index_put(
        (L.tensor([0]), L.tensor([-4])), L.ones(1), accumulate=True),
    "fill_diagonal_of_1d": lambda L: (_x(L, 3) * 1).fill_diagonal_(0.5),
    "squeeze__dim_out_of_range": lambda L: (_x(L, 2, 1) * 1).squeeze_(3),
    # ---- spatial transformers
    "grid_sample_unknown_mode": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2), mode="cubic", align_corners=False),
    "grid_sample_unknown_padding": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2), padding_mode="wrap", align_corners=False),
    "grid_sample_batch_mismatch": lambda L: F(L).grid_sample(
        _x(L, 2, 1, 2, 2), _x(L, 1, 3, 3, 2), align_corners=False),
    "grid_sample_grid_last_dim": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 3), align_corners=False),
    "grid_sample_grid_rank": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 1, 2), align_corners=False),
    "grid_sample_empty_spatial": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 0, 2), _x(L, 1, 3, 3, 2), align_corners=False),
    "grid_sample_dtype_mismatch": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2).double(), align_corners=False),
    "grid_sample_of_int64": lambda L: F(L).grid_sample(
        L.ones(1, 1, 2, 2, dtype=L.int64), L.ones(1, 3, 3, 2, dtype=L.int64), align_corners=False),
    "grid_sample_align_corners_int": lambda L: F(L).grid_sample(
        _x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2), align_corners=1),
    "affine_grid_int_theta": lambda L: F(L).affine_grid(
        L.ones(1, 2, 3, dtype=L.int64), (1, 1, 2, 2), align_corners=False),
    "affine_grid_theta_shape": lambda L: F(L).affine_grid(_x(L, 1, 3, 3), (1, 1, 2, 2),
                                                          align_corners=False),
    "affine_grid_size_rank": lambda L: F(L).affine_grid(_x(L, 1, 2, 3), (1, 1, 2),
                                                        align_corners=False),
    "affine_grid_empty_size": lambda L: F(L).affine_grid(_x(L, 1, 2, 3), (1, 0, 2, 2),
                                                         align_corners=False),
    "affine_grid_batch_mismatch": lambda L: F(L).affine_grid(_x(L, 2, 2, 3), (3, 1, 2, 2),
                                                             align_corners=False),
    "affine_grid_float_size": lambda L: F(L).affine_grid(_x(L, 1, 2, 3), (1, 1, 2.0, 2),
                                                         align_corners=False),
}

# Indices changed after forward: nbgrad must raise torch's IndexError, or give the gradient
# of the indices the forward saw (torch's embedding backward reads the changed id and raises
# nothing, reading memory it should not).
CHANGED = {name for name in BAD if hasattr(BAD[name], "unchanged")}


def _good_cross_entropy(L):
    x = L.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]], requires_grad=True)
    loss = F(L).cross_entropy(x, L.tensor([2, 0]))
    loss.backward()
    return [loss, x.grad]


def _good_embedding(L):
    w = L.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    out = F(L).embedding(L.tensor([2, 0, 2]), w)
    (out * 2.0).sum().backward()
    return [out, w.grad]


def _good_index(L):
    x = L.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    y = x * 1.0
    y[L.tensor([1])] = 0.5
    out = y[L.tensor([2, 1, 2])]
    (out * 3.0).sum().backward()
    return [out, x.grad]


def _good_matmul(L):
    a = L.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    b = L.tensor([[0.5], [-1.0]], requires_grad=True)
    out = F(L).linear(a @ b, L.tensor([[2.0]]), L.tensor([1.0]))
    out.sum().backward()
    return [out, a.grad, b.grad]


def _good_linalg(L):
    a = L.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)
    out = L.linalg.solve(a, L.ones(2)) + L.linalg.cholesky(a)[1] + L.linalg.det(a)
    out.sum().backward()
    return [out, a.grad]


def _good_elementwise(L):
    x = L.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = L.cat([(x - 1.0).softmax(0), x.max().reshape(1), (-x).exp()])
    out.sum().backward()
    return [out, x.grad, L.logical_not(L.tensor([True, False]))]


def _good_module(L):
    module = L.nn.Linear(2, 1)
    module.load_state_dict({"weight": L.tensor([[1.0, 2.0]]), "bias": L.tensor([0.5])})
    out = module(L.tensor([[1.0, 1.0]]))
    return [out, module.weight]


def _good_for(name):
    if "cross_entropy" in name or "nll" in name:
        return _good_cross_entropy
    if "embedding" in name:
        return _good_embedding
    if "index" in name:
        return _good_index
    if "matmul" in name or "linear" in name:
        return _good_matmul
    if "linalg" in name:
        return _good_linalg
    if "load_state_dict" in name:
        return _good_module
    return _good_elementwise


# ---------------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------------

def _builtin_types(error):
    return [cls.__name__ for cls in type(error).__mro__ if cls.__module__ == "builtins"]


def _as_list(t):
    return np.asarray(t.detach().numpy()).tolist()


def _child(mode, names):
    global MODE
    MODE = mode
    import nbgrad
    import nbgrad.nn.functional  # noqa: F401
    if mode == "immediate":
        nbgrad.fuse.deferred.enabled = False
    for name in names:
        print(json.dumps(["begin", name]), flush=True)
        bad = BAD[name]
        if mode == "compile" and not getattr(bad, "stepped", False):
            bad = (lambda b: lambda L: L.compile(lambda: b(L))())(bad)
        try:
            result = bad(nbgrad)
            raised = None
            value = _as_list(result) if hasattr(result, "detach") else repr(result)
        except Exception as error:  # noqa: BLE001 (the type is the result)
            raised, value = _builtin_types(error), f"{type(error).__name__}: {error}"[:300]
        try:
            good = [_as_list(t) for t in _good_for(name)(nbgrad)]
        except Exception as error:  # noqa: BLE001
            good = f"{type(error).__name__}: {error}"[:300]
        print(json.dumps(["end", name, raised, value, good]), flush=True)


def run_cases(mode, names):
    """{name: (raised builtin type names or None, value or message, good results)}, with
    ("crash", message) for a case that killed its child process."""
    from conftest import child_env, read_case_records  # the parent only: a child imports neither

    results = {}
    remaining = list(names)
    while remaining:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), mode, *remaining],
                              env=child_env(), capture_output=True, text=True, timeout=600)
        records, started = read_case_records(proc.stdout)
        results.update((case, tuple(result)) for case, result in records.items())
        done = [n for n in remaining if n in results]
        if started is None and len(done) == len(remaining):
            break
        crashed = started if started is not None else remaining[len(done)]
        results[crashed] = ("crash", f"exit {proc.returncode}: {proc.stderr[-1500:]}", None)
        remaining = remaining[remaining.index(crashed) + 1:]
    return results


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------

def _torch_outcome(bad):
    import torch
    try:
        result = bad(torch)
    except Exception as error:  # noqa: BLE001
        return _builtin_types(error), None
    return None, result


@pytest.fixture(scope="module")
def outcomes():
    """mode -> {case: outcome}, each mode's cases run in one child process (started again
    after a crash)."""
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = run_cases(mode, list(BAD))
        return cache[mode]
    return get


def test_fuse_after_is_current():
    from nbgrad.fuse import deferred
    assert FUSE_AFTER == deferred.FUSE_AFTER


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_raises_torchs_error_and_the_process_goes_on(name, mode, outcomes):
    import torch
    raised, message, good = outcomes(mode)[name]
    assert raised != "crash", f"{name} ({mode}) killed the process: {message}"
    expected, torch_result = _torch_outcome(BAD[name])
    if name in CHANGED:
        # The gradient of the indices the forward saw, or torch's error type.
        if raised is None:
            _, unchanged = _torch_outcome(BAD[name].unchanged)
            np.testing.assert_allclose(np.array(message), unchanged.numpy(), rtol=1e-6,
                                       err_msg=f"{name} ({mode}): not the gradient of the "
                                       "indices the forward saw")
        else:
            assert "IndexError" in raised, f"{name} ({mode}): {message} (torch: IndexError)"
    else:
        assert expected is not None, f"torch does not raise for {name}: {torch_result}"
        assert raised is not None, f"{name} ({mode}): no error (torch: {expected[0]}); got {message}"
        assert expected[0] in raised, f"{name} ({mode}): {message} (torch: {expected[0]})"
    assert not isinstance(good, str), f"{name} ({mode}): the correct call afterwards failed: {good}"
    for actual, reference in zip(good, _good_for(name)(torch), strict=True):
        np.testing.assert_allclose(np.array(actual, dtype=np.float64),
                                   reference.detach().double().numpy(), rtol=1e-6,
                                   err_msg=f"{name} ({mode}): the correct call afterwards")


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
