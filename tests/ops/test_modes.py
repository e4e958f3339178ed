"""Every primitive with a fused rule, from the op tables, in nbgrad's three modes, against torch.

The rows are `TABLE` of test_ops.py plus `MORE` below (the nn primitives and the parameter
values, shapes and layouts TABLE lacks), and each row runs in float32 and float64:

  (a) eager with deferral off (`nbgrad.fuse.deferred.enabled = False`);
  (b) the default deferred mode in a loop of `FUSE_AFTER + 4` iterations with fresh leaves
      (new values, same shapes): iteration FUSE_AFTER traces the graph and the last ones run
      its fused kernel; values and every .grad are compared at every iteration;
  (c) `nbgrad.compile` of the forward+backward step, called 4 times (`COMPILE_VALUES`: the
      second call on the first call's tensors, then fresh argument tensors with new values):
      the first call traces, the later ones run the fused kernel; each call's values and
      .grad are compared, and earlier calls' arguments must keep their own gradients.

The fused modes (b) and (c) take the rows outside `EAGER_ONLY` (a covering subset of some
primitives' rows, to keep the test time down) and `FUSED_TWINS` (rows whose primitive calls
are another row's), (c) strided arguments on MORE's rows only (`COMPILE_CASES`); (a) takes
every row.

Each mode asserts how the calls ran, so that a silent eager fallback fails: a row whose
primitives all have a fused rule must run fused, and the rows that legitimately cannot are
listed by `_compile_fallback` and `_deferred_fallback` with the reason, and the calls that a
fused rule declines in `FUSED_RULE_LIMITS`.
`test_every_fused_primitive_has_a_row` fails for a primitive added without a row.

Then the dtype promotion table (whole in eager mode, a covering subset in the fused modes:
see FUSED_PROMOTION_CASES), with one float operand requiring grad so
that the ops defer and are traced.
"""
import functools
import warnings

import numpy as np
import pytest
import torch

import nbgrad
import nbgrad.nn.functional  # noqa: F401  (L.nn.functional in the rows)
from conftest import TOL, assert_close, rng_for
from nbgrad._core import tracing as _tracing
from nbgrad.fuse import deferred
from nbgrad.fuse import graph as fused_graph
from nbgrad.ops import PRIMITIVES
from test_ops import MATH_ROWS, REDUCE32, TABLE, _PrimitiveRecorder, make_input, row

A = np.array


def F(L):
    return L.nn.functional


def _setitem_rows(L, x, v):
    y = x * 1.0
    y[L.tensor([0, 2])] = v
    return y


def _setitem_slice(L, x, v):
    y = x * 1.0
    y[1:, ::2] = v
    return y


# Class targets and ids, made inside the row (they are not leaves: integers have no gradient).
TARGET = A([1, 0, 3])
TARGET_IGNORED = A([1, -100, 3])
TARGET_3D = A([[0, 2], [1, 1]])  # (N=2, d=2) for an input (N, C=4, d=2)
CLASS_WEIGHT = A([0.5, 2.0, 1.0, 1.5])
POS_WEIGHT = A([3.0, 1.0, 0.5, 2.0])
IDS = A([[1, 0, 3], [3, 9, 1]])
RANK_TARGET = A([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0]])


def _const(L, array, like):
    return L.tensor(array, dtype=like.dtype)


def _math_fused(L, a, b):
    """Every math function of TABLE's math rows (on a and b real, or in their domains), and
    the Scalar overloads of xlogy and copysign: one fused kernel per mode and dtype."""
    u, p, e = a.tanh(), a.sigmoid(), b.exp()
    unary = (u.tan() + u.asin() + u.acos() + a.atan() + a.sinh() + a.cosh() + a.asinh() + (a * a + 1).acosh()
             + u.atanh() + p.rsqrt() + a.erfc() + a.exp2() + p.logit() + p.logit(eps=0.3)
             + a.frac() + a.sgn() * a + a.deg2rad() + a.rad2deg() + a.sinc())
    binary = (L.xlogy(a, e) + a.xlogy(2.5) + L.xlogy(3, e) + L.hypot(a, b) + L.copysign(a, b)
              + L.copysign(b, -1.5) + L.logaddexp(a, b) + L.logaddexp2(a, b) + L.fmax(a, b)
              + L.fmin(a, b) + L.nextafter(a, b))
    return unary + binary


