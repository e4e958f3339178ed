"""nbgrad.distributions against torch.distributions: samples (the same numbers after the same
seed), log_prob, entropy, statistics, KL divergences and their gradients (float32 and
float64, and a float64 gradcheck), validation errors and reprs, and training steps that
sample (REINFORCE, a VAE's reparameterized step) run eagerly, in the deferred loop and under
nbgrad.compile."""
import math
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import TOL, assert_close

DTYPES = ("float32", "float64")

# name -> (distribution from the library's `distributions` and the parameters, parameters as
# arrays (positive: drawn in (0.5, 2); "probs": rows of probabilities; "unit": in (0.1, 0.9);
# "real": anything), a value in the support (sample shape (3,)), batch shape (2, 3) or (2,)).
REAL = np.array([[[0.3, -1.2, 2.0], [0.0, 0.7, -0.4]]] * 3) * np.array([1, 0.5, -2])[:, None, None]
POSITIVE = np.abs(REAL) + 0.1
UNIT = np.array([[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], [[1, 1, 0], [0, 1, 1]], [[0, 0, 0], [1, 1, 1]]])
INDICES = np.array([[2, 0], [1, 1], [0, 2]])
ONE_HOT = np.eye(3)[INDICES]


def _params(rng, kinds):
    made = {"real": lambda: rng.normal(size=(2, 3)), "positive": lambda: rng.uniform(0.5, 2, (2, 3)),
            "unit": lambda: rng.uniform(0.1, 0.9, (2, 3)),
            "probs": lambda: rng.dirichlet(np.ones(3), size=2), "low": lambda: rng.uniform(-1, 0, (2, 3)),
            "high": lambda: rng.uniform(2.5, 3, (2, 3))}
    return [made[kind]() for kind in kinds]


CASES = {
    "normal": (lambda D, loc, scale: D.Normal(loc, scale), ("real", "positive"), REAL),
    "uniform": (lambda D, low, high: D.Uniform(low, high), ("low", "high"), POSITIVE.clip(max=2.4)),
    "exponential": (lambda D, rate: D.Exponential(rate), ("positive",), POSITIVE),
    "laplace": (lambda D, loc, scale: D.Laplace(loc, scale), ("real", "positive"), REAL),
    "bernoulli_probs": (lambda D, p: D.Bernoulli(probs=p), ("unit",), UNIT),
    "bernoulli_logits": (lambda D, x: D.Bernoulli(logits=x), ("real",), UNIT),
    "categorical_probs": (lambda D, p: D.Categorical(probs=p), ("probs",), INDICES),
    "categorical_logits": (lambda D, x: D.Categorical(logits=x), ("real",), INDICES),
    "one_hot_probs": (lambda D, p: D.OneHotCategorical(probs=p), ("probs",), ONE_HOT),
    "one_hot_logits": (lambda D, x: D.OneHotCategorical(logits=x), ("real",), ONE_HOT),
    "one_hot_straight_through": (lambda D, x: D.OneHotCategoricalStraightThrough(logits=x), ("real",),
                                 ONE_HOT),
    "independent_normal": (lambda D, loc, scale: D.Independent(D.Normal(loc, scale), 1),
                           ("real", "positive"), REAL),
    "independent_bernoulli": (lambda D, p: D.Independent(D.Bernoulli(p), 2), ("unit",), UNIT),
}
STATISTICS = ("mean", "variance", "stddev", "mode")


def _library(name):
    return torch if name == "torch" else nbgrad


def _build(L, case, dtype, seed=0, requires_grad=False):
    make, kinds, _ = CASES[case]
    params = [L.tensor(a, dtype=getattr(L, dtype), requires_grad=requires_grad)
              for a in _params(np.random.default_rng(seed), kinds)]
    return make(L.distributions, *params), params


