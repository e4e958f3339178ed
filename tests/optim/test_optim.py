"""nbgrad.optim against torch.optim: parameters after 20 steps from identical weights,
state_dict, skipping and freezing, schedulers, and PyTorch's errors."""
import re
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn, optim
from nbgrad.nn import functional as F
from conftest import Pair, nbgrad_warnings

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
    "rmsprop": (optim.RMSprop, torch.optim.RMSprop, {}),
    "rmsprop_centered": (optim.RMSprop, torch.optim.RMSprop, dict(centered=True)),
    "rmsprop_momentum": (optim.RMSprop, torch.optim.RMSprop, dict(momentum=0.9)),
    "rmsprop_all_options": (optim.RMSprop, torch.optim.RMSprop,
                            dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.5,
                                 centered=True, maximize=True)),
    "adagrad": (optim.Adagrad, torch.optim.Adagrad, {}),
    "adagrad_all_options": (optim.Adagrad, torch.optim.Adagrad,
                            dict(lr=0.05, lr_decay=0.01, weight_decay=0.1,
                                 initial_accumulator_value=0.5, eps=1e-6, maximize=True)),
    "adamax": (optim.Adamax, torch.optim.Adamax, {}),
    "adamax_all_options": (optim.Adamax, torch.optim.Adamax,
                           dict(lr=0.01, betas=(0.6, 0.9), eps=1e-5, weight_decay=0.1,
                                maximize=True)),
    "nadam": (optim.NAdam, torch.optim.NAdam, {}),
    "nadam_weight_decay_maximize": (optim.NAdam, torch.optim.NAdam,
                                    dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1,
                                         momentum_decay=0.01, maximize=True)),
    "nadam_decoupled_weight_decay": (optim.NAdam, torch.optim.NAdam,
                                     dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    # RAdam's default betas take the unrectified step for 5 steps, then the adaptive one.
    "radam": (optim.RAdam, torch.optim.RAdam, {}),
    "radam_weight_decay_maximize": (optim.RAdam, torch.optim.RAdam,
                                    dict(lr=0.01, betas=(0.6, 0.9), weight_decay=0.1,
                                         maximize=True)),
    "radam_decoupled_weight_decay": (optim.RAdam, torch.optim.RAdam,
                                     dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "adadelta": (optim.Adadelta, torch.optim.Adadelta, {}),
    "adadelta_all_options": (optim.Adadelta, torch.optim.Adadelta,
                             dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1, maximize=True)),
    "rprop": (optim.Rprop, torch.optim.Rprop, {}),
    "rprop_all_options": (optim.Rprop, torch.optim.Rprop,
                          dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(1e-3, 0.05), maximize=True)),
    "asgd": (optim.ASGD, torch.optim.ASGD, {}),
    # t0 = 5: averaging starts within the 20 steps
    "asgd_all_options": (optim.ASGD, torch.optim.ASGD,
                         dict(lr=0.05, lambd=1e-2, alpha=0.5, t0=5, weight_decay=0.1, maximize=True)),
}


# Options that make each new optimizer keep all of its state.
FULL_STATE = {
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
    "Adagrad": dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.5),
    "Adamax": dict(lr=0.01, weight_decay=0.1),
    "NAdam": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "RAdam": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "Adadelta": dict(lr=0.5, weight_decay=0.1),
    "Rprop": dict(lr=0.02, step_sizes=(1e-4, 0.1)),
    "ASGD": dict(lr=0.05, lambd=1e-2, t0=1),
}
# Options of torch's param_groups that pick an implementation; nbgrad's groups do not have them.
IMPLEMENTATION_OPTIONS = {"foreach", "capturable", "differentiable", "fused"}


def make_models(dtype=np.float32):
    """An nbgrad model and a torch model with the same weights, drawn from a seeded torch
    generator: float32 runs of adaptive optimizers amplify rounding differences, and how much
    depends on the weights (some draws exceed the tolerance)."""
    torch.manual_seed(0)
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