MORE = [
    # ---- nn primitives: linear
    row("linear", lambda L, x, w, b: F(L).linear(x, w, b), (4, 3), (2, 3), (2,), tol32=REDUCE32),
    row("linear_no_bias", lambda L, x, w: F(L).linear(x, w), (4, 3), (2, 3), tol32=REDUCE32),
    row("linear_3d", lambda L, x, w, b: F(L).linear(x, w, b), (2, 4, 3), (5, 3), (5,), tol32=REDUCE32),
    row("linear_1d", lambda L, x, w, b: F(L).linear(x, w, b), (3,), (2, 3), (2,), tol32=REDUCE32),
    row("linear_T_weight", lambda L, x, w, b: F(L).linear(x, w.T, b), (4, 3), (3, 2), (2,), tol32=REDUCE32),
    row("linear_empty_batch", lambda L, x, w, b: F(L).linear(x, w, b), (0, 3), (2, 3), (2,)),
    # ---- nn primitives: pointwise losses, each reduction, gradient to the target too
    row("mse_loss", lambda L, x, y: F(L).mse_loss(x, y), (3, 4), (3, 4), tol32=REDUCE32),
    row("mse_loss_sum", lambda L, x, y: F(L).mse_loss(x, y, reduction="sum"), (3, 4), (3, 4), tol32=REDUCE32),
    row("mse_loss_none", lambda L, x, y: F(L).mse_loss(x, y, reduction="none"), (3, 4), (3, 4)),
    row("mse_loss_0d", lambda L, x, y: F(L).mse_loss(x, y), (), ()),
    row("mse_loss_T", lambda L, x, y: F(L).mse_loss(x.T, y), (4, 3), (3, 4), tol32=REDUCE32),
    row("l1_loss", lambda L, x, y: F(L).l1_loss(x, y), (3, 4), (3, 4), tol32=REDUCE32),
    row("l1_loss_sum", lambda L, x, y: F(L).l1_loss(x, y, reduction="sum"), (3, 4), (3, 4), tol32=REDUCE32),
    row("l1_loss_none", lambda L, x, y: F(L).l1_loss(x, y, reduction="none"), (2, 3), (2, 3)),
    row("bce", lambda L, x, y: F(L).binary_cross_entropy(x.sigmoid(), y.sigmoid()), (3, 4), (3, 4),
        tol32=REDUCE32),
    row("bce_sum", lambda L, x, y: F(L).binary_cross_entropy(x.sigmoid(), y.sigmoid(), reduction="sum"),
        (3, 4), (3, 4), tol32=REDUCE32),
    row("bce_none_weight", lambda L, x, y: F(L).binary_cross_entropy(
        x.sigmoid(), y.sigmoid(), weight=_const(L, CLASS_WEIGHT, x), reduction="none"), (3, 4), (3, 4)),
    row("bce_logits", lambda L, x, y: F(L).binary_cross_entropy_with_logits(x, y.sigmoid()), (3, 4), (3, 4),
        tol32=REDUCE32),
    row("bce_logits_sum", lambda L, x, y: F(L).binary_cross_entropy_with_logits(
        x, y.sigmoid(), reduction="sum"), (3, 4), (3, 4), tol32=REDUCE32),
    row("bce_logits_none", lambda L, x, y: F(L).binary_cross_entropy_with_logits(
        x, y.sigmoid(), reduction="none"), (3, 4), (3, 4)),
    row("bce_logits_weight_pos_weight", lambda L, x, y: F(L).binary_cross_entropy_with_logits(
        x, y.sigmoid(), weight=_const(L, CLASS_WEIGHT, x), pos_weight=_const(L, POS_WEIGHT, x)),
        (3, 4), (3, 4), tol32=REDUCE32),
    # ---- nn primitives: nll_loss / cross_entropy with weights, ignore_index, reductions
    row("nll_loss", lambda L, x: F(L).nll_loss(x.log_softmax(1), L.tensor(TARGET)), (3, 4), tol32=REDUCE32),
    row("nll_loss_sum_weight", lambda L, x: F(L).nll_loss(
        x.log_softmax(1), L.tensor(TARGET), weight=_const(L, CLASS_WEIGHT, x), reduction="sum"),
        (3, 4), tol32=REDUCE32),
    row("nll_loss_none", lambda L, x: F(L).nll_loss(x, L.tensor(TARGET), reduction="none"), (3, 4)),
    row("nll_loss_ignore_index", lambda L, x: F(L).nll_loss(x, L.tensor(TARGET_IGNORED)), (3, 4),
        tol32=REDUCE32),
    row("nll_loss_ignore_index_1", lambda L, x: F(L).nll_loss(x, L.tensor(TARGET), ignore_index=1), (3, 4),
        tol32=REDUCE32),
    row("cross_entropy", lambda L, x: F(L).cross_entropy(x, L.tensor(TARGET)), (3, 4), tol32=REDUCE32),
    row("cross_entropy_weight", lambda L, x: F(L).cross_entropy(
        x, L.tensor(TARGET), weight=_const(L, CLASS_WEIGHT, x)), (3, 4), tol32=REDUCE32),
    row("cross_entropy_weight_ignore", lambda L, x: F(L).cross_entropy(
        x, L.tensor(TARGET_IGNORED), weight=_const(L, CLASS_WEIGHT, x), reduction="sum"), (3, 4),
        tol32=REDUCE32),
    row("cross_entropy_none", lambda L, x: F(L).cross_entropy(x, L.tensor(TARGET), reduction="none"), (3, 4),
        tol32=REDUCE32),
    # one sample: a 1-D input and a 0-d target (item 5)
    row("cross_entropy_1d", lambda L, x: F(L).cross_entropy(x, L.tensor(2)), (4,), tol32=REDUCE32),
    row("cross_entropy_3d", lambda L, x: F(L).cross_entropy(x, L.tensor(TARGET_3D)), (2, 4, 2),
        tol32=REDUCE32),
    row("cross_entropy_T", lambda L, x: F(L).cross_entropy(x.T, L.tensor(TARGET)), (4, 3), tol32=REDUCE32),
    row("cross_entropy_label_smoothing", lambda L, x: F(L).cross_entropy(
        x, L.tensor(TARGET), label_smoothing=0.1), (3, 4), tol32=REDUCE32),
    # ---- the losses of test_ops' rows in the fused modes, two rows for all (EAGER_ONLY):
    # the pointwise-loss rows smooth_l1_loss, huber_loss, soft_margin_loss; composites of
    # fused ops (kl_div, poisson_nll_loss, hinge embedding; margin ranking, cosine embedding
    # and multilabel soft margin are made of the same ops, eager only: each loss here adds
    # seconds to the step's compile). The others read values (gaussian_nll_loss's check of
    # var, multi_margin_loss's of its targets) or take norms, which have no fused rule.
    row("smooth_l1_huber_soft_margin", lambda L, x, y: F(L).smooth_l1_loss(x, y, beta=0.5)
        + F(L).huber_loss(x, y, reduction="sum", delta=0.8)
        + F(L).soft_margin_loss(x, y.detach().sign()), (3, 4), (3, 4), tol32=REDUCE32),
    row("composite_losses", lambda L, x, y: F(L).kl_div(x, y.exp(), reduction="batchmean")
        + F(L).poisson_nll_loss(x, y * y, log_input=False, full=True)
        + F(L).hinge_embedding_loss(x, _const(L, RANK_TARGET, x), reduction="sum"), (3, 4), (3, 4),
        tol32=REDUCE32),
    # ---- embedding and softmax through F
    row("embedding", lambda L, w: F(L).embedding(L.tensor(IDS), w), (10, 3)),
    row("embedding_padding_idx", lambda L, w: F(L).embedding(L.tensor(IDS), w, padding_idx=1), (10, 3)),
    # (each row's gradient divided by its index's count in IDS)
    row("embedding_scale_grad_by_freq", lambda L, w: F(L).embedding(
        L.tensor(IDS), w, padding_idx=1, scale_grad_by_freq=True), (10, 3)),
    row("F_softmax", lambda L, x: F(L).softmax(x, dim=1), (3, 4), tol32=REDUCE32),
    row("F_softmax_neg", lambda L, x: F(L).softmax(x, -1), (2, 3, 4), tol32=REDUCE32),
    row("F_log_softmax", lambda L, x: F(L).log_softmax(x, dim=0), (3, 4), tol32=REDUCE32),
    row("softmax_size1", lambda L, x: x.softmax(-1), (3, 1)),
    row("softmax_empty", lambda L, x: x.softmax(1), (0, 3)),
    row("softmax_0d", lambda L, x: x.softmax(0), ()),
    # ---- parameter values as Python constants in generated code (item 4): one-sided clamps,
    # inf, -inf, -0.0, integers, large integers, bools
    row("clamp_min_int", lambda L, a: a.clamp(min=0), (3, 4)),
    row("clamp_max_int", lambda L, a: a.clamp(max=1), (3, 4)),
    row("clamp_min_inf_max", lambda L, a: a.clamp(min=-float("inf"), max=0.5), (3, 4)),
    row("clamp_max_inf", lambda L, a: a.clamp(max=float("inf")), (3, 4)),
    row("clamp_min_fn", lambda L, a: L.clamp_min(a, -0.25), (3, 4)),
    row("clamp_max_fn", lambda L, a: L.clamp_max(a, 0.25), (3, 4)),
    row("clamp_min_0d", lambda L, a: a.clamp(min=0.0), ()),
    row("add_neg_zero", lambda L, a: a + (-0.0), (3,)),
    row("mul_inf", lambda L, a: (a * float("inf")).clamp(-1.0, 1.0), (3, 4)),
    row("add_large_int", lambda L, a: (a + 2**40) - 2**40, (3,), tol32=(1e-6, 2e5)),
    row("mul_bool", lambda L, a: a * True + a * False, (3, 4)),
    row("pow_0", lambda L, a: a**0, (3,)),
    row("pow_1", lambda L, a: a**1, (3,)),
    row("rsub_fn", lambda L, a, b: L.rsub(a, b), (3, 4), (4,)),
    row("sub_alpha", lambda L, a, b: L.sub(a, b, alpha=2), (3, 4), (4,)),
    row("add_alpha", lambda L, a, b: L.add(a, b, alpha=-0.5), (3, 4), (3, 1)),
    row("reciprocal", lambda L, a: a.reciprocal(), (3, 4), domain="nonzero"),
    row("square", lambda L, a: a.square(), (3, 4)),
    row("softplus_int_params", lambda L, a: F(L).softplus(a, beta=2, threshold=1), (3, 4)),
    row("cumsum_of_exp", lambda L, a: (a.exp().cumsum(-1) * a).sum(1), (3, 4), tol32=REDUCE32),
    # ---- casts (to_copy) and logical ops inside a differentiable graph
    row("to_float64", lambda L, a: a.double() * 2.0, (3, 4)),
    row("to_float32", lambda L, a: a.float() * 2.0, (3, 4)),
    row("to_dtype", lambda L, a: a.to(L.float64) + a.to(L.float32), (3, 4)),
    row("to_long_no_grad", lambda L, a: (a * 3.0).long().to(a.dtype) * 2.0 + a, (3, 4)),
    row("to_bool_no_grad", lambda L, a: (a * 3.0).bool().to(a.dtype) * 2.0 + a, A([0.0, 1.0, -2.0])),
    row("clone", lambda L, a: a.clone() * a, (3,)),
    row("logical_not", lambda L, a: L.where(~(a > 0), a, a * 2.0), (3, 4)),
    row("logical_and", lambda L, a, b: L.where(L.logical_and(a > 0, b > 0), a, b), (3, 4), (4,)),
    row("logical_or", lambda L, a, b: L.where(L.logical_or(a > 0, b < 0), a * b, b), (3, 4), (3, 4)),
    row("logical_fns", lambda L, a, b: L.where(
        L.logical_and(L.logical_not(a > 0), L.logical_or(a < b, b > 1)), a, b), (3, 4), (3, 4)),
    # ---- size-1 dims, empty dims, 0-d, broadcasting of all of them
    row("mul_size1", lambda L, a, b: a * b, (1, 1), (3, 1)),
    row("add_size1_0d", lambda L, a, b: (a + b).exp(), (1,), ()),
    row("div_bcast_size1", lambda L, a, b: a / b, (2, 1, 3), (1, 4, 1), domain=("real", "nonzero")),
    row("mul_empty_bcast", lambda L, a, b: a * b, (0, 1), (1, 3)),
    row("mean_empty_dim", lambda L, a: a.mean(1), (0, 3)),
    row("sum_size1_keepdim", lambda L, a: a.sum(-1, keepdim=True), (3, 1)),
    row("mean_0d_dim", lambda L, a: a.mean(0), ()),
    row("sum_0d_keepdim", lambda L, a: a.sum(-1, keepdim=True), ()),
    row("sum_empty_tuple", lambda L, a: a.sum(()), (2, 3), tol32=REDUCE32),
    row("sigmoid_empty", lambda L, a: a.sigmoid(), (2, 0)),
    row("where_0d", lambda L, a, b: L.where(a > b, a, b), (), (3,)),
    # ---- views inside the step, then elementwise/reduction/matmul on them
    row("mul_permuted", lambda L, a, b: a.permute(1, 0, 2) * b, (3, 2, 4), (2, 3, 4)),
    row("exp_expanded", lambda L, a: a.expand(3, 4).exp().sum(0), (4,), tol32=REDUCE32),
    row("sum_of_view_negdim", lambda L, a: a.transpose(0, 2).sum(-2), (2, 3, 4), tol32=REDUCE32),
    row("softmax_T", lambda L, a: a.T.softmax(-1), (3, 4), tol32=REDUCE32),
    row("matmul_views_both", lambda L, a, b: a[::2].T @ b.T, (6, 3), (4, 3), tol32=REDUCE32),
    row("reshape_of_sum", lambda L, a: (a * 2.0).reshape(2, 6).sum(1), (3, 4), tol32=REDUCE32),
    row("reshape_then_exp", lambda L, a: a.reshape(4, 3).exp(), (3, 4)),
    # ---- matmul with an empty contraction dimension (item 6)
    row("matmul_empty_contract_3d_2d", lambda L, a, b: a @ b, (2, 2, 0), (0, 1)),
    row("matmul_empty_contract_bmm", lambda L, a, b: a @ b, (3, 2, 0), (3, 0, 4)),
    row("matmul_empty_contract_3d_1d", lambda L, a, b: a @ b, (2, 3, 0), (0,)),
    row("matmul_empty_contract_2d_3d", lambda L, a, b: a @ b, (1, 0), (2, 0, 3)),
    # ---- indexing with integer tensors, and __setitem__ (no fused rule: index_put)
    row("setitem_rows", _setitem_rows, (3, 4), (4,)),
    row("setitem_slice", _setitem_slice, (3, 4), (2, 2)),
    row("cat_empty_leaf", lambda L, a, b: L.cat([a, b]), (2,), (0,)),  # item 10
    # ---- the math functions of TABLE's math rows (EAGER_ONLY in the fused modes), all in one
    row("math_fused", _math_fused, (3, 4), (4,)),
]

