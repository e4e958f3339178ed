"""Shared helpers for the nbgrad test suite.

PyTorch is the reference implementation: every expected value in these tests comes
from running the same code with ``torch`` (never from nbgrad's own output).
"""

import json
import os
import subprocess
import sys
import warnings
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

# NOTE: before nbgrad is imported, and inherited by every child process. The compile helper
# (nbgrad._core.compile_ahead) only fills the kernel cache, and on CI's two busy cores a
# helper per test process would compile beside pytest's workers, often what the test compiles
# next itself. tests/autograd/test_compile_ahead.py turns it on in its own processes.
os.environ.setdefault("NBGRAD_COMPILE_HELPER", "0")

import nbgrad  # noqa: E402
from nbgrad import nn, optim  # noqa: E402
from nbgrad._core import threads as _threads  # noqa: E402
from nbgrad.fuse.graph import FusedGraph  # noqa: E402

# Before torch loads its own OpenMP runtime, or nbgrad's threaded kernels stay serial (see
# nbgrad._core.threads) and the tests of them would test the serial ones twice.
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


def search_seeds(variable, suite_seeds):
    """The seeds a random search runs: `suite_seeds`, or a wider search's from environment
    `variable` as first:stop (NBGRAD_RANDOM_PROGRAM_SEEDS=5000:5200; see CONTRIBUTING)."""
    search = os.environ.get(variable)
    return range(*map(int, search.split(":"))) if search else suite_seeds


PROGRAM_ERRORS = (IndexError, RuntimeError, ValueError, TypeError, NotImplementedError)


def program_step(L, program, leaves, others, upstream):
    """The step of the random searches: `program` (source setting `out`) run on the named
    tensors `leaves` and `others`, with `F` for L.nn.functional; backward of
    (out * upstream).sum(); returns `out`."""
    scope = {"F": L.nn.functional, **leaves, **others}
    exec(program, scope)
    out = scope["out"]
    (out * upstream).sum().backward()
    return out


def program_outcome(L, program, leaf_arrays, others, upstream, read_back=False,
                    step=program_step):
    """`step` of library L on leaves made from `leaf_arrays` (requiring grad) and the tensors
    `others`: ("ok", out, the others after the run if `read_back`, each leaf's grad (empty
    where none)) or ("raise", the error's type name) for PyTorch's user errors."""
    leaves = {name: L.tensor(array, requires_grad=True) for name, array in leaf_arrays.items()}
    try:
        out = step(L, program, leaves, others, L.tensor(upstream))
    except PROGRAM_ERRORS as error:
        return ("raise", type(error).__name__)
    kept = [other.numpy().copy() for other in others.values()] if read_back else []
    return ("ok", out.detach().numpy().copy(), *kept,
            *[np.zeros(0) if leaf.grad is None else leaf.grad.numpy().copy()
              for leaf in leaves.values()])


