"""Factories: tensor(), from_numpy, zeros/ones/full/eye/arange/linspace/empty, the *_like
factories, the random factories and manual_seed; devices (nbgrad.device, device=, .to, the
cuda/backends/accelerator namespaces); generators, whose streams are PyTorch's.

Expected values come from running the same code with torch.
"""

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, assert_same_dtype, to_numpy

# ---------------------------------------------------------------------------------------------
# deterministic factories and tensor(): values, dtype, shape, requires_grad vs torch
# ---------------------------------------------------------------------------------------------

FACTORIES = {
    "zeros": lambda L: L.zeros(2, 3),
    "zeros_tuple": lambda L: L.zeros((2, 3)),
    "zeros_list": lambda L: L.zeros([4]),
    "zeros_0d": lambda L: L.zeros(()),
    "zeros_empty": lambda L: L.zeros(0, 3),
    "zeros_int64": lambda L: L.zeros(2, 3, dtype=L.int64),
    "zeros_bool": lambda L: L.zeros(3, dtype=L.bool),
    "zeros_grad": lambda L: L.zeros(2, 3, requires_grad=True),
    "ones": lambda L: L.ones(3, 2),
    "ones_f64_grad": lambda L: L.ones((2, 2), dtype=L.float64, requires_grad=True),
    "ones_int64": lambda L: L.ones(4, dtype=L.int64),
    "full_float": lambda L: L.full((2, 3), 1.5),
    "full_int": lambda L: L.full((2,), 7),
    "full_bool": lambda L: L.full((2,), True),
    "full_f64_grad": lambda L: L.full((3,), -2.0, dtype=L.float64, requires_grad=True),
    "eye": lambda L: L.eye(3),
    "eye_rect": lambda L: L.eye(2, 4),
    "eye_f64": lambda L: L.eye(3, dtype=L.float64),
    "eye_grad": lambda L: L.eye(2, requires_grad=True),
    "arange": lambda L: L.arange(5),
    "arange_start_stop_step": lambda L: L.arange(1, 8, 2),
    "arange_float": lambda L: L.arange(0.0, 1.0, 0.25),
    "arange_mixed": lambda L: L.arange(0, 1, 0.25),
    "arange_dtype": lambda L: L.arange(4, dtype=L.float32),
    "arange_grad": lambda L: L.arange(3, dtype=L.float64, requires_grad=True),
    "linspace": lambda L: L.linspace(0, 1, 5),
    "linspace_f64": lambda L: L.linspace(-1.0, 1.0, 7, dtype=L.float64),
    "linspace_grad": lambda L: L.linspace(0, 2, 3, requires_grad=True),
    "tensor_float_list": lambda L: L.tensor([1.0, 2.5, -3.0]),
    "tensor_int_list": lambda L: L.tensor([[1, 2], [3, 4]]),
    "tensor_mixed_list": lambda L: L.tensor([1, 2.5]),
    "tensor_bool_list": lambda L: L.tensor([True, False]),
    "tensor_float_scalar": lambda L: L.tensor(3.5),
    "tensor_int_scalar": lambda L: L.tensor(3),
    "tensor_bool_scalar": lambda L: L.tensor(True),
    "tensor_empty": lambda L: L.tensor([]),
    "tensor_dtype": lambda L: L.tensor([1, 2], dtype=L.float32),
    "tensor_dtype_f64": lambda L: L.tensor([1.5, 2.5], dtype=L.float64),
    "tensor_grad": lambda L: L.tensor([1.0, 2.0], requires_grad=True),
    "tensor_np_f32": lambda L: L.tensor(np.array([1.5, 2.0], dtype=np.float32)),
    "tensor_np_f64": lambda L: L.tensor(np.array([1.5, 2.0])),
    "tensor_np_i64": lambda L: L.tensor(np.array([1, 2], dtype=np.int64)),
    "tensor_np_bool": lambda L: L.tensor(np.array([True, False])),
    "tensor_np_transposed": lambda L: L.tensor(np.arange(6.0).reshape(2, 3).T),
    "Tensor_list": lambda L: L.Tensor([1, 2, 3]),
    "Tensor_nested": lambda L: L.Tensor([[1.5, 2], [3, 4]]),
    "from_numpy_f32": lambda L: L.from_numpy(np.array([1.5, 2.0], dtype=np.float32)),
    "from_numpy_f64": lambda L: L.from_numpy(np.arange(6.0).reshape(2, 3)),
    "from_numpy_i64": lambda L: L.from_numpy(np.array([1, 2], dtype=np.int64)),
    "from_numpy_bool": lambda L: L.from_numpy(np.array([True, False])),
}