MODE_TABLE = TABLE + MORE
MODE_NAMES = [r.name for r in MODE_TABLE]
assert len(set(MODE_NAMES)) == len(MODE_NAMES), "a MORE row has the name of a TABLE row"


# ---------------------------------------------------------------------------------------------
# Which primitives each row calls, and which mode may legitimately run it eagerly
# ---------------------------------------------------------------------------------------------

def _inputs(r, dtype, iteration, strided=False):
    """Row `r`'s input arrays for one iteration: random inputs get new values each iteration
    (explicit arrays, which hold edge values, stay); `strided` makes each non-empty one a
    non-contiguous view (every second element of its last dimension)."""
    rng = rng_for(f"{r.name}/{iteration}")
    domains = r.domain if isinstance(r.domain, tuple) else (r.domain,) * len(r.inputs)
    arrays = [make_input(s, d, rng, dtype) for s, d in zip(r.inputs, domains)]
    if strided:
        arrays = [_strided(a) for a in arrays]
    return arrays


def _strided(array):
    if array.ndim == 0 or array.size == 0:
        return array
    base = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    base[..., ::2] = array
    return base[..., ::2]


def _leaves(lib, arrays):
    # from_numpy keeps the layout (strided arguments stay strided); each library gets its own
    # copy of the data.
    return [lib.from_numpy(a.copy() if a.flags.c_contiguous else _strided(a.copy()))
            .requires_grad_() for a in arrays]


