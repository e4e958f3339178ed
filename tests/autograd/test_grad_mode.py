"""Grad modes: no_grad, enable_grad and set_grad_enabled, as contexts and as decorators.

Every expectation is what torch does for the same code.
"""

import pytest
import torch

import nbgrad
from conftest import V, assert_close, grad_fn_name


def _grad_on():
    return (nbgrad.ones(1, requires_grad=True) * 2).requires_grad


def test_no_grad_context():
    x = nbgrad.tensor(V, requires_grad=True)
    with nbgrad.no_grad():
        y = x * 2
    assert y.requires_grad is False
    assert y.grad_fn is None
    assert y.is_leaf
    z = x * 2
    assert z.requires_grad and z.grad_fn is not None


def test_enable_grad_inside_no_grad():
    x = nbgrad.tensor(V, requires_grad=True)
    with nbgrad.no_grad():
        with nbgrad.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and grad_fn_name(y) == "MulBackward0"
    assert not z.requires_grad


def test_set_grad_enabled_context():
    x = nbgrad.tensor(V, requires_grad=True)
    with nbgrad.set_grad_enabled(False):
        y = x * 2
        with nbgrad.set_grad_enabled(True):
            w = x * 2
    with nbgrad.set_grad_enabled(True):
        z = x * 2
    assert not y.requires_grad
    assert w.requires_grad
    assert z.requires_grad


def test_no_grad_decorator():
    @nbgrad.no_grad()
    def f(t):
        return t * 2

    x = nbgrad.tensor(V, requires_grad=True)
    y = f(x)
    assert not y.requires_grad
    assert_close(y, torch.tensor(V) * 2)
    assert _grad_on()


def test_enable_grad_decorator():
    @nbgrad.enable_grad()
    def f(t):
        return t * 2

    x = nbgrad.tensor(V, requires_grad=True)
    with nbgrad.no_grad():
        y = f(x)
        z = x * 2
    assert y.requires_grad
    assert not z.requires_grad


def test_set_grad_enabled_decorator():
    @nbgrad.set_grad_enabled(False)
    def f(t):
        return t * 2

    x = nbgrad.tensor(V, requires_grad=True)
    assert not f(x).requires_grad
    assert _grad_on()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with nbgrad.no_grad():
            raise ValueError("boom")
    assert _grad_on()


def test_no_grad_sgd_update_on_leaf():
    res = []
    for lib in (torch, nbgrad):
        w = lib.tensor(V, requires_grad=True)
        (w * w).sum().backward()
        with lib.no_grad():
            w -= 0.1 * w.grad
            w *= 2.0
        assert w.is_leaf and w.requires_grad and w.grad_fn is None
        res.append(w)
    assert_close(res[1], res[0])
