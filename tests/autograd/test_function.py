"""Custom autograd Functions (`nbgrad.autograd.Function`) against `torch.autograd.Function`.

Each test defines the same Function for torch and for nbgrad (`functions(lib)`) and runs the
same code with both; values, gradients, grad_fn names, error types and messages are torch's.
"""
import math
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, nbgrad_warnings, to_numpy
from nbgrad.fuse import deferred
from nbgrad.fuse.tracer import GraphBreak

LIBS = (torch, nbgrad)


def functions(lib):
    """The Functions of these tests, made on `lib` (torch or nbgrad)."""

    class LegendrePolynomial3(lib.autograd.Function):
        # The PyTorch tutorial's example, unchanged.
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)

    class MyReLU(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return input.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[input < 0] = 0
            return grad_input

    class Scale(lib.autograd.Function):
        """New style (setup_context), a non-tensor argument with a default, a non-tensor
        output, and a non-differentiable integer output."""

        @staticmethod
        def forward(x, k=3.0):
            return x * k, "label", x.argmax()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.k = inputs[1]
            ctx.mark_non_differentiable(output[2])
            ctx.seen = []

        @staticmethod
        def backward(ctx, grad, grad_label, grad_index):
            ctx.seen.append((grad_label, grad_index))
            return grad * ctx.k, None

    class Probe(lib.autograd.Function):
        """Records what forward and backward see."""
        seen = []

        @staticmethod
        def forward(ctx, x, w, flag, materialize):
            Probe.seen.append(("grad enabled", lib.is_grad_enabled(), ctx.needs_input_grad))
            ctx.set_materialize_grads(materialize)
            index = x.argmax()
            ctx.mark_non_differentiable(index)
            return x * w, index

        @staticmethod
        def backward(ctx, grad, grad_index):
            Probe.seen.append(("grad_index", grad_index))
            return grad, None, None, None

    class DoubleInPlace(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.mul_(2)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    return {cls.__name__: cls for cls in (LegendrePolynomial3, MyReLU, Scale, Probe,
                                          DoubleInPlace)}


FUNCTIONS = {lib: functions(lib) for lib in LIBS}


def legendre_training(lib, steps=50):
    """The tutorial's training loop of a + b * P3(c + d * x) on sin(x)."""
    P3 = FUNCTIONS[lib]["LegendrePolynomial3"].apply
    x = lib.linspace(-math.pi, math.pi, 2000)
    y = lib.sin(x)
    a = lib.full((), 0.0, requires_grad=True)
    b = lib.full((), -1.0, requires_grad=True)
    c = lib.full((), 0.0, requires_grad=True)
    d = lib.full((), 0.3, requires_grad=True)
    learning_rate = 5e-6
    losses = []
    for _ in range(steps):
        y_pred = a + b * P3(c + d * x)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with lib.no_grad():
            for p in (a, b, c, d):
                p -= learning_rate * p.grad
                p.grad = None
    return losses, [p.item() for p in (a, b, c, d)], type(y_pred.grad_fn).__name__


def test_legendre_tutorial_trains_as_torch():
    expected = legendre_training(torch)
    actual = legendre_training(nbgrad)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-4)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-4, atol=1e-6)
    assert actual[2] == expected[2] == "AddBackward0"


def test_legendre_in_deferred_loop_past_fuse_after(monkeypatch):
    """Deferred mode: the ops around the Function are pending when it is called; the loop
    runs past FUSE_AFTER with the same numbers as torch."""
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", 3)
    monkeypatch.setattr(deferred, "_graphs", {})
    expected = legendre_training(torch, steps=8)
    actual = legendre_training(nbgrad, steps=8)
    deferred.realize_all()
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-4)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-4, atol=1e-6)


def my_relu(lib):
    x = lib.tensor([[0.5, -1.25, 2.0], [1.5, 0.0, -0.75]], requires_grad=True)
    y = FUNCTIONS[lib]["MyReLU"].apply(x * 2)
    (y * lib.arange(6.0).reshape(2, 3)).sum().backward()
    return x, y


def test_my_relu():
    (tx, ty), (nx, ny) = my_relu(torch), my_relu(nbgrad)
    assert_close(ny, ty)
    assert_close(nx.grad, tx.grad)
    assert type(ny.grad_fn).__name__ == type(ty.grad_fn).__name__ == "MyReLUBackward"
    # next_functions as torch: the MulBackward0 of x * 2
    assert [type(f).__name__ for f, _ in ny.grad_fn.next_functions] == \
        [type(f).__name__ for f, _ in ty.grad_fn.next_functions] == ["MulBackward0"]
    assert ny.grad_fn.next_functions[0][1] == 0
    leaf = nbgrad.tensor([1.0, -1.0], requires_grad=True)
    node = FUNCTIONS[nbgrad]["MyReLU"].apply(leaf).grad_fn
    assert type(node.next_functions[0][0]).__name__ == "AccumulateGrad"
    assert node.next_functions[0][0].variable is leaf
    # ctx is the node itself, as in torch
    assert isinstance(node, nbgrad.autograd.function.FunctionCtx)