@functools.cache
def _recorded(name):
    """What row `name` showed a tracer: its primitive calls and in-place writes (those before
    an error: the row's tests report it). NOTE: made when a test first asks, not when the
    module is collected: running every row then compiled every row's kernels in each
    pytest-xdist worker at once."""
    r = ROW_OF[name]
    recorder = _PrimitiveRecorder()
    previous = _tracing.current
    _tracing.current = recorder
    try:
        r.fn(nbgrad, *[nbgrad.tensor(a, requires_grad=True) for a in _inputs(r, "float64", 0)])
    except Exception:  # noqa: BLE001
        pass
    finally:
        _tracing.current = previous
    return recorder


def _prims_of(name):
    return {prim for prim, *_ in _recorded(name).calls}


def _has_array_params(name):
    return any(isinstance(v, np.ndarray) for _, _, params, _ in _recorded(name).calls
               for v in params.values())


def _float_output(r):
    ts = [torch.tensor(a, requires_grad=True) for a in _inputs(r, "float64", 0)]
    return r.fn(torch, *ts).dtype.is_floating_point


ROW_OF = {r.name: r for r in MODE_TABLE}
FLOAT_OUTPUT = {r.name: _float_output(r) for r in MODE_TABLE}


def _unfused(r):
    return sorted(p.name for p in _prims_of(r.name) if p.fuse is None)


# The primitives without a fused rule: a step that calls one runs eagerly under
# nbgrad.compile (with a warning), and a deferred graph that reaches one runs eagerly.
# `test_primitives_without_a_fused_rule_are_listed` keeps this list exact: a rule added
# takes its primitive off the list (and its rows must then fuse).
NO_FUSED_RULE = {
    "amax", "amin", "argmax", "argmin", "logsumexp", "var", "std",  # reductions
    "prod", "all", "any", "vector_norm",  # reductions (all/any give no gradient)
    "argsort", "topk_indices", "statistic_indices",  # sorting: indices (values: a `take`)
    "diagonal", "unfold",  # strided views no fused rule reads
    "histc", "histogram_bin_edges", "histogram",  # histograms: no gradient
    "take", "index_put", "embedding_bag",  # gathers and scatters by index
    "im2col", "col2im",  # unfold and fold
    "scatter_add",  # scatters by index
    # spatial transformers: eager kernels only so far (a rule would call them, as resample's)
    "affine_grid", "grid_sampler",
    # LAPACK calls per matrix (torch.linalg): eager kernels only
    "linalg_inv", "linalg_solve", "linalg_det", "linalg_slogdet", "linalg_slogdet_sign",
    "linalg_cholesky", "linalg_cholesky_info", "linalg_eigh", "linalg_svd", "linalg_qr", "linalg_pinv",
}
def _compile_fallback(r):
    """Why row `r`'s nbgrad.compile step legitimately runs eagerly (it calls a primitive
    without a fused rule), or None: every other row must run fused from its second call."""
    unfused = _unfused(r)
    return f"no fused rule for {', '.join(unfused)}" if unfused else None


# Fused rules that exist but decline some calls (Unfusable): the step or graph runs eagerly,
# with eager's results, and says why. Each limit lists the rows that reach it; a listed row
# that fuses, or falls back for another reason, fails, so the list shrinks as rules grow.
FUSED_RULE_LIMITS = {
    "batched or integer matmul": {"matmul_bcast_batch"},  # (both operands broadcast)
    "unreduced, mixed-dtype or empty loss": {"mse_loss_none", "l1_loss_none", "bce_logits_none"},
    "nll_loss with reduction='none'": {"nll_loss_none", "cross_entropy_none"},
    "loss weights": {"bce_none_weight", "bce_logits_weight_pos_weight"},
    "reducing non-adjacent dims": {"sum_tuple", "sum_tuple_keepdim"},
    "cumsum with a dtype cast": {"cumsum_dtype_cast"},
    # a view of a base written in place: its node (AsStridedBackward0) reads its elements
    # with `take`, which the forward calls do not show
    "'take' has no fused rule": {"view_of_written_base"},
}
LIMIT_OF = {name: limit for limit, names in FUSED_RULE_LIMITS.items() for name in names}


# Strided (non-contiguous) argument tensors: the fused code generator takes C-contiguous
# arguments only (codegen: "a non-contiguous input"), so with them both the deferred graph
# and the compiled step legitimately run eagerly; their values and gradients are still checked.
STRIDED_FALLBACK = "the fused code takes C-contiguous arguments only"


