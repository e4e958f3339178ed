"""Fused-graph mode (`nbgrad.compile`): a compiled step must be observably eager.

Every test builds two identical setups (same `nbgrad.manual_seed`), runs the same step eagerly
on one and through `nbgrad.compile` on the other, and after EVERY call compares what a user
can observe: the returned values, every parameter's values, every parameter's `.grad` (None-ness
and values), the optimizer state (`optimizer.state[p]`: momentum buffers, Adam moments, step
counts) and param_groups, module buffers and train/eval flags. Eager nbgrad is the reference
here (nbgrad's eager mode is itself tested against PyTorch in the other test files).

The disk-cache tests run small scripts in subprocesses with NBGRAD_CACHE_DIR and
NUMBA_CACHE_DIR pointing into a temporary directory.
"""
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import nbgrad
from nbgrad import nn, optim
from nbgrad.fuse import GraphBreak
from nbgrad.nn import functional as F
from nbgrad.ops.nn import POINTWISE_LOSSES
from conftest import run_python

RTOL, ATOL = 1e-5, 1e-6
THIS_FILE = os.path.basename(__file__)


# ---------------------------------------------------------------------------------------------
# Comparing an eager setup with a fused one.

def _array(value):
    return np.array(value.detach()._data, copy=True)


def assert_same_value(actual, expected, what):
    """`actual` (fused) equals `expected` (eager): tensors to float32 tolerance, recursively."""
    if isinstance(expected, nbgrad.Tensor):
        assert isinstance(actual, nbgrad.Tensor), f"{what}: {actual!r}, eager gives a Tensor"
        assert tuple(actual.shape) == tuple(expected.shape), \
            f"{what}: shape {tuple(actual.shape)} != eager {tuple(expected.shape)}"
        assert actual.dtype == expected.dtype, \
            f"{what}: dtype {actual.dtype} != eager {expected.dtype}"
        np.testing.assert_allclose(_array(actual), _array(expected), rtol=RTOL, atol=ATOL,
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


def user_line_of(function, needle):
    """'file:line' of the first line of `function`'s source that contains `needle`."""
    lines, start = inspect.getsourcelines(function)
    for offset, line in enumerate(lines):
        if needle in line:
            return f"{THIS_FILE}:{start + offset}"
    raise AssertionError(f"{needle!r} not in the source of {function.__name__}")


# ---------------------------------------------------------------------------------------------
# Fused matches eager.

@pytest.mark.parametrize("order", ["zero_grad_first", "zero_grad_last"])
def test_tutorial_one_parameter_loop(order):
    """w (1 element) * x (5 elements), MSELoss against 2x, SGD(lr=0.01), 30 steps."""
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = 2 * x

    def build():
        w = nbgrad.tensor([0.0], requires_grad=True)
        return [w], optim.SGD([w], lr=0.01)

    def make_step(s):
        loss_fn = nn.MSELoss()
        w = s.params[0]

        def step():
            if order == "zero_grad_first":
                s.opt.zero_grad()
            loss = loss_fn(w * x, y)
            loss.backward()
            s.opt.step()
            if order == "zero_grad_last":
                s.opt.zero_grad()
            return loss
        return step

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(30):
            pair()
    assert nbgrad_warnings(caught) == []
    pair.check_outputs_kept()
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 29
    assert pair.compiled.stats["eager_calls"] == 1
    assert abs(_array(pair.fused.params[0])[0] - 2.0) < 0.1  # it does learn w = 2


OPTIMIZERS = {
    "sgd_momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd_nesterov_weight_decay": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                     weight_decay=1e-3),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adam_amsgrad_weight_decay": lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", [row.name for row in POINTWISE_LOSSES])
