"""Normalization modules against torch: BatchNorm1d/2d, LayerNorm, GroupNorm (outputs,
gradients, running statistics and num_batches_tracked over several training steps and in
eval, state_dict keys, dtypes and values, reprs, resets, a torch checkpoint loaded), and
the running statistics in nbgrad's three modes (immediate eager, a deferred loop past
FUSE_AFTER, nbgrad.compile called again with new tensors), where the fused kernels write
them. The ops themselves are rows of tests/ops/test_ops.py (values, gradients, gradcheck,
the three modes)."""
import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_same_error, assert_close, rng_for
from nbgrad.fuse import deferred

STATE_TOL = (1e-5, 1e-6)  # float32 running statistics after a few steps
# After FUSE_AFTER + 3 steps of SGD with momentum, float32 rounding has added up.
LONG_RUN_TOL = (1e-4, 1e-5)


def _modules(L):
    """(name, module, input shape) of each configuration, for library `L`."""
    nn = L.nn
    return [
        ("bn1d_2d", nn.BatchNorm1d(3), (5, 3)),
        ("bn1d_3d_momentum", nn.BatchNorm1d(3, momentum=0.3), (4, 3, 2)),
        ("bn2d", nn.BatchNorm2d(3), (2, 3, 2, 3)),
        ("bn2d_cumulative", nn.BatchNorm2d(3, momentum=None, bias=False), (2, 3, 2, 2)),
        ("bn2d_no_affine", nn.BatchNorm2d(3, affine=False), (2, 3, 2, 2)),
        ("bn1d_untracked", nn.BatchNorm1d(3, track_running_stats=False), (4, 3)),
        ("layer_norm", nn.LayerNorm((2, 3)), (4, 2, 3)),
        ("layer_norm_no_bias", nn.LayerNorm(3, bias=False), (2, 4, 3)),
        ("layer_norm_no_affine", nn.LayerNorm(3, elementwise_affine=False), (2, 3)),
        ("group_norm", nn.GroupNorm(2, 4), (2, 4, 3)),
        ("group_norm_no_affine", nn.GroupNorm(2, 4, affine=False), (3, 4, 2)),
        ("instance_norm1d", nn.InstanceNorm1d(3), (4, 3, 5)),
        ("instance_norm2d_affine_tracked", nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
         (2, 3, 2, 3)),
        ("instance_norm3d_unbatched_tracked_no_momentum",
         nn.InstanceNorm3d(2, momentum=None, track_running_stats=True), (2, 2, 3, 2)),
        ("instance_norm1d_unbatched_affine_no_bias", nn.InstanceNorm1d(3, affine=True, bias=False),
         (3, 4)),
        ("local_response_norm", nn.LocalResponseNorm(3), (2, 5, 4)),
        ("local_response_norm_4d", nn.LocalResponseNorm(2, alpha=0.1, beta=0.5, k=2.0), (2, 5, 2, 3)),
    ]


NAMES = [name for name, _, _ in _modules(torch.nn and torch)]


def _state(module):
    """A copy of `module`'s state_dict as NumPy arrays (its tensors share the module's memory)."""
    return {key: np.array(value.detach().numpy(), copy=True)
            for key, value in module.state_dict().items()}


