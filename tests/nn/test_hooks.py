"""Module hooks (forward pre-hooks, forward hooks, full backward hooks and pre-hooks) against
torch: what each hook is given, what a returned value replaces, the order and the handles,
in deferred mode (the default) and immediate mode."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.fuse import GraphBreak, deferred
from conftest import assert_close, to_numpy

W = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
B = np.array([0.1, -0.2], np.float32)
X = np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)


@pytest.fixture(params=["deferred", "immediate"])
def lib_mode(request, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", request.param == "deferred")
    return request.param


def _linear(lib):
    layer = lib.nn.Linear(2, 2)
    with lib.no_grad():
        layer.weight.copy_(lib.tensor(W))
        layer.bias.copy_(lib.tensor(B))
    return layer


def _as_numpy(value):
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (tuple, list, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return (type(value).__name__, [(k, _as_numpy(v)) for k, v in items])
    return to_numpy(value).copy()


def _assert_same(got, expected):
    if isinstance(expected, np.ndarray):
        assert_close(got, expected)
    elif isinstance(expected, tuple):
        assert type(got) is tuple and len(got) == len(expected), (got, expected)
        for a, b in zip(got, expected):
            _assert_same(a, b)
    elif isinstance(expected, list):
        assert len(got) == len(expected), (got, expected)
        for a, b in zip(got, expected):
            _assert_same(a, b)
    else:
        assert got == expected


def _forward_hooks(lib):
    seen = []
    layer = _linear(lib)
    record = seen.append
    layer.register_forward_pre_hook(lambda m, args: record(("pre", _as_numpy(args))) or
                                    (args[0] * 2,))
    layer.register_forward_pre_hook(lambda m, args: record(("first", _as_numpy(args))) or
                                    args[0] + 1, prepend=True)  # not a tuple: wrapped
    layer.register_forward_pre_hook(lambda m, args, kwargs: record(("kw", kwargs)),
                                    with_kwargs=True)
    layer.register_forward_hook(lambda m, args, out: record(("fwd", _as_numpy((args, out)))) or
                                out * 3)
    layer.register_forward_hook(lambda m, args, kwargs, out: record(("fwdkw", _as_numpy(out))),
                                with_kwargs=True)
    gone = layer.register_forward_hook(lambda m, args, out: out * 100)
    gone.remove()
    x = lib.tensor(X, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    return seen, _as_numpy(out), _as_numpy(x.grad), type(out.grad_fn).__name__


def test_forward_hooks_and_handles(lib_mode):
    got = _forward_hooks(nbgrad)
    expected = _forward_hooks(torch)
    assert [s[0] for s in got[0]] == [s[0] for s in expected[0]]
    for a, b in zip(got, expected):
        _assert_same(a, b)


def test_bad_pre_hook_result_and_always_call():
    for lib in (torch, nbgrad):
        layer = _linear(lib)
        layer.register_forward_pre_hook(lambda m, args, kwargs: 5, with_kwargs=True)
        with pytest.raises(RuntimeError, match=r"forward pre-hook must return None or a tuple "
                                               r"of \(new_args, new_kwargs\), but got 5\."):
            layer(lib.tensor(X))

        class Failing(lib.nn.Module):
            def forward(self, x):
                raise ValueError("boom")

        calls = []
        failing = Failing()
        failing.register_forward_hook(lambda m, args, out: calls.append(out), always_call=True)
        failing.register_forward_hook(lambda m, args, out: calls.append("not always"))
        with pytest.raises(ValueError, match="boom"):
            failing(lib.tensor(X))
        assert calls == [None]


def _backward_hooks(lib, input_requires_grad):
    seen = []
    layer = _linear(lib)
    layer.register_full_backward_pre_hook(lambda m, go: seen.append(("bpre", _as_numpy(go)))
                                          or (go[0] * 2,))
    layer.register_full_backward_hook(lambda m, gi, go: seen.append(
        ("bhook", _as_numpy(gi), _as_numpy(go))) or
        (None if gi[0] is None else (gi[0] + 5,)))
    x = lib.tensor(X, requires_grad=input_requires_grad)
    y = x * 1.5 if input_requires_grad else x
    out = layer(y)
    names = [type(out.grad_fn).__name__,
             [type(n).__name__ for n, _ in out.grad_fn.next_functions]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (out * out).sum().backward()
    warned = ["no inputs require gradients" in str(w.message) for w in caught]
    return (seen, names, _as_numpy(x.grad), _as_numpy(layer.weight.grad),
            _as_numpy(layer.bias.grad), warned)


@pytest.mark.parametrize("input_requires_grad", [True, False])
def test_full_backward_hooks(input_requires_grad, lib_mode):
    got = _backward_hooks(nbgrad, input_requires_grad)
    expected = _backward_hooks(torch, input_requires_grad)
    assert expected[1][0] == "BackwardHookFunctionBackward"
    for a, b in zip(got, expected):
        _assert_same(a, b)


def _loss_hook(lib):
    seen = []
    loss = lib.nn.MSELoss()
    loss.register_full_backward_hook(lambda m, gi, go: seen.append(_as_numpy((gi, go))))
    a = lib.tensor(X[0], requires_grad=True)
    loss(a * 2, lib.tensor(X[1])).backward()
    return seen, _as_numpy(a.grad)


def test_backward_hook_gives_zeros_for_a_tensor_input_that_needs_no_grad():
    got, expected = _loss_hook(nbgrad), _loss_hook(torch)
    _assert_same(got, expected)


def _two_in_two_out_hooks(lib):
    """A module with two inputs that require grad and a tuple of two outputs: each gradient
    in its own slot of the hook node, replaced by what the hooks return."""

    class Pair(lib.nn.Module):
        def forward(self, a, b):
            return a * b, a + b

    seen = []
    pair = Pair()
    pair.register_full_backward_pre_hook(lambda m, go: seen.append(("bpre", _as_numpy(go)))
                                         or (None if go[0] is None else go[0] * 2, go[1]))
    pair.register_full_backward_hook(lambda m, gi, go: seen.append(
        ("bhook", _as_numpy(gi), _as_numpy(go))) or (gi[0], None if gi[1] is None else gi[1] * 3))
    a = lib.tensor(X[0], requires_grad=True)
    b = lib.tensor(X[1], requires_grad=True)
    product, total = pair(a * 1.0, b)
    (product * product).sum().backward(retain_graph=True)
    first = _as_numpy((a.grad, b.grad))
    total.sum().backward()  # no gradient reaches the product this time
    return seen, first, _as_numpy((a.grad, b.grad)), type(total.grad_fn).__name__


def test_full_backward_hooks_of_several_inputs_and_outputs(lib_mode):
    _assert_same(_two_in_two_out_hooks(nbgrad), _two_in_two_out_hooks(torch))


def test_module_hooks_are_a_graph_break_in_compile():
    layer = _linear(nbgrad)
    layer.register_forward_hook(lambda m, args, out: None)

    def step(x):
        layer(x).sum().backward()

    with pytest.raises(GraphBreak, match="hooks"):
        nbgrad.compile(step, fullgraph=True)(nbgrad.tensor(X))
