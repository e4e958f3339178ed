"""Higher-order gradients through the vision families (convolution, pooling, normalization,
padding and resampling, spatial transformers): each primitive's `differentiable_vjp`, run by
backward/grad with create_graph=True.

- Every differentiable row of the op table's vision sections (VISION_ROWS of
  tests/ops/test_ops.py), float64: the gradients with create_graph=True (the rules) equal
  those of the ordinary backward (the njit kernels). (test_ops runs gradgradcheck on every row.)
- Second and third derivatives against torch's (torch.autograd.grad with create_graph=True),
  float64, on small cases with the parameters each rule handles (stride, padding, dilation,
  groups, ties in max pooling, training and eval batch norm, negative padding).
- gradgradcheck in float64 on some of them.
- A WGAN-GP critic step (gradient penalty) on a small CNN critic (convolutions, group and
  layer norm, max and adaptive average pooling), against torch.

NOTE: torch itself fails the double backward of batch_norm and layer_norm given a bias but
no weight ("Expected a proper Tensor but got None"), so no case here has that combination.
"""
import numpy as np
import pytest
import torch
from test_higher_order_families import (_case_inputs, _family, _leaves, _upstream,
                                        assert_derivatives_match_torch)

import nbgrad
from conftest import assert_close, rng_for
from nbgrad._core import tracing as _tracing
from nbgrad.ops import PRIMITIVES
from test_ops import DIFFERENTIABLE, VISION_ROWS, _PrimitiveRecorder, make_inputs

A = np.array
VISION = ("conv", "pooling", "normalization", "resample", "grid")


def _F(lib):
    return lib.nn.functional


def _vision_primitives(r):
    """The names of the vision primitives op-table row `r` calls."""
    recorder = _PrimitiveRecorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_tracing, "current", recorder)
        r.fn(nbgrad, *_leaves(nbgrad, make_inputs(r, "float64")))
    return {prim.name for prim, *_ in recorder.calls if _family(prim) in VISION}


# The differentiable rows of test_ops's vision sections.
ROWS = [r for r in DIFFERENTIABLE if r.name in {v.name for v in VISION_ROWS}]


def test_every_differentiable_vision_primitive_has_a_rule_and_rows():
    differentiable = {p.name for p in PRIMITIVES.values()
                      if p.vjp is not None and _family(p) in VISION}
    assert not [name for name in differentiable if PRIMITIVES[name].differentiable_vjp is None]
    assert differentiable <= set().union(*(_vision_primitives(r) for r in ROWS))


@pytest.mark.parametrize("r", ROWS, ids=[r.name for r in ROWS])
def test_differentiable_vjps_equal_the_kernels(r):
    arrays = make_inputs(r, "float64")
    leaves = _leaves(nbgrad, arrays)
    out = r.fn(nbgrad, *leaves)
    upstream = nbgrad.tensor(_upstream(r.name, out.shape))
    kernels = nbgrad.autograd.grad(out, leaves, upstream, retain_graph=True, allow_unused=True)
    recorded = nbgrad.autograd.grad(out, leaves, upstream, create_graph=True, allow_unused=True)
    for i, (k, d) in enumerate(zip(kernels, recorded)):
        assert (k is None) == (d is None), f"input {i}"
        if k is not None:
            assert d.dtype == k.dtype and tuple(d.shape) == tuple(k.shape), f"input {i}"
            # (sums in another order than the kernels': a few units in the last place)
            np.testing.assert_allclose(d.detach().numpy(), k.numpy(), rtol=1e-12, atol=1e-13,
                                       err_msg=f"input {i}")


# Ties in every window of max pooling (PyTorch's gradient goes to the first maximum in scan
# order), and a window of one value.
TIES = A([[[[1.0, 3.0, 3.0, 0.0, 2.0], [2.0, 2.0, 3.0, -1.0, 2.0], [-1.0, 3.0, 0.5, -1.0, 2.0],
            [0.0, 0.0, 0.0, 0.0, 7.0]]]])
RUNNING_MEAN, RUNNING_VAR = A([0.5, -1.0, 0.25]), A([1.5, 0.5, 2.0])


def _batch_norm(L, x, w, b, training):
    return _F(L).batch_norm(x, L.tensor(RUNNING_MEAN), L.tensor(RUNNING_VAR), w, b,
                            training=training, momentum=0.3, eps=1e-3)