def _assert_same_state(actual, expected, where, tol=STATE_TOL):
    assert list(actual) == list(expected), where
    for key, value in expected.items():
        got = np.asarray(actual[key])
        assert got.dtype == value.dtype, f"{where}: {key} {got.dtype} != {value.dtype}"
        np.testing.assert_allclose(got, value, *tol, err_msg=f"{where}: {key}")


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_module_matches_torch_over_steps_and_in_eval(index):
    """Three training steps (output, input and parameter gradients, SGD update, state), then
    eval (output and gradient), then eval again after reset_parameters."""
    name, t_module, shape = _modules(torch)[index]
    n_module = _modules(nbgrad)[index][1]
    assert repr(n_module) == repr(t_module)
    n_module.load_state_dict({k: v.numpy() for k, v in t_module.state_dict().items()})
    libs = ((torch, t_module), (nbgrad, n_module))
    optimizers = [L.optim.SGD(m.parameters(), lr=0.5) if list(m.parameters()) else None
                  for L, m in libs]
    for step in range(4):
        training = step < 3
        for _, module in libs:
            module.train(training)
        rng = rng_for(f"{name}/{step}")
        x_values = rng.standard_normal(shape).astype(np.float32) * 3 + 1
        upstream = rng.standard_normal(shape).astype(np.float32)
        results = []
        for (L, module), optimizer in zip(libs, optimizers):
            x = L.from_numpy(x_values.copy()).requires_grad_()
            out = module(x)
            (out * L.from_numpy(upstream.copy())).sum().backward()
            grads = [p.grad for p in module.parameters()]
            results.append((out, x.grad, grads))
            if optimizer is not None and training:
                optimizer.step()
                optimizer.zero_grad()
        (t_out, t_dx, t_grads), (n_out, n_dx, n_grads) = results
        where = f"{name}, step {step} ({'train' if training else 'eval'})"
        assert type(n_out.grad_fn).__name__ == type(t_out.grad_fn).__name__, where
        assert_close(n_out, t_out, *STATE_TOL)
        assert_close(n_dx, t_dx, 1e-4, 1e-5)
        for n_grad, t_grad in zip(n_grads, t_grads):
            assert_close(n_grad, t_grad, 1e-4, 1e-5)
        _assert_same_state(_state(n_module), _state(t_module), where)
    if not hasattr(t_module, "reset_parameters"):  # (LocalResponseNorm: nothing to reset)
        return
    for _, module in libs:
        module.reset_parameters()
    _assert_same_state(_state(n_module), _state(t_module), f"{name}, after reset_parameters")


def test_top_level_functions_take_torchs_signatures():
    """torch.batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
    eps, cudnn_enabled), torch.layer_norm and torch.group_norm (cudnn flags last)."""
    rng = rng_for("top level")
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    results = []
    for L in (torch, nbgrad):
        t = {name: L.from_numpy(a.copy()) for name, a in (("x", x), ("w", w), ("b", b))}
        running = (L.zeros(3), L.ones(3))
        results.append([
            L.batch_norm(t["x"], t["w"], t["b"], *running, True, 0.3, 1e-5, False),
            *running,
            L.layer_norm(t["x"], [2], None, None, 1e-3, False),
            L.group_norm(t["x"], 3, t["w"], t["b"], 1e-5, False),
        ])
    for actual, expected in zip(results[1], results[0]):
        assert_close(actual, expected, *STATE_TOL)


def test_eval_without_running_statistics_uses_the_batch():
    x = rng_for("untracked eval").standard_normal((4, 3)).astype(np.float32)
    outs = []
    for L in (torch, nbgrad):
        module = L.nn.BatchNorm1d(3, track_running_stats=False).eval()
        outs.append(module(L.from_numpy(x.copy())))
    assert_close(outs[1], outs[0], *STATE_TOL)


def test_empty_batch_counts_but_leaves_running_statistics():
    states, grads = [], []
    for L in (torch, nbgrad):
        module = L.nn.BatchNorm1d(3)
        x = L.zeros(0, 3).requires_grad_()
        module(x).sum().backward()
        assert tuple(x.grad.shape) == (0, 3)
        states.append(_state(module))
        grads.append((module.weight.grad, module.bias.grad))
    _assert_same_state(states[1], states[0], "after an empty batch")
    for actual, expected in zip(grads[1], grads[0]):  # zeros
        assert_close(actual, expected, 0, 0)


