"""Guards of `nbgrad.compile`: when a call runs a specialization's kernel, traces a new one, or
runs eagerly.

Hyper-parameters and optimizer state are read at every call; closures and globals are bound by
identity; arguments are inputs by position. A new shape, dtype, flag, train/eval mode or
`.grad` that appeared traces a new specialization (bounded, then eager with one warning).
Every call is compared with eager (`Pair` in conftest.py).
"""
import warnings

import numpy as np
import pytest

import nbgrad
from nbgrad import nn, optim
from conftest import (OPTIMIZERS, RTOL, Pair, array_copy, assert_same_state, assert_same_value,
                      classification_batch, mlp, nbgrad_warnings, setup, standard_step)


# ---------------------------------------------------------------------------------------------
# Hyper-parameters and optimizer state, read at run time: no new specialization.


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
        frozen = [array_copy(p) for p in pair.fused.params]
        pair(*classification_batch(rng, 8), before=set_lr)
        if lr == 0.0 and name == "sgd_momentum":  # lr 0 really is used: nothing moves
            for before, p in zip(frozen, pair.fused.params):
                np.testing.assert_array_equal(array_copy(p), before)
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


@pytest.mark.parametrize("replaced", ["buffer", "criterion_weight", "submodule", "dict_entry",
                                      "list_entry", "swapped_buffers"])
def test_tensors_replaced_inside_closure_objects_between_calls(replaced):
    """The step reads tensors held by its closure's objects (a module's buffer, a loss's
    class weight, a submodule, a dict or list entry); the test replaces them between calls.
    The kernel was once bound to the traced tensors: every place on their paths is checked
    (a replaced one traces again)."""
    def build():
        model = mlp((64, 16, 10))
        model.register_buffer("scale", nbgrad.ones(10))
        model.register_buffer("shift", nbgrad.zeros(10))
        return model, optim.SGD(model.parameters(), lr=0.05)

    def make_step(s):
        s.loss_fn = nn.CrossEntropyLoss(weight=nbgrad.ones(10))
        s.extra = {"bias": nbgrad.zeros(10)}
        s.terms = [nbgrad.ones(10)]
        return standard_step(
            s, loss_fn=lambda out, y: s.loss_fn(out * s.terms[0] + s.extra["bias"], y),
            forward=lambda x: s.model(x) * s.model.scale + s.model.shift)

    rng = np.random.default_rng(22)
    pair = Pair(build, make_step)
    for value in [1.0, 1.0, 3.0, 0.5]:
        for s in (pair.eager, pair.fused):
            new = nbgrad.linspace(0.5, 2.0, 10) * value
            if replaced == "buffer":
                s.model.scale = new
            elif replaced == "criterion_weight":
                s.loss_fn.weight = new
            elif replaced == "submodule":
                s.model[2] = nn.Linear(16, 10)
                with nbgrad.no_grad():
                    s.model[2].weight.fill_(0.01 * value)
                    s.model[2].bias.fill_(0.1)
                s.opt.param_groups[0]["params"] = list(s.model.parameters())
            elif replaced == "dict_entry":
                s.extra["bias"] = new
            elif replaced == "list_entry":
                s.terms[0] = new
            else:
                s.model.scale, s.model.shift = s.model.shift + value, s.model.scale
        pair(*classification_batch(rng, 8))


# ---------------------------------------------------------------------------------------------
# A new shape, flag or mode: a new specialization, up to a bound.


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


# ---------------------------------------------------------------------------------------------
# Closures and globals, bound by identity.


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


_REGISTRY = {}  # a module-level dict that a helper of the step reads (below)


def _forward_from_the_registry(x):
    return _REGISTRY["model"](x)


def test_a_helper_reading_a_global_dict_whose_entry_is_replaced():
    """The step calls a module-level function that reads a module-level dict: the guard on
    the dict's entry is read through the function's globals (it called `.get` on the
    function: an AttributeError at the second call), and replacing the entry retraces."""
    def step(x, y):
        _REGISTRY["opt"].zero_grad()
        loss = nn.functional.cross_entropy(_forward_from_the_registry(x), y)
        loss.backward()
        _REGISTRY["opt"].step()
        return loss

    setups = {mode: [setup(_sgd_mlp, seed) for seed in (0, 1)] for mode in ("eager", "fused")}
    runs = {"eager": step, "fused": nbgrad.compile(step)}
    x, y = classification_batch(np.random.default_rng(25), 8)
    try:
        for which in [0, 0, 0, 1, 1]:
            losses = {}
            for mode, run in runs.items():
                chosen = setups[mode][which]
                _REGISTRY.update(model=chosen.model, opt=chosen.opt)
                losses[mode] = run(x, y)
            assert_same_value(losses["fused"], losses["eager"], f"setup {which}")
            assert_same_state(setups["fused"][which], setups["eager"][which], f"setup {which}")
    finally:
        _REGISTRY.clear()
    assert runs["fused"].stats["specializations"] == 2
    assert runs["fused"].stats["fused_calls"] == 3


# ---------------------------------------------------------------------------------------------
# Arguments: containers, kinds of value, a step's result.


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
    np.testing.assert_allclose(array_copy(w), [1.0 - 4 * 0.3, 2.0 - 4 * 0.4], rtol=RTOL)
    assert compiled.stats["specializations"] == (1 if fusable else 0)


# ---------------------------------------------------------------------------------------------
# Scalars that compare equal but are not: -0.0 and 0.0 (1 / -0.0 is -inf), NaN.


def _divide_by(x, c):
    y = x / c + (x * 0.0 - c)  # (x * 0.0 - -0.0 is +0.0: the constant's sign is read twice)
    y.sum().backward()
    return y


def _expected(c):
    import torch
    x = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    y = _divide_by(x, c)
    return y.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("how", ["immediate", "deferred", "compile_argument", "compile_closure"])
def test_signed_zero_scalars_are_told_apart(how):
    """-0.0 == 0.0 in Python (and hashes alike): a cached constant, a call key or a closure
    check that compared them reused 0.0's result for -0.0 (a wrong sign, a wrong infinity)
    once a step had seen 0.0."""
    from nbgrad.fuse import deferred
    c = 0.0

    def closure_step(x):
        return _divide_by(x, c)

    step = {"compile_argument": nbgrad.compile(_divide_by),
            "compile_closure": nbgrad.compile(closure_step)}.get(how, _divide_by)
    previous = deferred.enabled
    deferred.enabled = how != "immediate"
    try:
        for i in range(deferred.FUSE_AFTER + 4):
            c = -0.0 if i % 2 else 0.0
            x = nbgrad.tensor([1.0, -1.0], dtype=nbgrad.float64, requires_grad=True)
            y = step(x) if how == "compile_closure" else step(x, c)
            value, grad = _expected(c)
            np.testing.assert_array_equal(y.detach().numpy(), value)
            np.testing.assert_array_equal(np.signbit(y.detach().numpy()), np.signbit(value))
            np.testing.assert_array_equal(x.grad.numpy(), grad)
    finally:
        deferred.enabled = previous


def test_a_nan_scalar_argument_keys_one_specialization():
    def clamped(x, v):
        y = (x.clamp(max=v) * 2).sum()
        y.backward()
        return y

    step = nbgrad.compile(clamped)
    for _ in range(4):
        step(nbgrad.tensor([1.0, -1.0], requires_grad=True), float("nan"))
    assert step.stats["specializations"] == 1 and step.stats["fused_calls"] == 3