# name: (function of (lib, *tensors), inputs (shapes: random normal; arrays: these values),
# gradgradcheck: on a few; test_ops runs it on every op-table row). Each squares the op's result or multiplies it by an input, so that the
# upstream gradient of the rule depends on the inputs and a second derivative goes through
# the rule both ways (through g and through what it saved).
CASES = {
    # convolution
    "conv2d_stride_padding_dilation_bias": (
        lambda L, x, w, b: _F(L).conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2)) ** 2,
        ((2, 3, 6, 7), (4, 3, 3, 2), (4,)), False),
    "conv2d_groups_stride_uncovered_input": (  # (the last row and column reach no output)
        lambda L, x, w: _F(L).conv2d(x, w, stride=2, groups=2) * x[:, :1, :2, :2].sum(),
        ((1, 4, 6, 6), (6, 2, 3, 3)), False),
    "conv2d_padding_past_the_kernel": (  # (outputs that read only padding)
        lambda L, x, w: _F(L).conv2d(x * x, w, padding=(2, 1)) ** 2, ((1, 2, 3, 2), (3, 2, 1, 2)),
        False),
    "conv1d_depthwise": (
        lambda L, x, w, b: _F(L).conv1d(x, w, b, stride=3, padding=1, dilation=2, groups=4) ** 2,
        ((2, 4, 9), (8, 1, 3), (8,)), True),
    # (no output_padding: torch's own third derivative raises "output_padding is not supported
    # for non-transposed convolutions"; gradgradcheck covers it on the op-table row)
    "conv_transpose2d_groups": (
        lambda L, x, w, b: _F(L).conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 0),
                                                  groups=2, dilation=(1, 2)) ** 2,
        ((2, 4, 3, 3), (4, 1, 3, 2), (2,)), True),
    # unfold and fold (each other's adjoint), with padding, stride and dilation
    "unfold_fold": (lambda L, x: _F(L).fold(
        _F(L).unfold(x * x, (2, 3), dilation=(2, 1), padding=1, stride=(1, 2)) ** 2, (5, 6), (2, 3),
        dilation=(2, 1), padding=1, stride=(1, 2)) * x, ((2, 3, 5, 6),), True),
    # pooling
    "max_pool2d_ties": (lambda L, x: _F(L).max_pool2d(x, 2, 1) ** 2
                        * (_F(L).max_pool2d(x, 3, 2, 1, ceil_mode=True) ** 2).sum(),
                        (TIES,), False),
    "max_pool2d_dilation": (lambda L, x: _F(L).max_pool2d(x, (3, 2), (2, 1), (1, 1), dilation=(2, 1)) ** 2,
                            ((2, 2, 6, 5),), True),
    "max_pool1d": (lambda L, x: _F(L).max_pool1d(x, 3, 2, 1) ** 2, ((2, 3, 7),), False),
    "avg_pool2d": (lambda L, x: _F(L).avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False) ** 2
                   * (_F(L).avg_pool2d(x, 2, divisor_override=3) ** 2).sum(), ((2, 2, 5, 6),), False),
    "avg_pool1d": (lambda L, x: _F(L).avg_pool1d(x, 3, 2, 1) ** 2, ((2, 3, 7),), False),
    "adaptive_pool2d": (lambda L, x: _F(L).adaptive_avg_pool2d(x, (3, 2)) ** 2
                        * _F(L).adaptive_max_pool2d(x, (3, 2)), ((2, 2, 5, 7),), False),
    "adaptive_max_pool2d_ties": (lambda L, x: _F(L).adaptive_max_pool2d(x, (2, 3)) ** 2, (TIES,), False),
    # normalization
    "batch_norm_training": (lambda L, x, w, b: _batch_norm(L, x, w, b, True) ** 2,
                            ((4, 3, 2, 3), (3,), (3,)), True),
    "batch_norm_training_2d_no_affine": (lambda L, x: _batch_norm(L, x, None, None, True) * x,
                                         ((5, 3),), False),
    "batch_norm_eval": (lambda L, x, w, b: _batch_norm(L, x, w, b, False) ** 2,
                        ((4, 3, 2, 3), (3,), (3,)), False),
    "layer_norm": (lambda L, x, w, b: _F(L).layer_norm(x, (3, 4), w, b) ** 2
                   + _F(L).layer_norm(x, (4,)) * x, ((2, 3, 4), (3, 4), (3, 4)), False),
    "group_norm": (lambda L, x, w, b: _F(L).group_norm(x, 2, w, b, eps=1e-2) ** 2
                   + _F(L).group_norm(x, 4) * x, ((2, 4, 3, 2), (4,), (4,)), True),
    # padding and resampling
    "pad_constant": (lambda L, x: _F(L).pad(x, (1, -1, 2, 0), value=0.5) ** 2, ((2, 2, 3, 4),), False),
    "interpolate_nearest": (lambda L, x: _F(L).interpolate(x, scale_factor=2, mode="nearest") ** 2,
                            ((1, 2, 2, 3),), False),
    "interpolate_bilinear": (lambda L, x: _F(L).interpolate(x, size=(5, 3), mode="bilinear") ** 2,
                             ((1, 2, 3, 4),), True),
    # spatial transformers: the grid's weights are products of its coordinates
    "grid_sample": (lambda L, x, g: _F(L).grid_sample(x, g, padding_mode="reflection",
                                                      align_corners=False) ** 2,
                    ((2, 2, 2, 3), (2, 2, 1, 2)), False),
}