@pytest.mark.parametrize("case", sorted(FACTORIES))
def test_factory_matches_torch(case):
    expected = FACTORIES[case](torch)
    actual = FACTORIES[case](nbgrad)
    assert isinstance(actual, nbgrad.Tensor)
    assert tuple(actual.shape) == tuple(expected.shape)
    assert_same_dtype(actual, expected)
    assert actual.requires_grad == expected.requires_grad
    assert actual.is_leaf and actual.grad_fn is None
    assert_close(actual, expected)


def test_factory_with_requires_grad_is_a_trainable_leaf():
    x = nbgrad.zeros(2, 3, requires_grad=True)
    (x * 2 + 1).sum().backward()
    assert_close(x.grad, np.full((2, 3), 2.0, np.float32))


def test_empty_has_shape_and_dtype():
    for dtype in (nbgrad.float32, nbgrad.float64, nbgrad.int64):
        x = nbgrad.empty(2, 3, dtype=dtype)
        assert tuple(x.shape) == (2, 3) and x.dtype == dtype
    x = nbgrad.empty((4,), requires_grad=True)
    assert tuple(x.shape) == (4,) and x.dtype == nbgrad.float32 and x.requires_grad


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(RuntimeError, match="(?i)only Tensors of floating point"):
        torch.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="(?i)only Tensors of floating point"):
        nbgrad.tensor([1, 2], requires_grad=True)


def test_from_numpy_shares_memory():
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    t = nbgrad.from_numpy(a)
    a[0] = 10.0
    assert t[0].item() == 10.0


def test_tensor_copies_numpy_input():
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    t = nbgrad.tensor(a)
    a[0] = 10.0
    assert t[0].item() == 1.0


# ---------------------------------------------------------------------------------------------
# *_like factories
# ---------------------------------------------------------------------------------------------

LIKE = {
    "zeros_like": lambda L, x: L.zeros_like(x),
    "zeros_like_int": lambda L, x: L.zeros_like(x.long()),
    "ones_like": lambda L, x: L.ones_like(x),
    "ones_like_dtype": lambda L, x: L.ones_like(x, dtype=L.float64),
    "ones_like_grad": lambda L, x: L.ones_like(x, requires_grad=True),
    "full_like": lambda L, x: L.full_like(x, 7.5),
    "full_like_int": lambda L, x: L.full_like(x.long(), 7),
    "full_like_f64": lambda L, x: L.full_like(x.double(), -1.0),
}


@pytest.mark.parametrize("case", sorted(LIKE))
def test_like_factories_match_torch(case):
    base = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    expected = LIKE[case](torch, torch.tensor(base))
    actual = LIKE[case](nbgrad, nbgrad.tensor(base))
    assert tuple(actual.shape) == tuple(expected.shape)
    assert_same_dtype(actual, expected)
    assert actual.requires_grad == expected.requires_grad
    assert_close(actual, expected)


