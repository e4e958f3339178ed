"""`nbgrad.compile`'s API: a compiled step must be observably eager.

A test of a step builds two identical setups (same `nbgrad.manual_seed`), runs the same step
eagerly on one and through `nbgrad.compile` on the other, and after EVERY call compares what a
user can observe (`Pair` in conftest.py). Also here: compiled modules, graph breaks and
`fullgraph`, the decorator forms, `source`, `call_source`, `explain` and `stats`. Guards are in
test_guards.py, threaded loops in test_threads.py, the disk cache in test_kernel_cache.py.
"""
import inspect
import os
import re
import traceback
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import nbgrad
from nbgrad import nn, optim
from nbgrad.fuse import GraphBreak
from nbgrad.nn import functional as F
from nbgrad.ops.losses import POINTWISE_LOSSES
from conftest import (OPTIMIZERS, Pair, array_copy, assert_same_value, classification_batch, mlp,
                      nbgrad_warnings, regression_batch, setup, standard_step)

THIS_FILE = os.path.basename(__file__)


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
    assert abs(array_copy(pair.fused.params[0])[0] - 2.0) < 0.1  # it does learn w = 2


# Each loss in both reductions and dtypes; the rows with parameters (which test_modes'
# smooth_l1_huber_soft_margin row fuses too) in one case each, for the test time.
_PARAMETERLESS = [row.name for row in POINTWISE_LOSSES if not row.params and row.d_y is not None]
POINTWISE_CASES = [(loss, reduction, dtype) for loss in _PARAMETERLESS
                   for reduction in ("mean", "sum") for dtype in (np.float32, np.float64)] + [
    ("smooth_l1_loss", "mean", np.float32), ("huber_loss", "sum", np.float64),
    ("soft_margin_loss", "mean", np.float64)]
assert {case[0] for case in POINTWISE_CASES} == {row.name for row in POINTWISE_LOSSES}


@pytest.mark.parametrize("loss, reduction, dtype", POINTWISE_CASES)
def test_pointwise_losses_with_gradients_of_input_and_target(loss, reduction, dtype):
    """Every pointwise loss, written out as loops in the fused step; input and target are
    both parameters (values in (0, 1), which every loss accepts), but a target the loss has
    no derivative for (soft_margin_loss's: PyTorch refuses one that requires grad)."""
    target_learns = next(row for row in POINTWISE_LOSSES if row.name == loss).d_y is not None

    def build():
        rng = np.random.default_rng(5)
        x, y = (nbgrad.tensor(rng.uniform(0.2, 0.8, (4, 3)).astype(dtype), requires_grad=True)
                for _ in range(2))
        if not target_learns:
            return [x, y.detach()], optim.SGD([x], lr=0.01)
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


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_label_smoothing_with_new_ignored_targets_each_call(reduction, weighted):
    """Which targets are ignored (and so the mean's denominator) changes between calls: the
    step computes them from the target tensor, it does not bake the traced call's in."""
    def build():
        model = mlp((8, 6, 5))
        return model, optim.SGD(model.parameters(), lr=0.1)

    def make_step(s):
        weight = nbgrad.tensor([0.5, 2.0, 1.0, 1.5, 0.25]) if weighted else None
        return standard_step(s, loss_fn=lambda out, y: F.cross_entropy(
            out, y, weight=weight, label_smoothing=0.3, ignore_index=4, reduction=reduction))

    rng = np.random.default_rng(6)
    pair = Pair(build, make_step)
    x = nbgrad.tensor(rng.standard_normal((6, 8)).astype(np.float32))
    for targets in ([4, 0, 1, 2, 3, 1], [4, 0, 1, 2, 3, 1], [0, 4, 4, 2, 3, 1], [4, 4, 4, 4, 4, 4],
                    [1, 1, 2, 0, 3, 2]):
        pair(x, nbgrad.tensor(targets))
    assert pair.compiled.stats["fused_calls"] == 4, pair.compiled.explain()


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
        steps = [float(array_copy(pair.fused.opt.state[p]["step"])) for p in pair.fused.params]
        assert steps == [20.0] * len(pair.fused.params)
    # The update of all four parameters calls the optimizer's eager kernel on each (it is not
    # compiled again into the step).
    source = pair.compiled.source
    assert source.count("update of 4 parameter(s) by its eager kernel") == 1
    kernel = source.split("_update = unlinked(")[0].rsplit("\n", 1)[1] + "_update"
    assert source.count("_update = unlinked(") == 1 and source.count(f"{kernel}(") == 4


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
    frozen = [array_copy(p) for p in pair.fused.model[0].parameters()]
    head = [array_copy(p) for p in pair.fused.model[2].parameters()]
    for _ in range(8):
        pair(*classification_batch(rng))
        for before, p in zip(frozen, pair.fused.model[0].parameters()):
            np.testing.assert_array_equal(array_copy(p), before)
            assert p.grad is None
            assert p not in pair.fused.opt.state
    assert all(not np.array_equal(before, array_copy(p))
               for before, p in zip(head, pair.fused.model[2].parameters()))
    assert pair.compiled.stats["fused_calls"] == 7


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


