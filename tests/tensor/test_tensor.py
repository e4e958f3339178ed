"""The Tensor object: factories, dtypes, conversions, Python protocols, repr.

Expected values come from running the same code with torch.
"""

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, assert_same_dtype, dtype_name, to_both, to_numpy

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
# dtypes and conversions
# ---------------------------------------------------------------------------------------------


def test_dtype_objects():
    names = ["float32", "float64", "int64", "bool"]
    dts = [getattr(nbgrad, n) for n in names]
    assert len(set(map(id, dts))) == 4
    for n, d in zip(names, dts):
        assert dtype_name(d) == n
        assert d == getattr(nbgrad, n)
    assert nbgrad.tensor([1.0]).dtype == nbgrad.float32  # float32 is the default


CONVERSIONS = {
    "float_from_int": lambda L: L.tensor([1, -2, 3]).float(),
    "double": lambda L: L.tensor([1.5, 2.25]).double(),
    "long_truncates": lambda L: L.tensor([1.7, -1.7, 0.2]).long(),
    "bool_from_float": lambda L: L.tensor([0.0, 2.0, -0.5]).bool(),
    "bool_from_int": lambda L: L.tensor([1, 0, 3]).bool(),
    "float_from_bool": lambda L: L.tensor([True, False]).float(),
    "long_from_bool": lambda L: L.tensor([True, False]).long(),
    "to_f64": lambda L: L.tensor([1.5, 2.0]).to(L.float64),
    "to_i64": lambda L: L.tensor([1.5, 2.0]).to(L.int64),
    "to_f32_from_f64": lambda L: L.tensor([0.1, 0.2], dtype=L.float64).to(L.float32),
    "to_kw": lambda L: L.tensor([1, 2]).to(dtype=L.float32),
    "type_f64": lambda L: L.tensor([1.5, 2.0]).type(L.float64),
    "type_i64": lambda L: L.tensor([1.5, 2.0]).type(L.int64),
}


@pytest.mark.parametrize("case", sorted(CONVERSIONS))
def test_conversions_match_torch(case):
    expected = CONVERSIONS[case](torch)
    actual = CONVERSIONS[case](nbgrad)
    assert isinstance(actual, nbgrad.Tensor)
    assert_close(actual, expected)


@pytest.mark.parametrize("method", ["double", "to"])
def test_conversion_is_differentiable(method):
    res = []
    for lib in (torch, nbgrad):
        x = lib.tensor([1.5, -2.0], requires_grad=True)
        y = x.double() if method == "double" else x.to(lib.float64)
        assert y.dtype == lib.float64 and y.requires_grad
        (y * y).sum().backward()
        res.append(x.grad)
    assert res[1].dtype == nbgrad.float32
    assert_close(res[1], res[0])


# ---------------------------------------------------------------------------------------------
# attributes and Python protocols
# ---------------------------------------------------------------------------------------------

M = np.array([[1.5, -2.0, 3.25], [0.1, 0.0, -7.5]], dtype=np.float32)


def test_shape_size_numel_dim():
    x = nbgrad.tensor(M)
    assert x.shape == (2, 3)
    assert tuple(x.shape) == (2, 3)
    assert x.shape[0] == 2 and x.shape[-1] == 3
    assert x.size() == (2, 3)
    assert x.size(0) == 2 and x.size(-1) == 3 and x.size(1) == 3
    assert x.numel() == 6
    assert x.dim() == 2 and x.ndim == 2
    s = nbgrad.tensor(2.0)
    assert s.shape == () and s.dim() == 0 and s.ndim == 0 and s.numel() == 1
    assert nbgrad.zeros(0, 4).numel() == 0


def test_T_attribute():
    t, n = to_both(M, requires_grad=True)
    assert_close(n.T, t.T)
    g = np.arange(6, dtype=np.float32).reshape(3, 2)
    t.T.backward(torch.tensor(g))
    n.T.backward(nbgrad.tensor(g))
    assert_close(n.grad, t.grad)