def _outcome(fn):
    """fn()'s value, or the type and message of what it raises."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001  (compared with torch's)
        return type(error), str(error).replace("nbgrad.", "torch.")


def _same(actual, expected, dtype="float64"):
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, nbgrad.Tensor), actual
        assert_close(actual, expected, dtype=dtype)
    else:
        assert actual == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_samples_are_torchs_after_the_same_seed(case, dtype):
    for sample_shape in ((), (4,), (2, 5)):
        drawn = {}
        for name in ("torch", "nbgrad"):
            L = _library(name)
            dist, _ = _build(L, case, dtype)
            L.manual_seed(3)
            samples = [dist.sample(sample_shape)]
            if dist.has_rsample:
                samples.append(dist.rsample(sample_shape))
            samples.append(dist.expand((4,) + tuple(dist.batch_shape)).sample())
            drawn[name] = [s.numpy() for s in samples]
        for actual, expected in zip(drawn["nbgrad"], drawn["torch"]):
            assert actual.dtype == expected.dtype and actual.shape == expected.shape
            if case == "laplace":
                # NOTE: the same uniforms, but PyTorch's log1p (SLEEF's, vectorized) and
                # nbgrad's differ in the last bit on some values
                np.testing.assert_allclose(actual, expected, *TOL[dtype])
            else:
                np.testing.assert_array_equal(actual, expected)


def test_scalar_parameters_and_one_sample_draw_torchs_numbers():
    """Fewer than 16 normal values take PyTorch's scalar Box-Muller path; numbers give 0-d
    tensors of the default dtype."""
    def draws(L):
        D = L.distributions
        L.manual_seed(0)
        return [D.Normal(0.0, 1.0).sample(), D.Normal(1.0, 2.0).rsample((3,)), D.Uniform(-1.0, 1.0).sample((2,)),
                D.Exponential(1.5).sample(), D.Laplace(0.0, 1.0).rsample((5,)), D.Bernoulli(0.3).sample((6,)),
                D.Categorical(L.tensor([0.2, 0.8])).sample((7,)), D.Normal(L.zeros(20), 1.0).sample()]
    for actual, expected in zip(draws(nbgrad), draws(torch)):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
        assert actual.numpy().dtype == expected.numpy().dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_log_prob_entropy_statistics_and_gradients_match_torch(case, dtype):
    value = CASES[case][2]
    results = {}
    for name in ("torch", "nbgrad"):
        L = _library(name)
        dist, params = _build(L, case, dtype, requires_grad=True)
        x = L.tensor(value, dtype=L.int64 if case.startswith("categorical") else getattr(L, dtype))
        log_prob = dist.log_prob(x)
        entropy = _outcome(dist.entropy)
        values = [dist.batch_shape, dist.event_shape, log_prob, entropy,
                  *(_outcome(lambda s=s: getattr(dist, s)) for s in STATISTICS),
                  _outcome(lambda: dist.cdf(x[0])), _outcome(lambda: dist.enumerate_support()),
                  _outcome(lambda: dist.enumerate_support(expand=False)), dist.has_rsample,
                  dist.has_enumerate_support, repr(dist).replace("nbgrad.", "torch."),
                  _outcome(dist.perplexity)]
        loss = log_prob.sum() + (entropy.sum() if isinstance(entropy, L.Tensor) else 0)
        if dist.has_rsample:
            L.manual_seed(1)
            loss = loss + (dist.rsample((2,)) ** 2).sum()
        loss.backward()
        results[name] = values + [p.grad for p in params]
    assert len(results["nbgrad"]) == len(results["torch"])
    for actual, expected in zip(results["nbgrad"], results["torch"]):
        _same(actual, expected, dtype)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck(case):
    make, kinds, value = CASES[case]
    D = nbgrad.distributions
    x = nbgrad.tensor(value, dtype=nbgrad.int64 if case.startswith("categorical") else nbgrad.float64)
    params = [nbgrad.tensor(a, requires_grad=True) for a in _params(np.random.default_rng(0), kinds)]

    def function(*params):
        dist = make(D, *params)
        # NOTE: validation would reject the probabilities that finite differences perturb
        dist._validate_args = False
        out = dist.log_prob(x).sum() + dist.entropy().sum()
        # (the straight-through estimator's gradient is not the derivative, by design)
        if dist.has_rsample and case != "one_hot_straight_through":
            nbgrad.manual_seed(2)  # the same noise on every evaluation
            out = out + dist.rsample((2,)).sin().sum()
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert nbgrad.autograd.gradcheck(function, params)


# --- KL divergences ---------------------------------------------------------------------------

KL_PAIRS = {
    "normal_normal": ("normal", "normal"), "bernoulli_bernoulli": ("bernoulli_probs", "bernoulli_logits"),
    "categorical_categorical": ("categorical_probs", "categorical_logits"),
    "one_hot_one_hot": ("one_hot_logits", "one_hot_probs"), "uniform_uniform": ("uniform", "uniform"),
    "exponential_exponential": ("exponential", "exponential"), "laplace_laplace": ("laplace", "laplace"),
    "independent_independent": ("independent_normal", "independent_normal"),
    "exponential_normal": ("exponential", "normal"), "laplace_normal": ("laplace", "normal"),
    "normal_laplace": ("normal", "laplace"), "uniform_normal": ("uniform", "normal"),
    "uniform_exponential": ("uniform", "exponential"), "normal_uniform": ("normal", "uniform"),
    "normal_exponential": ("normal", "exponential"), "laplace_uniform": ("laplace", "uniform"),
    "exponential_uniform": ("exponential", "uniform"), "laplace_exponential": ("laplace", "exponential"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pair", sorted(KL_PAIRS))
def test_kl_divergence_and_its_gradients_match_torch(pair, dtype):
    p_case, q_case = KL_PAIRS[pair]
    results = {}
    for name in ("torch", "nbgrad"):
        L = _library(name)
        p, p_params = _build(L, p_case, dtype, seed=1, requires_grad=True)
        q, q_params = _build(L, q_case, dtype, seed=2, requires_grad=True)
        kl = L.distributions.kl_divergence(p, q)
        if kl.requires_grad:  # (an infinite KL is a constant)
            L.where(kl.isfinite(), kl, L.zeros_like(kl)).sum().backward()
        results[name] = [kl] + [x.grad for x in p_params + q_params]
    assert len(results["nbgrad"]) == len(results["torch"])
    for actual, expected in zip(results["nbgrad"], results["torch"]):
        _same(actual, expected, dtype)


def test_kl_gradcheck():
    D = nbgrad.distributions
    rng = np.random.default_rng(5)
    loc, scale, logits, low = (nbgrad.tensor(a, requires_grad=True) for a in (
        rng.normal(size=3), rng.uniform(0.5, 2, 3), rng.normal(size=(2, 4)), rng.uniform(-1, 0, 3)))

    def function(loc, scale, logits, low):
        return (D.kl_divergence(D.Normal(loc, scale), D.Normal(loc.flip(0), scale * 0.5 + 1)).sum()
                + D.kl_divergence(D.Categorical(logits=logits), D.Categorical(logits=-logits)).sum()
                + D.kl_divergence(D.Bernoulli(logits=logits), D.Bernoulli(logits=logits.flip(1))).sum()
                + D.kl_divergence(D.Uniform(low, low + 2), D.Uniform(low - 1, low + 4)).sum()
                + D.kl_divergence(D.Laplace(loc, scale), D.Normal(low, scale)).sum())
    assert nbgrad.autograd.gradcheck(function, (loc, scale, logits, low))


def test_kl_infinite_and_zero_where_probabilities_vanish():
    def kls(L):
        D = L.distributions
        return [D.kl_divergence(D.Categorical(L.tensor([0.5, 0.5, 0.0])), D.Categorical(L.tensor([0.5, 0.0, 0.5]))),
                D.kl_divergence(D.Bernoulli(L.tensor([0.0, 1.0, 0.3, 0.3])), D.Bernoulli(L.tensor([0.5, 0.5, 0.0, 1.0]))),
                D.kl_divergence(D.Uniform(0.0, L.tensor([1.0, 3.0])), D.Uniform(-1.0, L.tensor([2.0, 2.0])))]
    for actual, expected in zip(kls(nbgrad), kls(torch)):
        assert_close(actual, expected)


def _registry_cases(L):
    D = L.distributions

    class MyNormal(D.Normal):
        pass

    @D.register_kl(MyNormal, D.Normal)
    def kl_mine(p, q):
        return p.loc * 0 + 7.0
    n = D.Normal(L.tensor([0.0]), L.tensor([1.0]))
    mine = MyNormal(L.tensor([1.0]), L.tensor([2.0]))
    return [_outcome(lambda: D.kl_divergence(mine, n)), _outcome(lambda: D.kl_divergence(n, mine)),
            _outcome(lambda: D.kl_divergence(n, D.Bernoulli(L.tensor([0.5])))),
            _outcome(lambda: D.kl_divergence(D.Categorical(L.tensor([0.5, 0.5])), n)),
            _outcome(lambda: D.kl_divergence(D.Independent(n, 1), D.Independent(D.Normal(L.zeros(1, 1), 1.0), 2)))]


def test_kl_registry_dispatches_as_torch():
    for actual, expected in zip(_registry_cases(nbgrad), _registry_cases(torch)):
        _same(actual, expected)


# --- validation, errors, reprs ----------------------------------------------------------------

BAD = {
    "normal_negative_scale": lambda L, D: D.Normal(0.0, -1.0),
    "normal_nan_loc": lambda L, D: D.Normal(L.tensor([float("nan"), 0.0]), 1.0),
    "uniform_low_above_high": lambda L, D: D.Uniform(L.tensor([0.0, 2.0]), L.tensor([1.0, 1.0])),
    "bernoulli_probs_above_one": lambda L, D: D.Bernoulli(L.tensor([0.5, 1.5])),
    "categorical_negative_probs": lambda L, D: D.Categorical(L.tensor([-1.0, 2.0])),
    "categorical_both": lambda L, D: D.Categorical(L.tensor([0.5, 0.5]), L.tensor([0.0, 0.0])),
    "categorical_neither": lambda L, D: D.Categorical(),
    "categorical_scalar": lambda L, D: D.Categorical(L.tensor(1.0)),
    "categorical_scalar_logits": lambda L, D: D.Categorical(logits=L.tensor(1.0)),
    "exponential_zero_rate": lambda L, D: D.Exponential(L.tensor([0.0, 1.0])),
    "laplace_zero_scale": lambda L, D: D.Laplace(0.0, 0.0),
    "independent_too_many": lambda L, D: D.Independent(D.Normal(L.zeros(2), 1.0), 2),
    "broadcast_all_string": lambda L, D: D.Normal("a", 1.0),
    "log_prob_outside_support": lambda L, D: D.Exponential(L.ones(2)).log_prob(L.tensor([1.0, -1.0])),
    "log_prob_not_boolean": lambda L, D: D.Bernoulli(L.tensor([0.5])).log_prob(L.tensor([0.5])),
    "log_prob_category_out_of_range": lambda L, D: D.Categorical(L.ones(3)).log_prob(L.tensor(3)),
    "log_prob_not_one_hot": lambda L, D: D.OneHotCategorical(L.ones(3)).log_prob(L.tensor([1.0, 1.0, 0.0])),
    "log_prob_shape": lambda L, D: D.Normal(L.zeros(2), 1.0).log_prob(L.zeros(3)),
    "log_prob_event_shape": lambda L, D: D.OneHotCategorical(L.ones(3)).log_prob(L.zeros(4)),
    "log_prob_not_tensor": lambda L, D: D.Normal(0.0, 1.0).log_prob(0.5),
    "log_prob_outside_uniform": lambda L, D: D.Uniform(0.0, 1.0).log_prob(L.tensor(1.5)),
    "independent_enumerate": lambda L, D: D.Independent(D.Bernoulli(L.ones(2) / 2), 1).enumerate_support(),
    "normal_has_no_enumeration": lambda L, D: D.Normal(0.0, 1.0).enumerate_support(),
    "exponential_mode": lambda L, D: D.Exponential(2.0).mode,
    "set_default_validate_args": lambda L, D: D.Distribution.set_default_validate_args(2),
    "not_validated": lambda L, D: D.Normal(0.0, -1.0, validate_args=False).scale,
    "not_validated_log_prob": lambda L, D: D.Exponential(L.ones(2), validate_args=False).log_prob(L.tensor([1.0, -1.0])),
    "validated_after_default_off": lambda L, D: _without_validation(D, lambda: D.Normal(0.0, -1.0).scale),
}


def _without_validation(D, fn):
    D.Distribution.set_default_validate_args(False)
    try:
        return fn()
    finally:
        D.Distribution.set_default_validate_args(True)


@pytest.mark.parametrize("case", sorted(BAD))
def test_validation_and_errors_match_torch(case):
    _same(_outcome(lambda: BAD[case](nbgrad, nbgrad.distributions)),
          _outcome(lambda: BAD[case](torch, torch.distributions)))


def _reprs(L):
    D = L.distributions
    dists = [D.Normal(0.0, 1.0), D.Normal(L.zeros(2), L.ones(2)), D.Normal(L.zeros(1), 2.0),
             D.Categorical(L.ones(3)), D.Categorical(logits=L.zeros(2, 3)), D.Bernoulli(logits=0.5),
             D.Uniform(L.zeros(2), 3.0), D.Independent(D.Normal(L.zeros(2, 2), 1.0), 1),
             D.OneHotCategorical(L.ones(2)), D.Exponential(L.tensor([2.0])), D.Laplace(1.0, 2.0)]
    supports = [_outcome(lambda d=d: repr(d.support)) for d in dists]
    return [repr(d).replace("nbgrad.", "torch.") for d in dists] + supports + [
        repr(D.constraints.real_vector), repr(D.constraints.positive), repr(D.constraints.simplex),
        repr(D.constraints.integer_interval(0, 4)), repr(D.constraints.unit_interval),
        repr(D.Normal.arg_constraints), repr(D.Uniform(0.0, 1.0).arg_constraints)]


def test_reprs_and_constraints_match_torch():
    assert _reprs(nbgrad) == _reprs(torch)


def test_namespace_as_torch():
    import nbgrad.distributions.categorical
    import nbgrad.distributions.normal
    assert nbgrad.distributions.categorical.Categorical is nbgrad.distributions.Categorical
    assert nbgrad.distributions.normal.Normal is nbgrad.distributions.Normal
    assert set(nbgrad.distributions.__all__) <= set(torch.distributions.__all__)
    for name in nbgrad.distributions.__all__:
        assert hasattr(nbgrad.distributions, name)
    n = nbgrad.distributions.Normal(nbgrad.zeros(2), 1.0)
    assert n.batch_shape == (2,) and n.event_shape == () and isinstance(n.batch_shape, nbgrad.Size)
    assert n.sample((3,)).shape == (3, 2) and n.sample().requires_grad is False


# --- training steps that sample ----------------------------------------------------------------

def _reinforce(L, steps, compiled=False):
    """PyTorch's REINFORCE example on a toy environment: a policy network gives action
    probabilities, an action is sampled, its log-probability times the return is the loss."""
    L.manual_seed(0)
    policy = L.nn.Sequential(L.nn.Linear(4, 16), L.nn.ReLU(), L.nn.Linear(16, 3), L.nn.Softmax(dim=-1))
    optimizer = L.optim.Adam(policy.parameters(), lr=1e-2)
    state = L.tensor([[0.1, -0.2, 0.3, 0.0], [0.5, 0.4, -0.1, 0.2]])

    def step(state):
        probs = policy(state)
        m = L.distributions.Categorical(probs)
        action = m.sample()
        reward = (action == 1).float() * 2.0 - 0.5
        loss = (-m.log_prob(action) * reward).sum() - 0.01 * m.entropy().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach(), action
    step = L.compile(step) if compiled else step
    out = []
    for _ in range(steps):
        loss, action = step(state)
        out.append((loss.item(), action.tolist()))
    return out, [p.detach().numpy().copy() for p in policy.parameters()]


def _vae_step(L, steps, compiled=False):
    """A VAE's step: an encoder gives mean and log-variance, a reparameterized sample, a
    decoder, reconstruction plus KL to the standard normal."""
    L.manual_seed(0)
    encoder, decoder = L.nn.Linear(6, 4), L.nn.Linear(2, 6)
    optimizer = L.optim.SGD(list(encoder.parameters()) + list(decoder.parameters()), lr=0.01)
    x = (L.rand(5, 6) > 0.5).float()

    def step(x):
        mu, log_var = encoder(x).chunk(2, dim=-1)
        q = L.distributions.Normal(mu, (0.5 * log_var).exp())
        z = q.rsample()
        recon = L.distributions.Bernoulli(logits=decoder(z))
        prior = L.distributions.Normal(L.zeros_like(mu), L.ones_like(mu))
        loss = -recon.log_prob(x).sum() + L.distributions.kl_divergence(q, prior).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()
    step = L.compile(step) if compiled else step
    losses = [step(x).item() for _ in range(steps)]
    return losses, [p.detach().numpy().copy() for p in encoder.parameters()]


@pytest.mark.parametrize("run", [_reinforce, _vae_step])
def test_training_steps_that_sample_match_torch_step_by_step(run):
    """20 steps, past the deferred mode's FUSE_AFTER. (Its graphs stay unfused: drawing a
    sample reads the probabilities before backward, and a tape whose values are read runs
    eagerly node by node.)"""
    (ours, our_params), (theirs, their_params) = run(nbgrad, 20), run(torch, 20)
    for mine, reference in zip(ours, theirs):
        if isinstance(reference, tuple):
            assert mine[1] == reference[1]  # the same actions drawn
            mine, reference = mine[0], reference[0]
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    for a, e in zip(our_params, their_params):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("run", [_reinforce, _vae_step])
def test_compiled_step_that_samples_runs_eagerly_with_torchs_numbers(run):
    """Sampling inside an nbgrad.compile step is a graph break (fusion would freeze the random
    numbers), and so is validation (it reads values): the step runs eagerly, says why once,
    and gives torch's numbers."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours, our_params = run(nbgrad, 4, compiled=True)
    assert any("nbgrad.compile: running the step eagerly" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nbgrad.distributions.Distribution.set_default_validate_args(False)
        try:
            assert run(nbgrad, 4, compiled=True)[0] == ours
        finally:
            nbgrad.distributions.Distribution.set_default_validate_args(True)
    assert any("random numbers drawn inside the step" in str(w.message) for w in caught)
    theirs, their_params = run(torch, 4)
    for mine, reference in zip(ours, theirs):
        if isinstance(reference, tuple):
            assert mine[1] == reference[1]
            mine, reference = mine[0], reference[0]
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)
    for a, e in zip(our_params, their_params):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def test_entropy_of_a_categorical_with_zero_probabilities_is_finite():
    def values(L):
        probs = L.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], requires_grad=True)
        m = L.distributions.Categorical(probs)
        entropy = m.entropy()
        entropy.sum().backward()
        return entropy, probs.grad, m.log_prob(L.tensor([0, 0])), m.logits
    for actual, expected in zip(values(nbgrad), values(torch)):
        assert_close(actual, expected)
    assert math.isfinite(values(nbgrad)[0].sum().item())