def test_load_a_torch_checkpoint(tmp_path):
    """A state_dict that torch.save wrote, read by nbgrad.load, loads into nbgrad's modules
    (trained running statistics and count included) and gives torch's eval output."""
    t_model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.GroupNorm(1, 3),
                                  torch.nn.LayerNorm(2))
    rng = rng_for("checkpoint")
    for _ in range(2):
        t_model(torch.from_numpy(rng.standard_normal((2, 3, 2, 2)).astype(np.float32)))
    path = tmp_path / "norms.pt"
    torch.save(t_model.state_dict(), path)
    n_model = nbgrad.nn.Sequential(nbgrad.nn.BatchNorm2d(3), nbgrad.nn.GroupNorm(1, 3),
                                   nbgrad.nn.LayerNorm(2))
    n_model.load_state_dict(nbgrad.load(path, weights_only=True))
    _assert_same_state(_state(n_model), _state(t_model), "loaded")
    assert int(n_model[0].num_batches_tracked) == 2
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    t_out = t_model.eval()(torch.from_numpy(x.copy()))
    assert_close(n_model.eval()(nbgrad.from_numpy(x.copy())), t_out.detach(), *STATE_TOL)


# ---------------------------------------------------------------------------------------------
# Running statistics in the three modes: a step of two BatchNorm2d (exponential and cumulative
# averages, the second without affine parameters), its backward and an SGD step with momentum.

def _net(L):
    nn = L.nn
    return nn.ModuleList([nn.BatchNorm2d(3, momentum=0.2),
                          nn.BatchNorm2d(3, momentum=None, affine=False)])


def _step_of(L, net, optimizer):
    # A fixed elementwise factor between the layers (not per channel, which the second would
    # normalize away); no kink (a ReLU) where float32 rounding could send the runs apart.
    mix = L.from_numpy(rng_for("three modes/mix").uniform(0.5, 2.0, (2, 3, 2, 2)).astype(np.float32))

    def step(x, upstream):
        optimizer.zero_grad()
        out = net[1](net[0](x) * mix)
        loss = (out * upstream).sum()
        loss.backward()
        optimizer.step()
        return loss
    return step


def _batches(count):
    for i in range(count):
        rng = rng_for(f"three modes/{i}")
        yield (rng.standard_normal((2, 3, 2, 2)).astype(np.float32) * 2 + 0.5,
               rng.standard_normal((2, 3, 2, 2)).astype(np.float32))


def _run_steps(L, count, compiled=False):
    """The loss of each step and the state after each step, training `count` steps."""
    net = _net(L)
    optimizer = L.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    step = _step_of(L, net, optimizer)
    if compiled:
        step = nbgrad.compile(step)
    history = []
    for x, upstream in _batches(count):
        loss = step(L.from_numpy(x), L.from_numpy(upstream))
        history.append((loss.item(), _state(net)))
    return history, step


def _assert_same_history(actual, expected, mode):
    for i, ((loss, state), (t_loss, t_state)) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(loss, t_loss, *LONG_RUN_TOL, err_msg=f"{mode}, step {i}")
        _assert_same_state(state, t_state, f"{mode}, step {i}", LONG_RUN_TOL)


