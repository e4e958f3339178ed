"""Shared helpers for the nbgrad test suite.

PyTorch is the reference implementation: every expected value in these tests comes
from running the same code with ``torch`` (never from nbgrad's own output).
"""

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import nbgrad
from nbgrad._core import threads as _threads
from nbgrad.fuse.graph import FusedGraph

# Before torch loads its own OpenMP runtime, or nbgrad's threaded kernels stay serial (see
# nbgrad._threads) and the tests of them would test the serial ones twice.
_threads.start()

import torch  # noqa: E402

# Default tolerances (relative, absolute) per dtype.
TOL = {
    "float32": (1e-5, 1e-6),
    "float64": (1e-10, 1e-12),
}

DTYPE_NAMES = ("float32", "float64", "int64", "bool")


def rng_for(name):
    """A deterministic numpy Generator whose seed depends only on ``name``."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def dtype_name(dtype):
    """'float32' for torch.float32, nbgrad.float32, np.float32 alike."""
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        return np.dtype(dtype).name
    return str(dtype).rsplit(".", 1)[-1]


def nb_dtype(torch_dtype):
    """The nbgrad dtype object with the same name as a torch dtype."""
    return getattr(nbgrad, dtype_name(torch_dtype))


def to_both(array, requires_grad=False):
    """A torch tensor and an nbgrad tensor made from the same numpy array."""
    array = np.asarray(array)
    t = torch.tensor(array, requires_grad=requires_grad)
    n = nbgrad.tensor(array, requires_grad=requires_grad)
    return t, n


def to_numpy(t):
    """``t.detach().numpy()`` for either library, as a numpy array (0-d stays 0-d)."""
    return np.asarray(t.detach().numpy())


def assert_same_dtype(actual, expected):
    """An nbgrad tensor's dtype has the same name as a torch tensor's dtype."""
    assert dtype_name(actual.dtype) == dtype_name(expected.dtype), (
        f"dtype {actual.dtype} != torch's {expected.dtype}"
    )


def assert_close(actual, expected, rtol=None, atol=None, dtype=None):
    """Compare an nbgrad tensor (or array) with a torch tensor (or array).

    Checks shape and dtype exactly and values with ``numpy.testing.assert_allclose``
    (NaN equals NaN, inf equals inf of the same sign). Non-float values must match exactly.
    """
    a = to_numpy(actual) if hasattr(actual, "detach") else np.asarray(actual)
    e = to_numpy(expected) if hasattr(expected, "detach") else np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    assert a.dtype == e.dtype, f"dtype {a.dtype} != expected {e.dtype}"
    if hasattr(actual, "detach") and hasattr(expected, "detach"):
        assert_same_dtype(actual, expected)
    if np.issubdtype(e.dtype, np.floating):
        name = dtype or e.dtype.name
        d_rtol, d_atol = TOL[name]
        rtol = d_rtol if rtol is None else rtol
        atol = d_atol if atol is None else atol
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, e)


def grad_fn_name(t):
    """``type(t.grad_fn).__name__``, or None for tensors without a grad_fn."""
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def child_env():
    """The environment for a child Python process, without any OpenMP spin settings of ours."""
    return {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}


def read_case_records(stdout):
    """A child's JSON lines, ["begin", case] before each case and [tag, case, *result] after
    it: ({case: result list}, the case begun and not finished, which crashed the child, or
    None)."""
    results, started = {}, None
    for line in stdout.splitlines():
        record = json.loads(line)
        if record[0] == "begin":
            started = record[1]
        else:
            results[record[1]] = record[2:]
            started = None
    return results, started


def run_python(script):
    """Run `script` in a new Python process, without any OpenMP spin settings of ours, and
    return its printed words. A timeout: a forked child that uses its parent's OpenMP pool
    hangs it."""
    return subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                          text=True, check=True, timeout=120).stdout.split()


@pytest.fixture
def fused_runs(monkeypatch):
    """How many backward calls ran as one fused kernel (successful FusedGraph.run calls)."""
    counter = {"runs": 0}
    original = FusedGraph.run

    def run(self, *args, **kwargs):
        ran = original(self, *args, **kwargs)
        counter["runs"] += bool(ran)
        return ran

    monkeypatch.setattr(FusedGraph, "run", run)
    return counter
