"""Higher-order gradients through the non-elementwise families (reductions, row transforms,
matrix products, shapes, indexing, losses, embedding): each primitive's `differentiable_vjp`
(its VJP as Tensor operations, run by backward/grad with create_graph=True).

- Every op-table row (tests/ops/test_ops.py) that uses these families, float64: the
  gradients with create_graph=True (the differentiable VJPs) equal those of the ordinary
  backward (the njit VJP kernels). (test_ops runs gradgradcheck on every row.)
- Second and third derivatives against torch's (torch.autograd.grad with create_graph=True,
  twice and three times), on small cases with the edges each rule handles (ties, zeros in a
  product, a zero norm, ignored targets, repeated indices, 0-d and 1-D matmul operands).
- gradgradcheck in float64 on those cases away from kinks and ties.

NOTE on the interface (Primitive.differentiable_vjp gets Tensors and may call only Tensor
methods): the index family needs two things Tensors have no method for, and gets them by
Tensor methods that work but say less than a dedicated one would: zeros of a shape
(`shape.zeros_tensor`: the sum of no elements, expanded and cloned; PyTorch's
`Tensor.new_zeros`) and a scatter-add at flat positions (`indexing.scattered`: each
position's values gathered into a zero-padded row, summed, written once; PyTorch's
`Tensor.index_put_(..., accumulate=True)` or `put_`). A `new_zeros` and an accumulating
`index_put` method would replace both.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close
from nbgrad._core import tracing as _tracing
from nbgrad.ops import PRIMITIVES

sys.path.insert(0, str(Path(__file__).parents[1] / "ops"))
from test_ops import DIFFERENTIABLE, _PrimitiveRecorder, make_inputs, rng_for  # noqa: E402

A = np.array


def _leaves(lib, arrays):
    return [lib.tensor(a, requires_grad=True) for a in arrays]


def _upstream(name, shape):
    return rng_for(name + "/upstream").standard_normal(tuple(shape))


FAMILIES = ("reduction", "rowwise", "linalg", "shape", "indexing", "losses", "embedding",
            "sorting", "histogram")


def _family(prim):
    return prim.forward.__module__.rsplit(".", 1)[-1]


def test_every_differentiable_primitive_of_these_families_has_a_rule():
    # (the op-table test below skips a row whose graph has a node without one: this keeps
    # those skips to the families other files cover)
    missing = [p.name for p in PRIMITIVES.values()
               if p.vjp is not None and _family(p) in FAMILIES and p.differentiable_vjp is None]
    assert not missing


def test_histogram_has_no_derivative_with_create_graph_either():
    for lib in (nbgrad, torch):
        x = lib.tensor([0.5, 1.5, 2.5], dtype=lib.float64, requires_grad=True)
        hist, _ = lib.histogram(x * 2, 3, weight=x)
        with pytest.raises(RuntimeError, match="derivative for aten::histogram is not implemented"):
            lib.autograd.grad(hist.sum(), x, create_graph=True)


# Rows whose differentiable VJP raises where the kernel gives a gradient: det's goes through
# the inverse, which a singular matrix does not have (PyTorch's goes through the SVD there;
# nbgrad's kernel does, see ops/decompositions.py).
RAISES_WITH_CREATE_GRAPH = {"det_edges": "linalg.inv: The diagonal element 2 is zero"}


@pytest.mark.parametrize("r", DIFFERENTIABLE, ids=[r.name for r in DIFFERENTIABLE])
def test_differentiable_vjps_equal_the_kernels(r, monkeypatch):
    arrays = make_inputs(r, "float64")
    leaves = _leaves(nbgrad, arrays)
    recorder = _PrimitiveRecorder()
    monkeypatch.setattr(_tracing, "current", recorder)
    out = r.fn(nbgrad, *leaves)
    monkeypatch.setattr(_tracing, "current", None)
    if not any(_family(prim) in FAMILIES for prim, *_ in recorder.calls):
        pytest.skip("elementwise only (tests/ops/test_ops.py: gradgradcheck)")
    upstream = nbgrad.tensor(_upstream(r.name, out.shape))
    kernels = nbgrad.autograd.grad(out, leaves, upstream, retain_graph=True, allow_unused=True)
    if r.name in RAISES_WITH_CREATE_GRAPH:
        with pytest.raises(nbgrad.linalg.LinAlgError, match=RAISES_WITH_CREATE_GRAPH[r.name]):
            nbgrad.autograd.grad(out, leaves, upstream, create_graph=True, allow_unused=True)
        return
    try:
        recorded = nbgrad.autograd.grad(out, leaves, upstream, create_graph=True,
                                        allow_unused=True)
    except NotImplementedError as error:
        # a node of a family other files cover (conv, pooling, normalization, resample)
        if "has no differentiable VJP" not in str(error):
            raise
        pytest.skip(str(error))
    for i, (k, d) in enumerate(zip(kernels, recorded)):
        assert (k is None) == (d is None), f"input {i}"
        if k is not None:
            assert d.dtype == k.dtype and tuple(d.shape) == tuple(k.shape), f"input {i}"
            np.testing.assert_allclose(d.detach().numpy(), k.numpy(), rtol=1e-12, atol=1e-14,
                                       equal_nan=True, err_msg=f"input {i}")


# name: (function of (lib, *tensors), inputs (shapes: random normal data; arrays: these
# values), gradgradcheck). The functions square or multiply an input somewhere, so a second
# derivative reaches every input through the rule and not only through what follows it.
TIES = A([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, -1.0], [-1.0, -1.0, 0.5, -1.0]])
PRODUCT_ZEROS = A([[1.5, 0.0, 2.0, -3.0], [0.0, 2.0, 0.0, 1.0], [2.0, -3.0, 1.0, 0.5]])
NORMS = A([[1.0, -3.0, 0.5, 0.25], [0.0, 0.0, 0.0, 0.0], [2.0, -0.5, 1.5, 1.0]])


def _F(lib):
    return lib.nn.functional


CASES = {
    # linalg
    "matmul": (lambda L, a, b: (a @ b) * a.sum(), ((3, 4), (4, 2)), True),
    "matmul_mv_dot_vm": (lambda L, a, b, v: (a @ v) @ (a @ b) + v @ v * (v @ b).sum(),
                         ((3, 4), (4, 2), (4,)), True),
    "matmul_batched_broadcast": (lambda L, a, b: (a @ b) ** 2, ((2, 3, 4), (4, 2)), True),
    "linear": (lambda L, x, w, b: _F(L).linear(x, w, b) ** 2, ((3, 4), (2, 4), (2,)), True),
    # reductions
    "sum_mean": (lambda L, a: (a * a).sum(1) * (a * a).mean((0, 1), keepdim=True)
                 + (a * a).mean(0).sum(), ((3, 4),), True),
    "amax_amin_ties": (lambda L, a: a.amax(1, keepdim=True) * a + a.amin((0, 1)) * a,
                       (TIES,), False),
    "max_min_all": (lambda L, a: a.max() * a + a.min() * a * a, ((3, 4),), True),
    "logsumexp": (lambda L, a: (a * a).logsumexp(1) * a.sum(1), ((3, 4),), True),
    "var_std": (lambda L, a: (a * a).var(1) + (a * a).std(0, correction=0).sum()
                + (a * a).std(), ((3, 4),), True),
    "norms": (lambda L, a: L.linalg.vector_norm(a, 2, dim=1) * a.sum(1)
              + L.linalg.vector_norm(a, 3, dim=1) + L.linalg.vector_norm(a * 2, 1.5)
              + L.linalg.vector_norm(a, float("inf"), dim=1) * a.sum(1)
              + L.linalg.vector_norm(a, 1, dim=1) * a.sum(1), (NORMS,), False),
    "norm_2_random": (lambda L, a: L.linalg.vector_norm(a, dim=0) * a.sum(0) +
                      L.linalg.vector_norm(a, 0.5), ((3, 4),), True),
    "prod": (lambda L, a: (a * a).prod(1) + (a * a).prod(), ((3, 4),), True),
    "prod_zeros": (lambda L, a: (a.prod(1) * a.sum(1)).sum() + a.prod(0) * a[0], (PRODUCT_ZEROS,),
                   True),
    # row transforms
    "softmax_log_softmax": (lambda L, a: a.softmax(1) * a + a.log_softmax(0) * a * a,
                            ((3, 4),), True),
    "softmax_0d": (lambda L, a: a.softmax(0) * a + a.log_softmax(0) * a, ((),), True),
    "cumsum": (lambda L, a: (a * a).cumsum(1) * a, ((3, 4),), True),
    "cumprod": (lambda L, a: (a * a).cumprod(0) * a, ((3, 4),), True),
    "cumprod_zeros": (lambda L, a: a.cumprod(1) * a, (PRODUCT_ZEROS,), True),
    "logcumsumexp": (lambda L, a: (a * a).logcumsumexp(1) * a, ((3, 4),), True),
    # shapes
    "reshape_permute_expand": (lambda L, a: (a.reshape(4, 3).permute(1, 0).unsqueeze(0)
                                             .expand(2, 3, 4)) ** 2 * a.t().reshape(1, 3, 4),
                               ((3, 4),), True),
    "cat_stack": (lambda L, a, b: L.cat([a * a, b * a], 0) * L.stack([a, b], 1).reshape(6, 4),
                  ((3, 4), (3, 4)), True),
    # indexing (repeated positions: gather, index_select, advanced indexing, embedding)
    "slices": (lambda L, a: ((a * a)[1:, ::2] * a[:2, 1::2]).sum() + a[0] * a[2], ((3, 4),), True),
    "gather_index_select": (lambda L, a: (a * a).gather(1, L.tensor([[0, 0, 1], [2, 2, 2],
                                                                     [3, 1, 0]])) @ a[:, :3]
                            + (a * a).index_select(0, L.tensor([0, 2, 2, 1]))[:3, :3],
                            ((3, 4),), True),
    "advanced_index": (lambda L, a: (a * a)[[0, 0, 2], [1, 1, 3]] * a[[2, 2, 0], 0], ((3, 4),),
                       True),
    "flip_roll": (lambda L, a: (a * a).flip(1) * a + (a * a).roll(1, 0) * a, ((3, 4),), True),
    "scatter_add_scatter": (lambda L, a, b: (a * a).scatter_add(1, L.tensor([[0, 0], [1, 3], [2, 2]]),
                                                                b * b) * a
                            + (a * a).scatter(1, L.tensor([[0, 1], [1, 3], [2, 0]]), b * a[:, :2]),
                            ((3, 4), (3, 2)), True),
    "setitem": (lambda L, a, b: _setitem(a * a, b * b) * a, ((3, 4), (2,)), True),
    "embedding": (lambda L, w: _F(L).embedding(L.tensor([[0, 2, 2], [1, 0, 2]]), w * w) * w[0],
                  ((3, 4),), True),
    # (the padding row has no gradient by definition: finite differences disagree)
    "embedding_padding": (lambda L, w: _F(L).embedding(L.tensor([[0, 2, 2], [1, 0, 2]]), w * w,
                                                       padding_idx=1) * w[0], ((3, 4),), False),
    # the pixel shuffles (takes). (No embedding_bag case: torch 2.13 has no second derivative
    # of it, "the derivative for '_embedding_bag_backward' is not implemented"; nbgrad's rule
    # is checked against its kernels and by gradgradcheck on the op-table rows.)
    "pixel_shuffles": (lambda L, x: L.pixel_unshuffle(L.pixel_shuffle(x * x, 2) ** 2, 2) * x,
                       ((1, 8, 2, 3),), True),
    # losses
    "cross_entropy": (lambda L, x: _F(L).cross_entropy(x * x, L.tensor([0, 2, 1])), ((3, 4),), True),
    "cross_entropy_weight_ignore": (lambda L, x: _F(L).cross_entropy(
        x * x, L.tensor([0, 2, 1]), weight=L.tensor([1.0, 2.0, 3.0, 4.0], dtype=x.dtype),
        ignore_index=1), ((3, 4),), True),
    "nll_none_sum": (lambda L, x: _F(L).nll_loss(x * x, L.tensor([0, 2, 1]), reduction="none")
                     * x[:, 0] + _F(L).nll_loss(x * x, L.tensor([3, 3, 1]), reduction="sum"),
                     ((3, 4),), True),
    "mse_l1": (lambda L, x, y: _F(L).mse_loss(x * x, y * x) + _F(L).l1_loss(x * x, y, reduction="sum")
               * x, ((3, 4), (3, 4)), True),
    "bce": (lambda L, x, y: _F(L).binary_cross_entropy(x.sigmoid(), y.sigmoid(), reduction="none",
                                                       weight=L.tensor([1.0, 2.0, 0.5, 1.0],
                                                                       dtype=x.dtype)),
            ((3, 4), (3, 4)), True),
    "bce_with_logits": (lambda L, x, y: _F(L).binary_cross_entropy_with_logits(
        x * x, y.sigmoid(), pos_weight=L.tensor([1.0, 2.0, 3.0, 4.0], dtype=x.dtype)),
        ((3, 4), (3, 4)), True),
    # the rows with parameters and a choice ('a if c else b': a where), one without a target
    # derivative (soft margin's target is detached: PyTorch refuses one requiring grad)
    "smooth_l1_huber_soft_margin": (lambda L, x, y: _F(L).smooth_l1_loss(
        x * x, y, beta=0.5, reduction="none") * x + _F(L).huber_loss(x * x, y * x, delta=0.7)
        + _F(L).soft_margin_loss(x * x, y.detach().sign(), reduction="sum"), ((3, 4), (3, 4)), True),
}


def _setitem(x, values):
    x[1, 1:3] = values  # index_put (CopySlices)
    return x


def _case_inputs(name, specs):
    rng = rng_for(name)
    return [spec if isinstance(spec, np.ndarray) else rng.standard_normal(spec) for spec in specs]


def _derivatives(lib, fn, arrays, order):
    """The gradient of fn's output under a fixed upstream, then `order - 1` times the
    gradient of a weighted sum of the previous gradients: each list of all inputs' ones."""
    leaves = _leaves(lib, arrays)
    out = fn(lib, *leaves)
    rng = np.random.default_rng(0)
    grads = lib.autograd.grad(out, leaves, lib.tensor(rng.standard_normal(tuple(out.shape))),
                              create_graph=True, allow_unused=True)
    found = [grads]
    for _ in range(order - 1):
        terms = [(g * lib.tensor(rng.standard_normal(tuple(g.shape)))).sum()
                 for g in grads if g is not None and g.requires_grad]
        # (Where no gradient is in the graph any more, every higher one is zero: None.)
        grads = lib.autograd.grad(sum(terms), leaves, create_graph=True, allow_unused=True) \
            if terms else [None] * len(leaves)
        found.append(grads)
    return [[None if g is None else g.detach().numpy() for g in level] for level in found]