@pytest.mark.parametrize("name", ["empty_like", "rand_like", "randn_like"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_and_empty_like_shape_dtype(name, dtype):
    x = nbgrad.zeros(2, 3, dtype=getattr(nbgrad, dtype))
    y = getattr(nbgrad, name)(x)
    assert tuple(y.shape) == (2, 3) and y.dtype == x.dtype
    z = getattr(nbgrad, name)(x, dtype=nbgrad.float64, requires_grad=True)
    assert z.dtype == nbgrad.float64 and z.requires_grad and z.is_leaf
    if name == "rand_like":
        v = to_numpy(y)
        assert ((v >= 0) & (v < 1)).all()


# ---------------------------------------------------------------------------------------------
# random factories and manual_seed
# ---------------------------------------------------------------------------------------------


def test_rand_shape_dtype_range():
    nbgrad.manual_seed(0)
    x = nbgrad.rand(200, 5)
    assert tuple(x.shape) == (200, 5) and x.dtype == nbgrad.float32
    v = to_numpy(x)
    assert ((v >= 0) & (v < 1)).all()
    assert 0.4 < v.mean() < 0.6
    y = nbgrad.rand((3,), dtype=nbgrad.float64, requires_grad=True)
    assert y.dtype == nbgrad.float64 and y.requires_grad and y.is_leaf


def test_randn_shape_dtype_moments():
    nbgrad.manual_seed(0)
    x = nbgrad.randn(1000)
    assert tuple(x.shape) == (1000,) and x.dtype == nbgrad.float32
    v = to_numpy(x)
    assert abs(v.mean()) < 0.2 and 0.8 < v.std() < 1.2
    y = nbgrad.randn(2, 3, dtype=nbgrad.float64, requires_grad=True)
    assert tuple(y.shape) == (2, 3) and y.dtype == nbgrad.float64 and y.requires_grad


def test_randint():
    nbgrad.manual_seed(0)
    x = nbgrad.randint(0, 10, (1000,))
    assert tuple(x.shape) == (1000,) and x.dtype == nbgrad.int64
    v = to_numpy(x)
    assert set(v.tolist()) == set(range(10))
    y = nbgrad.randint(3, 6, (4, 5))
    assert tuple(y.shape) == (4, 5)
    assert ((to_numpy(y) >= 3) & (to_numpy(y) < 6)).all()
    z = nbgrad.randint(5, (4,))  # high only, like torch.randint(high, size)
    assert ((to_numpy(z) >= 0) & (to_numpy(z) < 5)).all()


RANDOM = {
    "rand": lambda: nbgrad.rand(4, 3),
    "randn": lambda: nbgrad.randn(4, 3),
    "randint": lambda: nbgrad.randint(0, 1000, (12,)),
    "rand_like": lambda: nbgrad.rand_like(nbgrad.zeros(5)),
    "randn_like": lambda: nbgrad.randn_like(nbgrad.zeros(5)),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_manual_seed_reproducible(name):
    make = RANDOM[name]
    nbgrad.manual_seed(1234)
    a, b = to_numpy(make()), to_numpy(make())
    nbgrad.manual_seed(1234)
    a2, b2 = to_numpy(make()), to_numpy(make())
    nbgrad.manual_seed(4321)
    c = to_numpy(make())
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert not np.array_equal(a, b), "two draws after one seed must differ"
    assert not np.array_equal(a, c), "different seeds must give different values"


# ---------------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------------


def outcome(call):
    """("ok", repr of the result, library name left out) or (exception type name, message)
    of `call()`."""
    try:
        return "ok", repr(call()).replace("nbgrad.", "torch.")
    except Exception as error:  # noqa: BLE001  (any error is compared with PyTorch's)
        return type(error).__name__, str(error)


def assert_same_outcome(make, same_type_only=False):
    """`make(torch)` and `make(nbgrad)` give the same repr or the same error (with
    `same_type_only`, the same error type: PyTorch's long dispatcher messages)."""
    expected, actual = outcome(lambda: make(torch)), outcome(lambda: make(nbgrad))
    if same_type_only:
        expected, actual = expected[0], actual[0]
    assert actual == expected


DEVICE_FORMS = {
    "string": lambda L: L.device("cpu"),
    "string_index": lambda L: L.device("cpu:0"),
    "type_index": lambda L: L.device("cpu", 0),
    "keywords": lambda L: L.device(type="cpu", index=0),
    "device": lambda L: L.device(L.device("cpu:0")),
    "cuda_object": lambda L: L.device("cuda", 1),
    "tensor_device": lambda L: L.zeros(2).device,
    "default": lambda L: L.get_default_device(),
    "bad_type": lambda L: L.device("gpu"),
    "bad_index": lambda L: L.device("cpu:x"),
    "negative_index": lambda L: L.device("cpu", -1),
    "index_twice": lambda L: L.device("cpu:0", 0),
    "accelerator_index": lambda L: L.device(0),
}


@pytest.mark.parametrize("case", sorted(DEVICE_FORMS))
def test_device_forms_match_torch(case):
    assert_same_outcome(DEVICE_FORMS[case])


def test_device_attributes_and_equality_match_torch():
    for L in (torch, nbgrad):
        a, b, c = L.device("cpu"), L.device("cpu:0"), L.device("cpu", 0)
        facts = (a.type, a.index, b.index, str(a), str(b), a == b, b == c, hash(b) == hash(c),
                 a == "cpu", L.zeros(1).device == a, L.zeros(1).is_cuda, L.zeros(1).get_device())
        if L is torch:
            expected = facts
    assert facts == expected


def _every_factory(L, device):
    x = L.zeros(2)
    return [lambda: L.tensor([1.0], device=device), lambda: L.as_tensor([1.0], device=device),
            lambda: L.zeros(2, device=device), lambda: L.ones(2, device=device),
            lambda: L.empty(2, device=device), lambda: L.full((2,), 1.0, device=device),
            lambda: L.arange(3, device=device), lambda: L.linspace(0, 1, 3, device=device),
            lambda: L.eye(2, device=device), lambda: L.rand(2, device=device),
            lambda: L.randn(2, device=device), lambda: L.randint(0, 5, (2,), device=device),
            lambda: L.randperm(3, device=device), lambda: L.zeros_like(x, device=device),
            lambda: L.ones_like(x, device=device), lambda: L.empty_like(x, device=device),
            lambda: L.full_like(x, 2.0, device=device), lambda: L.rand_like(x, device=device),
            lambda: L.randn_like(x, device=device), lambda: L.randint_like(x, 3, device=device)]


@pytest.mark.parametrize("device", ["cpu", "cpu:0", "cuda", "cuda:0", "mps", "cuda_object"])
def test_every_factory_takes_device_as_torch(device):
    for i in range(len(_every_factory(torch, "cpu"))):
        def make(L, i=i):
            where = L.device("cuda") if device == "cuda_object" else device
            result = _every_factory(L, where)[i]()
            return result.device, result.dtype, tuple(result.shape)
        assert_same_outcome(make, same_type_only=device == "mps")


TO_CALLS = {
    "cpu_string": lambda L, x: x.to("cpu").device,
    "cpu_device_dtype": lambda L, x: x.to(L.device("cpu"), L.float64).dtype,
    "keywords": lambda L, x: x.to(device="cpu", dtype=L.float64).dtype,
    "other_tensor": lambda L, x: x.to(L.zeros(1, dtype=L.int64)).dtype,
    "non_blocking": lambda L, x: x.to("cpu", non_blocking=True).tolist(),
    "cpu_method": lambda L, x: x.cpu().tolist(),
    "cuda_method": lambda L, x: x.cuda(),
    "to_cuda": lambda L, x: x.to("cuda"),
    "to_cuda_dtype": lambda L, x: x.to("cuda:0", L.float64),
    "to_cuda_device": lambda L, x: x.to(L.device("cuda")),
    "to_mps": lambda L, x: x.to("mps"),
    "to_index": lambda L, x: x.to(7),
    "module_to_cpu": lambda L, x: L.nn.Linear(2, 2).to("cpu").weight.device,
    "module_to_device_dtype": lambda L, x: L.nn.Linear(2, 2).to(L.device("cpu"),
                                                                  L.float64).weight.dtype,
    "module_to_tensor": lambda L, x: L.nn.Linear(2, 2).to(L.zeros(1, dtype=L.float64)).bias.dtype,
    "module_to_int": lambda L, x: L.nn.Linear(2, 2).to(L.int64),
    "module_cpu": lambda L, x: L.nn.Linear(2, 2).cpu().weight.device,
    "module_to_cuda": lambda L, x: L.nn.Linear(2, 2).to("cuda"),
    "module_cuda": lambda L, x: L.nn.Linear(2, 2).cuda(),
    "module_to_mps": lambda L, x: L.nn.Linear(2, 2).to("mps"),
}


@pytest.mark.parametrize("case", sorted(TO_CALLS))
def test_to_and_cpu_match_torch(case):
    assert_same_outcome(lambda L: TO_CALLS[case](L, L.tensor([1.0, 2.0])))


def test_backend_namespaces_answer_as_a_cpu_only_torch():
    def facts(L):
        return (L.cuda.is_available(), L.cuda.device_count(), L.backends.mps.is_available(),
                L.backends.mps.is_built(), L.backends.cudnn.is_available(),
                L.accelerator.is_available(), L.accelerator.current_accelerator(),
                L.accelerator.device_count(), L.cuda.manual_seed(1), L.cuda.manual_seed_all(1),
                L.backends.cuda.is_built(), L.backends.cuda.matmul.allow_tf32,
                L.backends.cudnn.allow_tf32, L.backends.cudnn.deterministic,
                L.backends.cudnn.benchmark)
    assert facts(nbgrad) == facts(torch)
    assert_same_outcome(lambda L: L.cuda.current_device())
    device = "cuda" if nbgrad.cuda.is_available() else "cpu"  # the tutorials' first line
    assert nbgrad.zeros(2, device=device).device == nbgrad.device("cpu")


def test_default_device():
    nbgrad.set_default_device("cpu")
    nbgrad.set_default_device(None)
    assert repr(nbgrad.get_default_device()) == repr(torch.get_default_device())
    # NOTE: PyTorch accepts "cuda" here and fails at the next factory; nbgrad fails here.
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        nbgrad.set_default_device("cuda")
    assert nbgrad.zeros(1).device == nbgrad.device("cpu")


# ---------------------------------------------------------------------------------------------
# generators: PyTorch's streams, number for number
# ---------------------------------------------------------------------------------------------


def _draws(L, g):
    """A run of draws from generator `g` of library `L`, as NumPy arrays; the generator's
    state after them is the last entry (it shows that each draw took as many words)."""
    x = L.empty(5, 3)
    p = L.tensor([0.1, 0.0, 0.5, 0.25, 0.15])
    rows = L.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 3.0]], dtype=L.float64)
    conv = L.empty(4, 3, 2, 2)
    draws = [
        L.rand(3, generator=g), L.rand(2, 17, generator=g, dtype=L.float64),
        L.randn(3, generator=g), L.randn(5, generator=g), L.randn(16, generator=g, dtype=L.float64),
        L.randn(37, generator=g, dtype=L.float64), L.randint(0, 27, (40,), generator=g),
        L.randint(-5, 2 ** 28 + 7, (6,), generator=g), L.randint(10, (3,), generator=g),
        L.randint(0, 5, (3,), generator=g, dtype=L.float64), L.randperm(30, generator=g),
        L.rand_like(x, generator=g), L.randn_like(L.zeros(4), generator=g),
        L.randint_like(x, 4, generator=g),
        L.multinomial(p, 1, generator=g), L.multinomial(p, 3, generator=g),
        L.multinomial(p, 20, replacement=True, generator=g),
        L.multinomial(p, 1, replacement=True, generator=g),
        L.multinomial(rows, 2, generator=g), L.multinomial(rows, 6, replacement=True, generator=g),
        L.bernoulli(L.tensor([0.0, 0.3, 0.9, 1.0]), generator=g),
        L.bernoulli(rows / 4, generator=g), L.bernoulli(x, 0.4, generator=g),
        L.bernoulli(L.tensor([0.2, 0.9, 0.5]).expand(4, 3), generator=g),
        L.bernoulli((rows / 4).t(), generator=g),
        L.normal(2.0, 3.0, size=(4,), generator=g),
        L.normal(L.zeros(3), L.tensor([1.0, 2.0, 3.0]), generator=g),
        L.normal(L.ones(2, 1), 0.5, generator=g), L.normal(1.0, L.ones(3), generator=g),
        x.uniform_(-2, 3, generator=g).clone(), x.normal_(1.0, 2.0, generator=g).clone(),
        L.zeros(6, dtype=L.float64).normal_(generator=g), x.bernoulli_(0.25, generator=g).clone(),
        x.bernoulli_(L.full((3,), 0.5), generator=g).clone(),
        L.zeros(5, dtype=L.float64).exponential_(2.5, generator=g),
        L.empty(3, 4).t().exponential_(generator=g),
        L.zeros(4, dtype=L.int64).random_(3, 9, generator=g),
        L.zeros(4, dtype=L.int64).random_(generator=g), L.zeros(4).random_(generator=g),
        L.nn.init.uniform_(L.empty(3), -1, 1, generator=g),
        L.nn.init.normal_(L.empty(3, dtype=L.float64), 0, 2, generator=g),
        L.nn.init.kaiming_uniform_(conv, a=5 ** 0.5, generator=g).clone(),
        L.nn.init.kaiming_normal_(conv, generator=g).clone(),
        L.nn.init.xavier_uniform_(L.empty(3, 4), generator=g),
        L.nn.init.xavier_normal_(L.empty(4, 3, dtype=L.float64), generator=g),
        # tensors that are not contiguous: PyTorch visits them in memory order
        L.empty(5, 4).t().uniform_(generator=g), L.empty(3, 4, 6).permute(2, 0, 1).normal_(
            generator=g), L.empty(6, 8)[:, ::2].bernoulli_(L.rand(4, generator=g), generator=g),
        L.multinomial(L.rand(5, 7, generator=g).t(), 3, generator=g),
        # float16/bfloat16: float32 draws rounded
        L.rand(5, dtype=L.float16, generator=g),
        L.randn(40, dtype=L.bfloat16, generator=g).float(),
        L.empty(17, dtype=L.float16).normal_(0.5, 2.0, generator=g),
        L.randn(3, dtype=L.float16, generator=g),
        g.get_state()]
    return [d.numpy() for d in draws]


