"""Higher-order gradients (create_graph=True), autograd.functional's Hessian products and
gradgradcheck, against torch. (Every op-table row's gradgradcheck is in tests/ops/test_ops.py;
the non-elementwise families' rules in test_higher_order_families.py.)"""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, nbgrad_warnings, rng_for
from nbgrad._tensor.dispatch import dispatch
from nbgrad.fuse import deferred
from nbgrad.fuse.tracer import GraphBreak
from nbgrad.ops.primitive import Primitive
from test_function import FUNCTIONS

LIBS = (torch, nbgrad)
X = np.array([0.5, -1.25, 2.0])


def derivatives(lib, fn, order):
    """fn(x) and its first `order` derivatives at X (elementwise fn), by grad with
    create_graph=True again and again."""
    x = lib.tensor(X, requires_grad=True)
    results = [fn(x)]
    for _ in range(order):
        (d,) = lib.autograd.grad(results[-1].sum(), x, create_graph=True)
        results.append(d)
    return results


@pytest.mark.parametrize("fn", [lambda x: x ** 3, lambda x: x.sin(), lambda x: (x * x).tanh()],
                         ids=["cube", "sin", "tanh_of_square"])
def test_derivatives_of_every_order_match_torch(fn):
    for n, t in zip(derivatives(nbgrad, fn, 3), derivatives(torch, fn, 3)):
        assert_close(n, t, rtol=1e-12, atol=1e-12)
        assert n.requires_grad == t.requires_grad


def test_grad_of_a_leaf_with_create_graph_has_a_graph():
    results = {}
    for lib in LIBS:
        x = lib.tensor(X, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (x ** 3).sum().backward(create_graph=True)
        assert any("reference cycle" in str(w.message) for w in caught)  # torch's warning
        first = x.grad
        assert first.requires_grad and first.grad_fn is not None
        (x ** 3).sum().backward(create_graph=True)  # as torch: .grad = old + new, a new tensor
        assert x.grad is not first and type(x.grad.grad_fn).__name__ == "AddBackward0"
        second = x.grad
        x.grad = None
        second.sum().backward()
        results[lib] = (first, second, x.grad)
    for n, t in zip(results[nbgrad], results[torch]):
        assert_close(n, t)


def test_retain_graph_defaults_to_create_graph():
    for lib in LIBS:
        x = lib.tensor(X, requires_grad=True)
        y = x.exp().sum()
        lib.autograd.grad(y, x, create_graph=True)
        lib.autograd.grad(y, x)  # the graph is still there
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            lib.autograd.grad(y, x)


def mlp_loss(lib):
    target = lib.tensor(rng_for("mlp_target").standard_normal((4, 2)))
    inputs = lib.tensor(rng_for("mlp_x").standard_normal((4, 3)))

    def loss(w1, b1, w2):
        hidden = lib.tanh(lib.nn.functional.linear(inputs, w1, b1))
        return lib.nn.functional.mse_loss(hidden @ w2, target)
    return loss


def test_hessian_of_a_small_mlp_matches_torch():
    params = [rng_for(f"mlp{i}").standard_normal(shape) * 0.5
              for i, shape in enumerate([(5, 3), (5,), (5, 2)])]
    expected = torch.autograd.functional.hessian(mlp_loss(torch), tuple(torch.tensor(p) for p in params))
    actual = nbgrad.autograd.functional.hessian(mlp_loss(nbgrad), tuple(nbgrad.tensor(p) for p in params))
    assert len(actual) == 3 and all(len(row) == 3 for row in actual)
    for n_row, t_row in zip(actual, expected):
        for n, t in zip(n_row, t_row):
            assert_close(n, t, rtol=1e-10, atol=1e-12)


def gradient_penalty_steps(lib, steps=2):
    """Critic steps with a gradient penalty (WGAN-GP): grad(create_graph=True) of the critic
    at the inputs, (norm - 1)^2 added to the loss, backward, SGD."""
    lib.manual_seed(0)
    critic = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.Tanh(), lib.nn.Linear(4, 1))
    with lib.no_grad():
        for p, value in zip(critic.parameters(), [rng_for(f"gp{i}").standard_normal(tuple(p.shape))
                                                  for i, p in enumerate(critic.parameters())]):
            p.copy_(lib.tensor(value, dtype=p.dtype))
    optimizer = lib.optim.SGD(critic.parameters(), lr=0.1)
    batch = lib.tensor(rng_for("gp_x").standard_normal((5, 3)), dtype=lib.float32)
    losses = []
    for _ in range(steps):
        x = batch.clone().requires_grad_(True)
        score = critic(x)
        (gradient,) = lib.autograd.grad(score.sum(), x, create_graph=True)
        penalty = ((gradient.norm(2, dim=1) - 1) ** 2).mean()
        loss = score.mean() + 10 * penalty
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    return losses, [p.grad for p in critic.parameters()], list(critic.parameters())