def assert_derivatives_match_torch(fn, arrays, orders):
    """Derivatives of orders 1 to `orders` (`_derivatives`) equal torch's, float64."""
    ours = _derivatives(nbgrad, fn, arrays, orders)
    theirs = _derivatives(torch, fn, arrays, orders)
    for order, (mine, reference) in enumerate(zip(ours, theirs), 1):
        for i, (m, t) in enumerate(zip(mine, reference)):
            where = f"order {order}, input {i}"
            if t is None or m is None:  # nothing reached the input: zeros in the other
                assert not np.any(m if t is None else t), where
                continue
            assert_close(nbgrad.tensor(m), torch.tensor(t), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_second_and_third_derivatives_match_torch(name):
    fn, specs, _ = CASES[name]
    assert_derivatives_match_torch(fn, _case_inputs(name, specs), 3)


GRADGRADCHECK = [name for name, (_, _, check) in CASES.items() if check]


@pytest.mark.parametrize("name", GRADGRADCHECK)
def test_gradgradcheck_float64(name):
    fn, specs, _ = CASES[name]
    inputs = tuple(nbgrad.tensor(a, requires_grad=True) for a in _case_inputs(name, specs))
    assert nbgrad.autograd.gradgradcheck(lambda *ts: fn(nbgrad, *ts), inputs) is True