def match_torch_in_mode(mode, step, run, expected, names, where):
    """The check of the random searches in their three modes: `run(step)` (nbgrad's outcome,
    ("ok", arrays...) or ("raise", error type name)) called once ("immediate"), past
    FUSE_AFTER ("deferred"), or three times with `step` through nbgrad.compile ("compile"),
    must give `expected` (torch's outcome) every time: the same error, or arrays (named by
    `names`) of the same shapes and float64 values. The caller sets deferral on or off."""
    from nbgrad.fuse import deferred

    step = nbgrad.compile(step) if mode == "compile" else step
    calls = {"immediate": 1, "deferred": deferred.FUSE_AFTER + 2, "compile": 3}[mode]
    rtol, atol = TOL["float64"]
    for call in range(calls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (a step that runs eagerly says so)
            actual = run(step)
        here = f"{mode}, call {call}: {where}"
        assert actual[0] == expected[0], f"torch {expected[:2]}, nbgrad {actual[:2]}; {here}"
        if expected[0] == "raise":
            assert actual[1] == expected[1], here
            continue
        for got, want, what in zip(actual[1:], expected[1:], names):
            assert got.shape == want.shape, f"{what} {got.shape} != {want.shape}; {here}"
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{what}; {here}")


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


def assert_same_error(make):
    """`make(L)` raises for both libraries the same exception type with the same message."""
    errors = []
    for L in (nbgrad, torch):
        with pytest.raises(Exception) as error:
            make(L)
        errors.append((type(error.value).__name__, str(error.value)))
    assert errors[0] == errors[1]


def grad_fn_name(t):
    """``type(t.grad_fn).__name__``, or None for tensors without a grad_fn."""
    return None if t.grad_fn is None else type(t.grad_fn).__name__


# The small inputs of the autograd tests (tests/autograd): a (2, 3) matrix and a (3,) vector.
X = np.array([[0.5, -1.25, 2.0], [1.5, 0.25, -0.75]], dtype=np.float32)
V = np.array([0.3, -1.1, 2.4], dtype=np.float32)


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


# ---------------------------------------------------------------------------------------------
# A compiled step against the same step run eagerly (tests/fuse: test_api, test_guards,
# test_threads). NOTE: here eager nbgrad is the reference, not torch: `Pair` builds two identical
# setups (same `nbgrad.manual_seed`), runs the step eagerly on one and through `nbgrad.compile`
# on the other, and after EVERY call compares what a user can observe: the returned values,
# every parameter's values, every parameter's `.grad` (None-ness and values), the optimizer
# state (momentum buffers, Adam moments, step counts) and param_groups, module buffers and
# train/eval flags. nbgrad's eager mode is itself tested against torch in the other tests.

RTOL, ATOL = TOL["float32"]

OPTIMIZERS = {
    "sgd_momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd_nesterov_weight_decay": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                     weight_decay=1e-3),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adam_amsgrad_weight_decay": lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def array_copy(value):
    """A NumPy copy of a tensor's values."""
    return np.array(value.detach()._data, copy=True)


def assert_same_value(actual, expected, what):
    """`actual` (fused) equals `expected` (eager): tensors to float32 tolerance, recursively."""
    if isinstance(expected, nbgrad.Tensor):
        assert isinstance(actual, nbgrad.Tensor), f"{what}: {actual!r}, eager gives a Tensor"
        assert tuple(actual.shape) == tuple(expected.shape), \
            f"{what}: shape {tuple(actual.shape)} != eager {tuple(expected.shape)}"
        assert actual.dtype == expected.dtype, \
            f"{what}: dtype {actual.dtype} != eager {expected.dtype}"
        np.testing.assert_allclose(array_copy(actual), array_copy(expected), rtol=RTOL, atol=ATOL,
                                   err_msg=what)
    elif isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected) and len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_value(a, e, f"{what}[{i}]")
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), \
            f"{what}: keys {sorted(actual)} != eager {sorted(expected)}"
        for key in expected:
            assert_same_value(actual[key], expected[key], f"{what}[{key!r}]")
    elif isinstance(expected, float):
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)
    else:
        assert actual == expected, f"{what}: {actual!r} != eager {expected!r}"


