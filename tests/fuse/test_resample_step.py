"""A small CNN training step with F.pad and F.interpolate fuses (the `pad_constant` and
`resample` fused rules), under `nbgrad.compile` and as a deferred graph, with torch's values.

The rules' forms are checked row by row in tests/ops/test_modes.py; this is the two in one
step with a convolution and an optimizer, as a tutorial writes it.
"""
import numpy as np
import torch

import nbgrad
from conftest import assert_close
from nbgrad.fuse import deferred
from nbgrad.fuse import graph as fused_graph

STEPS = 4


def _cnn(L, seed_arrays):
    """Reflect pad, 3x3 conv, ReLU, bilinear x2, a constant pad with a crop; SGD with momentum."""
    weight, bias = (L.from_numpy(a.copy()).requires_grad_() for a in seed_arrays)
    F = L.nn.functional

    def step(x, target):
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias).relu()
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = F.pad(y, (1, -1, 0, 2), value=0.5)
        loss = F.mse_loss(y, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    optimizer = L.optim.SGD([weight, bias], lr=0.1, momentum=0.9)
    return step, (weight, bias)


def _batches(steps):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((2, 1, 5, 4)), rng.standard_normal((2, 3, 12, 8)))
            for _ in range(steps)]


def _torch_losses_and_params(initial, batches):
    step, params = _cnn(torch, initial)
    losses = [step(torch.from_numpy(x), torch.from_numpy(t)).detach() for x, t in batches]
    return losses, params


def _initial():
    rng = np.random.default_rng(1)
    return rng.standard_normal((3, 1, 3, 3)) * 0.5, rng.standard_normal(3) * 0.1


def test_cnn_step_with_pad_and_interpolate_compiles_fused():
    initial, batches = _initial(), _batches(STEPS)
    expected_losses, expected_params = _torch_losses_and_params(initial, batches)
    step, params = _cnn(nbgrad, initial)
    compiled = nbgrad.compile(step)
    for (x, t), expected in zip(batches, expected_losses):
        assert_close(compiled(nbgrad.from_numpy(x), nbgrad.from_numpy(t)), expected)
    assert compiled.stats["fused_calls"] == STEPS - 1, compiled.explain()
    for param, expected in zip(params, expected_params):
        assert_close(param, expected)


def test_cnn_step_with_pad_and_interpolate_fuses_deferred(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    runs = []
    original = fused_graph.FusedGraph.run
    monkeypatch.setattr(fused_graph.FusedGraph, "run",
                        lambda graph, *args: runs.append(original(graph, *args)) or runs[-1])
    batches = _batches(deferred.FUSE_AFTER + 2)
    initial = _initial()
    expected_losses, expected_params = _torch_losses_and_params(initial, batches)
    step, params = _cnn(nbgrad, initial)
    for (x, t), expected in zip(batches, expected_losses):
        assert_close(step(nbgrad.from_numpy(x), nbgrad.from_numpy(t)), expected)
    assert sum(runs) == 2, f"the fused graph ran {sum(runs)} of the last 2 steps"
    for param, expected in zip(params, expected_params):
        assert_close(param, expected)
