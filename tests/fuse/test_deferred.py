"""Deferred forward in eager mode (`nbgrad.fuse.deferred`, `nbgrad.fuse.graph`).

An op whose result needs a gradient records its node on a tape and runs when a value is read;
a graph whose backward has come up `FUSE_AFTER` times runs as one fused kernel. Whatever path
a call takes, a user must see eager mode: every scenario here runs the same code three times,
with torch (the reference), with nbgrad with deferral on, and with nbgrad with deferral off
(`deferred.enabled = False`, the old eager mode), from the same initial values, and compares
values, `.grad`s and parameters after every step. Tests that need the fused path assert that
it ran (`FusedGraph.run` is counted).

`FUSE_AFTER` is patched down to 3 so that a loop of a few steps reaches the fused kernel, and
`deferred._graphs` is emptied for every test, so that no test depends on another one's runs.
"""
import gc
import warnings
import weakref
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn
from nbgrad.fuse import deferred
from nbgrad.fuse.graph import FusedGraph
from conftest import TOL, assert_close, dtype_name, rng_for, run_python

FUSE = 3          # deferred.FUSE_AFTER in these tests
STEPS = FUSE + 3  # a loop long enough to run the fused kernel (at least) three times
RTOL, ATOL = TOL["float32"]
SECOND_TIME = "Trying to backward through the graph a second time"
MODIFIED = "modified by an inplace operation"


@pytest.fixture(autouse=True)
def fresh_deferral(monkeypatch):
    """Deferral on, a low FUSE_AFTER, no graph seen yet, an empty tape; and the same after."""
    deferred.realize_all()
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", FUSE)
    monkeypatch.setattr(deferred, "_graphs", {})
    yield
    deferred.realize_all()


@contextmanager
def deferral_off():
    previous = deferred.enabled
    deferred.enabled = False
    try:
        yield
    finally:
        deferred.enabled = previous


def fused_graphs():
    return [g for g in deferred._graphs.values() if isinstance(g, FusedGraph)]


def expected_fused_runs(times_seen):
    """Fused runs of a graph key seen `times_seen` times: FUSE_AFTER - 1 eager runs, one
    traced (eager) run, then the kernel."""
    return max(0, times_seen - FUSE)


def snap(t):
    """A copy of a tensor's values (either library); None stays None."""
    if t is None:
        return None
    return np.array(t.detach().numpy(), copy=True)


def assert_steps(actual, expected, what, rtol=RTOL, atol=ATOL):
    """Two runs' per-step records (lists of dicts name -> array or None) are the same."""
    assert len(actual) == len(expected), what
    for step, (a, e) in enumerate(zip(actual, expected)):
        assert a.keys() == e.keys(), f"{what}, step {step}: {sorted(a)} != {sorted(e)}"
        for name in e:
            where = f"{what}, step {step}: {name}"
            if e[name] is None:
                assert a[name] is None, f"{where} is {a[name]!r}, expected None"
                continue
            assert a[name] is not None, f"{where} is None"
            got, want = np.asarray(a[name]), np.asarray(e[name])
            assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
            assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=where)


def run_everywhere(scenario, *args):
    """Run `scenario(lib, *args)` with nbgrad deferred (the fused path), nbgrad eager and
    torch; compare all three. Returns the FusedGraphs the deferred run made."""
    deferred_records = scenario(nbgrad, *args)
    graphs = fused_graphs()
    with deferral_off():
        eager_records = scenario(nbgrad, *args)
    torch_records = scenario(torch, *args)
    assert_steps(deferred_records, eager_records, "deferred vs eager nbgrad")
    assert_steps(deferred_records, torch_records, "deferred nbgrad vs torch")
    return graphs


def structure(fn, depth=8):
    """grad_fn names through next_functions, as nested tuples (None where torch has None)."""
    if fn is None:
        return None
    if depth == 0:
        return type(fn).__name__
    return (type(fn).__name__, tuple(structure(f, depth - 1) for f, _ in fn.next_functions))


# ---------------------------------------------------------------------------------------------
# 1. The fused path gives eager's (and torch's) values.
# ---------------------------------------------------------------------------------------------

X4 = np.array([0.5, -1.0, 2.0, 1.5], dtype=np.float32)


def tiny_chain(lib):
    """y = x + 2; z = (y*y*2).mean(); the user keeps y and z; x moves a little each step."""
    x = lib.tensor(X4, requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = None
        y = x + 2
        z = (y * y * 2).mean()
        z.backward()
        records.append({"z": snap(z), "y": snap(y), "x.grad": snap(x.grad)})
        with lib.no_grad():
            x -= 0.1 * x.grad
        records[-1]["x"] = snap(x)
    return records


def test_tiny_chain_fused_matches_eager_and_torch(fused_runs):
    graphs = run_everywhere(tiny_chain)
    assert len(graphs) == 1
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def one_parameter_loop(lib, set_to_none):
    rng = rng_for("one-parameter-loop")
    xs = rng.standard_normal(8).astype(np.float32)
    ys = (3.0 * xs + 0.1 * rng.standard_normal(8)).astype(np.float32)
    w = lib.tensor([0.25], requires_grad=True)
    x, y = lib.tensor(xs), lib.tensor(ys)
    opt = lib.optim.SGD([w], lr=0.1)
    loss_fn = lib.nn.MSELoss()
    records = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=set_to_none)
        loss = loss_fn(w * x, y)
        loss.backward()
        opt.step()
        records.append({"loss": snap(loss), "w": snap(w), "w.grad": snap(w.grad)})
    return records


@pytest.mark.parametrize("set_to_none", [True, False])
def test_one_parameter_mse_sgd_loop(fused_runs, set_to_none):
    graphs = run_everywhere(one_parameter_loop, set_to_none)
    assert len(graphs) == 1
    # zero_grad(set_to_none=False) leaves a .grad (zeroed) after the first step: the first
    # backward (no .grad yet) is a graph of its own, the other STEPS - 1 share one.
    seen = STEPS if set_to_none else STEPS - 1
    assert fused_runs["runs"] == expected_fused_runs(seen)