def test_generator_streams_are_torch_streams():
    expected = _draws(torch, torch.Generator().manual_seed(2147483647))
    actual = _draws(nbgrad, nbgrad.Generator().manual_seed(2147483647))
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, i
        np.testing.assert_array_equal(a, e, err_msg=f"draw {i}")


def test_float32_randn_from_16_values_is_torch_bit_for_bit_on_x86():
    """16 or more float32 normal values: PyTorch's x86 kernel (AVX2) approximates log and
    sincos in float32, which nbgrad reproduces; a PyTorch without it uses libm (a few units in
    the last place apart)."""
    exact = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    for size, mean, std in (((16,), 0.0, 1.0), ((1000,), 0.0, 1.0), ((7, 5), 0.5, 2.5)):
        expected = torch.empty(*size).normal_(mean, std, generator=torch.Generator().manual_seed(7))
        actual = nbgrad.empty(*size).normal_(mean, std, generator=nbgrad.Generator().manual_seed(7))
        if exact:
            np.testing.assert_array_equal(actual.numpy(), expected.numpy())
        else:
            np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def _more_initializers(L):
    """trunc_normal_ (both of PyTorch's samplers: redrawn normals, and uniform candidates
    accepted by their density), orthogonal_, eye_, dirac_ and sparse_, seeded."""
    L.manual_seed(0)
    g = L.Generator().manual_seed(3)
    init = L.nn.init
    weight = L.nn.Linear(20, 30).weight
    exact = [
        init.trunc_normal_(L.empty(40, 7)), init.trunc_normal_(L.empty(40, 7, dtype=L.float64),
                                                               std=0.02),
        init.trunc_normal_(L.empty(5, 8).t(), 1.0, 2.0, -1, 1.5, generator=g),
        init.trunc_normal_(L.empty(50), 0, 1, 1.5, 3), init.trunc_normal_(L.empty(6, 9).t(), 0, 1, 1.0, 4),
        init.trunc_normal_(weight, std=0.02).detach(),
        init.eye_(L.empty(3, 5)), init.eye_(L.empty(4, 2, dtype=L.float64)),
        init.dirac_(L.empty(4, 3, 3)), init.dirac_(L.empty(6, 2, 3, 4), 2),
        init.dirac_(L.empty(2, 3, 1, 2, 3)),
        init.sparse_(L.empty(6, 5), 0.3), init.sparse_(L.empty(4, 3), 0.5, std=1.0, generator=g)]
    # orthogonal_: a QR, equal to rounding
    close = [init.orthogonal_(L.empty(4, 6)), init.orthogonal_(L.empty(6, 4, dtype=L.float64), gain=2),
             init.orthogonal_(L.empty(3, 2, 2, 2), generator=g), init.orthogonal_(L.empty(5, 5), 1.414)]
    return [t.numpy() for t in exact + [L.rand(3)]], [t.numpy() for t in close]