def sequential(o, lib):
    schedulers = lib.optim.lr_scheduler
    return schedulers.SequentialLR(o, [schedulers.LinearLR(o, start_factor=0.1, total_iters=4),
                                       schedulers.ExponentialLR(o, gamma=0.9),
                                       schedulers.CosineAnnealingLR(o, T_max=5)],
                                   milestones=[5, 12])


class Warmup:
    """A callable object as lr_lambda: LambdaLR's state_dict saves its __dict__."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.epochs)


# name: (optimizer (SGD or Adam), scheduler from (optimizer, library)); 30 steps each.
SCHEDULERS = {
    "StepLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    "CosineAnnealingLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=4, eta_min=0.01)),
    "ExponentialLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    "MultiStepLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.MultiStepLR(
        o, milestones=[3, 7, 7, 20], gamma=0.5)),
    "LambdaLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.LambdaLR(
        o, [lambda epoch: 0.95 ** epoch, Warmup(8)])),
    "LinearLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.LinearLR(
        o, start_factor=0.25, end_factor=0.75, total_iters=10)),
    "OneCycleLR_cos_sgd_momentum": ("SGD", lambda o, lib: lib.optim.lr_scheduler.OneCycleLR(
        o, max_lr=[0.5, 1.0], total_steps=31)),
    "OneCycleLR_linear_three_phase_adam": ("Adam", lambda o, lib: lib.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.5, epochs=3, steps_per_epoch=11, anneal_strategy="linear", three_phase=True,
        pct_start=0.25)),
    "OneCycleLR_no_momentum": ("Adam", lambda o, lib: lib.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.5, total_steps=30, cycle_momentum=False, div_factor=10.0)),
    "SequentialLR": ("SGD", sequential),
    "MultiplicativeLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.MultiplicativeLR(
        o, lambda epoch: 0.9 if epoch % 2 else 1.02)),
    "ConstantLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.ConstantLR(
        o, factor=0.5, total_iters=4)),
    "PolynomialLR": ("SGD", lambda o, lib: lib.optim.lr_scheduler.PolynomialLR(
        o, total_iters=20, power=2.0)),
    "CosineAnnealingWarmRestarts": ("SGD", lambda o, lib: lib.optim.lr_scheduler.
                                    CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2,
                                                                eta_min=0.01)),
    "ChainedScheduler": ("SGD", lambda o, lib: lib.optim.lr_scheduler.ChainedScheduler(
        [lib.optim.lr_scheduler.ConstantLR(o, factor=0.1, total_iters=2),
         lib.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)])),
    "CyclicLR_triangular": ("SGD", lambda o, lib: lib.optim.lr_scheduler.CyclicLR(
        o, base_lr=[0.01, 0.02], max_lr=0.1, step_size_up=4, step_size_down=6)),
    "CyclicLR_triangular2_adam": ("Adam", lambda o, lib: lib.optim.lr_scheduler.CyclicLR(
        o, base_lr=0.01, max_lr=[0.1, 0.3], step_size_up=3, mode="triangular2")),
    "CyclicLR_exp_range_no_momentum": ("Adam", lambda o, lib: lib.optim.lr_scheduler.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=5, mode="exp_range", gamma=0.9,
        cycle_momentum=False)),
    "CyclicLR_scale_fn_object": ("SGD", lambda o, lib: lib.optim.lr_scheduler.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=2, scale_fn=Warmup(5),
        scale_mode="iterations", base_momentum=[0.5, 0.6], max_momentum=0.95)),
    "ReduceLROnPlateau": ("SGD", lambda o, lib: lib.optim.lr_scheduler.ReduceLROnPlateau(
        o, patience=2, factor=0.5, cooldown=1, min_lr=[0.0, 0.04])),
    "ReduceLROnPlateau_max_abs": ("SGD", lambda o, lib: lib.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="max", threshold=0.05, threshold_mode="abs", patience=1, eps=0.02)),
}
# A metric for ReduceLROnPlateau that improves, stalls, improves a little, stalls.
METRICS = [1.0, 0.8, 0.7, 0.7, 0.71, 0.69, 0.69999, 0.5, 0.5, 0.5, 0.5, 0.49] * 3
# Entries of torch's scheduler state_dict that are flags of its implementation.
SCHEDULER_FLAGS = {"_get_lr_called_within_step", "_is_initial"}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(name):
    """Two parameter groups (learning rates 0.1 and 0.2, SGD with momentum 0.9 or Adam): the
    rates (and momenta or betas) after each of 30 steps, and state_dict, are torch's."""
    optimizer_name, make = SCHEDULERS[name]
    seen, saved = [], []
    for library in (nbgrad, torch):
        params = [library.zeros(1, requires_grad=True) for _ in range(2)]
        options = dict(momentum=0.9) if optimizer_name == "SGD" else {}
        optimizer = getattr(library.optim, optimizer_name)(
            [{"params": [params[0]]}, {"params": [params[1]], "lr": 0.2}], lr=0.1, **options)
        scheduler = make(optimizer, library)
        rates = [scheduler.get_last_lr()]
        for metric in METRICS[:30]:
            optimizer.step()
            if name.startswith("ReduceLROnPlateau"):
                scheduler.step(metric)
            else:
                scheduler.step()
            rates.append(scheduler.get_last_lr()
                         + [group.get("momentum", group.get("betas"))
                            for group in optimizer.param_groups])
        seen.append(rates)
        saved.append(_comparable(scheduler.state_dict()))
    np.testing.assert_allclose(_flatten(seen[0]), _flatten(seen[1]), rtol=1e-12)
    assert saved[0] == saved[1]