def test_item():
    assert nbgrad.tensor(2.5).item() == torch.tensor(2.5).item()
    assert nbgrad.tensor([1.1]).item() == torch.tensor([1.1]).item()  # float32 value as a float
    assert isinstance(nbgrad.tensor(2.5).item(), float)
    assert isinstance(nbgrad.tensor(3).item(), int) and nbgrad.tensor(3).item() == 3
    assert nbgrad.tensor(True).item() is True
    x = nbgrad.tensor([2.0], requires_grad=True)
    assert (x * 3).sum().item() == 6.0  # item() works on tensors that require grad
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        nbgrad.tensor(M).item()


@pytest.mark.parametrize(
    "make",
    [
        lambda L: L.tensor(np.array([[1.1, 2.0], [3.0, -0.3]], dtype=np.float32)),
        lambda L: L.tensor(1.1),
        lambda L: L.tensor([1, 2, 3]),
        lambda L: L.tensor([True, False]),
        lambda L: L.tensor([0.1, 0.2], dtype=L.float64),
        lambda L: L.zeros(2, 0),
    ],
    ids=["f32_2d", "f32_0d", "int64", "bool", "f64", "empty"],
)
def test_tolist_matches_torch(make):
    expected = make(torch).tolist()
    actual = make(nbgrad).tolist()
    assert actual == expected
    assert type(actual) is type(expected)


def test_numpy():
    x = nbgrad.tensor(M)
    a = x.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, M)
    assert nbgrad.tensor([1, 2]).numpy().dtype == np.int64
    assert nbgrad.tensor([True]).numpy().dtype == np.bool_
    assert nbgrad.tensor(1.5, dtype=nbgrad.float64).numpy().shape == ()
    y = nbgrad.tensor(M, requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        y.numpy()
    np.testing.assert_array_equal(y.detach().numpy(), M)


def test_array_protocol():
    x = nbgrad.tensor(M)
    a = np.asarray(x)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, M)
    b = np.asarray(x, dtype=np.float64)
    assert b.dtype == np.float64
    np.testing.assert_array_equal(b, M.astype(np.float64))
    np.testing.assert_array_equal(np.array(nbgrad.tensor([1, 2])), np.array([1, 2]))


