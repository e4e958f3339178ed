"""autograd.gradcheck: true for a correct gradient, false for a wrong one."""

import numpy as np

import nbgrad
from conftest import V, X


def test_gradcheck_true_for_correct_function():
    x = nbgrad.tensor(X.astype(np.float64), requires_grad=True)
    w = nbgrad.tensor(V.astype(np.float64), requires_grad=True)
    assert nbgrad.autograd.gradcheck(lambda a, b: (a * b).sigmoid() @ b, (x, w)) is True


def test_gradcheck_detects_wrong_gradient():
    def wrong(a):
        y = a * 1.0
        y.register_hook(lambda g: g * 2)  # analytical gradient becomes twice the true one
        return y.exp()

    x = nbgrad.tensor(V.astype(np.float64), requires_grad=True)
    try:
        ok = nbgrad.autograd.gradcheck(wrong, (x,))
    except RuntimeError:
        ok = False
    assert ok is False
