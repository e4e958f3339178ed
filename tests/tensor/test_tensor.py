"""The Tensor object: dtypes, conversions, Python protocols, in-place value semantics, repr.
(Factories are in test_factories.py.)

Expected values come from running the same code with torch.
"""

import re

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, dtype_name, rng_for, to_both

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


def test_memory_attributes_match_torch():
    """element_size, itemsize, nbytes, storage_offset, and data_ptr's offsets between views."""
    def facts(L):
        x = L.zeros(4, 6)
        tensors = [x, x.t(), x[1:, 2:], x[:, ::2], x.expand(3, 4, 6), x[2], x.view(24)[5:],
                   L.zeros(2, dtype=L.bfloat16), L.zeros(3, dtype=L.int64), L.zeros(0),
                   (L.ones(3, requires_grad=True) * 2)[1:], x[3, 1:].detach()]
        return [(t.element_size(), t.itemsize, t.nbytes, t.storage_offset(),
                 t.data_ptr() - tensors[0].data_ptr() if t.numel() and t.dtype == x.dtype
                 and t.ndim != 1 else None) for t in tensors]
    assert facts(nbgrad) == facts(torch)


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


def test_format_of_a_0d_tensor_formats_its_number_as_torch():
    for spec in ("", ".3f", "8.2e", "+"):
        assert format(nbgrad.tensor(2.5), spec) == format(torch.tensor(2.5), spec)
    assert f"{nbgrad.ones(2)}" == "tensor([1., 1.])"
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        f"{nbgrad.ones(2):.2f}"


REPR_CASES = [
    np.array([np.nan, np.inf]), np.array([1.5, np.nan, np.inf, -np.inf]), np.array([1.0, np.nan]),
    np.array([0, 7, 0, 3, 0, 6, 0, 1, 2, 1, 4, 3, 1, 1, 1, 1, 3, 0, 0, 1, 0, 1], np.int32),
    np.arange(30, dtype=np.int16).reshape(3, 10) * 1000, np.array([1e-5, 1.0]), np.array([1e10, 1.0]),
    np.array([123456.789, 1.0]), np.array([-0.0, 0.0]), np.array([1.0, 2.0, 3.0]) / 3, np.array(3.5),
    np.linspace(0, 1, 2000), np.arange(2000, dtype=np.int64), np.array([True, False]),
    np.array([2.0**40, 1.0]), np.array([0.1, 1e-9]), np.arange(100, dtype=np.float32).reshape(4, 25) / 7,
    np.array([1e8, 1.0]), np.zeros((0, 3), np.float32), np.zeros((2, 0), np.int64), np.array([255, 3], np.uint8),
    np.array([1e-8, 1.0, 0.0, np.nan, 2.5, 3.25, 100.0]),
    rng_for("repr").standard_normal((3, 30)), rng_for("repr").standard_normal((20, 60)).astype(np.float32),
]
PRINT_OPTIONS = [{}, dict(sci_mode=False), dict(sci_mode=True), dict(profile="short"),
                 dict(precision=6, linewidth=44), dict(threshold=5, edgeitems=1), dict(profile="full")]


@pytest.mark.parametrize("options", PRINT_OPTIONS, ids=str)
def test_repr_and_print_options_match_torch(options):
    # nbgrad names its own module (nbgrad.float64); the rest of the text is torch's. NOTE: the
    # name is one character longer than torch's, which can move the dtype to its own line a
    # character earlier: where the dtype goes is compared by the other cases.
    try:
        for lib in (torch, nbgrad):
            lib.set_printoptions(**options)
        for array in REPR_CASES:
            expected = repr(torch.from_numpy(array.copy()))
            ours = repr(nbgrad.from_numpy(array.copy())).replace("nbgrad.", "torch.")
            if ours != expected and "\n" + " " * 7 + "dtype=" in ours + expected:
                ours, expected = (re.sub(r",\s+dtype=", ", dtype=", text) for text in (ours, expected))
            assert ours == expected
        for lib in (torch, nbgrad):
            x = lib.tensor([1.5, 2.0], requires_grad=True)
            assert repr(x * 2).replace("nbgrad.", "torch.") == repr(torch.tensor([1.5, 2.0], requires_grad=True) * 2)
    finally:
        for lib in (torch, nbgrad):
            lib.set_printoptions(profile="default", sci_mode=None)


def test_add_and_sub_with_a_number_and_alpha_match_torch():
    # `other * alpha` of two numbers stays a number (it crashed in mul before).
    for call in (lambda L, a: L.add(a.sin(), 2, alpha=3), lambda L, a: L.sub(a, 2, alpha=3),
                 lambda L, a: a.add(2.5, alpha=2), lambda L, a: L.add(a.detach().long(), 2, alpha=3)):
        t_a, n_a = to_both(np.array([0.5, 1.5], np.float32), requires_grad=True)
        t_out, n_out = call(torch, t_a), call(nbgrad, n_a)
        assert_close(n_out, t_out.detach())
        assert str(n_out.dtype).split(".")[1] == str(t_out.dtype).split(".")[1]
        if t_out.requires_grad:
            t_out.sum().backward()
            n_out.sum().backward()
            assert_close(n_a.grad, t_a.grad)


@pytest.mark.parametrize("reshaped", [
    lambda x: x.t().reshape(6), lambda x: x.t().flatten(), lambda x: x.t().ravel(),
    lambda x: x.reshape(3, 2),  # (a view: writes reach x)
])
def test_reshape_of_a_strided_tensor_copies_as_torchs(reshaped):
    """Where no view of the shape exists, reshape, flatten and ravel copy: a write into the
    result leaves the input and its version alone, and no "modified by an inplace
    operation" error follows (the result shared the input's version counter before)."""
    seen = []
    for lib in (torch, nbgrad):
        x = lib.arange(6.0).reshape(2, 3)
        w = lib.ones(2, 3, requires_grad=True)
        product = w * x  # saves x
        y = reshaped(x)
        y.add_(1.0)
        try:
            product.sum().backward()  # x's version decides whether this raises
            outcome = w.grad.tolist()
        except RuntimeError as error:
            outcome = "modified by an inplace operation" in str(error)
        seen.append((x.tolist(), x._version, y.tolist(), outcome,
                     type(reshaped(lib.ones(2, 3, requires_grad=True)).grad_fn).__name__))
    assert seen[1] == seen[0]