def test_len_and_iteration():
    t, x = to_both(M)
    assert len(x) == len(t) == 2
    rows = list(x)
    assert len(rows) == 2
    for r, tr in zip(rows, t):
        assert isinstance(r, nbgrad.Tensor)
        assert_close(r, tr)
    elems = list(nbgrad.tensor([1.0, 2.0]))
    assert [e.shape for e in elems] == [(), ()]
    assert [e.item() for e in elems] == [1.0, 2.0]
    assert len(nbgrad.zeros(0, 3)) == 0
    with pytest.raises(TypeError, match="0-d"):
        len(nbgrad.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(nbgrad.tensor(1.0))


def test_iteration_is_differentiable():
    res = []
    for lib in (torch, nbgrad):
        x = lib.tensor(M, requires_grad=True)
        total = sum((row * (i + 1)).sum() for i, row in enumerate(x))
        total.backward()
        res.append(x.grad)
    assert_close(res[1], res[0])


def test_data_attribute():
    w = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = w.data
    assert isinstance(d, nbgrad.Tensor)
    assert d.requires_grad is False
    assert_close(d, np.array([1.0, 2.0, 3.0], np.float32))
    w.data -= 0.5  # the old-style SGD update: no error, w stays a leaf that requires grad
    assert w.is_leaf and w.requires_grad
    assert_close(w.detach(), np.array([0.5, 1.5, 2.5], np.float32))


# ---------------------------------------------------------------------------------------------
# __setitem__, zero_, fill_ on tensors that do not require grad
# ---------------------------------------------------------------------------------------------

SETITEM = {
    "int": lambda L, x: x.__setitem__(0, 5.0),
    "neg_int": lambda L, x: x.__setitem__(-1, 5.0),
    "int_int": lambda L, x: x.__setitem__((1, 2), -1.0),
    "slice": lambda L, x: x.__setitem__(slice(1, None), 2.5),
    "slice_step": lambda L, x: x.__setitem__((slice(None), slice(None, None, 2)), 0.0),
    "column_tensor": lambda L, x: x.__setitem__((slice(None), 1), L.tensor([7.0, 8.0, 9.0])),
    "broadcast_row": lambda L, x: x.__setitem__(slice(0, 2), L.tensor([1.0, 2.0, 3.0, 4.0])),
    "ellipsis": lambda L, x: x.__setitem__((Ellipsis, 0), 3.0),
    "mask": lambda L, x: x.__setitem__(x > 0, 0.0),
    "index_tensor": lambda L, x: x.__setitem__(L.tensor([2, 0]), -3.0),
    "zero_": lambda L, x: x.zero_(),
    "fill_": lambda L, x: x.fill_(1.25),
    "iadd_tensor": lambda L, x: x.__iadd__(L.tensor([1.0, 2.0, 3.0, 4.0])),
    "imul_scalar": lambda L, x: x.__imul__(-2.0),
}


@pytest.mark.parametrize("case", sorted(SETITEM))
def test_inplace_value_semantics_match_torch(case):
    base = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    t = torch.tensor(base)
    n = nbgrad.tensor(base)
    SETITEM[case](torch, t)
    SETITEM[case](nbgrad, n)
    assert_close(n, t)


def test_setitem_through_view_changes_base():
    res = []
    for lib in (torch, nbgrad):
        x = lib.zeros(3, 4)
        row = x[1]
        row[2] = 7.0
        x.T[0] += 1.0
        res.append(x)
    assert_close(res[1], res[0])


# ---------------------------------------------------------------------------------------------
# repr: torch's string with 'torch.' replaced by 'nbgrad.'
# ---------------------------------------------------------------------------------------------

REPRS = {
    "float_vector": lambda L: L.tensor([1.0368, 2.7163]),
    "integer_valued_floats": lambda L: L.tensor([1.0, 2.0, 3.0]),
    "mixed_signs": lambda L: L.tensor([-1.5, 0.0, 2.0]),
    "tenths": lambda L: L.tensor([0.1, 0.2, 0.3]),
    "float_0d": lambda L: L.tensor(3.5),
    "float_0d_integer": lambda L: L.tensor(2.0),
    "requires_grad_leaf": lambda L: L.tensor([1.0, 2.0], requires_grad=True),
    "grad_fn_output": lambda L: L.tensor([1.0368, 2.7163], requires_grad=True) + 1.0,
    "grad_fn_0d": lambda L: (L.tensor([1.0, 2.0], requires_grad=True) ** 2).sum(),
    "int64": lambda L: L.tensor([1, 2, 3]),
    "int64_0d": lambda L: L.tensor(7),
    "int64_2d": lambda L: L.tensor([[1, 2], [3, 4]]),
    "bool": lambda L: L.tensor([True, False]),
    "bool_0d": lambda L: L.tensor(True),
    "float_2d": lambda L: L.tensor([[1.5, 2.25], [3.0, 4.0]]),
    "float64": lambda L: L.tensor([1.5, 2.0], dtype=L.float64),
    "float64_requires_grad": lambda L: L.tensor([1.0, 2.0], dtype=L.float64, requires_grad=True),
    "float64_grad_fn": lambda L: L.tensor([0.5], dtype=L.float64, requires_grad=True) * 2.0,
    "empty": lambda L: L.zeros(0),
}


@pytest.mark.parametrize("case", sorted(REPRS))
def test_repr_matches_torch(case):
    expected = repr(REPRS[case](torch)).replace("torch.", "nbgrad.")
    actual = REPRS[case](nbgrad)
    assert repr(actual) == expected
    assert str(actual) == expected


def test_dtype_repr():
    for name in ("float32", "float64", "int64", "bool"):
        assert repr(getattr(nbgrad, name)) == repr(getattr(torch, name)).replace("torch.", "nbgrad.")