def test_pointwise_losses_with_gradients_of_input_and_target(loss, reduction, dtype):
    """Every pointwise loss, written out as loops in the fused step; input and target are
    both parameters (values in (0, 1), which every loss accepts)."""
    def build():
        rng = np.random.default_rng(5)
        x, y = (nbgrad.tensor(rng.uniform(0.2, 0.8, (4, 3)).astype(dtype), requires_grad=True)
                for _ in range(2))
        return [x, y], optim.SGD([x, y], lr=0.01)

    def make_step(s):
        def step():
            s.opt.zero_grad()
            value = getattr(F, loss)(s.params[0], s.params[1], reduction=reduction)
            value.backward()
            s.opt.step()
            return value
        return step

    pair = Pair(build, make_step)
    for _ in range(4):
        pair()
    assert pair.compiled.stats["fused_calls"] == 3, pair.compiled.explain()
    assert f"{loss}_forward" not in pair.compiled.source  # loops, not the loss kernels


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_mlp_classifier_20_steps(name):
    """64-32-10 ReLU MLP, CrossEntropyLoss, a fresh random batch of 16 on every call."""
    def build():
        model = mlp()
        return model, OPTIMIZERS[name](model.parameters())

    rng = np.random.default_rng(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, standard_step)
        for _ in range(20):
            pair(*classification_batch(rng))
    assert nbgrad_warnings(caught) == []
    pair.check_outputs_kept()
    stats = pair.compiled.stats
    assert (stats["specializations"], stats["fused_calls"], stats["eager_calls"]) == (1, 19, 1)
    if name.startswith("adam"):
        steps = [float(_array(pair.fused.opt.state[p]["step"])) for p in pair.fused.params]
        assert steps == [20.0] * len(pair.fused.params)
    # The update of all four parameters is one loop nest, not a kernel call per parameter.
    source = pair.compiled.source
    assert source.count("update of 4 parameter(s), one loop nest") == 1
    assert "_update(" not in source


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Sigmoid])
def test_mlp_mse_smooth_activation(activation, record_property):
    """MSELoss with a Tanh/Sigmoid hidden layer: fused if it has a fused rule, else eager via
    the fallback; the results equal eager either way."""
    def build():
        model = mlp((64, 32, 10), activation)
        return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.5)

    rng = np.random.default_rng(2)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pair = Pair(build, lambda s: standard_step(s, nn.MSELoss()))
        for _ in range(10):
            pair(*regression_batch(rng))
    stats = pair.compiled.stats
    assert stats["fused_calls"] + stats["eager_calls"] == 10
    path = "fused" if stats["fused_calls"] else "eager fallback"
    record_property("path", path)
    if pair.compiled.breaks:
        assert stats["fused_calls"] == 0 and stats["specializations"] == 0
    else:
        assert (stats["fused_calls"], stats["specializations"]) == (9, 1)
        assert f"forward: {activation.__name__.lower()}" in pair.compiled.source


@pytest.mark.parametrize("zero_grad_outside", ["every_other_call", "never"])
def test_gradient_accumulation_two_backwards(zero_grad_outside):
    """A step with two forward+backward passes and no zero_grad: .grad accumulates across the
    two passes and across calls exactly as eager."""
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def make_step(s):
        loss_fn = nn.CrossEntropyLoss()

        def step(x1, y1, x2, y2):
            loss1 = loss_fn(s.model(x1), y1)
            loss1.backward()
            loss2 = loss_fn(s.model(x2), y2)
            loss2.backward()
            s.opt.step()
            return loss1, loss2
        return step

    rng = np.random.default_rng(3)
    pair = Pair(build, make_step)
    for call in range(8):
        zero = (lambda s: s.opt.zero_grad()) if (
            zero_grad_outside == "every_other_call" and call % 2 == 0) else None
        pair(*classification_batch(rng, 8), *classification_batch(rng, 8), before=zero)
    pair.check_outputs_kept()
    stats = pair.compiled.stats
    # One specialization for "no .grad yet", one for "accumulate into the existing .grad".
    assert stats["specializations"] == 2
    assert stats["fused_calls"] == 6


def test_zero_grad_set_to_none_false_inside_step():
    def build():
        model = mlp((64, 16, 10))
        return model, optim.Adam(model.parameters(), lr=1e-2)

    def make_step(s):
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y):
            s.opt.zero_grad(set_to_none=False)
            loss = loss_fn(s.model(x), y)
            loss.backward()
            s.opt.step()
            return loss
        return step

    rng = np.random.default_rng(4)
    pair = Pair(build, make_step)
    for _ in range(6):
        pair(*classification_batch(rng, 8))
    assert pair.compiled.stats["fused_calls"] >= 4


@pytest.mark.parametrize("optimized", ["all_parameters", "head_only"])
def test_frozen_first_layer(optimized):
    """First Linear frozen: it stays bit-identical and its .grad stays None; the head trains."""
    def build():
        model = mlp((64, 32, 10))
        model[0].requires_grad_(False)
        params = model.parameters() if optimized == "all_parameters" else model[2].parameters()
        return model, optim.SGD(params, lr=0.05, momentum=0.9)

    rng = np.random.default_rng(5)
    pair = Pair(build, standard_step)
    frozen = [_array(p) for p in pair.fused.model[0].parameters()]
    head = [_array(p) for p in pair.fused.model[2].parameters()]
    for _ in range(8):
        pair(*classification_batch(rng))
        for before, p in zip(frozen, pair.fused.model[0].parameters()):
            np.testing.assert_array_equal(_array(p), before)
            assert p.grad is None
            assert p not in pair.fused.opt.state
    assert all(not np.array_equal(before, _array(p))
               for before, p in zip(head, pair.fused.model[2].parameters()))
    assert pair.compiled.stats["fused_calls"] == 7


def test_freezing_a_layer_between_calls():
    """Fine-tuning pattern: train everything, then freeze the first layer and keep calling."""
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    rng = np.random.default_rng(6)
    pair = Pair(build, standard_step)
    for _ in range(3):
        pair(*classification_batch(rng, 8))
    for s in (pair.eager, pair.fused):
        s.model[0].requires_grad_(False)
    for _ in range(3):
        pair(*classification_batch(rng, 8))


