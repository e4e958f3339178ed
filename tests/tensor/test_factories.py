"""Factories: tensor(), from_numpy, zeros/ones/full/eye/arange/linspace/empty, the *_like
factories, the random factories and manual_seed.

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
