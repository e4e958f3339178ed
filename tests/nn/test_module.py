"""nn.Module's own behaviour against torch.nn.Module: where a re-assigned name goes in the
registries (and so in `named_parameters()` and `state_dict()`), registration errors, the
repr of nested models, and casts of parameters and buffers (half, bfloat16, float, double,
type, to)."""
import copy
import pickle
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn


def _attempt(call):
    try:
        call()
        return "ok"
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"


def _as_text(items):
    """Text both libraries print alike: their names and their modules' paths made one (and
    torch's nn.Buffer, which nbgrad does not have, left out)."""
    text = str(items).replace("torch.nn.Buffer, ", "").replace("torch.nn.modules.linear.", "").replace("nbgrad.nn.layers.", "")
    return text.replace("torch", "LIBRARY").replace("nbgrad", "LIBRARY")


def _registration_session(L):
    """The same assignments, registrations and deletions on either library's module: the
    registries' orders and the errors, as text."""
    nn = L.nn
    model = nn.Module()
    model.a, model.b, model.c = nn.Linear(2, 2), nn.Linear(2, 3), nn.Linear(3, 1)
    model.p, model.q = nn.Parameter(L.zeros(1)), nn.Parameter(L.zeros(1))
    model.register_buffer("x", L.zeros(1))
    model.register_buffer("y", L.zeros(1))
    model.register_buffer("hidden", L.zeros(1), persistent=False)
    seen = []

    def registries():
        seen.append([list(model._parameters), list(model._buffers), list(model._modules),
                     [name for name, _ in model.named_parameters()], list(model.state_dict())])

    # A new value for a registered name keeps its place.
    model.a = nn.Linear(2, 5)
    model.p = nn.Parameter(L.ones(1))
    model.x = L.ones(1)
    model.register_buffer("y", L.ones(2))
    model.register_parameter("q", nn.Parameter(L.ones(2)))
    model.add_module("b", nn.Linear(1, 1))
    model.register_module("c", nn.Linear(1, 1))
    registries()
    # None keeps the place too, and so does a value after None.
    model.q, model.c, model.y = None, None, None
    registries()
    model.q, model.c, model.y = nn.Parameter(L.ones(1)), nn.Linear(1, 1), L.ones(1)
    registries()
    # After del, or in another registry, the name goes to the end.
    del model.a
    model.a = nn.Linear(1, 1)
    model.b = nn.Parameter(L.ones(1))  # a module's name becomes a parameter's
    model.y = nn.Parameter(L.ones(1))  # a buffer's name too
    model.x = nn.Linear(1, 1)  # a buffer's name becomes a module's
    model.hidden = nn.Parameter(L.ones(1))  # no longer a non-persistent buffer
    model.register_buffer("hidden2", L.ones(1), persistent=False)
    model.hidden2 = L.zeros(1)  # stays non-persistent
    model.plain = 3
    model.plain = nn.Parameter(L.ones(1))  # a plain attribute's name becomes a parameter's
    registries()
    seen.append(sorted(model._non_persistent_buffers if L is nbgrad
                       else model._non_persistent_buffers_set))
    model.other = 3
    for call in (lambda: setattr(model, "p", nn.Linear(1, 1)),
                 lambda: setattr(model, "p", L.ones(1)),
                 lambda: setattr(model, "c", L.ones(1)),
                 lambda: setattr(model, "c", 3),
                 lambda: setattr(model, "hidden2", 3),
                 lambda: model.register_buffer("other", L.ones(1)),
                 lambda: model.register_parameter("other", nn.Parameter(L.ones(1))),
                 lambda: model.add_module("other", nn.Linear(1, 1)),
                 lambda: model.add_module("p", nn.Linear(1, 1)),
                 lambda: model.register_buffer("p", L.ones(1)),
                 lambda: model.register_parameter("hidden2", nn.Parameter(L.ones(1))),
                 lambda: model.register_parameter("training", None),
                 lambda: model.register_buffer("forward", None),
                 lambda: model.register_parameter("w", L.ones(1)),
                 lambda: model.register_buffer("w", 3),
                 lambda: model.add_module("w", 3)):
        seen.append(_attempt(call))
    for name in ("a.b", "", 3):
        seen += [_attempt(lambda: model.register_buffer(name, None)),
                 _attempt(lambda: model.register_parameter(name, None)),
                 _attempt(lambda: model.add_module(name, None))]
    registries()
    return _as_text(seen)


def test_registration_keeps_places_as_torch():
    assert _registration_session(nbgrad) == _registration_session(torch)


def test_replacing_a_layer_keeps_the_state_dict_order():
    """The fine-tuning idiom: a new head keeps its place, so a checkpoint's order holds."""
    def names(L):
        model = L.nn.Sequential(L.nn.Linear(4, 8), L.nn.ReLU(), L.nn.Linear(8, 3))
        model.body = L.nn.Linear(3, 3)
        model.body = L.nn.Linear(3, 2)
        model.add_module("0", L.nn.Linear(4, 8))
        setattr(model, "2", L.nn.Linear(8, 2))
        return [name for name, _ in model.named_parameters()], list(model.state_dict())
    assert names(nbgrad) == names(torch)