def test_grads_kept_from_earlier_calls_are_not_overwritten():
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    rng = np.random.default_rng(7)
    pair = Pair(build, standard_step)
    kept = []
    for _ in range(4):
        pair(*classification_batch(rng, 8))
        kept.append((pair.fused.params[0].grad, pair.eager.params[0].grad))
    for i, (actual, expected) in enumerate(kept):
        assert_same_value(actual, expected, f".grad kept after call {i + 1}")


def test_train_eval_switch_with_dropout():
    """Dropout in train mode draws random numbers: a graph break (eager, one warning); the same
    step in eval mode (no dropout) is a fused specialization. Both match eager."""
    def build():
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    rng = np.random.default_rng(8)
    pair = Pair(build, standard_step)

    def mode(train, seed):
        def before(s):
            s.model.train(train)
            nbgrad.manual_seed(seed)  # the same dropout masks for both
        return before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for call in range(8):
            pair(*classification_batch(rng), before=mode(call % 4 >= 2, call))
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1 and "dropout" in messages[0], messages
    stats = pair.compiled.stats
    assert stats["specializations"] == 1
    assert stats["fused_calls"] == 3  # eval calls 2, 5, 6 (call 1 traced)


def test_op_without_fused_rule_falls_back():
    """nn.Embedding's primitive has no fused rule: eager with one warning naming the op."""
    def build():
        model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 5))
        return model, optim.Adam(model.parameters(), lr=1e-2)

    rng = np.random.default_rng(9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, standard_step)
        for _ in range(4):
            pair(nbgrad.tensor(rng.integers(0, 20, 6)), nbgrad.tensor(rng.integers(0, 5, 6)))
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1 and "embedding" in messages[0], messages
    assert pair.compiled.stats["fused_calls"] == 0 and pair.compiled.stats["eager_calls"] == 4


# ---------------------------------------------------------------------------------------------
# Compiled inference of a module.

def test_compile_module_inference():
    nbgrad.manual_seed(10)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10), nn.LogSoftmax(dim=1))
    compiled = nbgrad.compile(model)
    rng = np.random.default_rng(10)
    for grad_enabled in (False, True):
        for _ in range(3):
            x = nbgrad.tensor(rng.standard_normal((8, 64)).astype(np.float32))
            with nbgrad.set_grad_enabled(grad_enabled), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                actual, expected = compiled(x), model(x)
            assert_same_value(actual, expected, f"compiled(model)(x), grad enabled={grad_enabled}")
            for p in model.parameters():
                assert p.grad is None
    stats = compiled.stats
    # Under no_grad the forward is fused. With grad enabled its outputs need their autograd
    # graph (the caller may call backward), so that key runs eagerly, with a reason.
    assert stats["specializations"] == 1
    assert stats["fused_calls"] == 2
    assert any("autograd graph" in reason for reason in compiled.breaks)
    assert "def fused_step" in compiled.source


def test_compile_module_with_grad_enabled_stays_differentiable():
    nbgrad.manual_seed(11)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    compiled = nbgrad.compile(model)
    x = nbgrad.ones(3, 8)
    for call in range(3):
        expected = model(x)
        actual = compiled(x)
        assert actual.requires_grad == expected.requires_grad, f"call {call + 1}"
        model.zero_grad()
        actual.sum().backward()
        assert model[0].weight.grad is not None, f"call {call + 1}"


# ---------------------------------------------------------------------------------------------
# Hyper-parameters read at run time, and guards.

@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_learning_rate_change_needs_no_recompile(name):
    def build():
        model = mlp((64, 16, 10))
        return model, OPTIMIZERS[name](model.parameters())

    rng = np.random.default_rng(12)
    pair = Pair(build, standard_step)
    for lr in [0.05, 0.05, 0.01, 0.2, 0.0, 0.03]:
        def set_lr(s, lr=lr):
            s.opt.param_groups[0]["lr"] = lr
        frozen = [_array(p) for p in pair.fused.params]
        pair(*classification_batch(rng, 8), before=set_lr)
        if lr == 0.0 and name == "sgd_momentum":  # lr 0 really is used: nothing moves
            for before, p in zip(frozen, pair.fused.params):
                np.testing.assert_array_equal(_array(p), before)
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 5


def test_step_lr_scheduler_between_calls():
    def build():
        model = mlp((64, 16, 10))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    rng = np.random.default_rng(13)
    pair = Pair(build, standard_step)
    for _ in range(8):
        pair(*classification_batch(rng, 8))
        pair.eager.sched.step()
        pair.fused.sched.step()
    assert pair.fused.opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 7


def test_recompile_on_new_batch_size():
    def build():
        model = mlp((64, 16, 10))
        return model, optim.Adam(model.parameters(), lr=1e-2)

    rng = np.random.default_rng(14)
    pair = Pair(build, standard_step)
    sizes = [16, 16, 8, 8, 16, 8, 16]
    for size in sizes:
        pair(*classification_batch(rng, size))
    stats = pair.compiled.stats
    assert stats["specializations"] == 2
    assert stats["fused_calls"] == len(sizes) - 2
    assert stats["eager_calls"] == 2