def test_running_statistics_immediate(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", False)
    count = 4
    _assert_same_history(_run_steps(nbgrad, count)[0], _run_steps(torch, count)[0], "immediate")


def test_running_statistics_deferred_past_fuse_after(monkeypatch, fused_runs):
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    count = deferred.FUSE_AFTER + 3
    history, _ = _run_steps(nbgrad, count)
    assert fused_runs["runs"] == count - deferred.FUSE_AFTER
    _assert_same_history(history, _run_steps(torch, count)[0], "deferred")


def test_running_statistics_compiled(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)
    count = 4
    history, step = _run_steps(nbgrad, count, compiled=True)
    assert step.stats["fused_calls"] == count - 1, step.explain()
    _assert_same_history(history, _run_steps(torch, count)[0], "nbgrad.compile")


def test_statistics_refreshed_by_forwards_whose_results_are_dropped(monkeypatch):
    """SWA's update_bn: forwards in train mode (parameters requiring grad, no backward) whose
    outputs nobody keeps, then eval under no_grad; deferred mode defers each forward."""
    monkeypatch.setattr(deferred, "enabled", True)
    results = []
    for L in (torch, nbgrad):
        net = L.nn.Sequential(L.nn.Linear(3, 3), L.nn.BatchNorm1d(3, momentum=None))
        with L.no_grad():
            net[0].weight.copy_(L.from_numpy(np.eye(3, dtype=np.float32) * 2))
            net[0].bias.zero_()
        for i in range(5):
            net(L.arange(12.0).reshape(4, 3) * (i + 1))
        net.eval()
        with L.no_grad():
            results.append((net(L.ones(2, 3)), _state(net)))
    (t_out, t_state), (n_out, n_state) = results
    assert_close(n_out, t_out, *STATE_TOL)
    _assert_same_state(n_state, t_state, "after the refreshing loop")


def test_statistics_read_right_after_a_deferred_forward(monkeypatch):
    """`out = bn(x); print(bn.running_mean)`: the forward is deferred (its weight requires
    grad), and reading the statistics in any way (print, tolist, state_dict, an op, a
    functional call's own tensors) runs it first."""
    monkeypatch.setattr(deferred, "enabled", True)
    results = []
    for L in (torch, nbgrad):
        bn = L.nn.BatchNorm1d(3)
        x = L.arange(12.0).reshape(4, 3)
        out = bn(x)
        seen = [repr(bn.running_mean), bn.running_var.tolist(), int(bn.num_batches_tracked)]
        bn(x * 2)
        seen.append(bn.state_dict()["running_mean"].tolist())
        bn(x * 3)
        seen.append((bn.running_var * 1).tolist())
        mean, var = L.zeros(3), L.ones(3)
        L.nn.functional.batch_norm(x, mean, var, bn.weight, training=True)
        seen.append(str(mean))
        results.append((seen, out))
    (t_seen, t_out), (n_seen, n_out) = results
    for got, expected in zip(n_seen, t_seen):
        if isinstance(got, str):
            assert got.replace("nbgrad", "torch") == expected
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert_close(n_out, t_out, *STATE_TOL)


def test_float16_and_bfloat16_inputs_compute_in_float32():
    """As PyTorch's CPU kernels: a half input with float32 (or half) parameters, computed in
    float32, a result of the input's dtype; float32 running statistics are updated."""
    x = np.linspace(-1.0, 2.0, 24).reshape(4, 3, 2)
    results = []
    for L in (torch, nbgrad):
        running = (L.zeros(3), L.ones(3))
        half = L.tensor(x, dtype=L.float16)
        results.append([
            L.nn.functional.batch_norm(half, *running, L.ones(3), None, training=True),
            *running,
            L.nn.functional.layer_norm(half, (3, 2), L.ones(3, 2, dtype=L.float16)),
            L.nn.functional.group_norm(L.tensor(x, dtype=L.bfloat16), 3, L.ones(3)).float(),
        ])
    for actual, expected in zip(results[1], results[0]):
        assert_close(actual, expected, 1e-2, 1e-2, dtype="float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_channel_blocks(dtype):
    """batch_norm's kernels sum a channel of at least 32 elements per sample on its own and
    shorter ones in blocks of 512 // S channels (nbgrad.ops.normalization): a long channel,
    and 40 channels of 16 (a block of 32 and one of 8), with a large mean; in training and
    in eval, every gradient, against torch."""
    rng = rng_for(f"channel blocks {dtype}")
    for shape in ((2, 3, 6, 6), (2, 40, 4, 4)):
        channels = shape[1]
        arrays = [rng.standard_normal(shape) * 2 + 50, rng.standard_normal(shape),
                  rng.standard_normal(channels), rng.standard_normal(channels),
                  rng.standard_normal(channels), rng.random(channels) + 0.5]
        arrays = [a.astype(dtype) for a in arrays]
        for training in (True, False):
            results = []
            for L in (torch, nbgrad):
                x, upstream, weight, bias, mean, var = (L.tensor(a) for a in arrays)
                for t in (x, weight, bias):
                    t.requires_grad_()
                out = L.nn.functional.batch_norm(x, mean, var, weight, bias, training)
                (out * upstream).sum().backward()
                results.append((out, x.grad, weight.grad, bias.grad, mean, var))
            for actual, expected in zip(results[1], results[0]):
                assert_close(actual, expected, 1e-4 if dtype == "float32" else 1e-9, 1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_group_and_layer_norm_long_groups(dtype):
    """group_norm's and layer_norm's kernels on groups long enough for their vectorized loops
    (nbgrad.ops.normalization), with a large mean: values and every gradient against torch."""
    rng = rng_for(f"long groups {dtype}")
    arrays = [rng.standard_normal((3, 6, 7, 11)) * 2 + 50, rng.standard_normal((3, 6, 7, 11)),
              rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((7, 11)),
              rng.standard_normal((7, 11))]
    arrays = [a.astype(dtype) for a in arrays]
    results = []
    for L in (torch, nbgrad):
        x, upstream, weight, bias, ln_weight, ln_bias = (L.tensor(a) for a in arrays)
        for t in (x, weight, bias, ln_weight, ln_bias):
            t.requires_grad_()
        outs = (L.nn.functional.group_norm(x, 3, weight, bias),
                L.nn.functional.layer_norm(x, (7, 11), ln_weight, ln_bias))
        sum((out * upstream).sum() for out in outs).backward()
        results.append((*outs, x.grad, weight.grad, bias.grad, ln_weight.grad, ln_bias.grad))
    for actual, expected in zip(results[1], results[0]):
        assert_close(actual, expected, *((1e-4, 1e-4) if dtype == "float32" else (1e-9, 1e-10)))


def test_functional_instance_norm_running_statistics_match_torch():
    """F.instance_norm updating running statistics (the mean over the samples of their
    updated copies), normalizing by them (use_input_stats=False), and torch.instance_norm."""
    def run(L):
        x = L.from_numpy(rng_for("instance norm").standard_normal((3, 2, 5)).astype(np.float64))
        mean, var = L.tensor([0.5, -1.0], dtype=L.float64), L.tensor([2.0, 0.5], dtype=L.float64)
        trained = L.nn.functional.instance_norm(x, mean, var, momentum=0.3)
        weight = L.tensor([1.5, -0.5], dtype=L.float64, requires_grad=True)
        evaluated = L.nn.functional.instance_norm(x, mean, var, weight, use_input_stats=False)
        evaluated.sum().backward()
        top = L.instance_norm(x, None, None, None, None, True, 0.1, 1e-3, False)
        return [t.detach().numpy() for t in (trained, mean, var, evaluated, weight.grad, top)]
    for a, e in zip(run(nbgrad), run(torch), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda L: L.nn.functional.instance_norm(L.ones(2, 3, 1)),
    lambda L: L.nn.functional.instance_norm(L.ones(2, 3, 4), use_input_stats=False),
    lambda L: L.nn.InstanceNorm1d(3)(L.ones(2, 3, 4, 5)),
    lambda L: L.nn.InstanceNorm2d(4, affine=True)(L.ones(2, 3, 4, 4)),
    lambda L: L.nn.functional.local_response_norm(L.ones(2, 3), 2),
])
def test_instance_and_local_response_norm_errors_match_torch(make):
    assert_same_error(make)


def test_instance_norm_warns_of_unused_num_features():
    for L in (nbgrad, torch):
        with pytest.warns(UserWarning, match="input's size at dim=1 does not match num_features"):
            L.nn.InstanceNorm1d(4)(L.ones(2, 3, 5))