def scale(lib):
    x = lib.tensor([1.0, 4.0, 2.0], requires_grad=True)
    y, label, index = FUNCTIONS[lib]["Scale"].apply(x)
    y.sum().backward()
    return x, y, label, index


def test_setup_context_non_tensor_arguments_and_outputs():
    (tx, ty, tl, ti), (nx, ny, nl, ni) = scale(torch), scale(nbgrad)
    assert nl == tl == "label"
    assert ni.item() == ti.item() and ni.requires_grad == ti.requires_grad is False
    assert ni.grad_fn is None
    assert_close(ny, ty)
    assert_close(nx.grad, tx.grad)
    ([t_label, t_index],) = ty.grad_fn.seen
    ([n_label, n_index],) = ny.grad_fn.seen
    assert n_label is t_label is None
    assert n_index.item() == t_index.item() == 0 and n_index.dtype == nbgrad.int64


@pytest.mark.parametrize("materialize", [True, False])
def test_needs_input_grad_grad_mode_and_materialize(materialize):
    seen = {}
    for lib in LIBS:
        probe = FUNCTIONS[lib]["Probe"]
        probe.seen.clear()
        x = lib.tensor([1.0, 3.0], requires_grad=True)
        w = lib.tensor([2.0, 2.0])
        y, _ = probe.apply(x, w, "flag", materialize)
        y.sum().backward()
        with lib.no_grad():
            out, _ = probe.apply(x, w, "flag", materialize)
        assert not out.requires_grad and out.grad_fn is None
        seen[lib] = [(kind, *(to_numpy(v).tolist() if hasattr(v, "shape") else v
                              for v in values)) for kind, *values in probe.seen]
        probe.seen.clear()
    assert seen[nbgrad] == seen[torch]


def test_no_input_requires_grad_records_nothing():
    for lib in LIBS:
        y = FUNCTIONS[lib]["MyReLU"].apply(lib.tensor([1.0, -1.0]))
        assert not y.requires_grad and y.grad_fn is None


def test_mark_dirty():
    results = {}
    for lib in LIBS:
        x = lib.tensor([1.0, -2.0], requires_grad=True)
        z = x * 1
        out = FUNCTIONS[lib]["DoubleInPlace"].apply(z)
        results[lib] = (out is z, z._version, type(z.grad_fn).__name__,
                        [type(f).__name__ for f, _ in z.grad_fn.next_functions])
        (z * lib.tensor([1.0, 3.0])).sum().backward()
        results[lib] += (to_numpy(z).tolist(), to_numpy(x.grad).tolist())
        with pytest.raises(RuntimeError) as info:
            FUNCTIONS[lib]["DoubleInPlace"].apply(x)
        results[lib] += (str(info.value),)
    assert results[nbgrad] == results[torch]


def test_saved_tensor_modified_in_place_and_freed():
    for lib in LIBS:
        x = lib.tensor([1.0, -2.0], requires_grad=True)
        z = x * 1
        y = FUNCTIONS[lib]["MyReLU"].apply(z)
        z.add_(1)
        with pytest.raises(RuntimeError, match="one of the variables needed for gradient "
                                               "computation has been modified by an inplace "
                                               r"operation: \[.*\], which is output 0 of .*"
                                               "is at version 1; expected version 0 instead"):
            y.sum().backward()
        y = FUNCTIONS[lib]["MyReLU"].apply(x * 1)
        y.sum().backward(retain_graph=True)
        assert len(y.grad_fn.saved_tensors) == 1
        y.sum().backward()
        with pytest.raises(RuntimeError, match="Trying to backward through the graph a second "
                                               "time"):
            y.grad_fn.saved_tensors  # noqa: B018


def bad_function(lib, returned):
    class Bad(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, grad):
            return returned(lib, grad)

    return Bad


BAD_BACKWARDS = {
    "too_many": lambda lib, g: (g, None, g),
    "too_few": lambda lib, g: g,
    "wrong_shape": lambda lib, g: (lib.ones(4), None),
    "grad_for_non_tensor": lambda lib, g: (g, lib.ones(1)),
    "not_a_tensor": lambda lib, g: (3.0, None),
}


@pytest.mark.parametrize("kind", list(BAD_BACKWARDS))
def test_bad_backward_raises_torchs_error(kind):
    errors = []
    for lib in LIBS:
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = bad_function(lib, BAD_BACKWARDS[kind]).apply(x, 2.0)
        with pytest.raises(Exception) as info:
            y.sum().backward()
        errors.append((type(info.value), str(info.value)))
    assert errors[1] == errors[0]