@pytest.mark.parametrize("layer, fused", [("Embedding", True), ("EmbeddingBag", False)])
def test_op_without_fused_rule_falls_back(layer, fused):
    """nn.EmbeddingBag's primitive has no fused rule: eager with one warning naming the op.
    nn.Embedding's has one: the step fuses from its second call."""
    def build():
        # (a bag of 3 ids gives 8 features, 3 embedded ids 3 * 8)
        features = 8 if layer == "EmbeddingBag" else 24
        model = nn.Sequential(getattr(nn, layer)(20, 8), nn.Flatten(), nn.Linear(features, 5))
        return model, optim.Adam(model.parameters(), lr=1e-2)

    rng = np.random.default_rng(9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, standard_step)
        for _ in range(4):
            pair(nbgrad.tensor(rng.integers(0, 20, (6, 3))), nbgrad.tensor(rng.integers(0, 5, 6)))
    messages = nbgrad_warnings(caught)
    if fused:
        assert not messages, messages
        assert pair.compiled.stats["fused_calls"] == 3 and pair.compiled.stats["eager_calls"] == 1
    else:
        assert len(messages) == 1 and "embedding_bag" in messages[0], messages
        assert pair.compiled.stats["fused_calls"] == 0 and pair.compiled.stats["eager_calls"] == 4


def assert_fused_after_the_first_call(pair, rng, features, classes):
    for _ in range(4):
        pair(*classification_batch(rng, 8, features, classes))
    assert pair.compiled.stats["fused_calls"] == 3 and pair.compiled.stats["eager_calls"] == 1


def test_transposed_and_expanded_views_fuse():
    """nn.Linear(bias=False) and `x @ w.T` transpose a parameter, a bias added through
    expand: permute and expand are copies in fused code (their eager results are views), and
    a step that updates the parameter after reading the copy is the common case."""
    def build():
        first = nn.Linear(16, 12, bias=False)
        w = nn.Parameter(nbgrad.randn(5, 12) * 0.1)
        b = nn.Parameter(nbgrad.zeros(1, 5))
        params = [first.weight, w, b]
        return params, optim.SGD(params, lr=0.05, momentum=0.9)

    def make_step(s):
        first, w, b = s.params
        return standard_step(s, forward=lambda x: F.linear(x, first).relu() @ w.T
                             + b.expand(x.shape[0], 5))

    assert_fused_after_the_first_call(Pair(build, make_step), np.random.default_rng(11), 16, 5)


def test_concatenated_branches_and_slices_fuse():
    """Two branches joined by torch.cat, a stacked pair of losses, slices of the hidden
    state (x[:, :4], x[:, -1], x[None]), and a 3-D Linear (a batched product): one kernel."""
    def build():
        model = nn.ModuleDict({"left": nn.Linear(6, 5), "right": nn.Linear(6, 3, bias=False),
                               "seq": nn.Linear(4, 2), "head": nn.Linear(8, 4)})
        return model, optim.Adam(model.parameters(), lr=1e-2)

    def make_step(s):
        m = s.model

        def forward(x):
            h = nbgrad.cat([m["left"](x).tanh(), m["right"](x)], dim=1)
            sequence = m["seq"](h[:, :4].reshape(2, 4, 4)[None])  # (1, 2, 4, 2)
            return m["head"](h) + sequence.sum() * h[:, -1:], sequence

        def loss_fn(outputs, y):
            logits, sequence = outputs
            return nbgrad.stack([F.cross_entropy(logits, y), (sequence ** 2).mean()]).sum()

        return standard_step(s, loss_fn, forward)

    assert_fused_after_the_first_call(Pair(build, make_step), np.random.default_rng(13), 6, 4)


@pytest.mark.parametrize("write", ["into the source", "into the view"])
def test_a_transposed_view_read_after_a_write_into_its_memory_runs_eagerly(write):
    """Eager's transpose is a view that sees a later write into its memory; fused code's copy
    would not (nor would the source see a write into the copy): such a step runs eagerly."""
    def build():
        w = nn.Parameter(nbgrad.randn(6, 4))
        return [w], optim.SGD([w], lr=0.1)

    def make_step(s):
        (w,) = s.params

        def step(x):
            s.opt.zero_grad()
            h = x * 2.0
            t = h.t()
            if write == "into the source":
                h.mul_(3.0)
            else:
                t.add_(1.0)
            loss = (t @ w).pow(2).sum() + h.sum()
            loss.backward()
            s.opt.step()
            return loss
        return step

    rng = np.random.default_rng(12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(3):
            pair(nbgrad.tensor(rng.standard_normal((6, 4)).astype(np.float32)))
    messages = nbgrad_warnings(caught)
    assert len(messages) == 1 and "transposed or expanded view" in messages[0], messages
    assert pair.compiled.stats["fused_calls"] == 0


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

    with pytest.raises(nbgrad.fuse.GraphBreak, match=rf"item\(\).*{re.escape(THIS_FILE)}:\d+"):
        step(nbgrad.tensor([1.0, 1.0]))
    np.testing.assert_array_equal(w.detach().numpy(), [1.0, 2.0])


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


def test_dynamic_shapes_are_refused_not_ignored():
    with pytest.raises(NotImplementedError, match="dynamic=True"):
        nbgrad.compile(lambda x: x * 2, dynamic=True)


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
