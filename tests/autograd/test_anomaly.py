"""Anomaly mode and grad_fn hooks (Node.register_hook / register_prehook), against torch, in
immediate and deferred mode (the tests run in the default, deferred, mode; `immediate` turns
deferral off)."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.fuse import GraphBreak, deferred
from conftest import assert_close, to_numpy


@pytest.fixture(params=["deferred", "immediate"])
def lib_mode(request, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", request.param == "deferred")
    return request.param


def _nan_backward(lib):
    """sqrt's VJP at 0 is 0 * inf = nan: PyTorch's classic anomaly example."""
    x = lib.tensor([0.0, 1.0], requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError) as info:
            with lib.autograd.detect_anomaly():
                y = x.sqrt()  # the forward line the warning names
                (y * 0).sum().backward()
    return str(info.value), [str(w.message) for w in caught]


def test_nan_in_a_vjp_raises_and_warns_with_the_forward_line(lib_mode):
    message, warned = _nan_backward(nbgrad)
    expected_message, expected_warned = _nan_backward(torch)
    assert message == expected_message == \
        "Function 'SqrtBackward0' returned nan values in its 0th output."
    assert warned[0] == expected_warned[0]  # "Anomaly Detection has been enabled. ..."
    # The same text and frames (its caller's frame differs: the two calls are on two lines).
    expected = expected_warned[1].split("\n (Triggered internally")[0].splitlines()
    got = warned[1].splitlines()
    assert got[0] == expected[0] and len(got) == len(expected)
    assert got[-2:] == expected[-2:] and "y = x.sqrt()" in got[-1]
    assert not nbgrad.autograd.anomaly_mode.is_anomaly_enabled()


def test_switches_and_check_nan_false():
    # torch has the two queries at its top level (nbgrad's lead exports them there too).
    for lib, queries in ((torch, torch), (nbgrad, nbgrad.autograd.anomaly_mode)):
        with lib.autograd.set_detect_anomaly(True):
            assert queries.is_anomaly_enabled()
        assert not queries.is_anomaly_enabled()
        lib.autograd.set_detect_anomaly(True, check_nan=False)
        assert queries.is_anomaly_enabled() and not queries.is_anomaly_check_nan_enabled()
        lib.autograd.set_detect_anomaly(False)
        assert not queries.is_anomaly_enabled()
    grads = []
    for lib in (torch, nbgrad):
        x = lib.tensor([0.0, 1.0], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with lib.autograd.detect_anomaly(check_nan=False):
                (x.sqrt() * 0).sum().backward()
        grads.append(x.grad)
    assert_close(grads[1], grads[0])


def test_anomaly_mode_is_a_graph_break_in_compile():
    w = nbgrad.tensor([1.0, 2.0], requires_grad=True)

    def step(x):
        (x * w).sum().backward()

    compiled = nbgrad.compile(step, fullgraph=True)
    with nbgrad.autograd.set_detect_anomaly(True):
        with pytest.raises(GraphBreak, match="anomaly"):
            compiled(nbgrad.tensor([3.0, 4.0]))


def _node_hooks(lib):
    seen = []
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    b = x * 2
    b.register_hook(lambda g: seen.append(("tensor", to_numpy(g).copy())) or g * 10)
    b.grad_fn.register_prehook(lambda go: seen.append(("pre", to_numpy(go[0]).copy()))
                               or (go[0] + 1,))
    removed = b.grad_fn.register_prehook(lambda go: (go[0] * 100,))
    removed.remove()
    b.grad_fn.register_hook(lambda gi, go: seen.append(
        ("post", len(gi), gi[1], to_numpy(gi[0]).copy(), to_numpy(go[0]).copy()))
        or (gi[0] * 0 + 7, None))
    b.retain_grad()
    (b * x).sum().backward()
    return seen, b.grad, x.grad


def test_grad_fn_hooks(lib_mode):
    seen, b_grad, x_grad = _node_hooks(nbgrad)
    expected_seen, expected_b_grad, expected_x_grad = _node_hooks(torch)
    assert [s[0] for s in seen] == [s[0] for s in expected_seen] == ["tensor", "pre", "post"]
    for got, expected in zip(seen, expected_seen):
        for a, b in zip(got[1:], expected[1:]):
            if isinstance(b, np.ndarray):
                assert_close(a, b)
            else:
                assert a == b
    assert_close(b_grad, expected_b_grad)
    assert_close(x_grad, expected_x_grad)


def _accumulate_grad_hooks(lib):
    seen = []
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    accumulator = y.grad_fn.next_functions[0][0]
    accumulator.register_prehook(lambda go: seen.append(("pre", to_numpy(go[0]).copy()))
                                 or (go[0] * 2,))
    accumulator.register_hook(lambda gi, go: seen.append(("post", gi, to_numpy(go[0]).copy())))
    x.register_hook(lambda g: seen.append(("tensor", to_numpy(g).copy())) or g + 1)
    y.sum().backward()
    return seen, x.grad


def test_accumulate_grad_hooks(lib_mode):
    seen, grad = _accumulate_grad_hooks(nbgrad)
    expected_seen, expected_grad = _accumulate_grad_hooks(torch)
    assert [s[0] for s in seen] == [s[0] for s in expected_seen] == ["tensor", "pre", "post"]
    assert seen[2][1] == expected_seen[2][1] == ()
    for got, expected in zip(seen, expected_seen):
        assert_close(got[-1], expected[-1])
    assert_close(grad, expected_grad)