def _deferred_fallback(r, layout):
    """Why the deferred loop of row `r` may legitimately never reach a fused kernel, or None
    if it must: the row's result is not a float (no backward), it calls a primitive that runs
    at once (one without a fused rule: a graph reading a result that ran at once runs
    eagerly; views defer and fuse, and reading a pending view's layout does not run it), a parameter is an array (class
    weights: deferred graph keys hash parameters), it writes in place, or its arguments are
    strided."""
    if not FLOAT_OUTPUT[r.name]:
        return "no backward (the result is not a float)"
    eager = sorted(p.name for p in _prims_of(r.name) if p.vjp is None or p.fuse is None)
    if eager:
        return f"runs at once: {', '.join(eager)}"
    if _has_array_params(r.name):
        return "an array parameter (deferred graph keys must hash)"
    if _recorded(r.name).writes:
        return "an in-place write runs the pending ops before it (inplace.check_inplace)"
    if layout == "strided":
        return STRIDED_FALLBACK
    return None


# Rows that run in eager mode (a) only, by the primitive whose other rows cover them in the
# fused modes (b) and (c): each row that fuses costs about four fused-kernel compiles (3 to
# 15 s each on a cold cache), and these rows check index rules that eager mode checks as
# well as fused mode would (the fused rule calls the same kernels with the same taps).
# resample keeps one row per form in the fused modes: nearest (1 tap, the axis and the
# last-dimension kernels), linear with align_corners (2 taps), reflect and replicate pads
# (two dimensions each); pad_constant its one row (a pad and a crop).
# The math functions (asin ... nextafter) run in the fused modes through MORE's row
# math_fused, which applies all of them at once (one fused kernel per mode and dtype instead
# of one per op); their rows (test_ops.MATH_ROWS, and the kl_div rows that call xlogy) are
# eager only, and sgn's (the sign primitive's other rows cover it).
MATH_FUNCTIONS = ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "rsqrt",
                  "erfc", "exp2", "logit", "frac", "deg2rad", "rad2deg", "sinc", "xlogy", "hypot",
                  "copysign", "logaddexp", "logaddexp2", "fmax", "fmin", "nextafter")
MATH = "(any of MATH_FUNCTIONS)"
EAGER_ONLY = {
    "resample": {"pad_reflect_crop", "pad_circular_T", "interpolate_bilinear_T",
                 "interpolate_bilinear_antialias", "interpolate_bicubic", "interpolate_area"},
    # The activations selu .. rrelu: "activations_fused" calls all their elementwise
    # primitives in one kernel, "glu" the other; the composites
    # (softsign, tanhshrink, softmin) call primitives that rows of their own cover.
    "elu": {"selu", "selu_fn"}, "celu": {"celu", "celu_fn"}, "mish": {"mish"},
    "hardswish": {"hardswish"}, "hardsigmoid": {"hardsigmoid"}, "logsigmoid": {"logsigmoid", "multilabel_soft_margin_loss", "multilabel_soft_margin_loss_edges"},
    "softshrink": {"softshrink"}, "hardshrink": {"hardshrink", "hardshrink_method"},
    "threshold": {"threshold", "threshold_fn", "threshold_integers"},
    "prelu": {"prelu", "prelu_one_weight", "prelu_method_1d"},
    "leaky_relu": {"rrelu_eval", "rrelu_fn_eval"}, "glu": {"glu_dim0_edges"},
    "div": {"softsign"}, "sub": {"tanhshrink"}, "softmax": {"softmin", "softmin_dtype"},
    "concat": {"activation_edges"},
    # (one kernel call either way: "embedding_scale_grad_by_freq" passes both flags)
    "embedding": {"embedding", "embedding_padding_idx"},
    # (one kernel call for every kind and direction: the LSTM with projections passes the
    # most inputs)
    "recurrence": {"rnn_layer_tanh", "rnn_layer_relu_no_bias", "gru_layer_reverse"},
    # losses and distances: MORE's smooth_l1_huber_soft_margin and composite_losses stand
    # for them (the others call primitives without a fused rule: any, take, vector_norm)
    "smooth_l1_loss": {"smooth_l1_loss", "smooth_l1_loss_edges"},
    "l1_loss": {"smooth_l1_loss_beta0"},
    "huber_loss": {"huber_loss", "huber_loss_edges", "huber_loss_weight"},
    "pow_scalar": {"mse_l1_loss_weight", "pow_special_exponents"},
    "soft_margin_loss": {"soft_margin_loss", "soft_margin_loss_edges"},
    "exp": {"kl_div_log_target", "poisson_nll_loss"},
    "masked_fill": {"poisson_nll_loss_full", "multi_margin_loss",
                    "multi_margin_loss_p2_weight", "multi_margin_loss_ties"},
    "any": {"gaussian_nll_loss", "gaussian_nll_loss_full_per_row"},
    "clamp": {"margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss",
              "cosine_embedding_loss_zero"},
    "vector_norm": {"triplet_margin_loss", "triplet_margin_loss_swap_p1", "cosine_similarity",
                    "cosine_similarity_zero_bcast", "pairwise_distance",
                    "pairwise_distance_p1_keepdim", "normalize", "normalize_zero_p1", "dist",
                    "cdist", "cdist_p1"},
    "matmul": {"cdist_mm"},
    # (a composite of primitives that rows of their own cover)
    "cumsum": {"trapezoid"},
    MATH: {r.name for r in MATH_ROWS}, "xlogy": {"kl_div_batchmean", "kl_div_zeros"},
    "sign": {"sgn"},
    # (the in-place forms and index_put_ call primitives that rows of their own cover)
    "index_put": {"index_put_inplace_rows", "fill_diagonal_wrap"}, "where": {"tril_triu_inplace"},
    # Primitives without a fused rule: their other rows (embedding_bag_sum_weighted, unfold,
    # fold, pixel_shuffle) check the fused modes' eager fallback, which compiles nothing new
    "embedding_bag": {"embedding_bag_mean_2d", "embedding_bag_max_last_offset",
                      "embedding_bag_scale_grad_by_freq"},
    "take": {"pixel_unshuffle"},
    # (no fused rule: "spatial_transformer" checks their eager fallback in the fused modes)
    "affine_grid": {"affine_grid", "affine_grid_3d_align"},
    "grid_sampler": {"grid_sample_bilinear", "grid_sample_bilinear_border_align",
                     "grid_sample_bilinear_reflection", "grid_sample_nearest", "grid_sample_edges",
                     "grid_sample_one_pixel", "grid_sample_T", "grid_sample_empty"},
}
# Rows that show the tracer the same primitive calls (inputs of the same shapes and dtypes,
# the same parameters) as their twin, which runs the fused modes: a method and its function,
# a reflected operator, an alias. Their fused kernels would be the twin's, so the fused modes
# skip them (eager mode checks them: the API is what differs);
# test_fused_twins_make_their_twins_calls keeps each pair true.
FUSED_TWINS = {
    "exp_fn": "exp", "log_fn": "log", "sqrt_fn": "sqrt", "abs_fn": "abs", "sin_fn": "sin",
    "cos_fn": "cos", "tanh_fn": "tanh", "sigmoid_fn": "sigmoid", "relu_fn": "relu",
    "log1p_fn": "log1p", "expm1_fn": "expm1", "clamp_fn": "clamp", "sum_fn": "sum",
    "mean_fn": "mean", "radd_scalar": "add_scalar", "rmul_scalar": "mul_scalar",
    "matmul_method": "matmul_fn", "bmm": "matmul_bmm", "F_softmax": "softmax_fn",
    "F_softmax_neg": "softmax_fn_kw", "hstack": "cat_dim1", "moveaxis": "permute",
    "flatten": "reshape_flat", "flatten_T": "reshape_T", "view": "reshape_tuple",
    "square": "pow_2", "T": "transpose",
}
EAGER_ONLY_NAMES = set().union(*EAGER_ONLY.values())
FUSED_MODE_TABLE = [r for r in MODE_TABLE
                    if r.name not in EAGER_ONLY_NAMES and r.name not in FUSED_TWINS]