def mlp_classifier(lib, optimizer):
    rng = rng_for("mlp-classifier")
    xs = rng.standard_normal((16, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    init = {"0.weight": rng.standard_normal((8, 5)) * 0.5, "0.bias": rng.standard_normal(8) * 0.1,
            "2.weight": rng.standard_normal((3, 8)) * 0.5, "2.bias": rng.standard_normal(3) * 0.1}
    model = lib.nn.Sequential(lib.nn.Linear(5, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))
    model.load_state_dict({k: lib.tensor(v.astype(np.float32)) for k, v in init.items()})
    if optimizer == "sgd":
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = lib.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = lib.nn.CrossEntropyLoss()
    x, y = lib.tensor(xs), lib.tensor(labels)
    records = []
    for _ in range(STEPS):
        opt.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        record = {"loss": snap(loss), "logits": snap(logits)}
        for name, p in model.named_parameters():
            record[name + ".grad"] = snap(p.grad)
        opt.step()
        for name, p in model.named_parameters():
            record[name] = snap(p)
        records.append(record)
    return records


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_cross_entropy_fused(fused_runs, optimizer):
    graphs = run_everywhere(mlp_classifier, optimizer)
    assert len(graphs) == 1
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def explicit_gradient(lib, w_shape):
    """backward(gradient) of a non-scalar output with a broadcast parameter."""
    rng = rng_for("explicit-gradient-deferred")
    x = lib.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    w = lib.tensor(rng.standard_normal(w_shape).astype(np.float32), requires_grad=True)
    seeds = rng.standard_normal((STEPS, 3, 4)).astype(np.float32)
    records = []
    for step in range(STEPS):
        x.grad = w.grad = None
        y = (x * w + 1.0) * x
        y.backward(lib.tensor(seeds[step]))
        records.append({"y": snap(y), "x.grad": snap(x.grad), "w.grad": snap(w.grad)})
        with lib.no_grad():
            w -= 0.05 * w.grad
    return records




@pytest.mark.parametrize("w_shape",
                         [(1, 4), (3, 1), (4,)])
def test_explicit_gradient_on_non_scalar_output_fused(fused_runs, w_shape):
    graphs = run_everywhere(explicit_gradient, w_shape)
    assert len(graphs) == 1
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def broadcast_biases(lib, dtype, b_shape):
    """h = x @ W + b (row bias) + c (column bias): gradients summed over broadcast dims."""
    rng = rng_for("broadcast-biases")
    dt = getattr(lib, dtype)
    x = lib.tensor(rng.standard_normal((6, 3)), dtype=dt)
    W = lib.tensor(rng.standard_normal((3, 2)), dtype=dt, requires_grad=True)
    b = lib.tensor(rng.standard_normal(b_shape), dtype=dt, requires_grad=True)
    c = lib.tensor(rng.standard_normal((6, 1)), dtype=dt, requires_grad=True)
    records = []
    for _ in range(STEPS):
        for p in (W, b, c):
            p.grad = None
        h = x @ W + b + c
        loss = (h * h * 0.5).mean()
        loss.backward()
        records.append({"loss": snap(loss), "h": snap(h), "W.grad": snap(W.grad),
                        "b.grad": snap(b.grad), "c.grad": snap(c.grad)})
        with lib.no_grad():
            for p in (W, b, c):
                p -= 0.2 * p.grad
    return records


@pytest.mark.parametrize("b_shape", [(1, 2), (2,)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_broadcast_bias_adds_fused(fused_runs, dtype, b_shape):
    graphs = run_everywhere(broadcast_biases, dtype, b_shape)
    assert len(graphs) == 1
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def same_tensor_twice(lib):
    """x is read by several ops (and twice by one); w reaches the loss by two paths."""
    x = lib.tensor(X4, requires_grad=True)
    w = lib.tensor([0.5, 1.0, -2.0, 0.25], requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = w.grad = None
        a = x * x
        b = (x + w) * w
        loss = (a * b + x).mean()
        loss.backward()
        records.append({"loss": snap(loss), "a": snap(a), "b": snap(b),
                        "x.grad": snap(x.grad), "w.grad": snap(w.grad)})
        with lib.no_grad():
            x -= 0.01 * x.grad
    return records


def test_same_tensor_used_twice_fused(fused_runs):
    graphs = run_everywhere(same_tensor_twice)
    assert len(graphs) == 1
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def changing_scalars(lib):
    """Python scalars that change each step: the kernel must read them, not bake them in."""
    x = lib.tensor(X4, requires_grad=True)
    records = []
    for step in range(STEPS):
        x.grad = None
        c = 0.5 * step + 0.25
        z = ((x + c) * (x + c) * c).sum()
        z.backward()
        records.append({"z": snap(z), "x.grad": snap(x.grad)})
    return records


def test_scalar_operands_that_change_between_fused_calls(fused_runs):
    run_everywhere(changing_scalars)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def sum_of_two_losses(lib):
    """loss = a + b at the root (a common `loss + penalty`): whatever path it takes, values
    are eager's."""
    x = lib.tensor(X4, requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = None
        loss = (x * x).sum() + (x * 3.0).mean()
        loss.backward()
        records.append({"loss": snap(loss), "x.grad": snap(x.grad)})
    return records


def test_root_is_a_sum_of_two_losses(fused_runs):
    # The root's VJP passes the seed gradient through to both losses unchanged.
    run_everywhere(sum_of_two_losses)
    assert fused_runs["runs"] > 0


# ---------------------------------------------------------------------------------------------
# 2. Deferred tensors: kept intermediates, grad_fn, metadata.
# ---------------------------------------------------------------------------------------------

def test_intermediates_kept_after_fused_backward_have_torch_values(fused_runs):
    x = nbgrad.tensor(X4, requires_grad=True)
    xt = torch.tensor(X4, requires_grad=True)
    kept = []
    for _ in range(STEPS):
        x.grad = xt.grad = None
        y = x + 2
        y2 = y * y
        z = (y2 * 2).mean()
        z.backward()
        yt = xt + 2
        zt = (yt * yt * 2).mean()
        zt.backward()
        kept.append((y, y2, z, x.grad, yt, zt, xt.grad))
        with nbgrad.no_grad():
            x -= 0.5 * x.grad  # every step's values differ
        with torch.no_grad():
            xt -= 0.5 * xt.grad
    assert fused_runs["runs"] == expected_fused_runs(STEPS)
    # Read only now, after every backward: each step's values (and .grad tensors the user
    # kept), not what a later run left in the kernel's buffers.
    for y, y2, z, grad, yt, zt, grad_t in kept:
        assert_close(y, yt)
        assert_close(y2, yt * yt)
        assert_close(z, zt)
        assert_close(grad, grad_t)


def test_a_kept_view_shares_memory_with_its_input_after_fused_backwards(fused_runs):
    # reshape (nn.Flatten) defers; after a fused backward the view and the tensor it views
    # share memory, as eager's do: a write into one shows in the other (torch alike).
    x = nbgrad.tensor(X4, requires_grad=True)
    xt = torch.tensor(X4, requires_grad=True)
    for _ in range(STEPS):
        x.grad = xt.grad = None
        y = (x * 3).tanh()
        flat = y.reshape(-1)
        (flat * flat).sum().backward()
        yt = (xt * 3).tanh()
        flat_t = yt.reshape(-1)
        (flat_t * flat_t).sum().backward()
    assert fused_runs["runs"] == expected_fused_runs(STEPS)
    with nbgrad.no_grad():
        y.mul_(2)
    with torch.no_grad():
        yt.mul_(2)
    assert_close(flat, flat_t)
    assert_close(x.grad, xt.grad)


def test_grad_fn_of_deferred_tensors_before_they_run():
    x = nbgrad.tensor(X4, requires_grad=True)
    xt = torch.tensor(X4, requires_grad=True)
    y = x + 2
    z = (y * y * 2).mean()
    yt = xt + 2
    zt = (yt * yt * 2).mean()
    assert deferred.is_deferred(z) and deferred.is_deferred(y)
    assert structure(z.grad_fn) == structure(zt.grad_fn)
    assert z.grad_fn.name() == zt.grad_fn.name()
    leaf = y.grad_fn.next_functions[0][0]
    assert type(leaf).__name__ == "AccumulateGrad" and leaf.variable is x
    assert (z.is_leaf, z.requires_grad, y.is_leaf) == (zt.is_leaf, zt.requires_grad, yt.is_leaf)
    assert (tuple(y.shape), dtype_name(y.dtype), y.dim(), y.numel()) == \
        (tuple(yt.shape), dtype_name(yt.dtype), yt.dim(), yt.numel())
    # None of that ran the forward.
    assert deferred.is_deferred(z) and deferred.is_deferred(y)
    assert_close(z, zt)
    assert not deferred.is_deferred(z)
    z.backward()
    zt.backward()
    assert_close(x.grad, xt.grad)


def test_grad_fn_structure_of_a_deferred_mlp_is_eagers():
    def build():
        nbgrad.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
        loss = nn.CrossEntropyLoss()(model(nbgrad.ones(2, 5)), nbgrad.tensor([0, 2]))
        return loss

    with deferral_off():
        eager = build()
    assert not deferred.is_deferred(eager)
    loss = build()  # (built second: nn.init's writes run any deferred op first)
    assert deferred.is_deferred(loss)
    assert structure(loss.grad_fn) == structure(eager.grad_fn)
    assert deferred.is_deferred(loss)


def test_next_functions_after_a_fused_backward(fused_runs):
    x = nbgrad.tensor(X4, requires_grad=True)
    xt = torch.tensor(X4, requires_grad=True)
    zt = ((xt + 2) * (xt + 2) * 2).mean()
    for _ in range(STEPS):
        x.grad = None
        y = x + 2
        z = (y * y * 2).mean()
        z.backward()
    assert fused_runs["runs"] > 0
    assert structure(z.grad_fn) == structure(zt.grad_fn)


# ---------------------------------------------------------------------------------------------
# 3. .grad accumulation.
# ---------------------------------------------------------------------------------------------

def two_backwards_without_zeroing(lib):
    """Each step: a.grad reset to None, b.grad kept; two backward calls add into both."""
    a = lib.tensor(X4, requires_grad=True)
    b = lib.tensor([1.0, -0.5, 0.25, 2.0], requires_grad=True)
    records = []
    identity = []
    for _ in range(STEPS):
        a.grad = None
        before = b.grad
        z1 = (a * b * b).sum()
        z1.backward()
        after_first = a.grad
        z2 = ((a + b) * a).mean()
        z2.backward()
        # PyTorch adds into an existing .grad in place: the same tensor object.
        identity.append((before is None or b.grad is before, a.grad is after_first))
        records.append({"z1": snap(z1), "z2": snap(z2), "a.grad": snap(a.grad),
                        "b.grad": snap(b.grad)})
    records.append({"identity": np.array(identity, dtype=np.int64)})
    return records


def test_grad_accumulates_across_two_fused_backwards(fused_runs):
    run_everywhere(two_backwards_without_zeroing)
    # Keys: z1 with b.grad None (step 0) or present (steps 1..), z2 with both present.
    assert fused_runs["runs"] == expected_fused_runs(STEPS - 1) + expected_fused_runs(STEPS)


def grad_none_until_backward(lib):
    """x.grad is None until backward; `gate` requires grad but reaches the loss only through
    a comparison (no gradient): its .grad stays None."""
    x = lib.tensor(X4, requires_grad=True)
    gate = lib.tensor([1.0, -1.0, 1.0, 1.0], requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = None
        z = (x * x * (gate > 0).float()).sum()
        record = {"grad before": None if x.grad is None else np.array(1)}
        z.backward()
        record.update({"z": snap(z), "x.grad": snap(x.grad), "gate.grad": snap(gate.grad)})
        records.append(record)
    return records


def test_grad_none_until_backward_and_unused_leaf_stays_none(fused_runs):
    run_everywhere(grad_none_until_backward)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


# ---------------------------------------------------------------------------------------------
# 4. Backward twice, retain_graph.
# ---------------------------------------------------------------------------------------------

def test_second_backward_raises_before_fusing():
    x = nbgrad.tensor(X4, requires_grad=True)
    for _ in range(FUSE - 1):  # eager runs of a key that is not fused yet
        y = x + 2
        z = (y * y * 2).mean()
        z.backward()
        with pytest.raises(RuntimeError, match=SECOND_TIME):
            z.backward()
    xt = torch.tensor(X4, requires_grad=True)
    zt = ((xt + 2) * (xt + 2) * 2).mean()
    zt.backward()
    with pytest.raises(RuntimeError, match=SECOND_TIME):
        zt.backward()


def test_second_backward_raises_after_a_fused_backward(fused_runs):
    x = nbgrad.tensor(X4, requires_grad=True)
    for _ in range(STEPS):
        x.grad = None
        y = x + 2
        z = (y * y * 2).mean()
        z.backward()
        with pytest.raises(RuntimeError, match=SECOND_TIME):
            z.backward()
    assert fused_runs["runs"] > 0


def retain_graph_twice(lib, fused_steps_first):
    x = lib.tensor(X4, requires_grad=True)
    records = []
    for step in range(STEPS):
        x.grad = None
        y = x + 2
        z = (y * y * 2).mean()
        if step < fused_steps_first:
            z.backward()
        else:
            z.backward(retain_graph=True)
            z.backward()
        records.append({"z": snap(z), "y": snap(y), "x.grad": snap(x.grad)})
    return records


def test_retain_graph_backward_twice(fused_runs):
    run_everywhere(retain_graph_twice, 0)
    assert fused_runs["runs"] == 0 and not fused_graphs()


def test_retain_graph_after_the_graph_was_fused(fused_runs):
    # FUSE + 1 plain steps (the last one fused), then retain_graph=True steps: those run
    # eagerly although the graph has a kernel, and give torch's gradients.
    run_everywhere(retain_graph_twice, FUSE + 1)
    assert fused_runs["runs"] == 1


# ---------------------------------------------------------------------------------------------
# 5. In-place writes between a deferred op and the read of its result.
# ---------------------------------------------------------------------------------------------

MODIFICATIONS = {
    "add_": lambda w: w.add_(1.0),
    "setitem": lambda w: w.__setitem__(0, 5.0),
    "zero_": lambda w: w.zero_(),
    "fill_": lambda w: w.fill_(2.0),
    "imul": lambda w: w.__imul__(3.0),
    "copy_": lambda w: w.copy_(w * 0 + 7.0),
}


def inplace_on_an_input(lib, op, modify, warm):
    """y = x `op` w with w not requiring grad; w written in place before y is read.
    `warm` steps of the same graph run before, so that it may be fused already."""
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for _ in range(warm):
        w = lib.tensor([4.0, 5.0, 6.0])
        x.grad = None
        (x * w if op == "mul" else x + w).sum().backward()
    w = lib.tensor([4.0, 5.0, 6.0])
    x.grad = None
    y = x * w if op == "mul" else x + w
    loss = y.sum()
    MODIFICATIONS[modify](w)
    record = {"y": snap(y), "w": snap(w)}
    try:
        loss.backward()
        record["x.grad"] = snap(x.grad)
    except RuntimeError as error:
        # torch: mul saved w, whose version changed.
        assert MODIFIED in str(error)
        record["raised"] = np.array(1)
    return [record]


@pytest.mark.parametrize("warm", [0, FUSE + 1])
@pytest.mark.parametrize("modify", sorted(MODIFICATIONS))
@pytest.mark.parametrize("op", ["mul", "add"])
def test_inplace_write_to_an_input_before_the_result_is_read(op, modify, warm):
    run_everywhere(inplace_on_an_input, op, modify, warm)
    if warm:
        assert fused_graphs()


def test_numpy_write_into_an_input_after_a_deferred_op():
    # .numpy() runs the deferred ops before it hands out the array.
    for lib in (nbgrad, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = lib.tensor([4.0, 5.0, 6.0])
        y = x + w
        w.numpy()[0] = 100.0
        assert snap(y).tolist() == [5.0, 7.0, 9.0]


def optimizer_step_before_read(lib, saved, warm):
    """Build a deferred loss, run optimizer.step() (from an earlier .grad), then read it."""
    w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = lib.tensor([1.0, -1.0, 2.0], requires_grad=saved)
    opt = lib.optim.SGD([w], lr=0.5)
    records = []
    for _ in range(warm):
        opt.zero_grad()
        loss = (w * x + w).sum()
        loss.backward()
        opt.step()
        records.append({"loss": snap(loss), "w": snap(w)})
    opt.zero_grad()
    (w * x).sum().backward()
    # x requires grad: mul saves w (torch too), so backward after the step raises. Otherwise
    # the loss only adds: backward works with the gradient of the old graph.
    loss = (w * x + w).sum() if saved else (w + x).sum()
    opt.step()
    record = {"loss": snap(loss), "w": snap(w)}
    try:
        loss.backward()
        record["w.grad"] = snap(w.grad)
    except RuntimeError as error:
        assert MODIFIED in str(error)
        record["raised"] = np.array(1)
    records.append(record)
    return records


@pytest.mark.parametrize("warm", [0, FUSE + 1])
@pytest.mark.parametrize("saved", [False, True])
def test_optimizer_step_between_deferred_op_and_read(saved, warm):
    run_everywhere(optimizer_step_before_read, saved, warm)


def no_grad_write_to_a_leaf(lib, squared):
    w = lib.tensor([4.0, 5.0, 6.0], requires_grad=True)
    x = lib.tensor([1.0, 2.0, 3.0])
    # (w + x) * x: w is not saved (torch saves neither w nor w + x here); w * w saves w.
    y = w * w if squared else (w + x) * x
    with lib.no_grad():
        w.add_(1.0)
    record = {"y": snap(y), "w": snap(w)}
    try:
        y.sum().backward()
        record["w.grad"] = snap(w.grad)
    except RuntimeError as error:
        assert MODIFIED in str(error)
        record["raised"] = np.array(1)
    return [record]


@pytest.mark.parametrize("squared", [False, True])
def test_no_grad_inplace_on_a_leaf_after_a_deferred_op(squared):
    run_everywhere(no_grad_write_to_a_leaf, squared)


def test_no_grad_inplace_on_a_leaf_multiplied_by_a_constant_input():
    def scenario(lib):
        w = lib.tensor([4.0, 5.0, 6.0], requires_grad=True)
        x = lib.tensor([1.0, 2.0, 3.0])
        y = w * x
        with lib.no_grad():
            w.add_(1.0)
        y.sum().backward()
        return [{"y": snap(y), "w.grad": snap(w.grad)}]

    assert_steps(scenario(nbgrad), scenario(torch), "nbgrad vs torch")


def test_data_assignment_and_load_state_dict_after_a_deferred_op():
    for lib in (nbgrad, torch):
        lin = lib.nn.Linear(2, 1)
        lin.load_state_dict({"weight": lib.tensor([[1.0, 2.0]]), "bias": lib.tensor([0.5])})
        x = lib.tensor([[1.0, 1.0]])
        before = lin(x)
        lin.load_state_dict({"weight": lib.tensor([[0.0, 0.0]]), "bias": lib.tensor([0.0])})
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        doubled = w * 2
        w.data = lib.tensor([0.0, 0.0])
        assert snap(before).tolist() == [[3.5]], lib.__name__
        assert snap(doubled).tolist() == [2.0, 4.0], lib.__name__


def test_requires_grad_set_after_a_deferred_op():
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = lib.tensor([4.0, 5.0, 6.0])
        y = x * w
        w.requires_grad_(True)
        y.sum().backward()
        return [{"x.grad": snap(x.grad), "w.grad": snap(w.grad)}]

    run_everywhere(scenario)


# ---------------------------------------------------------------------------------------------
# 5b. In-place ops on deferred intermediates: `nn.ReLU(inplace=True)`, `out += identity`.
# An in-place op on a pending tensor that nothing else reads writes no memory: the tensor
# becomes the deferred result of the out-of-place op (`inplace._rewrite_unread`). Where
# something reads the old value (an op, a view, a hook, the node that made it), the write
# goes into memory, as eager's. Either way a user sees eager's and torch's values, gradients,
# versions and errors.
# ---------------------------------------------------------------------------------------------

def residual_steps_with_inplace_ops(lib):
    """A small residual CNN written as torchvision writes its blocks (ReLU(inplace=True)
    after a convolution and batch norm, `out += identity`), trained with SGD."""
    rng = np.random.default_rng(7)
    F = lib.nn.functional

    def param(*shape):
        return lib.tensor(rng.standard_normal(shape).astype(np.float32) * 0.3, requires_grad=True)

    params = w1, w2, gamma, beta, fc, bias = param(4, 1, 3, 3), param(4, 4, 3, 3), param(4), \
        param(4), param(3, 64), param(3)
    mean, var = lib.zeros(4), lib.ones(4)
    x = lib.tensor(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    y = lib.tensor([0, 2])
    records = []
    for _ in range(STEPS):
        for p in params:
            p.grad = None
        h = F.relu(F.conv2d(x, w1, padding=1), inplace=True)
        out = F.batch_norm(F.conv2d(h, w2, padding=1), mean, var, gamma, beta, training=True)
        out += h
        out = F.relu(out, inplace=True)
        loss = F.cross_entropy(F.linear(out.flatten(1), fc, bias), y)
        loss.backward()
        records.append({"loss": snap(loss), "out": snap(out), "h": snap(h),
                        "running_mean": snap(mean), "running_var": snap(var),
                        **{f"grad{i}": snap(p.grad) for i, p in enumerate(params)}})
        with lib.no_grad():
            for p in params:
                p -= 0.1 * p.grad
    return records


def test_inplace_relu_and_residual_add_are_fused(fused_runs):
    run_everywhere(residual_steps_with_inplace_ops)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def transposed_parameters_steps(lib):
    """nn.Linear(bias=False) and `h @ w.T` transpose a parameter (permute, deferred too), a
    bias broadcast with expand; SGD by hand."""
    rng = np.random.default_rng(8)
    F = lib.nn.functional
    w1 = lib.tensor(rng.standard_normal((8, 4)).astype(np.float32) * 0.5, requires_grad=True)
    w2 = lib.tensor(rng.standard_normal((3, 8)).astype(np.float32) * 0.5, requires_grad=True)
    b = lib.tensor(np.zeros((1, 3), np.float32), requires_grad=True)
    x = lib.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    y = lib.tensor([0, 2, 1, 1, 0])
    records = []
    for _ in range(STEPS):
        for p in (w1, w2, b):
            p.grad = None
        h = F.linear(x, w1).relu()
        loss = F.cross_entropy(h @ w2.T + b.expand(5, 3), y)
        loss.backward()
        records.append({"loss": snap(loss), "w1.grad": snap(w1.grad), "w2.grad": snap(w2.grad),
                        "b.grad": snap(b.grad)})
        with lib.no_grad():
            for p in (w1, w2, b):
                p -= 0.1 * p.grad
    return records


def test_transposed_parameters_are_fused(fused_runs):
    run_everywhere(transposed_parameters_steps)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def sliced_and_joined_steps(lib):
    """Slices of a deferred tensor (x[:, 0], x[:, 1:], x[None, 2], x[::2, ::3]: parameters
    that hold slices, which a graph key turns into tuples) and cat/stack of the pieces."""
    rng = np.random.default_rng(9)
    w = lib.tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    x = lib.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    records = []
    for _ in range(STEPS):
        w.grad = None
        h = (x @ w).tanh()
        first, rest = h[:, 0], h[:, 1:]
        joined = lib.cat([rest * first[:, None], h[None, 2, 1:]], dim=0)
        loss = lib.stack([joined.sum(), (first ** 2).mean(), h[::2, ::3].sum()]).sum()
        loss.backward()
        records.append({"loss": snap(loss), "w.grad": snap(w.grad), "rest": snap(rest)})
        with lib.no_grad():
            w -= 0.1 * w.grad
    return records


def test_slices_and_cat_of_deferred_tensors_are_fused(fused_runs):
    run_everywhere(sliced_and_joined_steps)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def attention_head_steps(lib):
    """nanoGPT's attention: `.view` of a split's slice, `.transpose(...).contiguous().view`,
    which read the layout (`is_contiguous`, `stride`) of pending views: that must not run the
    deferred graph mid-step, or it never fuses."""
    rng = np.random.default_rng(4)
    b, t, heads, size = 2, 3, 2, 2
    w = lib.tensor(rng.standard_normal((4, 3 * 4)).astype(np.float32), requires_grad=True)
    x = lib.tensor(rng.standard_normal((b, t, 4)).astype(np.float32))
    records = []
    for _ in range(STEPS):
        w.grad = None
        q, k, v = (x @ w).split(4, dim=2)
        layouts = [k.is_contiguous(), k.stride()]
        q, k, v = (z.view(b, t, heads, size).transpose(1, 2) for z in (q, k, v))
        layouts += [k.is_contiguous(), k.stride(1)]
        y = (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        y = y.transpose(1, 2)
        layouts += [y.is_contiguous(), y.stride()]
        y = y.contiguous()
        layouts += [y.is_contiguous(), y.stride()]
        loss = (y.view(b, t, heads * size) ** 2).mean()
        loss.backward()
        records.append({"loss": snap(loss), "w.grad": snap(w.grad),
                        "layouts": np.array([n for x in layouts for n in np.ravel(x)])})
        with lib.no_grad():
            w -= 0.1 * w.grad
    return records


def test_layout_of_pending_views_keeps_the_step_fused(fused_runs):
    run_everywhere(attention_head_steps)
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


def _relu_(lib, x, w):
    y = x * 2
    return y.relu_()


def _leaky_relu_(lib, x, w):
    return lib.nn.functional.leaky_relu(x * w, 0.1, inplace=True)


def _iadd(lib, x, w):
    y = x * 2
    y += w
    return y


def _mul_saving_its_input(lib, x, w):
    return (x + 1).mul_(w)


def _cast_back(lib, x, w):
    y = x * 2
    y += w.double()
    return y


def _read_before_the_write(lib, x, w):
    y = x * 2
    z = y * w
    y.relu_()
    return y + z


def _view_before_the_write(lib, x, w):
    y = x * w
    v = y.view(3, 1)
    y.add_(1.0)
    return v.flatten() * y


def _operand_is_the_target(lib, x, w):
    y = x * w
    y += y
    return y


def _made_by_a_node_that_saves_it(lib, x, w):
    return x.exp().mul_(2.0)  # exp's node saves its result: backward raises


def _written_twice(lib, x, w):
    return (x * w).relu_().add_(1.0)  # relu's node saves its result: backward raises


def _written_without_grad(lib, x, w):
    y = x * w
    with lib.no_grad():
        y.mul_(3.0)
    return y


def _broadcast_larger_than_the_target(lib, x, w):
    y = x * w
    try:
        y += lib.ones(2, 3)
    except RuntimeError as error:
        assert "doesn't match the broadcast shape" in str(error)
    return y  # (unchanged: nothing is lost)


def _hooked(lib, x, w):
    y = x * w
    y.register_hook(lambda g: g * 3)
    return y.relu_()


def _retained(lib, x, w):
    y = x * w
    y.retain_grad()
    return y.relu_()


REWRITTEN = [_relu_, _leaky_relu_, _iadd, _mul_saving_its_input]
WRITTEN_IN_MEMORY = [_cast_back, _read_before_the_write, _view_before_the_write, _operand_is_the_target,
                     _made_by_a_node_that_saves_it, _written_twice, _written_without_grad,
                     _broadcast_larger_than_the_target, _hooked, _retained]


def inplace_on_an_intermediate(lib, case):
    x = lib.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = lib.tensor([1.5, 2.0, -0.5], requires_grad=True)
    y = case(lib, x, w)
    record = {"y": snap(y), "version": np.array(y._version)}
    try:
        (y * y).sum().backward()
        record.update({"x.grad": snap(x.grad), "w.grad": snap(w.grad)})
        if y.retains_grad:
            record["y.grad"] = snap(y.grad)
    except RuntimeError as error:
        assert MODIFIED in str(error)
        record["raised"] = np.array(1)
    return [record], type(y.grad_fn).__name__


@pytest.mark.parametrize("case", REWRITTEN + WRITTEN_IN_MEMORY, ids=lambda case: case.__name__)
def test_inplace_on_an_intermediate_is_eagers(case):
    deferred_records, deferred_name = inplace_on_an_intermediate(nbgrad, case)
    with deferral_off():
        eager_records, eager_name = inplace_on_an_intermediate(nbgrad, case)
    torch_records, torch_name = inplace_on_an_intermediate(torch, case)
    assert_steps(deferred_records, eager_records, "deferred vs eager nbgrad")
    assert_steps(deferred_records, torch_records, "deferred nbgrad vs torch")
    assert deferred_name == eager_name == torch_name


@pytest.mark.parametrize("case", REWRITTEN, ids=lambda case: case.__name__)
def test_inplace_on_an_unread_intermediate_stays_deferred(case):
    x = nbgrad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = nbgrad.tensor([1.5, 2.0, -0.5], requires_grad=True)
    y = case(nbgrad, x, w)
    assert deferred.is_deferred(y) and y.dtype == nbgrad.float32


# ---------------------------------------------------------------------------------------------
# 6. Hooks and retain_grad (eager fallback).
# ---------------------------------------------------------------------------------------------

def hooked_intermediate(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = None
        seen = []
        y = x * 3
        y.register_hook(lambda g: (seen.append(snap(g)), g * 2)[1])
        z = (y * y).sum()
        z.backward()
        records.append({"x.grad": snap(x.grad), "hook saw": seen[0], "calls": np.array(len(seen))})
    return records


def retained_intermediate(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    records = []
    for _ in range(STEPS):
        x.grad = None
        y = x * 3
        y.retain_grad()
        z = (y * y).sum()
        z.backward()
        records.append({"x.grad": snap(x.grad), "y.grad": snap(y.grad),
                        "retains": np.array(int(y.retains_grad))})
    return records


def leaf_hook_after_fusing(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    records = []
    handle = None
    for step in range(STEPS + 2):
        x.grad = None
        z = (x * 3 * x).sum()
        if step == FUSE + 1:
            handle = x.register_hook(lambda g: g + 1)
        if step == FUSE + 3:
            handle.remove()
        z.backward()
        records.append({"x.grad": snap(x.grad)})
    return records


@pytest.mark.parametrize("scenario", [hooked_intermediate, retained_intermediate])
def test_hooks_and_retain_grad_on_deferred_tensors(scenario, fused_runs):
    run_everywhere(scenario)
    assert fused_runs["runs"] == 0 and not fused_graphs()


def test_leaf_hook_added_and_removed_after_fusing(fused_runs):
    run_everywhere(leaf_hook_after_fusing)
    assert fused_runs["runs"] > 0  # before the hook and after its removal


# ---------------------------------------------------------------------------------------------
# 7. Errors at the op.
# ---------------------------------------------------------------------------------------------

def test_shape_mismatch_raises_at_the_op():
    a = nbgrad.ones(2, 3, requires_grad=True)
    b = nbgrad.ones(4, 5)
    with pytest.raises(RuntimeError, match="must match the size of tensor b"):
        a + b
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        a @ nbgrad.ones(2, 5)
    # torch raises the same errors at the same lines
    at = torch.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="must match the size of tensor b"):
        at + torch.ones(4, 5)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        at @ torch.ones(2, 5)


def test_error_leaves_later_training_right(fused_runs):
    """A failed op leaves the tape usable: the loop after it still gives torch's values."""
    def scenario(lib):
        try:
            lib.ones(2, 3, requires_grad=True) + lib.ones(4, 5)
        except RuntimeError:
            pass
        return tiny_chain(lib)

    run_everywhere(scenario)
    assert fused_runs["runs"] > 0


@pytest.mark.parametrize("warm", [0, FUSE + 1])
def test_cross_entropy_label_out_of_range_raises_at_the_loss(warm):
    for lib in (nbgrad, torch):
        rng = rng_for("ce-out-of-range")
        lib.manual_seed(0)
        model = lib.nn.Linear(4, 3)
        loss_fn = lib.nn.CrossEntropyLoss()
        x = lib.tensor(rng.standard_normal((5, 4)).astype(np.float32))
        for _ in range(warm):
            model.zero_grad()
            loss_fn(model(x), lib.tensor([0, 1, 2, 1, 0])).backward()
        logits = model(x)
        with pytest.raises(IndexError, match="out of bounds"):
            loss_fn(logits, lib.tensor([0, 1, 3, 1, 0]))
    if warm:
        assert fused_graphs()


# ---------------------------------------------------------------------------------------------
# 8. nbgrad.compile and deferred tensors.
# ---------------------------------------------------------------------------------------------

def compile_interplay(lib):
    """A deferred tensor made outside a (compiled) step is passed in; deferred ops on the
    step's parameter are built before the step updates it and read after."""
    w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = lib.tensor([0.3, 0.2, -0.1], requires_grad=True)
    x = lib.tensor([0.5, -1.0, 2.0])
    opt = lib.optim.SGD([w, v], lr=0.1)

    def step(a):
        opt.zero_grad()
        loss = ((w * a - x) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    if lib is nbgrad:
        step = nbgrad.compile(step)
    records = []
    for _ in range(STEPS):
        a = v * 2.0 + 1.0          # deferred in nbgrad, not detached: the gradient reaches v
        before = (w * 2.0).sum()   # deferred, read after the step changed w
        loss = step(a)
        records.append({"loss": snap(loss), "a": snap(a), "before": snap(before),
                        "w": snap(w), "v": snap(v), "w.grad": snap(w.grad),
                        "v.grad": snap(v.grad)})
    return records


def test_compile_with_deferred_tensors_around_it():
    with warnings.catch_warnings():
        # A step given a tensor with a graph of its own may run eagerly (with a warning).
        warnings.filterwarnings("ignore", "nbgrad.compile", RuntimeWarning)
        run_everywhere(compile_interplay)


def test_compiled_step_after_deferred_ops_on_its_parameters(fused_runs):
    def scenario(lib):
        rng = rng_for("compiled-after-deferred")
        xs = lib.tensor(rng.standard_normal((8, 3)).astype(np.float32))
        ys = lib.tensor(rng.standard_normal((8, 1)).astype(np.float32))
        model = lib.nn.Linear(3, 1)
        model.load_state_dict({"weight": lib.tensor([[0.1, -0.2, 0.3]]),
                               "bias": lib.tensor([0.05])})
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = lib.nn.MSELoss()

        def train_step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        compiled = nbgrad.compile(train_step) if lib is nbgrad else train_step
        records = []
        for _ in range(STEPS):
            # An eager (deferred, then fused) step on the same parameters...
            opt.zero_grad()
            eager_loss = loss_fn(model(xs), ys)
            eager_loss.backward()
            opt.step()
            # ...then a deferred result not read yet, then the compiled step.
            pending = model(xs).sum()
            loss = compiled(xs, ys)
            records.append({"eager loss": snap(eager_loss), "pending": snap(pending),
                            "loss": snap(loss), "weight": snap(model.weight),
                            "bias": snap(model.bias), "weight.grad": snap(model.weight.grad)})
        return records

    run_everywhere(scenario)
    # The eager step's graph (the same each step) reached its kernel between compiled steps.
    assert fused_runs["runs"] == expected_fused_runs(STEPS)


# ---------------------------------------------------------------------------------------------
# 9. autograd.grad.
# ---------------------------------------------------------------------------------------------

def grad_of_deferred_graph(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = lib.tensor([0.5, -1.0, 0.25], requires_grad=True)
    records = []
    for step in range(STEPS):
        x.grad = w.grad = None
        z = ((x * w).exp() + x * x).sum()
        if step < FUSE + 1:
            z.backward()  # the same graph, fused by the last of these
            records.append({"z": snap(z), "x.grad": snap(x.grad), "w.grad": snap(w.grad)})
        else:
            gx, gw = lib.autograd.grad(z, [x, w])
            records.append({"z": snap(z), "gx": snap(gx), "gw": snap(gw),
                            "x.grad": snap(x.grad), "w.grad": snap(w.grad)})
    return records


def test_autograd_grad_on_a_deferred_graph(fused_runs):
    graphs = run_everywhere(grad_of_deferred_graph)
    assert graphs and fused_runs["runs"] == 1


# ---------------------------------------------------------------------------------------------
# 10. Forward only, in a loop.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("read", [True, False])
def test_forward_only_loop_keeps_the_tape_bounded(monkeypatch, read):
    monkeypatch.setattr(deferred, "MAX_TAPE", 40)
    rng = rng_for("forward-only")
    W = rng.standard_normal((4, 3)).astype(np.float32)
    w = nbgrad.tensor(W, requires_grad=True)
    first_node = first_result = None
    longest = 0
    for _ in range(150):
        xs = rng.standard_normal((5, 4)).astype(np.float32)
        out = ((nbgrad.tensor(xs) @ w).relu() * 0.5).sum()
        assert deferred.is_deferred(out)
        if first_node is None:
            first_node, first_result = weakref.ref(out.grad_fn), weakref.ref(out)
        longest = max(longest, len(deferred.tape.ops), len(deferred.tape.externals))
        if read:
            expected = (np.maximum(xs.astype(np.float64) @ W, 0) * 0.5).sum()
            np.testing.assert_allclose(out.item(), expected, rtol=1e-5)
    assert longest <= 40
    gc.collect()
    assert first_result() is None and first_node() is None
    assert w.grad is None


# ---------------------------------------------------------------------------------------------
# 11. NBGRAD_DEFERRED=0 and deferred.enabled = False.
# ---------------------------------------------------------------------------------------------

def _has_array(tensor):
    """Whether the `_data` slot is set, read without Tensor.__getattr__ (which would run a
    deferred forward)."""
    try:
        nbgrad.Tensor.__dict__["_data"].__get__(tensor, nbgrad.Tensor)
    except AttributeError:
        return False
    return True


def test_a_deferred_transpose_has_the_layout_of_a_view():
    """permute and expand defer (they have fused rules), and their results are views, not new
    contiguous arrays: contiguity, view() and contiguous() answer as torch's."""
    for lib in (nbgrad, torch):
        w = lib.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3), requires_grad=True)
        t = (w * 2).t()
        if lib is nbgrad:
            assert deferred.is_deferred(t)
        assert not t.is_contiguous(), lib.__name__
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            t.view(-1)
        assert type(t.contiguous().grad_fn).__name__ == "CloneBackward0", lib.__name__
        assert not (w * 2).expand(4, 2, 3).is_contiguous(), lib.__name__


def test_deferred_op_has_no_array_until_read():
    x = nbgrad.tensor(X4, requires_grad=True)
    y = x * 2
    assert deferred.is_deferred(y) and not _has_array(y)
    assert snap(y).tolist() == (X4 * 2).tolist()
    assert _has_array(y) and not deferred.is_deferred(y)


def test_a_result_of_the_loss_kept_on_the_tape(fused_runs):
    """`extra` reads the loss, and backward() starts at the loss: `extra` is on the tape but
    not in the loss's graph; it keeps a graph of its own (nothing in it saves a tensor, so
    a backward through it after the loss's is fine, in torch too)."""
    def scenario(lib):
        x = lib.tensor(X4, requires_grad=True)
        records = []
        for _ in range(STEPS):
            x.grad = None
            loss = (x + 1.0).sum()
            extra = loss + 2.0
            loss.backward()
            extra.backward()
            records.append({"extra": snap(extra), "x.grad": snap(x.grad)})
        return records

    assert_steps(scenario(nbgrad), scenario(torch), "nbgrad vs torch")


def test_ops_on_another_thread_run_at_once():
    import threading

    results = {}

    def work():
        x = nbgrad.tensor(X4, requires_grad=True)
        y = x * 2
        results["deferred"] = deferred.is_deferred(y)
        y.sum().backward()
        results["grad"] = snap(x.grad).tolist()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert results == {"deferred": False, "grad": [2.0] * len(X4)}
    assert deferred.is_deferred(nbgrad.tensor(X4, requires_grad=True) * 2)


def test_graph_counts_stay_bounded(monkeypatch):
    """Graphs of ever new shapes are counted, not kept without end."""
    monkeypatch.setattr(deferred, "MAX_COUNTED", 5)
    for n in range(1, 20):
        x = nbgrad.tensor(np.ones(n, np.float32), requires_grad=True)
        (x * 2).sum().backward()
        assert x.grad.tolist() == [2.0] * n
        assert len(deferred._graphs) <= 5


def test_reading_one_value_runs_the_whole_tape_and_empties_it():
    """Reading a value runs every deferred op still read by something, so the tape holds no
    node (nor what nodes save) past the read; ops nothing reads never run."""
    x = nbgrad.tensor(X4, requires_grad=True)
    a = x * 2
    b = x * 3
    unread = weakref.ref(x * 4)  # its tensor is gone: nothing can read it
    assert len(deferred.tape.ops) == 3
    assert a.tolist() == (X4 * 2).tolist()
    assert deferred.tape.ops == [] and not deferred.is_deferred(b)
    assert unread() is None
    assert snap(b).tolist() == (X4 * 3).tolist()


@pytest.mark.parametrize("large", ["input", "output"])
def test_ops_on_large_arrays_run_at_once(monkeypatch, large):
    """At MAX_SIZE elements an op runs eagerly (its threaded kernels), with the same values."""
    monkeypatch.setattr(deferred, "MAX_SIZE", 64)
    if large == "input":
        x = nbgrad.tensor(np.linspace(-1, 1, 64, dtype=np.float32), requires_grad=True)
        y = x * 2
        expected = np.linspace(-1, 1, 64, dtype=np.float32) * 2
    else:  # two small inputs, an outer product of 64 elements
        x = nbgrad.tensor(np.arange(8, dtype=np.float32), requires_grad=True)
        y = x.unsqueeze(1) * x.unsqueeze(0)
        expected = np.outer(np.arange(8), np.arange(8)).astype(np.float32)
    assert not deferred.is_deferred(y) and _has_array(y)
    assert snap(y).tolist() == expected.tolist()
    small = x[:3] * 2 if large == "input" else x * 2
    assert deferred.is_deferred(small)


def test_enabled_false_runs_ops_at_once():
    with deferral_off():
        x = nbgrad.tensor(X4, requires_grad=True)
        y = x * 2
        assert _has_array(y) and not deferred.is_deferred(y)
        assert not deferred.tape.ops


def test_environment_variable_turns_deferral_off():
    script = """
import os
os.environ["NBGRAD_DEFERRED"] = "0"
import nbgrad
from nbgrad.fuse import deferred
x = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = x * 2
try:
    nbgrad.Tensor.__dict__["_data"].__get__(y, nbgrad.Tensor)
    has_array = True
except AttributeError:
    has_array = False
z = (y * y).sum()
z.backward()
print(deferred.enabled, deferred.is_deferred(y), has_array, len(deferred.tape.ops),
      z.item(), x.grad.tolist())
"""
    words = run_python(script)
    assert words[:4] == ["False", "False", "True", "0"]
    assert float(words[4]) == 56.0  # sum((2x)^2) for x = 1, 2, 3
    assert " ".join(words[5:]) == "[8.0, 16.0, 24.0]"  # 8x


# ---------------------------------------------------------------------------------------------
# Graphs on the tape that the fused backward does not go through.
# ---------------------------------------------------------------------------------------------

def test_another_graph_kept_on_the_tape_can_backward_after_a_fused_backward(fused_runs):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = lib.tensor([1.0, 1.0, 1.0], requires_grad=True)
        records = []
        for _ in range(STEPS):
            x.grad = w.grad = None
            a = x * x                  # not part of the loss
            loss = (w * 3.0).sum()
            loss.backward()
            a.sum().backward()
            records.append({"a": snap(a), "x.grad": snap(x.grad), "w.grad": snap(w.grad)})
        return records

    run_everywhere(scenario)


def test_intermediate_of_a_fused_step_used_in_the_next_graph(fused_runs):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        records = []
        previous = None
        for _ in range(STEPS):
            x.grad = None
            y = x + 2                  # AddBackward0 saves nothing: torch can go through it
            (y * y).sum().backward()
            record = {"x.grad": snap(x.grad)}
            if previous is not None:
                x.grad = None
                (previous * 3.0).sum().backward()
                record["again"] = snap(x.grad)
            previous = y
            records.append(record)
        return records

    run_everywhere(scenario)


@pytest.mark.parametrize("op", ["clamp_min", "clamp_both", "clone", "contiguous", "to_same"])
def test_ops_reading_an_intermediate_dtype_or_layout_keep_the_graph_fusable(op, fused_runs):
    # clamp, clone, contiguous and .to read a deferred input's dtype or layout; reading
    # its array instead would run the tape early, and the graph would never fuse.
    apply = {
        "clamp_min": lambda L, y: y.clamp(min=0.0),
        "clamp_both": lambda L, y: y.clamp(-0.5, 0.5),
        "clone": lambda L, y: y.clone(),
        "contiguous": lambda L, y: y.contiguous(),
        "to_same": lambda L, y: y.to(L.float32),
    }[op]
    rng = np.random.default_rng(5)
    for _ in range(deferred.FUSE_AFTER + 3):
        values = rng.standard_normal((2, 3)).astype(np.float32)
        results = []
        for lib in (torch, nbgrad):
            x = lib.tensor(values, requires_grad=True)
            w = lib.tensor(values[::-1].copy(), requires_grad=True)
            apply(lib, x * w).sum().backward()
            results.append((x.grad, w.grad))
        for expected, actual in zip(*results):
            assert_close(actual, expected)
    assert fused_runs["runs"] == 3  # the FUSE_AFTER-th run traces, the three after it fuse


def test_a_deferred_forward_that_raises_raises_again_and_loses_nothing():
    # BCE checks its input's range as its kernel reads it: for a deferred input, when the tape
    # runs. The failing node stays deferred and raises again when read; the other ops on the
    # tape keep their values, and later graphs run as usual.
    F = nbgrad.nn.functional
    values = np.array([0.3, 2.0], np.float32)
    x = nbgrad.tensor(values, requires_grad=True)
    kept = x * 3
    loss = F.binary_cross_entropy(x.sigmoid() * 2, nbgrad.tensor([1.0, 0.0]))
    for read in (lambda: loss.item(), lambda: loss.item(), lambda: loss.backward()):
        with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
            read()
    xt = torch.tensor(values, requires_grad=True)
    assert_close(kept, xt * 3)
    loss = F.binary_cross_entropy(x.sigmoid() * 0.5, nbgrad.tensor([1.0, 0.0]))
    loss_t = torch.nn.functional.binary_cross_entropy(xt.sigmoid() * 0.5, torch.tensor([1.0, 0.0]))
    loss.backward()
    loss_t.backward()
    assert_close(loss, loss_t)
    assert_close(x.grad, xt.grad)


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.25])
def test_binary_cross_entropy_refuses_inputs_outside_0_1_in_every_mode(value, monkeypatch):
    F = nbgrad.nn.functional
    bad = np.array([0.5, value], np.float32)
    with pytest.raises(RuntimeError):
        torch.nn.functional.binary_cross_entropy(torch.tensor(bad), torch.ones(2))
    target = nbgrad.ones(2)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(nbgrad.tensor(bad), target)
    with deferral_off(), pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(nbgrad.tensor(bad, requires_grad=True), target)
    step = nbgrad.compile(lambda p: F.binary_cross_entropy(p.sigmoid() * 2, target).backward())
    for _ in range(2):  # the first call traces, the second runs the fused kernel
        p = nbgrad.tensor([0.0, -5.0], requires_grad=True)
        step(p)
    assert step.stats["fused_calls"] == 1
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        step(nbgrad.tensor([0.0, 5.0], requires_grad=True))  # sigmoid(5) * 2 > 1


def test_shape_rule_results_are_kept_per_parameter_types_and_never_for_errors(monkeypatch):
    """`defer` keeps a rule's result by op, parameters (with their types) and input shapes and
    dtypes: it calls the rule again where any differs, for unhashable parameters, and for a
    call whose rule raised (which raises again)."""
    monkeypatch.setattr(deferred, "_inferred", {})
    calls = []

    class Rule:
        def infer(self, x, scale, fail=False):
            calls.append(scale)
            if fail:
                raise RuntimeError("refused")
            return [x.shape[0] * 2], x.dtype

    rule, x = Rule(), np.zeros(3, np.float32)

    def infer(**params):
        return deferred._infer(rule, [x], params, tuple(params.items()))

    assert infer(scale=1) == ((6,), np.float32)
    assert infer(scale=1) == ((6,), np.float32)
    assert infer(scale=True) == ((6,), np.float32)  # == 1, but another type: the rule runs
    assert infer(scale=(np.zeros(1),)) == ((6,), np.float32)  # unhashable: never kept
    assert infer(scale=(np.zeros(1),)) == ((6,), np.float32)
    assert infer(scale=np.float32(1)) == ((6,), np.float32)  # not a plain value: never kept
    assert infer(scale=np.float32(1)) == ((6,), np.float32)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="refused"):
            infer(scale=2, fail=True)
    assert [type(scale) for scale in calls] == [int, bool, tuple, tuple, np.float32, np.float32,
                                                int, int]
