"""PyTorch's `out=` argument on the functions listed in `OUT_ARGUMENT`, against torch."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close
from nbgrad._tensor.api import OUT_ARGUMENT

X = np.array([[0.5, 1.5, 2.0], [1.0, 0.25, 3.0]], np.float32)
Y = np.array([[2.0, 0.5, 1.0], [4.0, 1.0, 0.5]], np.float32)
CALLS = {  # name: arguments (arrays become tensors); the remaining names take (X, Y)
    **{n: (X,) for n in ("neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid")},
    "sum": (X, 0), "mean": (X, 0),  # torch takes out= only with a dim,
    "clamp": (X, 0.7, 1.8), "matmul": (X, Y.T), "mm": (X, Y.T), "bmm": (X[None], Y.T[None]),
    "mv": (X, Y[0]), "cat": ([X, Y],), "concat": ([X, Y],), "stack": ([X, Y],), "pow": (X, 2.0),
}


def _call(lib, name, out):
    args = [lib.from_numpy(a.copy()) if isinstance(a, np.ndarray) else
            [lib.from_numpy(b.copy()) for b in a] if isinstance(a, list) else a
            for a in CALLS.get(name, (X, Y))]
    return getattr(lib, name)(*args, out=out)


@pytest.mark.parametrize("name", OUT_ARGUMENT)
def test_out_receives_the_result_as_in_torch(name):
    expected = _call(torch, name, None)
    for shape in (tuple(expected.shape), (0,)):  # the right shape, and an empty tensor resized
        out = nbgrad.empty(shape, dtype=nbgrad.float64)
        result = _call(nbgrad, name, out)
        assert result is out and out.dtype == nbgrad.float64
        assert_close(out, expected.double(), rtol=1e-6, atol=1e-6)  # float32 results, widened


def test_out_errors_and_resize_warning_as_in_torch():
    for lib in (torch, nbgrad):
        a = lib.ones(2, 2, requires_grad=True)
        with pytest.raises(RuntimeError, match=r"mul\(\): functions with out=\.\.\. arguments don't "
                           "support automatic differentiation"):
            lib.mul(a, a, out=lib.empty(2, 2))
        with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output "
                           "type Long"):
            lib.mul(lib.ones(2), 2.5, out=lib.empty(0, dtype=lib.int64))
        with nbgrad.no_grad() if lib is nbgrad else torch.no_grad():
            lib.mul(a, a, out=lib.empty(2, 2))  # no graph is recorded: fine
        out = lib.zeros(3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib.add(lib.ones(2, 2), 1, out=out)
        assert [w.category for w in caught] == [UserWarning]
        assert "was resized since it had shape [3]" in str(caught[0].message)
        assert out.tolist() == [[2.0, 2.0], [2.0, 2.0]]
        base = lib.zeros(2, 2)
        lib.add(lib.ones(2), 1, out=base[0])  # a view: written through to its base
        assert base.tolist() == [[2.0, 2.0], [0.0, 0.0]]
