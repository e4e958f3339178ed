"""nbgrad.optim against torch.optim: parameters after 20 steps from identical weights,
state_dict, skipping and freezing, schedulers, and PyTorch's errors."""
import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn, optim

STEPS = 20

# name: (nbgrad optimizer class, torch optimizer class, keyword arguments)
OPTIMIZERS = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_dampening_weight_decay": (optim.SGD, torch.optim.SGD,
                                   dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    "sgd_nesterov": (optim.SGD, torch.optim.SGD,
                     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam_weight_decay_amsgrad": (optim.Adam, torch.optim.Adam,
                                  dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1,
                                       amsgrad=True)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01)),
    "adamw_amsgrad": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1,
                                                           amsgrad=True)),
    "sgd_maximize": (optim.SGD, torch.optim.SGD, dict(lr=0.005, momentum=0.5, maximize=True)),
    "adam_maximize_small_beta1": (optim.Adam, torch.optim.Adam,
                                  dict(lr=0.01, betas=(0.3, 0.9), maximize=True)),
    "adam_decoupled_weight_decay": (optim.Adam, torch.optim.Adam,
                                    dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "adamw_maximize": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, maximize=True)),
}


def make_models(dtype=np.float32):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    reference = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    state = {k: v.detach().numpy().astype(dtype) for k, v in reference.state_dict().items()}
    model.load_state_dict(state)
    if dtype == np.float64:
        model.double()
        reference.double()
    reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model, reference


def batch(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, 5)).astype(dtype), rng.standard_normal((16, 3)).astype(dtype)


def train(model, optimizer, loss_fn, library, steps=STEPS, dtype=np.float32):
    x, y = batch(dtype)
    x, y = library.tensor(x), library.tensor(y)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()


def assert_same_parameters(model, reference, rtol=1e-5, atol=1e-6):
    for (name, param), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(param.detach().numpy(), expected.detach().numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_after_20_steps(name, dtype):
    nb_class, torch_class, kwargs = OPTIMIZERS[name]
    model, reference = make_models(dtype)
    train(model, nb_class(model.parameters(), **kwargs), nn.MSELoss(), nbgrad, dtype=dtype)
    train(reference, torch_class(reference.parameters(), **kwargs), torch.nn.MSELoss(), torch,
          dtype=dtype)
    assert_same_parameters(model, reference)
    expected_dtype = nbgrad.float32 if dtype == np.float32 else nbgrad.float64
    assert all(p.dtype == expected_dtype for p in model.parameters())


def test_param_groups_with_their_own_options():
    model, reference = make_models()

    def groups(m, library):
        return [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.01}]

    train(model, optim.SGD(groups(model, nbgrad), lr=0.1, momentum=0.5), nn.MSELoss(), nbgrad)
    train(reference, torch.optim.SGD(groups(reference, torch), lr=0.1, momentum=0.5),
          torch.nn.MSELoss(), torch)
    assert_same_parameters(model, reference)


def test_state_dict_resumes_training_identically():
    model, reference = make_models()
    optimizer = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    train(model, optimizer, nn.MSELoss(), nbgrad, steps=3)
    saved_model, saved_optimizer = model.state_dict(), optimizer.state_dict()
    assert list(saved_optimizer["state"]) == [0, 1, 2, 3]
    assert float(saved_optimizer["state"][0]["step"]) == 3.0
    assert saved_optimizer["param_groups"][0]["params"] == [0, 1, 2, 3]
    resumed, _ = make_models()
    resumed.load_state_dict(saved_model)
    resumed_optimizer = optim.Adam(resumed.parameters(), lr=0.5)
    resumed_optimizer.load_state_dict(saved_optimizer)
    assert resumed_optimizer.param_groups[0]["lr"] == 0.01
    train(model, optimizer, nn.MSELoss(), nbgrad, steps=4)
    train(resumed, resumed_optimizer, nn.MSELoss(), nbgrad, steps=4)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_load_state_dict_casts_like_pytorch_and_refuses_a_wrong_shape():
    """Moments take the parameter's dtype and the step count becomes a float32 tensor, as in
    PyTorch; a moment of another shape is refused (the update kernel indexes it like the
    parameter, so it would read out of bounds)."""
    param = nbgrad.zeros(3, requires_grad=True)
    optimizer = optim.Adam([param])
    saved = {"state": {0: {"step": 2, "exp_avg": np.ones(3), "exp_avg_sq": np.ones(3)}},
             "param_groups": [{**optimizer.param_groups[0], "params": [0]}]}
    optimizer.load_state_dict(saved)
    state = optimizer.state[param]
    assert state["exp_avg"].dtype == nbgrad.float32 and state["step"].dtype == nbgrad.float32
    assert float(state["step"]) == 2.0
    saved["state"][0]["exp_avg"] = np.ones(4)
    with pytest.raises(ValueError, match="shape"):
        optimizer.load_state_dict(saved)