def test_more_initializers_draw_torchs_values():
    (exact, close), (expected_exact, expected_close) = _more_initializers(nbgrad), _more_initializers(torch)
    for i, (a, e) in enumerate(zip(exact, expected_exact, strict=True)):
        assert a.dtype == e.dtype and a.shape == e.shape, i
        np.testing.assert_array_equal(a, e, err_msg=f"initializer {i}")
    for a, e in zip(close, expected_close, strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda L: L.nn.init.orthogonal_(L.empty(3)), lambda L: L.nn.init.eye_(L.empty(2, 2, 2)),
    lambda L: L.nn.init.dirac_(L.empty(2, 2)), lambda L: L.nn.init.dirac_(L.empty(3, 2, 2), 2),
    lambda L: L.nn.init.sparse_(L.empty(3), 0.1), lambda L: L.nn.init.orthogonal_(L.empty(0, 3)),
    lambda L: L.nn.init.eye_(L.empty(2, 3, requires_grad=True)).requires_grad,
])
def test_more_initializers_errors(make):
    assert_same_outcome(make)


def test_trunc_normal_far_mean_warns():
    for L in (torch, nbgrad):
        with pytest.warns(UserWarning, match="mean is more than 2 std from"):
            L.nn.init.trunc_normal_(L.empty(3), mean=5.0)


