"""nbgrad.nn.utils against torch.nn.utils: clip_grad_norm_ (every norm type, the returned
total norm, non-finite gradients), clip_grad_value_, parameters_to_vector and
vector_to_parameters; and a compiled step that clips (run eagerly, for now)."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn, optim
from conftest import Pair, mlp, nbgrad_warnings, regression_batch
from test_optim import assert_same_parameters, batch, make_models


def gradient_pairs(dtype=np.float32, nonfinite=False):
    """Three parameters with gradients (the last one without), in nbgrad and in torch."""
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    values = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    grads = [rng.standard_normal(shape).astype(dtype) * 3 for shape in shapes]
    if nonfinite:
        grads[1][2] = np.nan
    ours, theirs = [], []
    for value, grad in zip(values, grads):
        ours.append(nn.Parameter(nbgrad.tensor(value)))
        ours[-1].grad = nbgrad.tensor(grad)
        theirs.append(torch.nn.Parameter(torch.tensor(value)))
        theirs[-1].grad = torch.tensor(grad)
    ours.append(nn.Parameter(nbgrad.ones(2)))
    theirs.append(torch.nn.Parameter(torch.ones(2)))
    return ours, theirs


def assert_same_grads(ours, theirs, rtol=1e-6):
    for mine, expected in zip(ours, theirs):
        assert (mine.grad is None) == (expected.grad is None)
        if expected.grad is not None:
            np.testing.assert_allclose(mine.grad.numpy(), expected.grad.numpy(), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_matches_torch(dtype):
    """Each norm type, a max_norm that clips and one that does not: the same total norm
    (dtype included) and the same gradients."""
    for norm_type in (2.0, 1, 3.5, float("inf"), "inf", 0.5):
        for max_norm in (0.5, 1e6):
            ours, theirs = gradient_pairs(dtype)
            total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
            expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
            assert isinstance(total, nbgrad.Tensor) and total.shape == ()
            assert str(total.dtype) == str(expected.dtype).replace("torch", "nbgrad")
            np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-6)
            assert_same_grads(ours, theirs)


def test_clip_grad_norm_forms():
    """One tensor, a generator, a deprecated alias, no gradients at all."""
    ours, theirs = gradient_pairs()
    total = nn.utils.clip_grad_norm_(ours[0], 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs[0], 1.0)
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-6)
    total = nn.utils.clip_grad_norm_((p for p in ours), 0.1)
    expected = torch.nn.utils.clip_grad_norm_((p for p in theirs), 0.1)
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-6)
    assert_same_grads(ours, theirs)
    with pytest.warns(FutureWarning, match="clip_grad_norm_"):
        nn.utils.clip_grad_norm(ours, 1.0)
    empty = nn.utils.clip_grad_norm_([ours[-1]], 1.0)
    assert empty.item() == 0.0 and empty.dtype == nbgrad.float32
    with pytest.warns(UserWarning, match="empty generator"):
        nn.utils.clip_grad_norm_((p for p in []), 1.0)


def test_clip_grad_norm_of_nonfinite_gradients():
    ours, theirs = gradient_pairs(nonfinite=True)
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from "
                                           "`parameters` is non-finite"):
        nn.utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    assert_same_grads(ours, theirs)  # untouched
    total = nn.utils.clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert np.isnan(total.item()) and np.isnan(expected.item())
    for mine, reference in zip(ours[:3], theirs[:3]):
        np.testing.assert_array_equal(np.isnan(mine.grad.numpy()),
                                      np.isnan(reference.grad.numpy()))


def test_clip_grad_value_matches_torch():
    ours, theirs = gradient_pairs()
    assert nn.utils.clip_grad_value_(ours, 1.5) is None
    torch.nn.utils.clip_grad_value_(theirs, 1.5)
    assert_same_grads(ours, theirs)
    nn.utils.clip_grad_value_(ours[0], 0.25)
    torch.nn.utils.clip_grad_value_(theirs[0], 0.25)
    assert_same_grads(ours, theirs)


def test_parameters_to_vector_and_back():
    ours, theirs = gradient_pairs()
    vector = nn.utils.parameters_to_vector(ours)
    expected = torch.nn.utils.parameters_to_vector(theirs)
    np.testing.assert_array_equal(vector.detach().numpy(), expected.detach().numpy())
    assert vector.grad_fn.name() == expected.grad_fn.name() == "CatBackward0"
    (vector * nbgrad.arange(vector.numel())).sum().backward()
    (expected * torch.arange(expected.numel())).sum().backward()
    assert_same_grads(ours, theirs)

    new = np.linspace(-1, 1, vector.numel()).astype(np.float32)
    nn.utils.vector_to_parameters(nbgrad.tensor(new), ours)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs)
    for mine, reference in zip(ours, theirs):
        np.testing.assert_array_equal(mine.detach().numpy(), reference.detach().numpy())
        assert mine.shape == reference.shape and mine.requires_grad
    with pytest.raises(TypeError, match="expected torch.Tensor, but got: list"):
        nn.utils.vector_to_parameters([1.0], ours)


@pytest.mark.parametrize("clip", ["clip_grad_norm_", "clip_grad_value_"])
def test_training_loop_that_clips_matches_torch(clip):
    """12 steps (past the deferred mode's FUSE_AFTER) of SGD with clipping after backward."""
    model, reference = make_models()
    norms = []
    for library, net in ((nbgrad, model), (torch, reference)):
        optimizer = library.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
        x, y = (library.tensor(value) for value in batch())
        loss_fn = (nn if library is nbgrad else torch.nn).MSELoss()
        for _ in range(12):
            optimizer.zero_grad()
            loss_fn(net(x), y).backward()
            total = getattr(library.nn.utils, clip)(net.parameters(), 0.1 if "norm" in clip
                                                    else 0.01)
            norms.append(None if total is None else total.item())
            optimizer.step()
    np.testing.assert_allclose(np.array(norms[:12], float), np.array(norms[12:], float),
                               rtol=1e-5)
    assert_same_parameters(model, reference)


@pytest.mark.parametrize("clip", ["clip_grad_norm_", "clip_grad_value_"])
def test_compiled_step_that_clips_runs_it_eagerly(clip):
    """PyTorch's training step, clipping between backward and the optimizer: it runs eagerly
    (a fused step does not yet follow in-place changes of .grad), equal to eager."""
    def build():
        model = mlp((64, 16, 10))
        return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.5)

    def make_step(s):
        loss_fn = nn.MSELoss()

        def step(x, y):
            s.opt.zero_grad()
            loss = loss_fn(s.model(x), y)
            loss.backward()
            total = getattr(nn.utils, clip)(s.model.parameters(), 0.01)
            s.opt.step()
            return loss, total
        return step

    rng = np.random.default_rng(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for _ in range(4):
            pair(*regression_batch(rng))
    assert pair.compiled.stats["fused_calls"] == 0
    assert [message.split(" (at ")[0] for message in nbgrad_warnings(caught)] == [
        f"nbgrad.compile: running the step eagerly: {clip} changes .grad in place, which a "
        "fused step does not follow"]


def _weight_norm_run(L, make, dim, dtype):
    """weight_norm on a seeded layer: its parameters, three SGD steps (the hook recomputes the
    weight before each forward), then remove_weight_norm and one more forward."""
    L.manual_seed(0)
    layer = make(L).to(getattr(L, np.dtype(dtype).name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        L.nn.utils.weight_norm(layer, dim=dim)
    x = L.from_numpy(np.random.default_rng(1).standard_normal(
        (2, 3, 5) if isinstance(layer, L.nn.Conv1d) else (4, 3)).astype(dtype))
    names = [name for name, _ in layer.named_parameters()]
    optimizer = L.optim.SGD(layer.parameters(), lr=0.1)
    outputs = []
    for _ in range(3):
        optimizer.zero_grad()
        out = layer(x)
        out.pow(2).sum().backward()
        optimizer.step()
        outputs += [out.detach().numpy().copy(), layer.weight_g.grad.numpy().copy(),
                    layer.weight_v.grad.numpy().copy()]
    L.nn.utils.remove_weight_norm(layer)
    outputs += [layer(x).detach().numpy(), layer.weight.detach().numpy()]
    return (names, [name for name, _ in layer.named_parameters()],
            [type(w.message).__name__ for w in caught], isinstance(layer.weight, L.nn.Parameter),
            list(layer.state_dict())), outputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, dim", [
    (lambda L: L.nn.Linear(3, 2), 0), (lambda L: L.nn.Linear(3, 2), None),
    (lambda L: L.nn.Conv1d(3, 4, 2), 1), (lambda L: L.nn.Conv1d(3, 4, 2), 2)])
def test_weight_norm_matches_torch(make, dim, dtype):
    (facts, values), (expected_facts, expected) = (
        _weight_norm_run(L, make, dim, dtype) for L in (nbgrad, torch))
    assert facts == expected_facts
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(values, expected, strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=tolerance, atol=tolerance)


def test_weight_norm_errors_match_torch():
    for L in (nbgrad, torch):
        layer = L.nn.Linear(2, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.nn.utils.weight_norm(layer)
            with pytest.raises(RuntimeError, match="Cannot register two weight_norm hooks on the "
                                                   "same parameter weight"):
                L.nn.utils.weight_norm(layer)
        with pytest.raises(ValueError, match="weight_norm of 'bias' not found in Linear"):
            L.nn.utils.remove_weight_norm(layer, "bias")