# --- repr -------------------------------------------------------------------------------

def _models(L):
    nn = L.nn

    class Multi(nn.Module):
        def __init__(self, children):
            super().__init__()
            if children:
                self.inner = nn.Sequential(nn.Linear(1, 1), nn.Sequential())
                self.heads = nn.ModuleDict({"a": nn.ModuleList([nn.ReLU(), nn.ReLU()]),
                                            "b": nn.ModuleList()})

        def extra_repr(self):
            return "first=1,\nsecond=2\n\nafter_a_blank=3"

    class Empty(nn.Module):
        pass

    return [nn.Sequential(),
            nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.25),
                          nn.Sequential(nn.Linear(8, 8, bias=False), nn.Sequential(),
                                        nn.Sequential(nn.Tanh())), nn.Linear(8, 2)),
            Multi(False), Multi(True), nn.Sequential(Multi(True), Empty()), Empty()]


def test_reprs_match_torch():
    for model, reference in zip(_models(nbgrad), _models(torch)):
        assert repr(model) == repr(reference)


# --- casts ----------------------------------------------------------------------------------

def _model(L):
    """A Linear and a module with a float buffer, an integer buffer and no parameters (and
    no forward: call model[0])."""
    nn = L.nn
    model = nn.Sequential(nn.Linear(3, 2), nn.Module())
    model[1].register_buffer("scale", L.full((2,), 1 / 3, dtype=L.float64))
    model[1].register_buffer("count", L.tensor([7]))
    return model


def _dtypes(model):
    return {name: str(tensor.dtype).split(".")[1] for name, tensor in model.state_dict().items()}


def _cast_session(L):
    """Each cast from float32 on either library: the dtypes, the parameters' requires_grad
    flags, and whether a parameter stays the same object (optimizers hold it)."""
    seen = []
    casts = [lambda m: m.half(), lambda m: m.bfloat16(), lambda m: m.double(),
             lambda m: m.float(), lambda m: m.type(L.float64), lambda m: m.type(L.float16),
             lambda m: m.type("torch.DoubleTensor"), lambda m: m.to(L.float64),
             lambda m: m.to("cpu", L.float16), lambda m: m.to(L.ones(1, dtype=L.float64))]
    for cast in casts:
        model = _model(L)
        weight = model[0].weight
        assert cast(model) is model
        seen.append([_dtypes(model), model[0].weight is weight])
    seen.append(_attempt(lambda: _model(L).to(L.int64)))
    # Integer types only once nothing requires grad, and then integer buffers too.
    model = _model(L)
    seen.append(_attempt(lambda: model.type(L.int32)))
    seen.append(_dtypes(model))  # unchanged
    seen.append([_dtypes(model.requires_grad_(False).type(L.int32))])
    return seen


def test_casts_match_torch():
    assert _cast_session(nbgrad) == _cast_session(torch)


def test_cast_values_and_grads_match_torch():
    """Values round as torch's (float64 to float16 goes through float32) and a gradient
    follows its parameter's dtype."""
    models = [_model(nbgrad), _model(torch)]
    models[0][0].load_state_dict({k: v.detach().numpy() for k, v in models[1][0].state_dict().items()})
    for model, L in zip(models, (nbgrad, torch)):
        model[0](L.ones(1, 3)).sum().backward()
        model.double().bfloat16()
    for (name, mine), theirs in zip(models[0].state_dict().items(),
                                    models[1].state_dict().values()):
        np.testing.assert_array_equal(mine.float().numpy(), theirs.float().numpy(), name)
    assert models[0][0].weight.grad.dtype == nbgrad.bfloat16
    np.testing.assert_array_equal(models[0][0].weight.grad.float().numpy(),
                                  models[1][0].weight.grad.float().numpy())


def test_load_state_dict_into_a_half_model_rounds_as_torch():
    """float64 values go to float16 through float32 (a tie after the first rounding), and an
    overflow is inf without a NumPy warning."""
    values = [[1 + 2**-11 + 2**-40, 1 + 2**-11, 0.1, 70000.0]]
    loaded = []
    for L in (nbgrad, torch):
        model = L.nn.Linear(4, 1).half()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.load_state_dict({"weight": L.tensor(values, dtype=L.float64),
                                   "bias": L.zeros(1, dtype=L.float64)})
        loaded.append(model.weight.detach().float().numpy())
    np.testing.assert_array_equal(*loaded)


