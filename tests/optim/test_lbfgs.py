"""optim.LBFGS against torch.optim.LBFGS: parameters, losses and state after several
step(closure) calls, with and without the strong Wolfe line search; its state_dict; its
errors; and nbgrad.compile of a step calling it (runs eagerly, with the warning)."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn, optim
from conftest import Pair, mlp, nbgrad_warnings
from test_optim import assert_same_parameters, batch, make_models

# name: (options, dtype, rtol). float32 runs are short: over tens of iterations rounding
# differences grow (the same in torch between two BLAS builds).
CONFIGURATIONS = {
    "defaults_float64": ({}, np.float64, 1e-9),
    "strong_wolfe_float64": (dict(line_search_fn="strong_wolfe"), np.float64, 1e-9),
    "short_history_float64": (dict(lr=0.5, max_iter=7, history_size=3), np.float64, 1e-9),
    "strong_wolfe_short_history_float64": (
        dict(line_search_fn="strong_wolfe", max_iter=5, history_size=2), np.float64, 1e-9),
    "short_float32": (dict(lr=0.5, max_iter=7, history_size=3), np.float32, 1e-4),
    "strong_wolfe_short_float32": (
        dict(line_search_fn="strong_wolfe", max_iter=5, history_size=2), np.float32, 1e-4),
}


def run(library, model, optimizer, dtype, steps=2):
    x, y = (library.tensor(value) for value in batch(dtype))
    loss_fn = (nn if library is nbgrad else torch.nn).MSELoss()

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    return [optimizer.step(closure).item() for _ in range(steps)]


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_lbfgs_matches_torch(name):
    options, dtype, rtol = CONFIGURATIONS[name]
    model, reference = make_models(dtype)
    optimizer = optim.LBFGS(model.parameters(), **options)
    expected = torch.optim.LBFGS(reference.parameters(), **options)
    losses = run(nbgrad, model, optimizer, dtype)
    np.testing.assert_allclose(losses, run(torch, reference, expected, dtype), rtol=rtol)
    assert_same_parameters(model, reference, rtol=rtol, atol=rtol)
    ours = optimizer.state[next(iter(model.parameters()))]
    theirs = expected.state[next(iter(reference.parameters()))]
    assert sorted(ours) == sorted(theirs)
    assert (ours["func_evals"], ours["n_iter"]) == (theirs["func_evals"], theirs["n_iter"])
    assert len(ours["old_dirs"]) == len(theirs["old_dirs"])
    np.testing.assert_allclose(ours["d"].numpy(), theirs["d"].numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ours["prev_loss"], theirs["prev_loss"], rtol=rtol)
    assert optimizer.state_dict()["param_groups"] == expected.state_dict()["param_groups"]


def test_lbfgs_state_dict_resumes_identically():
    model, _ = make_models(np.float64)
    optimizer = optim.LBFGS(model.parameters(), max_iter=4, history_size=3)
    run(nbgrad, model, optimizer, np.float64, steps=2)
    resumed, _ = make_models(np.float64)
    resumed.load_state_dict(model.state_dict())
    resumed_optimizer = optim.LBFGS(resumed.parameters())
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    assert resumed_optimizer.param_groups[0]["max_iter"] == 4
    assert (run(nbgrad, resumed, resumed_optimizer, np.float64)
            == run(nbgrad, model, optimizer, np.float64))
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_lbfgs_errors_as_torch():
    w = nn.Parameter(nbgrad.ones(2))
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": [w]}, {"params": [nn.Parameter(nbgrad.ones(1))]}])
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.LBFGS([w], lr=-1)
    optimizer = optim.LBFGS([w], line_search_fn="backtracking")

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        optimizer.step(closure)


def test_compiled_lbfgs_step_runs_eagerly_with_the_warning():
    def build():
        model = mlp((5, 8, 3), nn.Tanh)
        return model, optim.LBFGS(model.parameters(), max_iter=3)

    def make_step(s):
        loss_fn = nn.MSELoss()

        def step(x, y):
            def closure():
                s.opt.zero_grad()
                loss = loss_fn(s.model(x), y)
                loss.backward()
                return loss
            return s.opt.step(closure)
        return step

    x, y = (nbgrad.tensor(value) for value in batch())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(3):
            pair(x, y)
    assert pair.compiled.stats["fused_calls"] == 0
    assert [message.split(" (at ")[0] for message in nbgrad_warnings(caught)] == [
        "nbgrad.compile: running the step eagerly: LBFGS.step is a data-dependent loop over "
        "closure calls, with no fused rule"]