def _flatten(rates):
    flat = []
    for item in rates:
        if isinstance(item, (list, tuple)):
            flat += _flatten(item)
        else:
            flat.append(float(item))
    return flat


def _comparable(state):
    """A scheduler state_dict without torch's flags, nested schedulers' states too."""
    return {key: [_comparable(inner) for inner in value] if key == "_schedulers" else value
            for key, value in state.items() if key not in SCHEDULER_FLAGS}


def test_invalid_options_of_the_new_optimizers_as_torch():
    w = [nn.Parameter(nbgrad.ones(1))]
    cases = [(optim.RMSprop, dict(alpha=-1), "Invalid alpha value: -1"),
             (optim.RMSprop, dict(momentum=-1), "Invalid momentum value: -1"),
             (optim.Adagrad, dict(lr_decay=-1), "Invalid lr_decay value: -1"),
             (optim.Adagrad, dict(initial_accumulator_value=-1),
              "Invalid initial_accumulator_value value: -1"),
             (optim.NAdam, dict(momentum_decay=-1), "Invalid momentum_decay value: -1"),
             (optim.RAdam, dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
             (optim.Adamax, dict(eps=-1), "Invalid epsilon value: -1"),
             (optim.Adadelta, dict(rho=1.5), "Invalid rho value: 1.5"),
             (optim.Adadelta, dict(lr=-1), "Invalid learning rate: -1"),
             (optim.Adadelta, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
             (optim.Rprop, dict(etas=(1.2, 0.5)), "Invalid eta values: 1.2, 0.5"),
             (optim.ASGD, dict(weight_decay=-0.5), "Invalid weight_decay value: -0.5")]
    for make, options, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            getattr(torch.optim, make.__name__)([torch.nn.Parameter(torch.ones(1))], **options)
        with pytest.raises(ValueError, match=re.escape(message)):
            make(w, **options)


@pytest.mark.parametrize("name", list(FULL_STATE))
def test_new_optimizers_with_param_groups_of_their_own_options(name):
    """A second group with its own learning rate and weight decay (maximize too, where the
    optimizer has it)."""
    model, reference = make_models()

    def groups(m):
        return [{"params": m[0].parameters()},
                {"params": m[2].parameters(), "lr": 0.003, "weight_decay": 0.2,
                 "maximize": True}]

    kwargs = FULL_STATE[name]
    train(model, getattr(optim, name)(groups(model), **kwargs), nn.MSELoss(), nbgrad)
    train(reference, getattr(torch.optim, name)(groups(reference), **kwargs), torch.nn.MSELoss(),
          torch)
    assert_same_parameters(model, reference)


def test_custom_scheduler_subclass_as_torch():
    """A tutorial's own scheduler: a subclass of (the old name of) LRScheduler with get_lr."""
    rates = []
    for library in (nbgrad, torch):
        class Warmup(library.optim.lr_scheduler._LRScheduler):
            def get_lr(self):
                return [base * min(1.0, (self.last_epoch + 1) / 4) for base in self.base_lrs]

        optimizer = library.optim.SGD([library.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = Warmup(optimizer)
        seen = [scheduler.get_last_lr()[0]]
        for _ in range(6):
            optimizer.step()
            scheduler.step()
            seen.append(scheduler.get_last_lr()[0])
        rates.append(seen)
    assert rates[0] == rates[1]


def test_scheduler_errors_as_torch():
    def cases(lib):
        S = lib.optim.lr_scheduler
        o = lib.optim.SGD([lib.zeros(1, requires_grad=True)], lr=0.1)
        return [lambda: S.LinearLR(o, start_factor=0), lambda: S.LinearLR(o, end_factor=2),
                lambda: S.OneCycleLR(o, max_lr=1.0),
                lambda: S.OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="x"),
                lambda: S.OneCycleLR(o, 1.0, total_steps=10, pct_start=1),
                lambda: S.OneCycleLR(o, 1.0, total_steps=0),
                lambda: S.ReduceLROnPlateau(o, factor=1.0),
                lambda: S.ReduceLROnPlateau(o, mode="x"),
                lambda: S.ReduceLROnPlateau(o, threshold_mode="x"),
                lambda: S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[3]),
                lambda: S.LambdaLR(o, [lambda e: 1, lambda e: 1]),
                lambda: S.StepLR(lib.optim.SGD([lib.zeros(1, requires_grad=True)]), 2,
                                 last_epoch=3),
                lambda: S.StepLR("x", 2), lambda: S.ConstantLR(o, factor=2),
                lambda: S.MultiplicativeLR(o, 0.5),
                lambda: S.CosineAnnealingWarmRestarts(o, T_0=0),
                lambda: S.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0.5),
                lambda: S.ChainedScheduler([]),
                lambda: S.CyclicLR(o, 0.01, 0.1, mode="x"),
                lambda: S.CyclicLR(lib.optim.Adagrad([lib.zeros(1, requires_grad=True)]), 0.01, 0.1),
                lambda: S.CyclicLR(o, [0.01, 0.02], 0.1)]

    for ours, theirs in zip(cases(nbgrad), cases(torch)):
        with pytest.raises(Exception) as expected:
            theirs()
        with pytest.raises(type(expected.value)) as raised:
            ours()
        assert str(expected.value).startswith(str(raised.value).rstrip("'\""))


def test_scheduler_stepped_before_the_optimizer_warns_as_torch():
    for library in (nbgrad, torch):
        optimizer = library.optim.SGD([library.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = library.optim.lr_scheduler.StepLR(optimizer, 2)
        with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before "
                                             r"`optimizer.step\(\)`"):
            scheduler.step()
        optimizer.step()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scheduler.step()


def test_scheduler_step_with_an_epoch_uses_the_closed_form_as_torch():
    rates = []
    for library in (nbgrad, torch):
        optimizer = library.optim.SGD([library.zeros(1, requires_grad=True)], lr=0.1)
        S = library.optim.lr_scheduler
        schedulers = [S.StepLR(optimizer, 3), S.MultiStepLR(optimizer, [2, 5]),
                      S.ExponentialLR(optimizer, 0.9), S.LinearLR(optimizer),
                      S.CosineAnnealingLR(optimizer, 6),
                      S.LambdaLR(optimizer, lambda e: 1 / (e + 1)),
                      S.ConstantLR(optimizer, total_iters=3), S.PolynomialLR(optimizer, 9),
                      S.CosineAnnealingWarmRestarts(optimizer, T_0=2, T_mult=3)]
        optimizer.step()
        seen = []
        for scheduler in schedulers:
            for epoch in (4, 1, 7):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    scheduler.step(epoch)
                seen.append(scheduler.get_last_lr()[0])
                seen.append(any("The epoch parameter" in str(w.message) for w in caught))
        rates.append(seen)
    np.testing.assert_allclose(rates[0], rates[1], rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda p: nbgrad.optim.SGD(p, lr=0.1, differentiable=True),
    lambda p: nbgrad.optim.Adam(p, capturable=True),
    lambda p: nbgrad.optim.AdamW(p, differentiable=True),
    lambda p: nbgrad.optim.RMSprop(p, capturable=True),
    lambda p: nbgrad.optim.Adagrad(p, differentiable=True),
    lambda p: nbgrad.optim.Adamax(p, capturable=True),
    lambda p: nbgrad.optim.NAdam(p, differentiable=True),
    lambda p: nbgrad.optim.RAdam(p, capturable=True),
    lambda p: nbgrad.optim.Adadelta(p, differentiable=True),
    lambda p: nbgrad.optim.Rprop(p, capturable=True),
    lambda p: nbgrad.optim.ASGD(p, capturable=True),
])
def test_options_that_change_the_math_are_refused_not_ignored(make):
    with pytest.raises(NotImplementedError, match="is not supported"):
        make([nbgrad.zeros(2, requires_grad=True)])


def numpy_state_dict(state_dict):
    return {"state": {number: {key: value.numpy() for key, value in state.items()}
                      for number, state in state_dict["state"].items()},
            "param_groups": [{k: v for k, v in group.items() if k not in IMPLEMENTATION_OPTIONS}
                             for group in state_dict["param_groups"]]}


@pytest.mark.parametrize("name", list(FULL_STATE))
def test_state_dict_is_torchs_and_loads_torchs(name):
    """After 3 steps, state_dict() has torch's keys, values and options; an optimizer loaded
    from torch's state_dict then takes the same 3 further steps as torch."""
    kwargs = FULL_STATE[name]
    model, reference = make_models(np.float64)
    optimizer = getattr(optim, name)(model.parameters(), **kwargs)
    expected = getattr(torch.optim, name)(reference.parameters(), **kwargs)
    train(model, optimizer, nn.MSELoss(), nbgrad, steps=3, dtype=np.float64)
    train(reference, expected, torch.nn.MSELoss(), torch, steps=3, dtype=np.float64)
    ours, theirs = optimizer.state_dict(), numpy_state_dict(expected.state_dict())
    assert ours["param_groups"] == theirs["param_groups"]
    assert list(ours["state"]) == list(theirs["state"])
    for number, state in theirs["state"].items():
        assert sorted(ours["state"][number]) == sorted(state)
        for key, value in state.items():
            mine = ours["state"][number][key].numpy()
            assert mine.dtype == value.dtype, key
            np.testing.assert_allclose(mine, value, rtol=1e-12, err_msg=key)

    resumed, _ = make_models(np.float64)
    resumed.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    resumed_optimizer = getattr(optim, name)(resumed.parameters(), lr=0.5)
    resumed_optimizer.load_state_dict(theirs)
    train(resumed, resumed_optimizer, nn.MSELoss(), nbgrad, steps=3, dtype=np.float64)
    # (torch loaded too: loading casts NAdam's mu_product to the parameters' dtype)
    loaded = getattr(torch.optim, name)(reference.parameters(), lr=0.5)
    loaded.load_state_dict(expected.state_dict())
    train(reference, loaded, torch.nn.MSELoss(), torch, steps=3, dtype=np.float64)
    assert_same_parameters(resumed, reference, rtol=1e-12, atol=1e-14)


def _counters_under_float64_default(L, name, kwargs):
    """Under a float64 default dtype: the state after two steps of a float32 and a float64
    parameter, then the counters after loading a state_dict whose step is a number (and
    NAdam's mu_product a float32 tensor)."""
    L.set_default_dtype(L.float64)
    try:
        params = [L.nn.Parameter(L.tensor([0.5, -1.0, 2.0], dtype=dtype))
                  for dtype in (L.float32, L.float64)]
        optimizer = getattr(L.optim, name)(params, **kwargs)
        for _ in range(2):
            for param in params:
                param.grad = L.tensor([0.25, -0.5, 1.0], dtype=param.dtype)
            optimizer.step()
        states = [{key: value.detach().numpy().copy() for key, value in state.items()}
                  for state in optimizer.state_dict()["state"].values()]
        saved = optimizer.state_dict()
        for state in saved["state"].values():
            state["step"] = 3
            if "mu_product" in state:
                state["mu_product"] = L.tensor(0.5, dtype=L.float32)
        optimizer.load_state_dict(saved)
        loaded = [{key: optimizer.state[param][key].numpy().copy() for key in ("step", "mu_product")
                   if key in optimizer.state[param]} for param in params]
        return states, loaded
    finally:
        L.set_default_dtype(L.float32)


# (Every optimizer makes its counters by optimizer.counter: two of them stand for all, as
# each compiles its update kernel for float64 counters.)
@pytest.mark.parametrize("name", ["Adam", "NAdam"])
def test_counters_take_the_default_dtype_as_torch(name):
    """Step counters (and NAdam's mu_product) are float64 tensors under a float64 default
    dtype, whatever the parameter's dtype, as torch's; loaded, a number becomes one too."""
    kwargs = FULL_STATE.get(name, {})
    ours, theirs = (_counters_under_float64_default(L, name, kwargs) for L in (nbgrad, torch))
    for our_states, their_states in zip(ours, theirs):
        for mine, expected in zip(our_states, their_states):
            assert sorted(mine) == sorted(expected)
            for key, value in expected.items():
                assert mine[key].dtype == value.dtype, key
                np.testing.assert_allclose(mine[key], value, rtol=1e-6 if value.dtype == np.float32
                                           else 1e-12, err_msg=key)


def test_adagrad_state_exists_before_the_first_step_as_in_torch():
    param = nbgrad.zeros(3, requires_grad=True)
    state = optim.Adagrad([param], initial_accumulator_value=0.25).state_dict()["state"]
    assert list(state) == [0] and float(state[0]["step"]) == 0.0
    np.testing.assert_array_equal(state[0]["sum"].numpy(), [0.25] * 3)


class Optimizers:
    """Several optimizers seen as one (the optimizer of a `Pair` setup)."""

    def __init__(self, optimizers):
        self.optimizers = optimizers

    @property
    def state(self):
        return {p: s for optimizer in self.optimizers for p, s in optimizer.state.items()}

    @property
    def param_groups(self):
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self):
        for optimizer in self.optimizers:
            optimizer.zero_grad()

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()