def test_gradient_penalty_step_matches_torch():
    (t_losses, t_grads, t_params), (n_losses, n_grads, n_params) = \
        gradient_penalty_steps(torch), gradient_penalty_steps(nbgrad)
    np.testing.assert_allclose(n_losses, t_losses, rtol=1e-5)
    for n, t in zip(n_grads + n_params, t_grads + t_params):
        assert_close(n, t, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_in_a_deferred_loop_past_fuse_after(monkeypatch):
    """Deferred mode: create_graph runs the pending ops first and records the backward; the
    loop past FUSE_AFTER gives the numbers of immediate mode."""
    monkeypatch.setattr(deferred, "enabled", False)
    immediate_losses, _, immediate_params = gradient_penalty_steps(nbgrad, steps=4)
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", 2)
    monkeypatch.setattr(deferred, "_graphs", {})
    losses, _, params = gradient_penalty_steps(nbgrad, steps=4)
    deferred.realize_all()
    np.testing.assert_allclose(losses, immediate_losses, rtol=1e-6)
    for n, t in zip(params, immediate_params):
        assert_close(n, t, rtol=1e-6, atol=1e-7)
    t_losses, _, _ = gradient_penalty_steps(torch, steps=4)
    np.testing.assert_allclose(losses, t_losses, rtol=1e-4, atol=1e-5)


def test_create_graph_is_a_graph_break_in_compile():
    def step(x):
        (g,) = nbgrad.autograd.grad((x ** 3).sum(), x, create_graph=True)
        return (g * g).sum()

    x = nbgrad.tensor(X, requires_grad=True)
    compiled = nbgrad.compile(step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = [compiled(x).item() for _ in range(3)]
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1 and "create_graph=True" in messages[0], messages
    np.testing.assert_allclose(values, [float(((3 * X ** 2) ** 2).sum())] * 3)
    with pytest.raises(GraphBreak, match="create_graph=True"):
        nbgrad.compile(step, fullgraph=True)(x)


LEGENDRE = {lib: FUNCTIONS[lib]["LegendrePolynomial3"] for lib in LIBS}


def test_custom_function_second_derivative_matches_torch():
    """As torch: with create_graph, the user's backward runs with grad mode on, so its ops
    are recorded and differentiated again."""
    results = []
    for lib in LIBS:
        x = lib.tensor(X, requires_grad=True)
        (g,) = lib.autograd.grad(LEGENDRE[lib].apply(x * 2).sum(), x, create_graph=True)
        (h,) = lib.autograd.grad(g.sum(), x)
        results.append((g, h))
    for n, t in zip(*results[::-1]):
        assert_close(n, t)


def test_saved_tensor_changed_in_place_is_caught_by_the_second_backward():
    for lib in LIBS:
        x = lib.tensor(X, requires_grad=True)
        a = x * 1
        (g,) = lib.autograd.grad(a.sin().sum(), x, create_graph=True)
        a.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            g.sum().backward()


def test_a_node_without_a_differentiable_vjp_raises_naming_it():
    square = Primitive("test_square", "TestSquareBackward0", lambda a: (a.shape, a.dtype),
                       lambda a: a * a, lambda node, g: (2 * g * node.saved[0],), save=(0,))
    x = nbgrad.tensor(X, requires_grad=True)
    y = dispatch(square, (x,)).sum()
    assert_close(nbgrad.autograd.grad(y, x, retain_graph=True)[0], torch.tensor(2 * X))
    with pytest.raises(NotImplementedError, match="TestSquareBackward0 has no differentiable VJP"):
        nbgrad.autograd.grad(y, x, create_graph=True)


def test_gradgradcheck_of_elementwise_rows_whose_table_rows_sit_on_kinks():
    """The elementwise rows that the table checks only at kinks and ties (gradcheck=False
    there), at smooth points, in one call."""
    def f(lib, a, b):
        F = lib.nn.functional
        steps = (a.floor() + a.ceil() + a.round() + a.trunc() + a.sign() + a.round(decimals=1)
                 + a.div(b, rounding_mode="floor") + a.div(b, rounding_mode="trunc"))
        return (F.elu(a) + F.leaky_relu(a) + F.hardtanh(a) * b + (a * a + 1).log10()
                + (b * b + 1).log2() + a.nan_to_num() * b + steps * a)

    second = []
    for lib in LIBS:
        a = lib.tensor([-1.3, -0.4, 0.6, 2.2], dtype=lib.float64, requires_grad=True)
        b = lib.tensor([0.7, -1.6, 1.1, 0.35], dtype=lib.float64, requires_grad=True)
        ga, gb = lib.autograd.grad(f(lib, a, b).sum(), (a, b), create_graph=True)
        second.append(lib.autograd.grad((ga * gb).sum(), (a, b)))
    for n, t in zip(*second[::-1]):
        assert_close(n, t)
    assert nbgrad.autograd.gradgradcheck(lambda a, b: f(nbgrad, a, b), (a, b)) is True


# ---- autograd.functional

def cubic(x, y):
    return (x ** 3 * y.sin()).sum()


def both(make):
    return make(torch), make(nbgrad)


def assert_all_close(actual, expected):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for n, t in zip(actual, expected):
            assert_all_close(n, t)
    else:
        assert_close(actual, expected)
        assert actual.requires_grad == expected.requires_grad


@pytest.mark.parametrize("name", ["hvp", "vhp", "jvp", "vjp"])
def test_functional_products_match_torch(name):
    def run(lib):
        inputs = (lib.tensor(X), lib.tensor(X[::-1].copy()))
        v = (lib.tensor([1.0, 2.0, -1.0]), lib.tensor([0.5, 0.0, 1.0]))
        fn = cubic
        if name in ("jvp", "vjp"):
            def fn(x, y):
                return (x * y.exp(), x.sin())
        if name == "vjp":
            v = (lib.tensor([1.0, 2.0, -1.0]), lib.tensor([0.5, 0.0, 1.0]))
        return getattr(lib.autograd.functional, name)(fn, inputs, v)
    expected, actual = both(run)
    assert_all_close(actual, expected)


def test_functional_create_graph_results_can_be_differentiated():
    def run(lib):
        x = lib.tensor(X, requires_grad=True)
        F = lib.autograd.functional
        jac = F.jacobian(lambda a: a ** 3, x, create_graph=True)
        _, product = F.hvp(lambda a: (a ** 4).sum(), x, lib.ones(3, dtype=lib.float64),
                           create_graph=True)
        (jac.sum() + product.sum()).backward()
        return jac, product, x.grad
    expected, actual = both(run)
    assert_all_close(actual, expected)


def test_functional_errors_match_torch():
    F = {lib: lib.autograd.functional for lib in LIBS}
    calls = [
        lambda lib, x: F[lib].hessian(lambda a: a, x),
        lambda lib, x: F[lib].hvp(lambda a: a.sum(), x),
        lambda lib, x: F[lib].vhp(lambda a: a.sum(), x, lib.ones(2)),
        lambda lib, x: F[lib].jvp(lambda a: a, x, (x, x)),
        lambda lib, x: F[lib].jacobian(lambda a: a, x, strategy="forward-mode"),
        lambda lib, x: F[lib].jacobian(lambda a: a, x, strategy="sideways"),
        lambda lib, x: F[lib].jacobian(lambda a: a, x, create_graph=True, vectorize=True,
                                       strategy="forward-mode"),
    ]
    for call in calls:
        errors = []
        for lib in LIBS:
            with pytest.raises(Exception) as info:
                call(lib, lib.tensor(X))
            errors.append((info.type, str(info.value).replace("torch.", "")))
        assert errors[0] == errors[1]


# ---- gradgradcheck

class SquareWithDetachedBackward(nbgrad.autograd.Function):
    """x^2 with a right first derivative whose own derivative is wrong (it detaches x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x.detach()


def test_gradgradcheck_passes_right_and_fails_wrong_second_derivatives():
    x = nbgrad.tensor(X, requires_grad=True)
    y = nbgrad.tensor(X[::-1].copy(), requires_grad=True)
    assert nbgrad.autograd.gradgradcheck(lambda a, b: a.sin() * b ** 2, (x, y)) is True
    assert nbgrad.autograd.gradgradcheck(lambda a, b: a * b, (x, y), gen_non_contig_grad_outputs=True)
    assert nbgrad.autograd.gradcheck(SquareWithDetachedBackward.apply, (x,)) is True
    assert nbgrad.autograd.gradgradcheck(SquareWithDetachedBackward.apply, (x,),
                                         raise_exception=False) is False
    with pytest.raises(RuntimeError, match="Jacobian mismatch for output 0 with respect to input 0"):
        nbgrad.autograd.gradgradcheck(SquareWithDetachedBackward.apply, (x,))
