"""autograd.functional: vjp and jacobian, against torch.autograd.functional."""

import numpy as np
import torch

import nbgrad
from conftest import V, X, assert_close, rng_for


def test_functional_vjp_single_input():
    v = rng_for("vjp").standard_normal(X.shape).astype(np.float32)
    out_t, vjp_t = torch.autograd.functional.vjp(lambda x: x.tanh() * x, torch.tensor(X), torch.tensor(v))
    out_n, vjp_n = nbgrad.autograd.functional.vjp(lambda x: x.tanh() * x, nbgrad.tensor(X), nbgrad.tensor(v))
    assert_close(out_n, out_t)
    assert_close(vjp_n, vjp_t)


def test_functional_vjp_tuple_inputs():
    v = rng_for("vjp2").standard_normal(X.shape).astype(np.float32)
    f = lambda x, w: (x * w).exp()  # noqa: E731
    out_t, vjp_t = torch.autograd.functional.vjp(f, (torch.tensor(X), torch.tensor(V)), torch.tensor(v))
    out_n, vjp_n = nbgrad.autograd.functional.vjp(f, (nbgrad.tensor(X), nbgrad.tensor(V)), nbgrad.tensor(v))
    assert_close(out_n, out_t)
    assert isinstance(vjp_n, tuple) and len(vjp_n) == 2
    for n, t in zip(vjp_n, vjp_t):
        assert_close(n, t)


def test_functional_jacobian_single_input():
    f = lambda x: (x @ x.T).sin()  # noqa: E731
    assert_close(nbgrad.autograd.functional.jacobian(f, nbgrad.tensor(X)),
                 torch.autograd.functional.jacobian(f, torch.tensor(X)))


def test_functional_jacobian_tuple_inputs():
    f = lambda x, w: x * w + w.exp()  # noqa: E731
    jt = torch.autograd.functional.jacobian(f, (torch.tensor(X), torch.tensor(V)))
    jn = nbgrad.autograd.functional.jacobian(f, (nbgrad.tensor(X), nbgrad.tensor(V)))
    assert isinstance(jn, tuple) and len(jn) == 2
    for n, t in zip(jn, jt):
        assert_close(n, t)