def test_eager_only_rows_call_their_primitive():
    def calls(name, primitive):
        called = {p.name for p in _prims_of(name)} if name in ROW_OF else set()
        return bool(called & set(MATH_FUNCTIONS)) if primitive == MATH else primitive in called

    wrong = {name: primitive for primitive, names in EAGER_ONLY.items() for name in names
             if not calls(name, primitive)}
    assert not wrong, f"EAGER_ONLY rows that do not call their primitive (or are no rows): {wrong}"


def _call_signature(name):
    return [(prim.name, [(a.shape, a.dtype) for a in arrays],
             sorted((key, value.tolist() if isinstance(value, np.ndarray) else value)
                    for key, value in params.items()))
            for prim, arrays, params, _ in _recorded(name).calls]


def test_fused_twins_make_their_twins_calls():
    different = [name for name, twin in FUSED_TWINS.items()
                 if _call_signature(name) != _call_signature(twin)]
    assert not different, f"FUSED_TWINS rows whose calls differ from their twin's: {different}"
    assert all(ROW_OF[twin] in FUSED_MODE_TABLE for twin in FUSED_TWINS.values())


def test_primitives_without_a_fused_rule_are_listed():
    assert {name for name, p in PRIMITIVES.items() if p.fuse is None} == NO_FUSED_RULE


def test_every_fused_primitive_has_a_row():
    exercised = set().union(*(_prims_of(r.name) for r in FUSED_MODE_TABLE))
    missing = sorted(name for name, p in PRIMITIVES.items() if p.fuse is not None and p not in exercised)
    assert not missing, (f"primitives with a fused rule and no row in TABLE or MORE that runs "
                         f"the fused modes (see EAGER_ONLY): {missing}")


# ---------------------------------------------------------------------------------------------
# One comparison with torch
# ---------------------------------------------------------------------------------------------

def _tolerance(r, dtype):
    return r.tol32 if (dtype == "float32" and r.tol32) else TOL[dtype]


def _upstream(r, dtype, shape, iteration):
    return rng_for(f"{r.name}/upstream/{iteration}").standard_normal(shape).astype(dtype)


def _torch_run(r, arrays, dtype, iteration):
    """torch's output and leaf gradients for `arrays`, with the loss (out * upstream).sum()
    (float outputs; others are only compared), and the upstream array."""
    leaves = _leaves(torch, arrays)
    out = r.fn(torch, *leaves)
    upstream = None
    if out.dtype.is_floating_point:
        upstream = _upstream(r, out.detach().numpy().dtype, tuple(out.shape), iteration)
        (out * torch.from_numpy(upstream)).sum().backward()
    return out, [leaf.grad for leaf in leaves], upstream


def _compare(r, dtype, out, leaves, expected, where, check_requires_grad=True):
    t_out, t_grads, _ = expected
    rtol, atol = _tolerance(r, dtype)
    try:
        assert_close(out, t_out, rtol=rtol, atol=atol)
        if check_requires_grad:
            assert out.requires_grad == t_out.requires_grad
        for i, (leaf, t_grad) in enumerate(zip(leaves, t_grads)):
            if t_grad is None:
                assert leaf.grad is None, f"input {i}: torch gives no gradient, nbgrad {leaf.grad}"
            else:
                assert leaf.grad is not None, f"input {i}: no gradient (torch: {t_grad})"
                assert_close(leaf.grad, t_grad, rtol=rtol, atol=atol)
    except AssertionError as error:
        raise AssertionError(f"{r.name} {dtype} {where}: {error}") from None


def _eager_step(r, arrays, upstream):
    leaves = _leaves(nbgrad, arrays)
    out = r.fn(nbgrad, *leaves)
    if upstream is not None:
        (out * nbgrad.from_numpy(upstream.copy())).sum().backward()
    return out, leaves


# Contiguous arguments in float32 and float64; strided (non-contiguous) arguments in float64
# only, to keep the test time down (the layout, not the dtype, is what they check).
VARIANTS = [("float32", "contiguous"), ("float64", "contiguous"), ("float64", "strided")]


def _params(test, table=MODE_TABLE):
    ids = [f"{dtype}-{layout}" for dtype, layout in VARIANTS]
    test = pytest.mark.parametrize("dtype, layout", VARIANTS, ids=ids)(test)
    return pytest.mark.parametrize("r", table, ids=[r.name for r in table])(test)


def _fused_mode_params(test):
    return _params(test, FUSED_MODE_TABLE)


# nbgrad.compile with strided arguments: MORE's rows only. The step breaks on a non-contiguous
# argument before any fused rule sees a call (STRIDED_FALLBACK), whatever the primitives, and
# then runs as the deferred mode does, whose loop checks every row with strided arguments.
# (All of TABLE's rows took 110 s of the suite's time on a cold cache.)
MORE_NAMES = {r.name for r in MORE}
COMPILE_CASES = [(r, dtype, layout) for r in FUSED_MODE_TABLE for dtype, layout in VARIANTS
                 if layout == "contiguous" or r.name in MORE_NAMES]