# torch's third derivatives of batch_norm (training) and layer_norm are wrong: its double
# backward reads the mean and invstd the forward saved, and the derivative of the forward
# drops the gradient that reaches them (finite differences disagree with torch's, and agree
# with nbgrad's: test_third_derivatives_where_torch_drops_the_statistics).
TORCH_THIRD_DERIVATIVE_WRONG = {"batch_norm_training", "batch_norm_training_2d_no_affine",
                                "layer_norm"}


@pytest.mark.parametrize("name", CASES)
def test_second_and_third_derivatives_match_torch(name):
    fn, specs, _ = CASES[name]
    orders = 2 if name in TORCH_THIRD_DERIVATIVE_WRONG else 3
    assert_derivatives_match_torch(fn, _case_inputs(name, specs), orders)


GRADGRADCHECK = [name for name, (_, _, check) in CASES.items() if check]


@pytest.mark.parametrize("name", GRADGRADCHECK)
def test_gradgradcheck_float64(name):
    fn, specs, _ = CASES[name]
    inputs = tuple(nbgrad.tensor(a, requires_grad=True) for a in _case_inputs(name, specs))
    assert nbgrad.autograd.gradgradcheck(lambda *ts: fn(nbgrad, *ts), inputs) is True


@pytest.mark.parametrize("fn", [
    lambda L, x: _F(L).batch_norm(x, None, None, training=True, eps=1e-3) ** 2,
    lambda L, x, w: _F(L).layer_norm(x, (3, 2), w) ** 2], ids=["batch_norm", "layer_norm"])
def test_third_derivatives_where_torch_drops_the_statistics(fn):
    """nbgrad's third derivatives of batch_norm (training) and layer_norm against finite
    differences: gradgradcheck of the gradient (with create_graph=True)."""
    inputs = tuple(nbgrad.tensor(a, requires_grad=True) for a in _case_inputs(
        "third", ((4, 3, 2), (3, 2))[:fn.__code__.co_argcount - 1]))
    upstream = nbgrad.tensor(rng_for("third/upstream").standard_normal((4, 3, 2)))

    def gradient(*ts):
        return nbgrad.autograd.grad(fn(nbgrad, *ts), ts, upstream, create_graph=True)

    assert nbgrad.autograd.gradgradcheck(gradient, inputs) is True


def critic(lib):
    """A small CNN critic of 1x8x8 images, as WGAN-GP's (no batch norm: the penalty is per
    sample), with the same parameters in both libraries."""
    nn = lib.nn
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.GroupNorm(2, 4),
        nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.LeakyReLU(0.2), nn.LayerNorm((6, 4, 4)),
        nn.MaxPool2d(2), nn.Conv2d(6, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 1))
    with lib.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(lib.tensor(0.5 * rng_for(f"critic{i}").standard_normal(tuple(p.shape)),
                               dtype=p.dtype))
    return model


def gradient_penalty_steps(lib, dtype, steps=2):
    """WGAN-GP critic steps: the critic's gradient at points between real and fake images
    (grad with create_graph=True), (its norm - 1)^2 added to the loss, backward, Adam."""
    model = critic(lib).to(dtype)
    optimizer = lib.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.9))
    real, fake, mix = (lib.tensor(rng_for(f"gp_{name}").standard_normal(shape), dtype=dtype)
                       for name, shape in (("real", (3, 1, 8, 8)), ("fake", (3, 1, 8, 8)),
                                           ("mix", (3, 1, 1, 1))))
    mix = mix.sigmoid()
    losses = []
    for _ in range(steps):
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        (gradient,) = lib.autograd.grad(model(between).sum(), between, create_graph=True)
        penalty = ((gradient.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        loss = model(fake).mean() - model(real).mean() + 10 * penalty
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    return losses, [p.grad for p in model.parameters()], list(model.parameters())


def test_gradient_penalty_steps_on_a_cnn_critic_match_torch():
    # (float64: the penalty's gradient to 1e-10; float32's kernels are those of first order)
    (t_losses, t_grads, t_params), (n_losses, n_grads, n_params) = (
        gradient_penalty_steps(lib, lib.float64) for lib in (torch, nbgrad))
    np.testing.assert_allclose(n_losses, t_losses, rtol=1e-10)
    for n, t in zip(n_grads + n_params, t_grads + t_params):
        assert_close(n, t, rtol=1e-10, atol=1e-12)