def test_too_many_specializations_fall_back_to_eager_with_one_warning():
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    rng = np.random.default_rng(15)
    pair = Pair(build, standard_step, max_specializations=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for size in [4, 5, 4, 5]:
            pair(*classification_batch(rng, size))
    assert nbgrad_warnings(caught) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for size in [6, 7, 6, 4, 5, 7]:
            pair(*classification_batch(rng, size))
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1, messages
    assert "specializations" in messages[0] and "eager" in messages[0]
    stats = pair.compiled.stats
    assert stats["specializations"] == 2
    assert stats["fused_calls"] == 2 + 2  # sizes 4 and 5 still run their kernels
    assert stats["eager_calls"] == 2 + 4


def test_param_groups_and_a_parallel_sized_step():
    """Two param groups with their own lr/weight decay changed between calls, and a hidden
    layer of 256 x 512 elements: large enough for prange loops, which a step that calls
    BLAS does not use (see codegen.PARALLEL_THRESHOLD)."""
    def build():
        model = nn.Sequential(nn.Linear(16, 512), nn.Tanh(), nn.Linear(512, 4))
        opt = optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                          {"params": model[2].parameters(), "lr": 1e-2, "weight_decay": 0.1}])
        return model, opt

    rng = np.random.default_rng(20)
    pair = Pair(build, lambda s: standard_step(s, nn.MSELoss()))
    for call in range(4):
        def hyper(s, call=call):
            s.opt.param_groups[1]["lr"] = 0.01 * (call + 1)
            s.opt.param_groups[0]["betas"] = (0.8, 0.99) if call >= 2 else (0.9, 0.999)
        pair(*regression_batch(rng, 256, 16, 4), before=hyper)
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 3
    assert "prange" not in pair.compiled.source


def test_a_large_step_without_blas_runs_its_loops_on_threads():
    def build():
        w = nbgrad.ones(1 << 17, requires_grad=True)
        return [w], optim.SGD([w], lr=0.01)

    def make_step(s):
        return standard_step(s, nn.MSELoss(), forward=lambda x: (s.params[0] * x).tanh())

    rng = np.random.default_rng(22)
    pair = Pair(build, make_step)
    for _ in range(3):
        x = nbgrad.tensor(rng.standard_normal(1 << 17).astype(np.float32))
        pair(x, 2 * x)
    assert "numba.prange" in pair.compiled.source
    assert pair.compiled.stats["fused_calls"] == 2


@pytest.mark.parametrize("name, changes", [
    # Momentum switched on mid-run: PyTorch's first momentum step copies the gradient
    # (dampening does not apply to it).
    ("sgd", [{}, {}, {"momentum": 0.9, "dampening": 0.5}, {}, {"dampening": 0.0, "nesterov": True},
             {"weight_decay": 0.1, "maximize": True}, {"momentum": 0.0, "nesterov": False}]),
    ("adam", [{}, {"eps": 1e-3}, {"maximize": True}, {"weight_decay": 0.1},
              {"decoupled_weight_decay": True}, {"betas": (0.3, 0.5)}]),
])
def test_optimizer_options_changed_between_calls(name, changes):
    """Every optimizer option is a run-time value of the fused step: no recompilation."""
    def build():
        model = mlp((64, 16, 10))
        make = optim.SGD if name == "sgd" else optim.Adam
        return model, make(model.parameters(), lr=0.05 if name == "sgd" else 1e-2)

    rng = np.random.default_rng(21)
    pair = Pair(build, standard_step)
    for change in changes:
        pair(*classification_batch(rng, 8), before=lambda s: s.opt.param_groups[0].update(change))
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == len(changes) - 1


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("how", ["load_state_dict", "clear"])
def test_optimizer_state_replaced_between_calls(optimizer, how):
    """The fused step reads the optimizer's state at every call: load_state_dict gives new
    arrays, clearing the state starts over (Adam's step count, the first momentum step)."""
    def build():
        model = mlp((64, 16, 10))
        return model, OPTIMIZERS[optimizer](model.parameters())

    def replace(s):
        if how == "clear":
            s.opt.state.clear()
        else:
            s.opt.load_state_dict(s.opt.state_dict())

    rng = np.random.default_rng(22)
    pair = Pair(build, standard_step)
    for call in range(5):
        pair(*classification_batch(rng, 8), before=replace if call == 3 else None)
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 4


@pytest.mark.parametrize("changed", [
    "python_float",
    "tensor_rebound",
    "backward_gradient_in_place",
])
def test_values_read_from_closures_change_between_calls(changed):
    """The step reads a loss scale from its closure; the test changes it between calls."""
    scale = 1.0
    mask = nbgrad.ones(10)
    gradient = nbgrad.tensor(1.0)

    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    def make_step(s):
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y):
            s.opt.zero_grad()
            loss = loss_fn(s.model(x) * mask, y) * scale
            loss.backward(gradient)
            s.opt.step()
            return loss
        return step

    rng = np.random.default_rng(21)
    pair = Pair(build, make_step)
    for value in [1.0, 1.0, 3.0, 0.5]:
        if changed == "python_float":
            scale = value
        elif changed == "tensor_rebound":
            mask = nbgrad.full((10,), value)
        else:
            gradient.fill_(value)
        pair(*classification_batch(rng, 8))