def _distribution_fills(L):
    """exponential_, geometric_, log_normal_ and cauchy_ from the default generator and a
    generator of their own, on contiguous, transposed, strided, integer and half targets."""
    g = L.Generator().manual_seed(5)
    L.manual_seed(1)
    draws = [
        L.empty(20).exponential_(), L.empty(3, 4, dtype=L.float64).exponential_(0.5, generator=g),
        L.empty(30).geometric_(0.3), L.empty(5, dtype=L.int64).geometric_(0.01, generator=g),
        L.empty(7, dtype=L.int32).geometric_(0.5), L.empty(20).log_normal_(),
        L.empty(3, 7, dtype=L.float64).log_normal_(0.5, 0.25, generator=g), L.randn(3),
        L.empty(21).cauchy_(), L.empty(4, 3, dtype=L.float64).t().cauchy_(1.0, 3.0),
        L.empty(5, 6)[:, ::2].exponential_(3.0), L.empty(9, dtype=L.float16).cauchy_(),
        L.empty(9, dtype=L.bfloat16).log_normal_().float(),
        L.empty(6, dtype=L.uint8).geometric_(0.2), L.empty(0).exponential_(),
        L.empty(3, dtype=L.float16).exponential_(), L.get_rng_state(), g.get_state()]
    return [d.numpy() for d in draws]


def test_distribution_fills_draw_torchs_values():
    for i, (a, e) in enumerate(zip(_distribution_fills(nbgrad), _distribution_fills(torch),
                                   strict=True)):
        assert a.dtype == e.dtype and a.shape == e.shape, i
        np.testing.assert_array_equal(a, e, err_msg=f"draw {i}")