def test_broadcastable_gradient_is_summed_and_cast():
    grads = []
    for lib in LIBS:
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        fn = bad_function(lib, lambda lib, g: (g.expand(2, 3).double(), None))
        fn.apply(x, 2.0).sum().backward()
        grads.append((to_numpy(x.grad).tolist(), str(x.grad.dtype).split(".")[-1]))
    assert grads[1] == grads[0]


def test_instantiating_and_calling_a_function_raises():
    for lib in LIBS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            instance = FUNCTIONS[lib]["MyReLU"]()
        with pytest.raises(RuntimeError, match="Legacy autograd function with non-static "
                                               "forward method is deprecated"):
            instance(lib.ones(2, requires_grad=True))


def legendre_and_relu_step(lib, relu):
    """A step through LegendrePolynomial3, and MyReLU if `relu`, with an SGD update."""
    functions_of = FUNCTIONS[lib]

    def step(w, shift):
        loss = functions_of["LegendrePolynomial3"].apply(w + shift).sum()
        if relu:
            loss = loss + functions_of["MyReLU"].apply(w * 2 - 1 + shift).sum()
        loss.backward()
        with lib.no_grad():
            w -= 0.1 * w.grad
            w.grad = None
        return loss

    return step


def _losses_and_weights(lib, step, calls=4):
    w = lib.tensor([0.2, 0.7, -0.4], requires_grad=True)
    losses = [step(w, lib.tensor(0.4 * i)).item() for i in range(calls)]
    return losses, w.detach().numpy()


def test_compile_fuses_a_function_made_of_ops_that_trace():
    expected = _losses_and_weights(torch, legendre_and_relu_step(torch, relu=False))
    compiled = nbgrad.compile(legendre_and_relu_step(nbgrad, relu=False), fullgraph=True)
    got = _losses_and_weights(nbgrad, compiled)
    assert compiled.stats["fused_calls"] == 3, compiled.explain()
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_compile_graph_break_with_one_warning_and_fullgraph_error():
    """MyReLU's backward writes by index outside autograd (`grad_input[input < 0] = 0`),
    which a trace cannot see: the step runs eagerly, with one warning, and torch's values
    over calls whose inputs change sign where the mask is taken."""
    expected = _losses_and_weights(torch, legendre_and_relu_step(torch, relu=True))
    compiled = nbgrad.compile(legendre_and_relu_step(nbgrad, relu=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _losses_and_weights(nbgrad, compiled)
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1 and "indexed write" in messages[0], messages
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(GraphBreak, match="indexed write"):
        nbgrad.compile(legendre_and_relu_step(nbgrad, relu=True), fullgraph=True)(
            nbgrad.tensor([0.2, 0.7], requires_grad=True), nbgrad.tensor(0.0))


def test_input_returned_as_is_gets_a_new_tensor():
    results = []
    for lib in LIBS:
        class Identity(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x

            @staticmethod
            def backward(ctx, grad):
                return grad * 3

        x = lib.tensor([1.0, 2.0], requires_grad=True)
        out = Identity.apply(x)
        (out * x).sum().backward()
        results.append((out is x, x.grad_fn, type(out.grad_fn).__name__,
                        to_numpy(x.grad).tolist()))
    assert results[1] == results[0]


def sin_cos(lib):
    class SinCos(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, grad_sin, grad_cos):
            x, = ctx.saved_tensors
            return grad_sin * x.cos() - grad_cos * x.sin()

    return SinCos


def several_outputs_run(lib):
    """Each output's gradient reaches the one node in its own slot: summed over several
    uses, materialized as zeros where none arrives, hooked and retained per output."""
    SinCos = sin_cos(lib)
    x = lib.tensor([0.5, 1.0, 2.0], requires_grad=True)
    s, c = SinCos.apply(x)
    y = s * 2 + c * c + c
    links = [(type(n).__name__, nr) for n, nr in y.grad_fn.next_functions[0][0].next_functions]
    links += [(type(n).__name__, nr) for n, nr in y.grad_fn.next_functions[1][0].next_functions]
    results = [s.grad_fn.name(), s.grad_fn is c.grad_fn, links]
    y.sum().backward()
    results.append(x.grad.tolist())
    x.grad = None
    s, c = SinCos.apply(x)
    s.sum().backward()  # no gradient reaches c: zeros
    results.append(x.grad.tolist())
    x.grad = None
    s, c = SinCos.apply(x)
    c.retain_grad()
    c.register_hook(lambda g: g * 10)
    (c.sum() + s.sum()).backward()
    results += [x.grad.tolist(), c.grad.tolist()]
    s, c = SinCos.apply(x)
    results.append(lib.autograd.grad(c.sum(), x)[0].tolist())
    return results


def test_several_differentiable_outputs_as_torch():
    ours, theirs = several_outputs_run(nbgrad), several_outputs_run(torch)
    assert ours[:3] == theirs[:3]
    for a, b in zip(ours[3:], theirs[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-6)