# The step of the rebinding tests, as a module would define it: it reads `model`,
# `optimizer` and `loss_fn` from its globals.
STEP_READING_GLOBALS = """
def step(x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss
"""


def step_reading_globals(s):
    """(step, rebind): the step reads its globals; rebind(name=object) assigns one."""
    namespace = {"model": s.model, "optimizer": s.opt, "loss_fn": nn.CrossEntropyLoss()}
    exec(STEP_READING_GLOBALS, namespace)
    return namespace["step"], namespace.update


def step_reading_its_closure(s):
    """(step, rebind): the step reads its closure; rebind(name=object) assigns one."""
    model, optimizer, loss_fn = s.model, s.opt, nn.CrossEntropyLoss()

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    def rebind(**objects):
        nonlocal model, optimizer
        model = objects.get("model", model)
        optimizer = objects.get("optimizer", optimizer)
    return step, rebind


def _sgd_mlp():
    model = mlp((64, 16, 10))
    return model, optim.SGD(model.parameters(), lr=0.05)


@pytest.mark.parametrize("reads", [step_reading_globals, step_reading_its_closure])
@pytest.mark.parametrize("rebound", ["model", "optimizer"])
def test_rebinding_a_model_or_optimizer_the_step_reads(reads, rebound):
    """`model = NewModel()` or `optimizer = Adam(...)` between calls: the fused step must
    use the new object (a new specialization), as eager does, not the traced one."""
    first = {mode: setup(_sgd_mlp) for mode in ("eager", "fused")}
    steps = {mode: reads(first[mode]) for mode in first}
    eager_step, compiled = steps["eager"][0], nbgrad.compile(steps["fused"][0])
    rng = np.random.default_rng(23)

    def call_both(where, setups):
        x, y = classification_batch(rng, 8)
        expected, actual = eager_step(x, y), compiled(x, y)
        assert_same_value(actual, expected, f"{where}: returned value")
        for fused, eager in setups:
            assert_same_state(fused, eager, where)

    for call in range(3):
        call_both(f"call {call + 1}", [(first["fused"], first["eager"])])
    if rebound == "model":
        second = {mode: setup(_sgd_mlp, seed=1) for mode in first}
        objects = {mode: {"model": second[mode].model} for mode in first}
    else:
        second = {mode: setup(lambda: (first[mode].model, OPTIMIZERS["adam"](
            first[mode].model.parameters()))) for mode in first}
        objects = {mode: {"optimizer": second[mode].opt} for mode in first}
    for mode in first:
        steps[mode][1](**objects[mode])
    for call in range(3):
        call_both(f"call {call + 1} after rebinding the {rebound}",
                  [(first["fused"], first["eager"]), (second["fused"], second["eager"])])
    # A new model keeps its .grad (the old optimizer's zero_grad does not clear it): its
    # second call accumulates, which is another specialization.
    specializations = 3 if rebound == "model" else 2
    assert compiled.stats["specializations"] == specializations
    assert compiled.stats["fused_calls"] == 6 - specializations


def test_rebinding_a_global_the_step_reads_back_to_the_traced_object():
    """Globals are watched by identity: going back to the first model reuses its
    specialization; an attribute name that is also a global (`step`) is not watched."""
    setups = [setup(_sgd_mlp, seed) for seed in (0, 1)]
    step, rebind = step_reading_globals(setups[0])
    compiled = nbgrad.compile(step)
    rebind(step=compiled)  # `optimizer.step` names an attribute, not this global
    x, y = classification_batch(np.random.default_rng(24), 8)
    for which in [0, 0, 1, 1, 0, 0]:
        rebind(model=setups[which].model, optimizer=setups[which].opt)
        compiled(x, y)
        rebind(step=None)
    assert compiled.stats["specializations"] == 2
    assert compiled.stats["fused_calls"] == 4


@pytest.mark.parametrize("container", [
    "list",
    "dict",
])
def test_batch_passed_in_a_reused_container(container):
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    def make_step(s):
        loss_fn = nn.CrossEntropyLoss()

        def step(batch):
            x, y = (batch[0], batch[1]) if container == "list" else (batch["x"], batch["y"])
            s.opt.zero_grad()
            loss = loss_fn(s.model(x), y)
            loss.backward()
            s.opt.step()
            return loss
        return step

    rng = np.random.default_rng(22)
    pair = Pair(build, make_step)
    batch = [None, None] if container == "list" else {}
    for _ in range(4):
        x, y = classification_batch(rng, 8)
        if container == "list":
            batch[0], batch[1] = x, y
        else:
            batch["x"], batch["y"] = x, y
        pair(batch)


def test_a_list_argument_and_a_tensor_argument_are_different_keys():
    """A specialization traced with (x, [y]) must not run for (x, y)."""
    def step(x, ys):
        scale = ys[0] if isinstance(ys, list) else ys * 2
        return (x * scale).sum()

    compiled = nbgrad.compile(step)
    x, y = nbgrad.tensor([1.0, 2.0]), nbgrad.tensor([3.0, 4.0])
    for args in [(x, [y]), (x, [y]), (x, y), (x, y), (x, [y])]:
        assert_same_value(compiled(*args), step(*args), f"step{args!r}")
    assert compiled.stats["fused_calls"] == 3