def _compile_params(test):
    ids = [f"{dtype}-{layout}-{r.name}" for r, dtype, layout in COMPILE_CASES]
    return pytest.mark.parametrize("r, dtype, layout", COMPILE_CASES, ids=ids)(test)


# ---------------------------------------------------------------------------------------------
# (a) eager, deferral off
# ---------------------------------------------------------------------------------------------

@_params
def test_eager_immediate_matches_torch(r, dtype, layout, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", False)
    arrays = _inputs(r, dtype, 0, layout == "strided")
    expected = _torch_run(r, arrays, dtype, 0)
    out, leaves = _eager_step(r, arrays, expected[2])
    _compare(r, dtype, out, leaves, expected, "eager, deferral off")


# ---------------------------------------------------------------------------------------------
# (b) eager, deferred, past FUSE_AFTER
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fused_graph_runs(monkeypatch):
    """A fresh table of deferred graphs, and the number of times a fused graph kernel ran."""
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    monkeypatch.setattr(fused_graph, "unfused", [])
    runs = []
    original = fused_graph.FusedGraph.run

    def counted(self, nodes, externals):
        ran = original(self, nodes, externals)
        runs.append(ran)
        return ran

    monkeypatch.setattr(fused_graph.FusedGraph, "run", counted)
    return runs


@_fused_mode_params
def test_deferred_loop_past_fuse_after_matches_torch(r, dtype, layout, fused_graph_runs):
    iterations = deferred.FUSE_AFTER + 4
    for i in range(iterations):
        arrays = _inputs(r, dtype, i, layout == "strided")
        expected = _torch_run(r, arrays, dtype, i)
        out, leaves = _eager_step(r, arrays, expected[2])
        _compare(r, dtype, out, leaves, expected, f"deferred, iteration {i}")
    limit = LIMIT_OF.get(r.name)
    if _deferred_fallback(r, layout) is None and limit is not None:
        assert not any(fused_graph_runs), f"{r.name} fuses now: take it off FUSED_RULE_LIMITS"
        assert fused_graph.unfused and limit in fused_graph.unfused[-1], fused_graph.unfused
    elif _deferred_fallback(r, layout) is None:
        fused = sum(fused_graph_runs)
        why = fused_graph.unfused or ["never traced: backward() found the tape unfusable (an op "
                                      "on the tape ran at once, or a value was read)"]
        assert fused == iterations - deferred.FUSE_AFTER, (
            f"{r.name}: the fused graph ran {fused} of the last {iterations - deferred.FUSE_AFTER} "
            f"iterations (eager fallback: {why[-1]})")


# ---------------------------------------------------------------------------------------------
# (c) nbgrad.compile, called again with fresh argument tensors
# ---------------------------------------------------------------------------------------------

# The values of each call: call 1 runs again on call 0's tensors (their .grad reset to None),
# the later calls on fresh tensors. Each call writes .grad to its own arguments only (item 1).
COMPILE_VALUES = (0, 0, 1, 2)


@_compile_params
def test_compile_matches_torch(r, dtype, layout, monkeypatch):
    """The step of row `r`; a row with several inputs takes its last one from the closure (a
    parameter, bound by identity, its .grad reset to None before each call as a training loop
    does), the others as arguments (inputs by position)."""
    monkeypatch.setattr(deferred, "enabled", True)
    float_output = FLOAT_OUTPUT[r.name]
    strided = layout == "strided"
    n_args = max(len(r.inputs) - 1, 1)
    closure_arrays = _inputs(r, dtype, 0, strided)[n_args:]
    closure = _leaves(nbgrad, closure_arrays)

    def step(*args):
        *leaves, upstream = args
        out = r.fn(nbgrad, *leaves, *closure)
        if float_output:
            (out * upstream).sum().backward()
        return out

    compiled = nbgrad.compile(step)
    calls = []  # (argument leaves, expected) of each call
    for call, i in enumerate(COMPILE_VALUES):
        arrays = _inputs(r, dtype, i, strided)[:n_args] + closure_arrays
        t_out, t_grads, upstream = _torch_run(r, arrays, dtype, i)
        if upstream is None:  # not read: any tensor of the output's shape
            upstream = np.zeros(tuple(t_out.shape), dtype)
        if calls and COMPILE_VALUES[call - 1] == i:
            leaves = calls[-1][0]
        else:
            leaves = _leaves(nbgrad, arrays[:n_args])
        for leaf in leaves + closure:
            leaf.grad = None
        with warnings.catch_warnings():
            if _compile_fallback(r) or r.name in LIMIT_OF or strided:
                warnings.simplefilter("ignore", RuntimeWarning)
            out = compiled(*leaves, nbgrad.from_numpy(upstream.copy()))
        # NOTE: not requires_grad: a fused call returns a tensor without a graph (after its
        # backward), where torch's (and the traced call's) still has its grad_fn.
        _compare(r, dtype, out, leaves + closure, (t_out, t_grads, upstream),
                 f"nbgrad.compile, call {call}", check_requires_grad=False)
        calls.append((leaves, (t_out, t_grads[:n_args], upstream)))
        for earlier, (earlier_leaves, earlier_expected) in enumerate(calls[:-1]):
            if earlier_leaves is not leaves:  # untouched by this call
                _compare(r, dtype, earlier_expected[0], earlier_leaves, earlier_expected,
                         f"nbgrad.compile, call {earlier}'s arguments after call {call}")
    if _compile_fallback(r):
        assert compiled.stats["fused_calls"] == 0, (r.name, _compile_fallback(r))
    elif r.name in LIMIT_OF and not (strided and any("non-contiguous" in why
                                                      for why in compiled.breaks)):
        assert compiled.stats["fused_calls"] == 0, f"{r.name} fuses now: take it off FUSED_RULE_LIMITS"
        assert any(LIMIT_OF[r.name] in why for why in compiled.breaks), compiled.explain()
    elif strided and any("non-contiguous" in why for why in compiled.breaks):
        pass  # STRIDED_FALLBACK
    else:
        assert compiled.stats["fused_calls"] == len(COMPILE_VALUES) - 1, (
            f"{r.name}: {compiled.explain()}")


# ---------------------------------------------------------------------------------------------
# dtype promotion in the three modes
# ---------------------------------------------------------------------------------------------

PROMOTION_VALUES = {"bool": [True, True, False], "int64": [3, -2, 7], "float32": [0.5, 2.0, -1.0],
                    "float64": [1.25, -0.5, 4.0]}
# The operand that requires grad: a float leaf, 0-d or 1-d.
GRAD_OPERANDS = [(dtype, ndim) for dtype in ("float32", "float64") for ndim in (0, 1)]
# The other operand: a tensor of each dtype, 0-d or 1-d, or a Python scalar.
OTHER_OPERANDS = [(dtype, ndim) for dtype in PROMOTION_VALUES for ndim in (0, 1)] + \
    [("python", True), ("python", 2), ("python", 2.5)]


def _operand_id(operand):
    kind, detail = operand
    return f"{kind}_{detail!r}" if kind == "python" else f"{kind}_{detail}d"


def _promotion_outputs(L, x, other):
    """x * 1 is a result (a deferred tensor in the default mode): promotion must treat it as
    a tensor of its dtype and shape, never as a Python scalar (item 3)."""
    u = x * 1
    outs = [u + other, other + u, u * other, other * u]
    if not (isinstance(other, bool) or getattr(other, "dtype", None) == L.bool):
        # torch refuses to subtract bools; no division by False
        outs += [u - other, other - u, u / other, other / u]
    if not isinstance(other, (bool, int, float)):
        outs += [L.maximum(u, other), L.where(x > 0, u, other)]
    return outs


def _promotion_arrays(grad_operand, iteration):
    dtype, ndim = grad_operand
    rng = rng_for(f"promotion/{grad_operand}/{iteration}")
    values = rng.uniform(0.5, 2.0, 3) * np.array([1.0, -1.0, 1.0])
    return np.asarray(values[0] if ndim == 0 else values, dtype)


def _other(L, operand):
    kind, detail = operand
    if kind == "python":
        return detail
    values = PROMOTION_VALUES[kind]
    return L.tensor(values[0] if detail == 0 else values, dtype=getattr(L, kind))


def _promotion_torch(grad_operand, other_operand, iteration):
    x = torch.from_numpy(_promotion_arrays(grad_operand, iteration)).requires_grad_()
    outs = _promotion_outputs(torch, x, _other(torch, other_operand))
    sum(out.sum() for out in outs).backward()
    return outs, x.grad


def _promotion_compare(actual_outs, x, expected, where):
    outs, grad = expected
    assert len(actual_outs) == len(outs), where
    for i, (actual, reference) in enumerate(zip(actual_outs, outs)):
        try:
            assert_close(actual, reference)
        except AssertionError as error:
            raise AssertionError(f"{where}: output {i}: {error}") from None
    # A float64 leaf's gradient summed from float32 results is float32 arithmetic, in an order
    # that differs from torch's: float32 tolerance then.
    precision = "float32" if any(out.dtype == torch.float32 for out in outs) else None
    try:
        assert_close(x.grad, grad, dtype=precision)
    except AssertionError as error:
        raise AssertionError(f"{where}: x.grad: {error}") from None


def _promotion_params(test):
    test = pytest.mark.parametrize("other_operand", OTHER_OPERANDS, ids=_operand_id)(test)
    return pytest.mark.parametrize("grad_operand", GRAD_OPERANDS, ids=_operand_id)(test)


# The fused modes take a covering subset (eager mode checks the whole table): each side of
# each rule once. Against a float32 1-d leaf: a 0-d bool and a dimensioned int64 (a lower
# category: float32), a 0-d float64 (a dimensioned tensor outranks a 0-d one: float32), a
# dimensioned float64 (float64), and the Python scalars. Against a float64 0-d leaf: a
# dimensioned float32 (float32), dimensioned int64 and bool (a 0-d float of a higher
# category: float64), a 0-d float32 (both 0-d: float64) and a Python int. Each case is a
# kernel of about ten mixed-dtype results, 1-2 s to compile on a cold cache (all 22 pairs
# took 96 s of the suite's time in the two fused modes).
FUSED_PROMOTION_CASES = (
    [(("float32", 1), other) for other in (("bool", 0), ("int64", 1), ("float64", 0),
                                           ("float64", 1), ("python", 2), ("python", True),
                                           ("python", 2.5))]
    + [(("float64", 0), other) for other in (("float32", 1), ("int64", 1), ("bool", 1),
                                             ("float32", 0), ("python", 2))])


def _fused_promotion_params(test):
    ids = [f"{_operand_id(grad)}-{_operand_id(other)}" for grad, other in FUSED_PROMOTION_CASES]
    return pytest.mark.parametrize("grad_operand, other_operand", FUSED_PROMOTION_CASES, ids=ids)(test)


@_promotion_params
def test_promotion_eager_immediate(grad_operand, other_operand, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", False)
    x = nbgrad.from_numpy(_promotion_arrays(grad_operand, 0)).requires_grad_()
    outs = _promotion_outputs(nbgrad, x, _other(nbgrad, other_operand))
    sum(out.sum() for out in outs).backward()
    _promotion_compare(outs, x, _promotion_torch(grad_operand, other_operand, 0), "eager")


# NOTE: values, dtypes and gradients only: the fused rules decline operands of mixed dtypes
# ("add mixes dtypes int64 and float32"), so most of these graphs legitimately run eagerly.
@_fused_promotion_params
def test_promotion_deferred_loop(grad_operand, other_operand, fused_graph_runs):
    iterations = deferred.FUSE_AFTER + 2
    for i in range(iterations):
        x = nbgrad.from_numpy(_promotion_arrays(grad_operand, i)).requires_grad_()
        outs = _promotion_outputs(nbgrad, x, _other(nbgrad, other_operand))
        sum(out.sum() for out in outs).backward()
        _promotion_compare(outs, x, _promotion_torch(grad_operand, other_operand, i),
                           f"deferred, iteration {i}")


@_fused_promotion_params
def test_promotion_compile(grad_operand, other_operand, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)

    def step(x, other):
        outs = _promotion_outputs(nbgrad, x, other)
        sum(out.sum() for out in outs).backward()
        return outs

    compiled = nbgrad.compile(step)
    for i in range(3):
        x = nbgrad.from_numpy(_promotion_arrays(grad_operand, i)).requires_grad_()
        outs = compiled(x, _other(nbgrad, other_operand))
        _promotion_compare(outs, x, _promotion_torch(grad_operand, other_operand, i),
                           f"nbgrad.compile, call {i}")