@pytest.mark.parametrize("make", [
    lambda L: L.zeros(3).exponential_(0), lambda L: L.zeros(3).exponential_(-1.0),
    lambda L: L.zeros(3, dtype=L.int64).exponential_(),
    lambda L: L.zeros(3, dtype=L.uint8).exponential_(), lambda L: L.zeros(3).geometric_(0),
    lambda L: L.zeros(3).geometric_(1.5), lambda L: L.zeros(3, dtype=L.bool).geometric_(0.5),
    lambda L: L.zeros(3).log_normal_(0, 0), lambda L: L.zeros(3, dtype=L.int64).log_normal_(),
    lambda L: L.zeros(3).cauchy_(0, -1), lambda L: L.zeros(3, dtype=L.int64).cauchy_(),
    lambda L: L.zeros(3, dtype=L.int16).cauchy_(),
    lambda L: L.zeros(3, requires_grad=True).exponential_(),
])
def test_distribution_fill_errors(make):
    assert_same_outcome(make)


def test_global_seeding_functions_match_torch():
    def run(L):
        L.manual_seed(123)
        values = [L.rand(3), L.randn(2), L.randint(0, 9, (4,)), L.randperm(5),
                  L.nn.Linear(3, 2).weight.detach(), L.nn.Linear(20, 30).bias.detach(),
                  L.nn.Embedding(27, 10).weight.detach(), L.nn.functional.dropout(L.ones(8), 0.5)]
        state = L.get_rng_state()
        after = L.rand(4)
        L.set_rng_state(state)
        return [v.numpy() for v in values] + [after.numpy(), L.rand(4).numpy(),
                                              state.numpy(), np.array(L.initial_seed())]
    for a, e in zip(run(nbgrad), run(torch)):
        np.testing.assert_array_equal(a, e)
    assert nbgrad.default_generator.initial_seed() == 123
    assert isinstance(nbgrad.default_generator, nbgrad.Generator)


def test_generator_object():
    g = nbgrad.Generator()
    assert g.initial_seed() == torch.Generator().initial_seed()
    assert g.manual_seed(5) is g and g.initial_seed() == 5
    assert repr(g.device) == repr(torch.Generator().device)
    assert g.manual_seed(-1).initial_seed() == torch.Generator().manual_seed(-1).initial_seed()
    seed = g.seed()
    assert isinstance(seed, int) and g.initial_seed() == seed
    # A state moves between the libraries: torch's state gives torch's next numbers.
    t = torch.Generator().manual_seed(99)
    torch.randn(3, generator=t)  # leaves a cached Box-Muller sample in the state
    g.set_state(nbgrad.tensor(t.get_state().numpy()))
    np.testing.assert_array_equal(nbgrad.randn(5, generator=g).numpy(),
                                  torch.randn(5, generator=t).numpy())
    t.set_state(torch.from_numpy(g.get_state().numpy()))
    np.testing.assert_array_equal(nbgrad.rand(5, generator=g).numpy(),
                                  torch.rand(5, generator=t).numpy())