def test_int_and_float_arguments_are_different_keys():
    compiled = nbgrad.compile(lambda x, s: x * s)
    x = nbgrad.tensor([1, 2, 3])
    for s in (2, 2, 2.0, 2.0):
        assert_same_value(compiled(x, s), x * s, f"x * {s!r}")


@pytest.mark.parametrize("fusable", [True, False])
def test_step_returning_none_runs_once_per_call(fusable):
    """None is a step's result like any other: it must not read as 'this specialization
    does not fit' (which ran the step a second time, eagerly, on every call)."""
    w = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    calls = []

    def step(x):
        calls.append(1)
        opt.zero_grad()
        loss = (w * x).sum()
        if not fusable:
            loss.item()  # graph break: the step runs eagerly
        loss.backward()
        opt.step()

    compiled = nbgrad.compile(step)
    x = nbgrad.tensor([3.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for count in range(1, 5):
            assert compiled(x) is None
            assert len(calls) == (count if not fusable else 1), compiled.explain()
    np.testing.assert_allclose(_array(w), [1.0 - 4 * 0.3, 2.0 - 4 * 0.4], rtol=RTOL)
    assert compiled.stats["specializations"] == (1 if fusable else 0)


# ---------------------------------------------------------------------------------------------
# Graph breaks.

def _item_step(s):
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        s.opt.zero_grad()
        loss = loss_fn(s.model(x), y)
        loss.backward()
        s.opt.step()
        return loss.item()  # graph break: .item()
    return step


def _branch_step(s):
    loss_fn = nn.CrossEntropyLoss()
    s.taken = []

    def step(x, y):
        s.opt.zero_grad()
        loss = loss_fn(s.model(x), y)
        if loss > 2.3:  # graph break: Python control flow on a tensor's value
            loss = loss * 0.5
            s.taken.append(True)
        else:
            s.taken.append(False)
        loss.backward()
        s.opt.step()
        return loss
    return step


BREAKS = {"item": (_item_step, ".item()", r"item"),
          "branch": (_branch_step, "if loss > 2.3", r"bool|control flow")}


def _break_build():
    model = mlp((64, 16, 10))
    return model, optim.SGD(model.parameters(), lr=0.5, momentum=0.9)


@pytest.mark.parametrize("kind", list(BREAKS))
def test_graph_break_falls_back_with_one_warning(kind):
    make_step, needle, reason = BREAKS[kind]
    rng = np.random.default_rng(16)
    pair = Pair(_break_build, make_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            pair(*classification_batch(rng, 8))
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1, messages
    message = messages[0]
    assert message.startswith("nbgrad.compile: running the step eagerly")
    assert re.search(reason, message), message
    # It names the line of the step that broke the graph, in this file.
    line = user_line_of(pair.compiled.fn, needle)
    assert THIS_FILE in message and line in message, (line, message)
    stats = pair.compiled.stats
    assert (stats["specializations"], stats["fused_calls"], stats["eager_calls"]) == (0, 0, 6)
    assert len(pair.compiled.breaks) == 1
    explanation = pair.compiled.explain()
    assert "graph break:" in explanation and line in explanation
    if kind == "branch":  # both sides of the branch were taken, the same way as eager
        assert set(pair.eager.taken) == {True, False}
        assert pair.fused.taken == pair.eager.taken


@pytest.mark.parametrize("kind", list(BREAKS))
def test_graph_break_with_fullgraph_raises(kind):
    make_step, needle, reason = BREAKS[kind]
    s = setup(_break_build)
    compiled = nbgrad.compile(make_step(s), fullgraph=True)
    x, y = classification_batch(np.random.default_rng(17), 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(GraphBreak, match=reason) as info:
            compiled(x, y)
    assert isinstance(info.value, Exception)
    assert user_line_of(compiled.fn, needle) in str(info.value)
    assert nbgrad_warnings(caught) == []
    assert compiled.stats["specializations"] == 0


def test_fullgraph_true_on_a_fusable_step():
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    rng = np.random.default_rng(18)
    pair = Pair(build, standard_step, fullgraph=True)
    for _ in range(3):
        pair(*classification_batch(rng, 8))
    assert pair.compiled.stats["fused_calls"] == 2


# ---------------------------------------------------------------------------------------------
# The API surface: decorator forms, source, explain.

def test_decorator_forms_and_source():
    nbgrad.manual_seed(19)
    model = mlp((64, 16, 10))
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    @nbgrad.compile
    def plain(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @nbgrad.compile(fullgraph=True, max_specializations=3)
    def with_options(x, y):
        return loss_fn(model(x), y)

    assert plain.__name__ == "plain" and with_options.__name__ == "with_options"
    assert plain.source is None
    x, y = classification_batch(np.random.default_rng(19), 8)
    for _ in range(2):
        plain(x, y)
        with nbgrad.no_grad():
            with_options(x, y)
    source = plain.source
    assert isinstance(source, str) and "def fused_step" in source
    for comment in ("# forward: linear", "# forward: relu", "# forward: log_softmax",
                    "# forward: nll_loss", "# backward:", "SGD update"):
        assert comment in source, comment
    compile(source, "<fused>", "exec")  # it is valid Python
    assert "def fused_step" in with_options.source and "backward" not in with_options.source
    # The Python around the kernel: checks on what the step reads, the kernel call.
    assert plain.call_source.startswith("def call(leaves):")
    for line in ("cell_model.cell_contents is not closed_model", "fused_step(", "hyper["):
        assert line in plain.call_source, line
    assert "1 specialization" in plain.explain() and "graph break" not in plain.explain()
    assert set(plain.stats) >= {"compile_time_s", "cache_hits", "cache_misses",
                                "specializations", "fused_calls", "eager_calls"}
    assert plain.stats["cache_hits"] + plain.stats["cache_misses"] == 1


# ---------------------------------------------------------------------------------------------
# The disk cache, in subprocesses.

CACHE_SCRIPT = r'''
import json, warnings
import numpy as np
import nbgrad
from nbgrad import nn

def build():
    nbgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return model, nbgrad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

def make_step(model, opt):
    loss_fn = nn.CrossEntropyLoss()
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step

rng = np.random.default_rng(0)
x = nbgrad.tensor(rng.standard_normal((64, 64)).astype(np.float32))
y = nbgrad.tensor(rng.integers(0, 10, 64))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    compiled = nbgrad.compile(make_step(*build()))
    fused = [compiled(x, y).item() for _ in range(2)]
eager_step = make_step(*build())
eager = [eager_step(x, y).item() for _ in range(2)]
print(json.dumps({"stats": compiled.stats, "fused": fused, "eager": eager,
                  "warnings": [str(w.message) for w in caught]}))
'''


def cache_env(root):
    """The environment of a subprocess using the cache under `root` and this nbgrad."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(nbgrad.__file__)))
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, NBGRAD_CACHE_DIR=str(root / "nbgrad"),
                NUMBA_CACHE_DIR=str(root / "numba"), PYTHONPATH=path)


def run_cache_script(root):
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=cache_env(root), cwd=str(root),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(report["fused"], report["eager"], rtol=RTOL, atol=ATOL)
    return report


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache directory after one process compiled the digits-sized step, and its reports."""
    root = tmp_path_factory.mktemp("fuse_cache")
    first = run_cache_script(root)
    second = run_cache_script(root)
    return root, first, second


def test_disk_cache_second_process_skips_compilation(warm_cache):
    root, first, second = warm_cache
    assert first["stats"]["cache_misses"] >= 1
    assert second["stats"]["cache_hits"] >= 1
    assert second["stats"]["cache_misses"] == 0
    assert second["fused"] == first["fused"]
    assert [w for w in first["warnings"] + second["warnings"] if "nbgrad" in w] == []
    generated = list((root / "nbgrad" / "generated").glob("*.py"))
    assert any("def fused_step" in p.read_text() for p in generated)


GARBAGE = b"\xff\xfe\x00 not a cache file \x80\x81\x82" * 8


def _is_fused_file(path):
    if path.suffix == ".py":
        return "def fused_step" in path.read_text(errors="replace")
    return "fused_step" in path.name


CORRUPTIONS = {
    # The files of the fused step only: its generated module and Numba's index/data for it.
    "fused_step_files": lambda p: (p.suffix in (".nbi", ".nbc") or p.parent.name == "generated")
    and _is_fused_file(p),
    # Everything the brief names: every .nbi/.nbc and every generated .py.
    "every_nbi_nbc_and_generated_py": lambda p: p.suffix in (".nbi", ".nbc")
    or (p.suffix == ".py" and p.parent.name == "generated"),
    # The two halves of that, to tell the two failures apart.
    "every_generated_py": lambda p: p.suffix == ".py" and p.parent.name == "generated",
    "every_nbi_nbc": lambda p: p.suffix in (".nbi", ".nbc"),
}
@pytest.mark.parametrize("target", [
    "fused_step_files",
    "every_nbi_nbc_and_generated_py",
    "every_generated_py",
    "every_nbi_nbc",
])
def test_corrupted_cache_is_reported_and_bypassed(warm_cache, tmp_path, target):
    root, first, _ = warm_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    corrupted = [p for p in copy.rglob("*") if p.is_file() and CORRUPTIONS[target](p)]
    assert corrupted
    if target == "fused_step_files":
        assert {p.suffix for p in corrupted} == {".py", ".nbi", ".nbc"}
    for path in corrupted:
        path.write_bytes(GARBAGE)
    report = run_cache_script(copy)  # exits 0 and fused == eager
    np.testing.assert_allclose(report["fused"], first["fused"], rtol=RTOL, atol=ATOL)
    assert report["stats"]["fused_calls"] == 1
    assert any("nbgrad" in w and "cache" in w for w in report["warnings"]), report["warnings"]


def test_two_processes_compiling_at_once(tmp_path):
    """Two processes filling the same cold cache at the same time both succeed; a third reads it."""
    processes = [subprocess.Popen([sys.executable, "-c", CACHE_SCRIPT], env=cache_env(tmp_path),
                                  cwd=str(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        np.testing.assert_allclose(report["fused"], report["eager"], rtol=RTOL, atol=ATOL)
    third = run_cache_script(tmp_path)
    assert third["stats"]["cache_misses"] == 0 and third["stats"]["cache_hits"] >= 1


def test_dynamic_shapes_are_refused_not_ignored():
    with pytest.raises(NotImplementedError, match="dynamic=True"):
        nbgrad.compile(lambda x: x * 2, dynamic=True)


def test_fullgraph_stops_at_the_offending_line():
    # The break raises where it happens, so the rest of the step (the update) never runs.
    w = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    opt = nbgrad.optim.SGD([w], lr=0.1)

    @nbgrad.compile(fullgraph=True)
    def step(x):
        opt.zero_grad()
        loss = (w * x).sum()
        loss.backward()
        if loss.item() > 100:
            return loss
        opt.step()
        return loss

    with pytest.raises(nbgrad.fuse.GraphBreak, match=r"item\(\).*test_fuse.py:\d+"):
        step(nbgrad.tensor([1.0, 1.0]))
    np.testing.assert_array_equal(w.detach().numpy(), [1.0, 2.0])


def test_generated_module_names_change_with_the_kernels_they_call(monkeypatch, tmp_path):
    # Numba's cache does not notice a changed callee: an edit under nbgrad/ops must give
    # every generated module a new name (and so a fresh compile).
    from nbgrad._core import modules as _codegen
    monkeypatch.setenv("NBGRAD_CACHE_DIR", str(tmp_path))
    source = "VALUE = 1\n"
    before = _codegen.load_module("probe", source).__name__
    monkeypatch.setattr(_codegen, "_KERNELS", "edited")
    after = _codegen.load_module("probe", source).__name__
    assert before != after


def test_a_traceback_through_the_call_function_shows_its_source():
    model = mlp((64, 16, 10))
    opt = optim.SGD(model.parameters(), lr=0.05)
    step = nbgrad.compile(standard_step(SimpleNamespace(model=model, opt=opt)))
    x, y = classification_batch(np.random.default_rng(23), 8)
    step(x, y)
    step(x, y)
    bad = nbgrad.tensor(np.full(8, 10, dtype=np.int64))  # 10 classes: index 10 is out of range
    with pytest.raises(IndexError, match="out of bounds") as raised:
        step(x, bad)
    text = "".join(traceback.format_exception(raised.value))
    assert re.search(r'File "<nbgrad.compile call [^"]*", line \d+, in call\n +precondition_\d+\(',
                     text), text


def test_a_process_forked_after_a_threaded_step_traces_it_again_serially():
    # GNU OpenMP terminates a forked child that uses its parent's thread pool: there the
    # threaded specialization must not fit, and the step runs from a new, serial one.
    script = """
import multiprocessing, nbgrad

w = nbgrad.ones(1 << 17, requires_grad=True)
opt = nbgrad.optim.SGD([w], lr=0.01)

def step(x):
    opt.zero_grad()
    loss = ((w * x).tanh() - x).pow(2).mean()
    loss.backward()
    opt.step()
    return loss

compiled = nbgrad.compile(step)
x = nbgrad.ones(1 << 17)

def work(_):
    return compiled(x).item(), compiled.stats["specializations"], "numba.prange" in compiled.source

if __name__ == "__main__":
    parent = [work(0) for _ in range(3)]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.map(work, range(1))[0]
    close = abs(child[0] - parent[-1][0]) < 1e-6
    print(parent[-1][1], parent[-1][2], child[1], child[2], close)
"""
    assert run_python(script) == ["1", "True", "2", "False", "True"]


@pytest.mark.parametrize("loss_of", ["sum", "sum_plus_penalty"])
def test_gradient_summed_to_a_parameter_of_lower_rank(loss_of):
    """x (3, 4) * w (4,): w's gradient is the (3, 4) product summed down to (4,) (the fused
    sum kept the broadcast rank's leading 1 and did not compile); with a penalty the root is
    an add, whose VJP passes the seed gradient through unchanged."""
    x = nbgrad.tensor(np.arange(12, dtype=np.float32).reshape(3, 4) / 10)

    def build():
        w = nbgrad.tensor([0.5, -1.0, 2.0, 0.25], requires_grad=True)
        return [w], optim.SGD([w], lr=0.1)

    def make_step(s):
        w = s.params[0]

        def step():
            s.opt.zero_grad()
            loss = (x * w).sum()
            if loss_of == "sum_plus_penalty":
                loss = loss + (w * w).mean()
            loss.backward()
            s.opt.step()
            return loss
        return step

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(4):
            pair()
    assert nbgrad_warnings(caught) == []
    assert pair.compiled.stats["fused_calls"] == 3