def test_half_model_runs_inference_and_trains_again_after_float():
    """NOTE (nbgrad only): in float16 a parameter cannot require grad, so `half()` sets the
    requirement aside; `float()` brings it back, as torch's parameters never lost it."""
    model = _model(nbgrad)
    optimizer = nbgrad.optim.SGD(model.parameters(), lr=0.1)
    model.half()
    assert not any(p.requires_grad for p in model.parameters())
    with nbgrad.no_grad():
        assert model[0](nbgrad.ones(2, 3, dtype=nbgrad.float16)).dtype == nbgrad.float16
    output = model[0](nbgrad.ones(2, 3, dtype=nbgrad.float16))  # grad mode on: still runs
    assert not output.requires_grad
    with pytest.raises(RuntimeError, match="nbgrad computes no gradients in float16"):
        model.requires_grad_(True)
    clone = pickle.loads(pickle.dumps(model))
    twin = copy.deepcopy(model)
    for each in (model, clone, twin):
        each.float()
        assert all(p.requires_grad and p.dtype == nbgrad.float32 for p in each.parameters())
    model[0](nbgrad.ones(2, 3)).sum().backward()
    before = model[0].bias.detach().clone()
    optimizer.step()  # the optimizer holds the same parameters
    assert not np.array_equal(before.numpy(), model[0].bias.detach().numpy())
    # Frozen by the user while in float16: float() leaves it frozen.
    model.bfloat16()
    model[0].weight.requires_grad_(False)
    model.double()
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad


def test_half_parameter_cannot_require_grad():
    """torch makes a float16 Parameter that requires grad; nbgrad could not compute its
    gradient, so asking for one is an error, and an integer one is torch's error."""
    half = nbgrad.ones(2, dtype=nbgrad.float16)
    with pytest.raises(RuntimeError, match="nbgrad computes no gradients in float16"):
        nn.Parameter(half)
    with pytest.raises(RuntimeError, match="nbgrad computes no gradients in bfloat16"):
        nn.Parameter(half.to(nbgrad.bfloat16))
    frozen = nn.Parameter(half, requires_grad=False)
    assert frozen.dtype == nbgrad.float16 and not frozen.requires_grad
    for L in (nbgrad, torch):
        with pytest.raises(RuntimeError, match="(?i)only Tensors of floating point"):
            L.nn.Parameter(L.ones(2, dtype=L.int64))
        assert not L.nn.Parameter(L.ones(2, dtype=L.int64), requires_grad=False).requires_grad


def test_half_cast_of_a_buffer_that_requires_grad_is_an_error():
    model = nn.Module()
    model.register_buffer("state", nbgrad.ones(2, requires_grad=True))
    with pytest.raises(RuntimeError, match="nbgrad computes no gradients in float16"):
        model.half()
    assert model.state.dtype == nbgrad.float32


def _sequential_session(L):
    """Sequential's list protocol (by position, whatever the names), its joins and repeats,
    and the dotted lookups, on either library: the reprs and errors, as text."""
    nn = L.nn
    from collections import OrderedDict

    def three():
        return nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())

    def named():
        return nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", nn.Tanh()), ("c", nn.Sigmoid())]))

    seen = []
    for call in (lambda: three().insert(1, nn.Identity()), lambda: three().insert(-1, nn.Identity()),
                 lambda: three().insert(3, nn.Identity()), lambda: three().insert(5, nn.Identity()),
                 lambda: three().extend([nn.ELU()]), lambda: three() + named(), lambda: 2 * named(),
                 lambda: three() * 0, lambda: three() * 1.5, lambda: three() + [nn.ReLU()],
                 lambda: named()[-1], lambda: named()[3], lambda: named()[1:],
                 lambda: named().get_submodule("b"), lambda: named().get_submodule("z"),
                 lambda: nn.Sequential(nn.Linear(1, 1)).get_submodule("0.weight"),
                 lambda: tuple(nn.Sequential(nn.Linear(1, 2)).get_parameter("0.weight").shape),
                 lambda: nn.Sequential(nn.BatchNorm1d(2)).get_parameter("0.running_mean"),
                 lambda: nn.Sequential(nn.BatchNorm1d(2)).get_parameter("0.foo"),
                 lambda: nn.Sequential(nn.BatchNorm1d(2)).get_buffer("0.running_var"),
                 lambda: nn.Sequential(nn.BatchNorm1d(2)).get_buffer("0.weight"),
                 lambda: [n for n in ("weight", "running_mean", "0") if n in dir(nn.BatchNorm1d(2))],
                 lambda: [n for n in ("0", "a") if n in dir(named()) + dir(three())]):
        try:
            seen.append(repr(call()))
        except Exception as error:  # noqa: BLE001
            seen.append(f"{type(error).__name__}: {error}")
    # (torch's *= reads the names "0", "1", ...: a KeyError on a named Sequential)
    for make, edit in ((named, lambda m: m.__delitem__(1)),
                       (named, lambda m: m.__delitem__(slice(0, 2))),
                       (named, lambda m: m.__setitem__(-1, nn.ELU())), (named, lambda m: m.pop(0)),
                       (named, lambda m: m.__iadd__(three())), (three, lambda m: m.__imul__(2))):
        model = make()
        edit(model)
        seen.append(repr(model))
    text = "\n".join(seen).replace("torch.nn.modules.container.", "").replace("nbgrad.nn.layers.", "")
    return text.replace("torch.nn.modules.module.", "").replace("nbgrad.nn.module.", "")


def test_sequential_and_lookups_match_torch():
    assert _sequential_session(nbgrad) == _sequential_session(torch)