RANDOM_ERRORS = {
    "seed_float": lambda L: L.Generator().manual_seed(1.5),
    "seed_overflow": lambda L: L.Generator().manual_seed(2 ** 64),
    "state_size": lambda L: L.Generator().set_state(L.zeros(10, dtype=L.uint8)),
    "state_dtype": lambda L: L.Generator().set_state(L.zeros(5056)),
    "generator_cuda": lambda L: L.Generator(device="cuda"),
    "multinomial_too_many": lambda L: L.multinomial(L.tensor([0.1, 0.9]), 3),
    "multinomial_zero_samples": lambda L: L.multinomial(L.tensor([0.1, 0.9]), 0),
    "multinomial_negative": lambda L: L.multinomial(L.tensor([-0.1, 0.2]), 1),
    "multinomial_negative_replacement": lambda L: L.multinomial(L.tensor([-0.1, 0.2]), 3, True),
    "multinomial_zero_row": lambda L: L.multinomial(L.tensor([[0.0, 0.0], [1.0, 1.0]]), 1),
    "multinomial_zero_sum_replacement": lambda L: L.multinomial(L.zeros(2), 3, True),
    "multinomial_inf": lambda L: L.multinomial(L.tensor([float("inf"), 0.0]), 1),
    "multinomial_nan_replacement": lambda L: L.multinomial(L.tensor([float("nan"), 1.0]), 2,
                                                           True),
    "multinomial_3d": lambda L: L.multinomial(L.ones(2, 2, 2), 1),
    "multinomial_int": lambda L: L.multinomial(L.tensor([1, 2]), 1),
    "multinomial_empty_rows": lambda L: L.multinomial(L.ones(0, 3), 1).shape,
    "normal_negative_std": lambda L: L.normal(0.0, -1.0, size=(2,)),
    "normal_negative_std_tensor": lambda L: L.normal(L.zeros(2), L.tensor([1.0, -1.0])),
    "normal_int_mean": lambda L: L.normal(L.zeros(2, dtype=L.int64), 1.0),
    "normal_broadcast": lambda L: L.normal(L.zeros(2, 1), L.ones(3)).shape,
    "bernoulli_p_tensor_range": lambda L: L.bernoulli(L.tensor([0.5, 1.5])),
    "bernoulli_p_range": lambda L: L.bernoulli(L.tensor([0.5, 0.5]), p=1.5),
    "bernoulli_int": lambda L: L.bernoulli(L.tensor([1, 0])),
    "uniform_bounds": lambda L: L.zeros(3).uniform_(2, 1),
    "uniform_int": lambda L: L.zeros(3, dtype=L.int64).uniform_(),
    "normal_int": lambda L: L.zeros(3, dtype=L.int64).normal_(),
    "normal_std": lambda L: L.zeros(3).normal_(0, -1),
    "exponential_int": lambda L: L.zeros(3, dtype=L.int64).exponential_(),
    "exponential_lambda": lambda L: L.zeros(3).exponential_(-1.5),
    "random_bounds": lambda L: L.zeros(3, dtype=L.int64).random_(5, 2),
    "randint_bounds": lambda L: L.randint(5, 2, (3,)),
    "rand_int": lambda L: L.rand(2, dtype=L.int64),
    "randn_int": lambda L: L.randn(2, dtype=L.int64),
    "randperm_negative": lambda L: L.randperm(-1),
    "inplace_on_leaf": lambda L: L.zeros(2, requires_grad=True).normal_(),
}


@pytest.mark.parametrize("case", sorted(RANDOM_ERRORS))
def test_random_errors_match_torch(case):
    assert_same_outcome(RANDOM_ERRORS[case], same_type_only=case == "generator_cuda")


SIZE_KEYWORD = {
    "zeros": lambda L: L.zeros(size=(2, 3)).shape,
    "ones": lambda L: L.ones(size=[1]).shape,
    "empty": lambda L: L.empty(size=(2,)).shape,
    "rand": lambda L: L.rand(size=(2,)).shape,
    "randn": lambda L: L.randn(size=[3], generator=L.Generator().manual_seed(1)).tolist(),
    "randint_keywords": lambda L: L.randint(high=5, size=(3,),
                                            generator=L.Generator().manual_seed(1)).tolist(),
    "twice": lambda L: L.zeros(2, size=(3,)),
}


@pytest.mark.parametrize("case", sorted(SIZE_KEYWORD))
def test_size_keyword_matches_torch(case):
    assert_same_outcome(SIZE_KEYWORD[case])


def test_random_fill_of_a_graph_tensor_is_refused_not_silently_kept():
    """PyTorch records a node with zero gradients; nbgrad refuses rather than send gradients
    through the overwritten values."""
    h = nbgrad.ones(3, requires_grad=True) * 2
    with pytest.raises(NotImplementedError, match="random in-place fills"):
        h.normal_()
    with nbgrad.no_grad():
        h.uniform_()


def test_torch_random_module():
    def run(L):
        L.random.manual_seed(3)
        with L.random.fork_rng():
            inside = L.rand(2)
        after = L.rand(2)  # the same numbers: the state was restored
        return [inside.tolist(), after.tolist(), L.random.initial_seed(),
                L.random.get_rng_state().shape[0]]
    assert run(nbgrad) == run(torch)
    assert nbgrad.random.default_generator is nbgrad.default_generator


def test_new_factories_take_the_tensors_dtype():
    """x.new_zeros/new_ones/new_empty/new_full/new_tensor: x's dtype unless one is given,
    sizes as varargs or one tuple, new_tensor a copy outside any graph."""
    results = []
    for lib in (torch, nbgrad):
        x = lib.ones(2, dtype=lib.float64, requires_grad=True)
        data = np.array([1.5, 2.5], np.float32)
        made = [x.new_zeros((2, 3)), x.new_zeros(2, 3), x.new_ones(2), x.new_empty(0),
                x.new_full((2,), 3), x.new_tensor(data), x.new_zeros(2, dtype=lib.int64)]
        copy = x.new_tensor(data)
        data[0] = 9.0
        results.append([(tuple(t.shape), str(t.dtype).split(".")[-1], t.requires_grad) for t in made]
                       + [made[0].tolist(), made[4].tolist(), copy.tolist()])
    assert results[0] == results[1]