def assert_same_state(fused, eager, where):
    """Parameters, .grad, optimizer state and module state of two setups are the same."""
    assert len(fused.params) == len(eager.params)
    for i, (pf, pe) in enumerate(zip(fused.params, eager.params)):
        assert_same_value(pf, pe, f"{where}: parameter {i}")
        assert pf.requires_grad == pe.requires_grad, f"{where}: parameter {i} requires_grad"
        if pe.grad is None:
            assert pf.grad is None, f"{where}: parameter {i} has a .grad, eager's is None"
        else:
            assert pf.grad is not None, f"{where}: parameter {i} .grad is None, eager has one"
            assert_same_value(pf.grad, pe.grad, f"{where}: parameter {i} .grad")
    if eager.opt is not None:
        for i, (pf, pe) in enumerate(zip(fused.params, eager.params)):
            sf, se = fused.opt.state.get(pf), eager.opt.state.get(pe)
            assert (sf is None) == (se is None), \
                f"{where}: optimizer state of parameter {i}: {sf!r} vs eager {se!r}"
            if se is not None:
                assert_same_value(sf, se, f"{where}: optimizer.state[parameter {i}]")
        assert len(fused.opt.param_groups) == len(eager.opt.param_groups)
        for gf, ge in zip(fused.opt.param_groups, eager.opt.param_groups):
            strip = lambda group: {k: v for k, v in group.items() if k != "params"}  # noqa: E731
            assert_same_value(strip(gf), strip(ge), f"{where}: param_groups")
    if eager.model is not None:
        assert_same_value(dict(fused.model.named_buffers()), dict(eager.model.named_buffers()),
                          f"{where}: buffers")
        modes = [m.training for m in fused.model.modules()]
        assert modes == [m.training for m in eager.model.modules()], f"{where}: train/eval"
    if getattr(eager, "sched", None) is not None:
        assert_same_value(fused.sched.get_last_lr(), eager.sched.get_last_lr(), f"{where}: lr")


def setup(build, seed=0):
    """Build a model/optimizer with nbgrad's generator seeded: two calls give identical setups."""
    nbgrad.manual_seed(seed)
    built = build()
    model, opt = built[0], built[1]
    params = list(model.parameters()) if isinstance(model, nn.Module) else list(model)
    return SimpleNamespace(model=model if isinstance(model, nn.Module) else None, opt=opt,
                           params=params, sched=built[2] if len(built) > 2 else None)


def nbgrad_warnings(caught):
    return [str(w.message) for w in caught
            if issubclass(w.category, RuntimeWarning) and "nbgrad" in str(w.message)]


class Pair:
    """An eager setup and a fused setup of the same step, run side by side and compared."""

    def __init__(self, build, make_step, seed=0, **compile_options):
        self.eager = setup(build, seed)
        self.fused = setup(build, seed)
        self.eager_step = make_step(self.eager)
        self.compiled = nbgrad.compile(make_step(self.fused), **compile_options)
        self.calls = 0
        self.outputs = []

    def __call__(self, *args, before=None):
        """One call of both; `before(setup)` runs on each first (outside the step)."""
        if before is not None:
            before(self.eager)
        expected = self.eager_step(*args)
        if before is not None:
            before(self.fused)
        actual = self.compiled(*args)
        self.calls += 1
        where = f"call {self.calls}"
        assert_same_value(actual, expected, f"{where}: returned value")
        assert_same_state(self.fused, self.eager, where)
        self.outputs.append((actual, expected))
        return actual

    def check_outputs_kept(self):
        """Values returned by earlier calls are not overwritten by later ones."""
        for i, (actual, expected) in enumerate(self.outputs):
            assert_same_value(actual, expected, f"returned value of call {i + 1}, read at the end")


def standard_step(s, loss_fn=None, forward=None):
    """PyTorch's training step on setup `s`; `forward` defaults to the setup's model."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()

    def step(x, y):
        s.opt.zero_grad()
        loss = loss_fn((forward or s.model)(x), y)
        loss.backward()
        s.opt.step()
        return loss
    return step


def mlp(sizes=(64, 32, 10), activation=nn.ReLU):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def classification_batch(rng, batch=16, features=64, classes=10):
    x = nbgrad.tensor(rng.standard_normal((batch, features)).astype(np.float32))
    y = nbgrad.tensor(rng.integers(0, classes, batch))
    return x, y


def regression_batch(rng, batch=16, features=64, outputs=10):
    x = nbgrad.tensor(rng.standard_normal((batch, features)).astype(np.float32))
    y = nbgrad.tensor(rng.standard_normal((batch, outputs)).astype(np.float32))
    return x, y