def test_zero_grad_and_parameters_without_grad():
    model, _ = make_models()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    unused = nn.Parameter(nbgrad.ones(3))
    optimizer.add_param_group({"params": [unused]})
    train(model, optimizer, nn.MSELoss(), nbgrad, steps=2)
    assert unused.grad is None and np.array_equal(unused.detach().numpy(), np.ones(3))
    assert unused not in optimizer.state
    optimizer.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameter_is_never_touched():
    model, _ = make_models()
    optimizer = optim.Adam(model.parameters(), lr=0.1)
    train(model, optimizer, nn.MSELoss(), nbgrad, steps=1)
    frozen = model[0].weight
    frozen.requires_grad = False  # it still holds a .grad from the step above
    before = frozen.detach().numpy().copy()
    optimizer.step()
    assert np.array_equal(frozen.detach().numpy(), before)


def test_step_bumps_the_version_counter():
    w = nn.Parameter(nbgrad.ones(2))
    optimizer = optim.SGD([w], lr=0.1)
    (w * 2).sum().backward()
    version = w._version
    optimizer.step()
    assert w._version == version + 1
    np.testing.assert_allclose(w.detach().numpy(), [0.8, 0.8])


def test_one_parameter_tutorial_loop():
    """The classic tutorial: learn w in y = 2x with w*x, MSELoss and SGD(lr=0.01)."""
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = 2 * x
    w = nbgrad.tensor(0.0, requires_grad=True)
    optimizer = optim.SGD([w], lr=0.01)
    loss_fn = nn.MSELoss()
    for _ in range(100):
        loss = loss_fn(w * x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert abs(w.item() - 2.0) < 1e-3


def test_empty_parameter_list():
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.Adam(iter([]))


def test_non_leaf_tensor():
    w = nbgrad.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([w * 2], lr=0.1)


def test_invalid_options():
    w = [nn.Parameter(nbgrad.ones(1))]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam(w, lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam(w, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        optim.SGD(w, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": w}, {"params": w}], lr=0.1)


@pytest.mark.parametrize("make", [
    lambda o, lib: lib.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    lambda o, lib: lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01),
])
def test_scheduler_matches_torch(make):
    rates = []
    for library in (nbgrad, torch):
        param = (nn.Parameter if library is nbgrad else torch.nn.Parameter)(library.ones(1))
        optimizer = library.optim.SGD([param], lr=0.1)
        scheduler = make(optimizer, library)
        seen = []
        for _ in range(12):
            optimizer.step()
            scheduler.step()
            seen.append(scheduler.get_last_lr()[0])
        rates.append(seen)
    np.testing.assert_allclose(rates[0], rates[1], rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda p: nbgrad.optim.SGD(p, lr=0.1, differentiable=True),
    lambda p: nbgrad.optim.Adam(p, capturable=True),
    lambda p: nbgrad.optim.AdamW(p, differentiable=True),
])
def test_options_that_change_the_math_are_refused_not_ignored(make):
    with pytest.raises(NotImplementedError, match="is not supported"):
        make([nbgrad.zeros(2, requires_grad=True)])