def test_new_optimizers_fuse_and_the_fused_step_equals_eager():
    """One compiled step updating a parameter by each new optimizer (with all its state): one
    fused kernel for all of them (so one compile), equal to eager after every call, with
    schedulers changing rates, momentum and betas between calls."""
    def build():
        params = [nbgrad.randn(6, 4, requires_grad=True) for _ in FULL_STATE]
        optimizers = Optimizers([getattr(optim, name)([param], **kwargs)
                                 for param, (name, kwargs) in zip(params, FULL_STATE.items())])
        rmsprop, adagrad, adamax, nadam, radam, adadelta, rprop, asgd = optimizers.optimizers
        schedulers = optim.lr_scheduler
        optimizers.schedulers = [schedulers.OneCycleLR(rmsprop, max_lr=0.05, total_steps=10),
                                 schedulers.ExponentialLR(adagrad, gamma=0.8),
                                 schedulers.MultiStepLR(adamax, milestones=[2, 4]),
                                 schedulers.OneCycleLR(nadam, max_lr=0.05, total_steps=10,
                                                       three_phase=True),
                                 schedulers.LinearLR(radam, total_iters=4),
                                 schedulers.StepLR(adadelta, step_size=2),
                                 schedulers.StepLR(asgd, step_size=3)]
        return params, optimizers

    def make_step(s):
        def step(x, y):
            s.opt.zero_grad()
            loss = sum(F.mse_loss((x @ param).tanh(), y) for param in s.params)
            loss.backward()
            s.opt.step()
            return loss
        return step

    def step_schedulers(s):
        for scheduler in s.opt.schedulers:
            scheduler.step()

    rng = np.random.default_rng(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for call in range(8):
            pair(*(nbgrad.tensor(rng.standard_normal(shape).astype(np.float32))
                   for shape in ((5, 6), (5, 4))), before=step_schedulers if call else None)
    assert nbgrad_warnings(caught) == []
    stats = pair.compiled.stats
    assert (stats["specializations"], stats["fused_calls"], stats["eager_calls"]) == (1, 7, 1)
    source = pair.compiled.source
    for name in FULL_STATE:
        assert f"{name} update of 1 parameter(s) by its eager kernel" in source
        assert f"call_{name.lower()}_update = unlinked(" in source


def test_a_scheduler_stepped_inside_a_compiled_step_runs_it_eagerly():
    """The fused step would not run the scheduler's Python again: the step runs eagerly, with
    a warning that says to step the scheduler outside."""
    def build():
        w = nbgrad.randn(6, 4, requires_grad=True)
        optimizer = optim.SGD([w], lr=0.1, momentum=0.9)
        return [w], optimizer, optim.lr_scheduler.OneCycleLR(optimizer, 0.5, total_steps=10)

    def make_step(s):
        def step(x):
            s.opt.zero_grad()
            loss = (x @ s.params[0]).tanh().sum()
            loss.backward()
            s.opt.step()
            s.sched.step()
            return loss
        return step

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(3):
            pair(nbgrad.ones(5, 6))
    assert pair.compiled.stats["fused_calls"] == 0
    assert [message.split(" (at ")[0] for message in nbgrad_warnings(caught)] == [
        "nbgrad.compile: running the step eagerly: an lr_scheduler steps inside the step (call "
        "scheduler.step() outside the compiled step)"]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_nan_and_inf_gradients_update_as_torch(name):
    """Gradients holding NaN, inf, -inf and zeros, element by element as torch (Rprop's
    sign of NaN is 0: those elements do not move)."""
    nb_class, torch_class, kwargs = OPTIMIZERS[name]
    start = np.linspace(-1.0, 1.0, 8)
    gradients = [[1.0, np.nan, -1.0, 0.0, np.inf, 2.0, -np.inf, 0.5],
                 [np.nan, 1.0, np.inf, -0.0, 1.0, -2.0, 1.0, np.nan],
                 [-1.0, 1.0, 1.0, np.nan, -np.inf, 0.5, 0.0, 1.0]]
    results = []
    for library, optimizer_class in ((nbgrad, nb_class), (torch, torch_class)):
        param = library.tensor(start.copy(), requires_grad=True)
        optimizer = optimizer_class([param], **kwargs)
        for gradient in gradients:
            param.grad = library.tensor(gradient, dtype=param.dtype)
            optimizer.step()
        results.append(param.detach().numpy().copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_assigned_grad_of_another_dtype_or_size_raises_torchs_error():
    from conftest import assert_same_error

    def assign(grad):
        def make(L):
            p = L.zeros(2, 3, dtype=L.float64, requires_grad=True)
            p.grad = grad(L)
        return make

    assert_same_error(assign(lambda L: L.zeros(2, 3)))
    assert_same_error(assign(lambda L: L.zeros(2, 3, dtype=L.int64)))
    assert_same_error(assign(lambda L: L.zeros(3, 2, dtype=L.float64)))
