"""Dtypes against PyTorch.

- Type promotion: every pair of bool, int64, float32 and float64 operands (0-d and n-d) and
  Python bool/int/float scalars, through add/sub/mul/div/maximum/where/comparisons, with
  deferral off, deferred from a leaf that requires grad, and deferred from operands that
  are themselves deferred results; dtype (before the value is read), value and `.grad`.
- Casts to integer or bool stop the gradient; no op with an integer or bool result
  requires grad.
- PyTorch's errors: `-` on bool tensors, `cat([])`, sizes that cannot be allocated,
  load_state_dict values that are not tensors.
- A 1-D empty tensor that `cat` skips still gets its empty `.grad`.
"""
import functools
import itertools
import operator
import re
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.fuse import deferred

from conftest import assert_close, dtype_name, grad_fn_name

MODES = ("immediate", "deferred_leaf", "deferred_chain")


@pytest.fixture
def mode(request, monkeypatch):
    """The eager mode a test runs in (parametrize `mode` indirectly)."""
    monkeypatch.setattr(deferred, "enabled", request.param != "immediate")
    monkeypatch.setattr(deferred, "_graphs", {})
    return request.param


def lib_dtype(L, name):
    return getattr(L, name)


# name -> value: a tensor (its dtype name and NumPy value) or a Python scalar. The values
# have ties between float32 and float64 (maximum splits the gradient) and a False divisor.
_ND = {"bool": [True, False, True], "int64": [2, -3, 1], "float32": [1.5, -2.0, 3.0],
       "float64": [1.5, -2.0, 3.0]}
_0D = {"bool": True, "int64": -3, "float32": 2.0, "float64": -1.5}
TENSORS = {f"{dtype}_{rank}": (dtype, np.array(values[dtype]))
           for rank, values in (("nd", _ND), ("0d", _0D)) for dtype in values}
SCALARS = {"py_bool": True, "py_int": -3, "py_float": 2.5}
OPERANDS = list(TENSORS) + list(SCALARS)


class Operands:
    """The operands of one case in library `L`: leaves (which get gradients) and what the op
    is given (the leaf, or in deferred_chain mode a deferred `leaf * 1.0`)."""

    def __init__(self, L, mode):
        self.L, self.mode, self.leaves = L, mode, []

    def __call__(self, name):
        if name in SCALARS:
            return SCALARS[name]
        dtype, value = TENSORS[name]
        floating = dtype.startswith("float")
        leaf = self.L.tensor(value, dtype=lib_dtype(self.L, dtype), requires_grad=floating)
        self.leaves.append(leaf)
        if self.mode == "deferred_chain" and floating:
            operand = leaf * 1.0
            if self.L is nbgrad:
                assert deferred.is_deferred(operand)
            return operand
        return leaf


def _condition(L):
    return L.tensor([True, False, False])


BINARY = {
    "add": lambda L, a, b: a + b,
    "sub": lambda L, a, b: a - b,
    "mul": lambda L, a, b: a * b,
    "div": lambda L, a, b: a / b,
    "maximum": lambda L, a, b: L.maximum(a, b),
    "where": lambda L, a, b: L.where(_condition(L), a, b),
    "lt": lambda L, a, b: a < b,
    "eq": lambda L, a, b: a == b,
    "ge": lambda L, a, b: a >= b,
}


def _valid(op, a, b):
    if op == "maximum":  # torch.maximum takes tensors only
        return a in TENSORS and b in TENSORS
    return op == "where" or a in TENSORS or b in TENSORS


PROMOTION_CASES = [(op, a, b) for op in BINARY for a, b in itertools.product(OPERANDS, repeat=2)
                   if _valid(op, a, b)]


def run_case(L, mode, fn):
    """(result or the exception raised, leaves, dtype read before the value, [grads])."""
    operands = Operands(L, mode)
    try:
        result = fn(L, operands)
    except Exception as error:  # noqa: BLE001 (the reference decides what must be raised)
        return error, operands.leaves, None
    # Read before anything realizes a deferred result: the dtype its shape rule promised.
    dtype = dtype_name(result.dtype)
    if result.requires_grad:
        result.sum().backward()
    return result, operands.leaves, dtype


def compare(fn, mode):
    expected, torch_leaves, torch_dtype = run_case(torch, mode, fn)
    actual, leaves, dtype = run_case(nbgrad, mode, fn)
    if isinstance(expected, Exception):
        assert type(actual) is type(expected), (actual, expected)
        assert str(actual) == str(expected)
        return
    if isinstance(actual, Exception):
        raise actual
    assert dtype == torch_dtype
    assert actual.requires_grad == expected.requires_grad
    assert grad_fn_name(actual) == grad_fn_name(expected)
    assert_close(actual, expected)
    for leaf, torch_leaf in zip(leaves, torch_leaves):
        assert (leaf.grad is None) == (torch_leaf.grad is None)
        if torch_leaf.grad is not None:
            assert_close(leaf.grad, torch_leaf.grad)


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("op, a, b", PROMOTION_CASES)
def test_promotion_table(op, a, b, mode):
    compare(lambda L, operand: BINARY[op](L, operand(a), operand(b)), mode)


def test_deferred_float64_times_scalar_plus_float32_is_float64():
    """The issue's reproducer: a deferred operand is a tensor in promotion, not a scalar."""
    results = {}
    for L in (torch, nbgrad):
        a = L.ones(3, dtype=L.float64, requires_grad=True)
        c = (a * 2) + L.ones(3)
        assert dtype_name(c.dtype) == "float64"
        c.sum().backward()
        results[L] = c, a.grad
    for actual, expected in zip(results[nbgrad], results[torch]):
        assert_close(actual, expected)


FLOAT_LEAVES = [name for name in TENSORS if name.startswith("float")]


@pytest.mark.parametrize("mode", ("immediate", "deferred_leaf"), indirect=True)
@pytest.mark.parametrize("first, second, third",
                         list(itertools.product(FLOAT_LEAVES, OPERANDS, OPERANDS)))
def test_chained_promotion(first, second, third, mode):
    """A deferred result (of mixed dtypes) feeds the next op, and that result the next."""
    def fn(L, operand):
        product = operand(first) * operand(second)
        return L.where(_condition(L), product + operand(third), product / 4)
    compare(fn, mode)


def _mixed_step(L, x, y, z):
    """Mixed dtypes, an integer cast and a comparison in one training step."""
    out = ((x.long().float() * 2.0 + x * y + (x > 0)) * 3 + z / 2).sum()
    out.backward()
    return out


def _mixed_arguments(L):
    return (L.tensor([1.5, -2.0, 3.0], requires_grad=True),
            L.tensor(2.0, dtype=L.float64, requires_grad=True),
            L.tensor([0.5, 1.0, -1.0], dtype=L.float64, requires_grad=True))


@pytest.mark.parametrize("how", ["deferred_loop", "compile"])
def test_mixed_dtypes_in_steps_that_fuse(how, monkeypatch):
    """Past FUSE_AFTER (deferred mode) and in nbgrad.compile called with new tensors."""
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    arguments = _mixed_arguments(torch)
    expected = _mixed_step(torch, *arguments)
    step = nbgrad.compile(_mixed_step) if how == "compile" else _mixed_step
    for _ in range(deferred.FUSE_AFTER + 4):
        actual_arguments = _mixed_arguments(nbgrad)
        assert_close(step(nbgrad, *actual_arguments), expected)
        for actual, reference in zip(actual_arguments, arguments):
            assert_close(actual.grad, reference.grad)
    if how == "compile":
        assert step.stats["fused_calls"] == deferred.FUSE_AFTER + 3, step.explain()


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_division_gradient_of_tiny_and_huge_divisors(dtype, mode):
    """d(a/b)/db is -g * ((a / b) / b) as in PyTorch: -g * a / (b * b) overflowed to -inf
    (b * b underflows) and flushed to -0 (b * b overflows)."""
    big = 1e200 if dtype == "float64" else 1e30
    numerators = np.array([1.0 / big, big, 3.0, -2.0], dtype)
    divisors = np.array([1.0 / big, big / 1e10, 7.0, 0.0], dtype)

    def fn(L, operand):
        a = L.tensor(numerators, requires_grad=True)
        b = L.tensor(divisors, requires_grad=True)
        operand.leaves += [a, b]
        if operand.mode == "deferred_chain":
            a, b = a * 1.0, b * 1.0
        return a / b
    compare(fn, mode)


# --- casts to integer and bool ---------------------------------------------------------------

CASTS = {
    "long": lambda L, x: x.long(),
    "bool": lambda L, x: x.bool(),
    "to_int64": lambda L, x: x.to(L.int64),
    "to_bool": lambda L, x: x.to(L.bool),
    "to_dtype_keyword": lambda L, x: x.to(dtype=L.int64),
    "type_dtype": lambda L, x: x.type(L.int64),
    "type_string": lambda L, x: x.type("torch.LongTensor"),
    "type_bool_string": lambda L, x: x.type("torch.BoolTensor"),
    # Float casts keep the gradient.
    "double": lambda L, x: x.double(),
    "to_float64": lambda L, x: x.to(L.float64),
    "double_float": lambda L, x: x.double().float(),
    # Other ops with an integer or bool result.
    "argmax": lambda L, x: x.argmax(),
    "argmin_dim": lambda L, x: x.argmin(0),
    "max_dim_indices": lambda L, x: x.max(0).indices,
    "gt": lambda L, x: x > 0,
    "logical_not": lambda L, x: L.logical_not(x),
    "long_times_two": lambda L, x: x.long() * 2,
    "long_sum": lambda L, x: x.long().sum(),
    "long_plus_x": lambda L, x: x.long() + x,
    "bool_and": lambda L, x: (x > 0) & x.bool(),
    "where_long": lambda L, x: L.where(x > 0, x.long(), 3),
    "where_float": lambda L, x: L.where(x > 0, x, 3),
    "cat_long": lambda L, x: L.cat([x.long(), x.long()]),
    "clone_long": lambda L, x: x.long().clone(),
    "index_long": lambda L, x: x.long().reshape(-1)[1:],
}


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("cast", CASTS)
def test_integer_and_bool_results_do_not_require_grad(cast, mode):
    def fn(L, operand):
        return CASTS[cast](L, operand("float32_nd"))
    compare(fn, mode)
    compare(lambda L, operand: CASTS[cast](L, operand("float64_0d")), mode)


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_gradient_stops_at_an_integer_cast(mode):
    """The issue's reproducer: (x.long().float() * 2.0 + x).sum() has gradient 1."""
    compare(lambda L, operand: (operand("float32_nd").long().float() * 2.0
                                + operand("float32_nd")), mode)
    grads = {}
    for L in (torch, nbgrad):
        x = L.tensor([1.5, -2.0, 3.0], requires_grad=True)
        (x.long().float() * 2.0 + x.bool() * x + x).sum().backward()
        grads[L] = x.grad
    assert_close(grads[nbgrad], grads[torch])


def test_integer_cast_inside_a_fused_training_loop(monkeypatch):
    """The loop that eager mode fuses after FUSE_AFTER runs keeps the gradient at 1."""
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    x = nbgrad.tensor([1.5, -2.0, 3.0], requires_grad=True)
    t = torch.tensor([1.5, -2.0, 3.0], requires_grad=True)
    (t.long().float() * 2.0 + t * 3.0).sum().backward()
    for _ in range(deferred.FUSE_AFTER + 4):
        x.grad = None
        loss = (x.long().float() * 2.0 + x * 3.0).sum()
        loss.backward()
        assert_close(x.grad, t.grad)


def test_cast_result_cannot_require_grad():
    for L in (torch, nbgrad):
        y = L.tensor([1.5], requires_grad=True).long()
        with pytest.raises(RuntimeError, match="floating point"):
            y.requires_grad_()


# --- errors ------------------------------------------------------------------------------------

BOOL_ERRORS = {
    "bool_minus_bool": lambda L, b: b - b,
    "bool_minus_python_bool": lambda L, b: b - True,
    "python_bool_minus_bool": lambda L, b: True - b,
    "bool_minus_int": lambda L, b: b - 1,
    "float_minus_bool": lambda L, b: 1.5 - b,
    "int_tensor_minus_bool": lambda L, b: L.tensor([1, 2]) - b,
    "bool_minus_float_tensor": lambda L, b: b - L.ones(2, requires_grad=True),
    "deferred_minus_bool": lambda L, b: L.ones(2, requires_grad=True) * 2.0 - b,
    "sub_function": lambda L, b: L.sub(b, b),
    "sub_in_place": lambda L, b: L.ones(2).sub_(b),
    "neg": lambda L, b: -b,
    "neg_function": lambda L, b: L.neg(b),
    "neg_method": lambda L, b: b.neg(),
}


@pytest.mark.parametrize("mode", ("immediate", "deferred_leaf"), indirect=True)
@pytest.mark.parametrize("case", BOOL_ERRORS)
def test_minus_on_bool_raises_torchs_error(case, mode):
    with pytest.raises(RuntimeError) as expected:
        BOOL_ERRORS[case](torch, torch.tensor([True, False]))
    with pytest.raises(RuntimeError) as actual:
        BOOL_ERRORS[case](nbgrad, nbgrad.tensor([True, False]))
    assert str(actual.value) == str(expected.value)


# Lists and tuples are no operands (PyTorch converts none): a function raises its TypeError,
# an operator gives Python the other operand's turn, whose own error follows (`==` falls back
# to identity).
LIST_OPERANDS = {
    "mul": lambda L, t: L.mul(t, [1.0, 2.0]),
    "add_tuple": lambda L, t: L.add(t, (1.0, 2.0)),
    "maximum": lambda L, t: L.maximum(t, [1.0, 2.0]),
    "matmul": lambda L, t: L.matmul(t, [1.0, 2.0]),
    "times": lambda L, t: t * [1.0, 2.0],
    "list_times": lambda L, t: [1.0, 2.0] * t,
    "plus": lambda L, t: t + [1.0, 2.0],
    "list_plus": lambda L, t: [1.0, 2.0] + t,
    "list_minus": lambda L, t: [1.0, 2.0] - t,
    "list_over": lambda L, t: [1.0, 2.0] / t,
    "power": lambda L, t: t ** [1.0, 2.0],
    "list_power": lambda L, t: [1.0, 2.0] ** t,
    "at": lambda L, t: t @ [1.0, 2.0],
    "list_at": lambda L, t: [1.0, 2.0] @ t,
    "in_place_plus": lambda L, t: operator.iadd(t, [1.0, 2.0]),
    "in_place_times": lambda L, t: operator.imul(t, (1.0, 2.0)),
    "equal": lambda L, t: t == [1.0, 2.0],
    "not_equal": lambda L, t: t != [1.0, 2.0],
    "less": lambda L, t: t < [1.0, 2.0],
    "and": lambda L, t: (t > 1) & [True, False],
    "pow": lambda L, t: L.pow(t, [1.0, 2.0]),
}
# Torch's message differs: a method counts `other` as position 1; the functions with a Scalar
# overload list their signatures ("received an invalid combination of arguments").
LIST_OPERAND_TYPE_ONLY = {
    "mul_method": lambda L, t: t.mul([1.0, 2.0]),
    "add_in_place_method": lambda L, t: t.add_([1.0, 2.0]),
    "eq": lambda L, t: L.eq(t, [1.0, 2.0]),
    "remainder": lambda L, t: L.remainder(t, [1.0, 2.0]),
    "where": lambda L, t: L.where(t > 1, t, [0.0, 0.0]),
}


def _list_operand_outcome(L, case):
    try:
        return "value", case(L, L.tensor([1.0, 2.0]))
    except TypeError as error:
        return "TypeError", str(error).split("\n")[0]


@pytest.mark.parametrize("case", [*LIST_OPERANDS, *LIST_OPERAND_TYPE_ONLY])
def test_list_operands_as_torch(case):
    call = LIST_OPERANDS.get(case) or LIST_OPERAND_TYPE_ONLY[case]
    (kind, got), (expected_kind, expected) = (_list_operand_outcome(L, call) for L in (nbgrad, torch))
    assert kind == expected_kind
    if case in LIST_OPERANDS:
        assert got == expected


def test_cat_of_no_tensors_is_a_value_error():
    for L in (torch, nbgrad):
        for empty in ([], ()):
            with pytest.raises(ValueError, match=r"torch.cat\(\): expected a non-empty list"):
                L.cat(empty)


SIZE_ERRORS = {
    "empty_overflow": lambda L: L.empty(10**12, 10**12),
    "zeros_overflow": lambda L: L.zeros(2**62),
    "ones_too_large": lambda L: L.ones(10**6, 10**6),
    "randn_too_large": lambda L: L.randn(2**31, 2**20),
    "result_too_large": lambda L: L.ones(10**6, 1) * L.ones(1, 10**6),
    "grad_result_too_large": lambda L: L.ones(10**6, 1, requires_grad=True) + L.ones(1, 10**6),
    "matmul_result_too_large": lambda L: L.ones(10**6, 1) @ L.ones(1, 10**6),
    "empty_negative": lambda L: L.empty(-1),
    "zeros_negative": lambda L: L.zeros(2, -3),
    "ones_negative": lambda L: L.ones((-3,)),
    "full_negative": lambda L: L.full((-1,), 2.0),
    "rand_negative": lambda L: L.rand(-1),
    "randn_negative": lambda L: L.randn(2, -1),
    "randint_negative": lambda L: L.randint(0, 3, (-1,)),
    "randperm_negative": lambda L: L.randperm(-1),
    "eye_negative": lambda L: L.eye(-1),
    "eye_negative_columns": lambda L: L.eye(2, -1),
    "arange_wrong_direction": lambda L: L.arange(-1),
    "arange_wrong_step": lambda L: L.arange(0.0, 1.0, -0.5),
    "linspace_negative": lambda L: L.linspace(0, 1, -1),
    "Tensor_negative": lambda L: L.Tensor(-1),
    "Tensor_negative_2d": lambda L: L.Tensor(2, -1),
}


@pytest.mark.parametrize("case", SIZE_ERRORS)
def test_sizes_that_cannot_be_allocated_raise_runtime_error(case):
    """RuntimeError as PyTorch (never ValueError or MemoryError); the same message where
    PyTorch's names the sizes."""
    with pytest.raises(RuntimeError) as expected:
        SIZE_ERRORS[case](torch)
    with pytest.raises(RuntimeError) as actual:
        SIZE_ERRORS[case](nbgrad)
    for words in ("Storage size calculation overflowed", "negative dimension", "got -1",
                  "inconsistent with step sign", "steps must be non-negative"):
        if words in str(expected.value):
            assert str(actual.value) == str(expected.value)
    if "can't allocate memory" in str(expected.value):
        assert "can't allocate memory: you tried to allocate 4000000000000 bytes" in \
            str(actual.value) or case == "randn_too_large"
    # The process goes on.
    assert nbgrad.ones(2).sum().item() == 2.0


@pytest.mark.parametrize("value", [[[1.0, 2.0]], 3.0, (1.0, 2.0)])
@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_refuses_values_that_are_not_tensors(value, strict):
    messages = {}
    for L in (torch, nbgrad):
        module = L.nn.Linear(2, 1)
        before = module.weight.detach().clone()
        with pytest.raises(RuntimeError) as info:
            module.load_state_dict({"weight": value, "bias": L.tensor([0.5])}, strict=strict)
        assert L.equal(module.weight.detach(), before)  # nothing was written
        messages[L] = str(info.value)
    assert messages[torch].startswith("Error(s) in loading state_dict for Linear:\n\t")
    torch_line = messages[torch].splitlines()[1]
    line = messages[nbgrad].splitlines()[1]
    assert line.startswith('\tWhile copying the parameter named "weight", expected nbgrad.Tensor')
    assert line.endswith(f"from checkpoint but received {type(value)}")
    assert torch_line.endswith(f"from checkpoint but received {type(value)}")


def test_load_state_dict_takes_tensors_and_arrays():
    module = nbgrad.nn.Linear(2, 1)
    module.load_state_dict({"weight": np.array([[1.0, 2.0]]), "bias": nbgrad.tensor([0.5])})
    assert module.weight.tolist() == [[1.0, 2.0]] and module.bias.tolist() == [0.5]


# --- cat with 1-D empty tensors ----------------------------------------------------------------

CATS = {
    "after_1d": ([(2,), (0,)], 0),
    "between_2d": ([(2, 2), (0,), (1, 2)], 0),
    "first_dim_1": ([(0,), (2, 2)], 1),
    "negative_dim": ([(2, 3), (0,)], -1),
    "only_empties": ([(0,), (0,)], 0),
    "empty_float64": ([(2, 2), ("float64", 0)], 0),
    "twice_the_same": ([(2, 2), (0,), "again"], 1),
}


@pytest.mark.parametrize("mode", MODES, indirect=True)
@pytest.mark.parametrize("case", CATS)
def test_cat_gives_a_skipped_empty_tensor_its_empty_grad(case, mode):
    shapes, dim = CATS[case]

    def fn(L, operand):
        tensors = []
        for shape in shapes:
            if shape == "again":
                tensors.append(tensors[-1])
                continue
            dtype = L.float32
            if shape[0] == "float64":
                dtype, shape = L.float64, shape[1:]
            leaf = L.arange(float(np.prod(shape))).reshape(shape).to(dtype).requires_grad_()
            operand.leaves.append(leaf)
            tensors.append(leaf * 1.0 if mode == "deferred_chain" else leaf)
        return L.cat(tensors, dim) * 2.0
    compare(fn, mode)


def test_cat_of_a_0d_tensor_names_its_position():
    for L in (torch, nbgrad):
        with pytest.raises(RuntimeError, match=r"zero-dimensional tensor \(at position 1\)"):
            L.cat([L.ones(2), L.tensor(1.0)])


# --- int32, int16, int8, uint8, float16 and bfloat16 -------------------------------------------
#
# Every dtype against PyTorch: the dtype objects, promote_types/can_cast/result_type over all
# pairs, integer arithmetic with wrap-around, casts among all dtypes (float16 and bfloat16
# rounding), finfo/iinfo, reprs, state_dicts, and the bigram-counting line of a well-known
# tutorial. NOTE: each integer dtype compiles its own kernels; the integer tests call each op
# once per dtype, on one input holding the edge values.

ALL_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
              "float32", "float64")
SMALL_INTS = ("uint8", "int8", "int16", "int32")


def test_dtype_objects_and_aliases():
    for name in ALL_DTYPES:
        ours, theirs = getattr(nbgrad, name), getattr(torch, name)
        assert repr(ours) == repr(theirs).replace("torch.", "nbgrad.")
        assert (ours.is_floating_point, ours.is_signed, ours.itemsize, ours.is_complex) == \
            (theirs.is_floating_point, theirs.is_signed, theirs.itemsize, theirs.is_complex)
    for alias in ("int", "short", "half", "long", "float", "double"):
        assert dtype_name(getattr(nbgrad, alias)) == dtype_name(getattr(torch, alias))


def test_promote_types_and_can_cast_over_all_pairs():
    for a, b in itertools.product(ALL_DTYPES, repeat=2):
        ours = nbgrad.promote_types(lib_dtype(nbgrad, a), lib_dtype(nbgrad, b))
        assert dtype_name(ours) == dtype_name(torch.promote_types(lib_dtype(torch, a),
                                                                  lib_dtype(torch, b))), (a, b)
        assert nbgrad.can_cast(lib_dtype(nbgrad, a), lib_dtype(nbgrad, b)) == \
            torch.can_cast(lib_dtype(torch, a), lib_dtype(torch, b)), (a, b)


def test_result_type_of_tensors_and_scalars():
    """Tensors with dimensions outrank 0-d tensors, which outrank Python scalars, unless the
    lower rank brings a higher category."""
    def operands(L):
        made = {f"{name}_{rank}": L.zeros(shape, dtype=lib_dtype(L, name))
                for name in ALL_DTYPES for rank, shape in (("nd", (2,)), ("0d", ()))}
        return {**made, "py_bool": True, "py_int": -3, "py_float": 2.5}
    ours, theirs = operands(nbgrad), operands(torch)
    for a, b in itertools.product(ours, repeat=2):
        if isinstance(ours[a], nbgrad.Tensor) or isinstance(ours[b], nbgrad.Tensor):
            assert dtype_name(nbgrad.result_type(ours[a], ours[b])) == \
                dtype_name(torch.result_type(theirs[a], theirs[b])), (a, b)


# Edge values per dtype: its limits, zero, and values whose sums and products overflow.
INT_VALUES = {"int8": [-128, -7, 0, 5, 100, 127], "uint8": [0, 1, 7, 100, 200, 255],
              "int16": [-32768, -300, 0, 7, 1000, 32767],
              "int32": [-2**31, -70000, 0, 3, 65536, 2**31 - 1]}

# Every integer dtype: overflow of tensor and scalar operands, promotion, division, sums.
INT_OPS = {
    "add": lambda L, x, y: x + y,
    "mul": lambda L, x, y: x * y,
    "add_large_scalar": lambda L, x, y: x + 1000,  # the scalar wraps to the dtype as well
    "lt": lambda L, x, y: x < y,
    "true_division": lambda L, x, y: x / 3,  # to float32
    "sum_dim": lambda L, x, y: x.reshape(2, 3).sum(1, keepdim=True),  # to int64
    "with_uint8": lambda L, x, y: x + L.tensor([1, 2, 3, 4, 5, 6], dtype=L.uint8),
    "with_int8": lambda L, x, y: x * L.tensor([1, -2, 3, -4, 5, -6], dtype=L.int8),
    "with_int64": lambda L, x, y: x - L.tensor([1, 2, 3, 4, 5, 6]),
    "setitem": lambda L, x, y: _set_items(x.clone()),
    "to_int8": lambda L, x, y: x.to(L.int8),  # wraps
}
# int8 and uint8 only (each dtype compiles its own kernels): the other ops of the tutorials.
MORE_INT_OPS = {
    "sub": lambda L, x, y: x - y,
    "true_division_by_large_scalar": lambda L, x, y: x / 1000,
    "neg": lambda L, x, y: -x,
    "abs": lambda L, x, y: x.abs(),
    "maximum": lambda L, x, y: L.maximum(x, y),
    "where": lambda L, x, y: L.where(x > y, x, y),
    "clamp": lambda L, x, y: x.clamp(-3, 3),  # uint8 wraps the -3 (PyTorch's checked_convert)
    "sum": lambda L, x, y: x.sum(),
    "argmax": lambda L, x, y: x.argmax(),
    "in_place_add_of_int64": lambda L, x, y: x.clone().add_(L.tensor([1, 2, 3, 4, 5, 6])),
    "index": lambda L, x, y: x[[0, 2]] + x[x > 0].sum(),
}


def _set_items(x):
    x[1] = 3
    x[[0, 2]] += 1
    return x


@pytest.mark.parametrize("dtype", SMALL_INTS)
def test_integer_arithmetic_as_torch(dtype):
    """Values and dtypes of every op on one tensor of the dtype's edge values, wrapping around
    on overflow as PyTorch."""
    ops = {**INT_OPS, **MORE_INT_OPS} if dtype in ("int8", "uint8") else INT_OPS
    for name, op in ops.items():
        results = {}
        for L in (torch, nbgrad):
            x = L.tensor(INT_VALUES[dtype], dtype=lib_dtype(L, dtype))
            results[L] = op(L, x, x.flip(0))
        assert dtype_name(results[nbgrad].dtype) == dtype_name(results[torch].dtype), name
        np.testing.assert_array_equal(results[nbgrad].numpy(), results[torch].numpy(), name)


def test_integer_errors_as_torch():
    cases = {
        "mean": lambda L: L.tensor([1, 2], dtype=L.int32).mean(),
        "negative_power": lambda L: L.tensor([2], dtype=L.int8) ** -1,
        "clamp_out_of_range": lambda L: L.tensor([2], dtype=L.int8).clamp(max=1000),
        "float_into_int32": lambda L: L.zeros(2, dtype=L.int32).add_(1.5),
        "int_into_bool": lambda L: L.zeros(2, dtype=L.bool).add_(L.tensor([1, 2])),
        "grad_of_int8": lambda L: L.zeros(2, dtype=L.int8).requires_grad_(),
    }
    for name, case in cases.items():
        with pytest.raises(Exception) as expected:
            case(torch)
        with pytest.raises(type(expected.value)) as actual:
            case(nbgrad)
        assert str(actual.value) == str(expected.value), name


def _same_as_torch(case):
    """`case(L)` for both libraries: the same dtype and values, or the same error."""
    try:
        expected = case(torch)
    except Exception as error:  # noqa: BLE001 - any error torch raises is the expected one
        with pytest.raises(type(error)) as actual:
            case(nbgrad)
        assert str(actual.value) == str(error)
        return
    actual = case(nbgrad)
    assert dtype_name(actual.dtype) == dtype_name(expected.dtype)
    if expected.dtype.is_floating_point:
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6)
    else:
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


@pytest.mark.parametrize("case", [
    # A number bound takes part in type promotion: an integer tensor clamped at 1.5 is float.
    lambda L: L.clamp(L.tensor([1, 5], dtype=L.int32), min=1.5, max=4),
    lambda L: L.clamp(L.tensor([1, 5], dtype=L.int8), max=2.5),
    lambda L: L.tensor([1, 5]).clamp_min(-0.0),
    lambda L: L.clamp(L.tensor([1.0, 5.0], dtype=L.float16), min=2),
    lambda L: L.tensor([True, False]).clamp(min=0),
    # An absent bound is the widest value of the result dtype, not of the input's (uint8's
    # 255 became int8's -1).
    lambda L: L.clamp(L.tensor(4, dtype=L.uint8), min=L.tensor([-2, 0, -5], dtype=L.int8)),
    lambda L: L.clamp(L.tensor([True, False]), min=L.tensor(True)),
    lambda L: L.clamp(L.tensor([True, False]), min=True),
    lambda L: L.clamp(L.tensor([True, False]), max=True),
    lambda L: L.clamp(L.tensor([True, False]), False, True),
], ids=["int32_float_bounds", "int8_float_max", "int64_negative_zero", "float16_int_min",
        "bool_int_min", "uint8_int8_tensor_min", "bool_tensor_min", "bool_min", "bool_max",
        "bool_both"])
def test_clamp_promotes_with_its_bounds_as_torch(case):
    _same_as_torch(case)


@pytest.mark.parametrize("case", [
    lambda L: L.tensor([0, 2, -1, 1, -2, 0, 3]) ** L.tensor([-3, -1, -3, -2, -1, 0, 2]),
    lambda L: L.tensor([0, -1, 1, 5], dtype=L.int8) ** L.tensor([-1, -4, -7, -1], dtype=L.int8),
    lambda L: L.pow(0, L.tensor([-3, -1, 0, 2])),
    lambda L: L.pow(-1, L.tensor([-3, -2, 0, 3], dtype=L.int32)),
    lambda L: L.tensor([True, False]) ** L.tensor([True, True]),
    lambda L: L.tensor([True]) ** True,
], ids=["int64", "int8", "zero_base", "minus_one_base", "bool_tensors", "bool_to_bool"])
def test_integer_to_negative_integer_tensor_powers_as_torch(case):
    """PyTorch's powi: 1 at 1, +-1 at -1, 0 elsewhere (0 ** -1 gave the lowest integer)."""
    _same_as_torch(case)


@pytest.mark.parametrize("case", [
    lambda L: L.tensor([[1, 2], [3, 4]]).logsumexp(1),
    lambda L: L.tensor([True, False]).logsumexp(0),
    lambda L: L.logsumexp(L.tensor([1, 2], dtype=L.int8), 0, keepdim=True),
    lambda L: L.tensor([], dtype=L.int64).median(),
    lambda L: L.tensor([], dtype=L.int32).nanmedian(),
    lambda L: L.tensor([], dtype=L.int8).median(),
], ids=["logsumexp_int64", "logsumexp_bool", "logsumexp_int8", "median_empty_int64",
        "nanmedian_empty_int32", "median_empty_int8"])
def test_reductions_of_integers_as_torch(case):
    """logsumexp computes integers and bools in the default float dtype (it raised); the
    median of no integers is PyTorch's NaN cast to the dtype (and warned of the cast)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same_as_torch(case)


@pytest.mark.parametrize("name", ["median", "nanmedian"])
def test_median_of_no_elements_has_an_empty_gradient(name):
    """NaN, in the graph: backward gives the empty input its empty .grad, as PyTorch's."""
    for L in (torch, nbgrad):
        x = L.tensor([], requires_grad=True)
        out = getattr(x, name)()
        out.backward()
        assert np.isnan(out.item()) and out.requires_grad
        assert x.grad is not None and tuple(x.grad.shape) == (0,)


@pytest.mark.parametrize("case", [
    lambda L: L.add(L.tensor([True, False]), True, alpha=2),
    lambda L: L.add(True, L.tensor([True, True, False]), alpha=2),
    lambda L: L.add(L.tensor([True, False]), L.tensor([False, True]), alpha=0),
    lambda L: L.add(L.tensor([1, 2], dtype=L.int8), True, alpha=3),
], ids=["bool_tensor_bool_number", "bool_number_bool_tensor", "two_bool_tensors_alpha_0",
        "int8_bool_number"])
def test_add_with_alpha_keeps_bools_as_torch(case):
    """alpha scales within the result dtype: bools stay bools (True * 2 gave int64)."""
    _same_as_torch(case)


def test_integer_powers_inside_a_compiled_step():
    """The fused kernel's integer power is the eager one's."""
    def step(L, a, b, w):
        out = ((a ** b).to(w.dtype) * w).sum()
        out.backward()
        return out

    values = ([0, 2, -1, 1, 0], [-3, -1, -3, -2, 2])
    expected = step(torch, *map(torch.tensor, values), torch.ones(5, requires_grad=True))
    compiled = nbgrad.compile(functools.partial(step, nbgrad))
    for _ in range(3):
        w = nbgrad.ones(5, requires_grad=True)
        assert compiled(*map(nbgrad.tensor, values), w).item() == expected.item()
    assert compiled.stats["fused_calls"] > 0


def test_bigram_counts_in_an_int32_tensor():
    """The character-level language model lecture's counting loop, unchanged."""
    words = ["emma", "olivia", "ava", "isabella", "sophia"]
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    results = {}
    for L in (torch, nbgrad):
        N = L.zeros((27, 27), dtype=L.int32)
        for w in words:
            chs = ["."] + list(w) + ["."]
            for ch1, ch2 in zip(chs, chs[1:]):
                N[stoi[ch1], stoi[ch2]] += 1
        p = N[0].float()
        p = p / p.sum()
        P = (N + 1).float()
        P /= P.sum(1, keepdim=True)
        results[L] = (N, p, N.sum(1, keepdim=True), P, N.sum())
    for actual, expected in zip(results[nbgrad], results[torch]):
        assert_close(actual, expected)


# Casts: one source array per dtype, in range for every target (no undefined conversions).
CAST_SOURCES = {
    "bool": [True, False, True, True, False, True],
    "integer": [0, 1, 3, 100, 127, 2],
    "floating": [0.0, 1.5, 2.75, 100.25, 127.0, -0.0],
}


def _cast_source(L, name):
    kind = "bool" if name == "bool" else ("floating" if name.startswith(("float", "bfloat"))
                                          else "integer")
    return L.tensor(CAST_SOURCES[kind], dtype=lib_dtype(L, name))


def test_casts_among_all_dtypes():
    for source, target in itertools.product(ALL_DTYPES, repeat=2):
        results = {L: _cast_source(L, source).to(lib_dtype(L, target)) for L in (torch, nbgrad)}
        assert dtype_name(results[nbgrad].dtype) == target
        np.testing.assert_array_equal(results[nbgrad].float().numpy(),
                                      results[torch].float().numpy(), f"{source} -> {target}")


CAST_METHODS = ("int", "short", "char", "byte", "half", "bfloat16", "float", "double", "long",
                "bool")


def test_cast_methods_and_legacy_type_names():
    for method in CAST_METHODS:
        results = {L: getattr(L.tensor([1.5, 0.0, 3.0]), method)() for L in (torch, nbgrad)}
        assert dtype_name(results[nbgrad].dtype) == dtype_name(results[torch].dtype), method
        assert results[nbgrad].type() == results[torch].type()
        assert results[nbgrad].element_size() == results[torch].element_size()
        assert results[nbgrad].is_floating_point() == results[torch].is_floating_point()
        assert nbgrad.is_floating_point(results[nbgrad]) == results[torch].is_floating_point()
        again = nbgrad.ones(2).type(results[torch].type())
        assert dtype_name(again.dtype) == dtype_name(results[torch].dtype)


def _halves_source(L, name):
    """Values around float16's and bfloat16's rounding ties, limits and subnormals."""
    tie16, tie_bf16 = 2.0 ** -11, 2.0 ** -8
    values = [1 + tie16, 1 + 3 * tie16, 1 + tie_bf16, 1 + 3 * tie_bf16, -(1 + tie16), 65519.0,
              65520.0, 1e-8, 3e-8, 6e-8, 1e-5, -0.0, 0.1, 3.3e38, float("inf"), -float("inf"),
              float("nan"), 2049.0, 2051.0, 1e-40]
    if name == "float64":
        # Rounded twice as in PyTorch (to float32, which makes the tie, then to float16).
        values += [1 + tie16 + 2.0 ** -40, 1 + tie_bf16 + 2.0 ** -40]
    if name in ("float16", "bfloat16"):  # the values as a cast from float32 makes them
        return L.tensor(values).to(lib_dtype(L, name))
    return L.tensor(values, dtype=lib_dtype(L, name))


@pytest.mark.parametrize("target", ["float16", "bfloat16"])
def test_float16_and_bfloat16_round_as_torch(target):
    for source in ("float32", "float64", "float16", "bfloat16"):
        results = {L: _halves_source(L, source).to(lib_dtype(L, target)) for L in (torch, nbgrad)}
        # float64 holds every float16 and bfloat16 value exactly; the sign of zero counts.
        actual, expected = (results[L].double().numpy() for L in (nbgrad, torch))
        np.testing.assert_array_equal(actual, expected, f"{source} -> {target}")
        numbers = ~np.isnan(expected)
        np.testing.assert_array_equal(np.signbit(actual[numbers]), np.signbit(expected[numbers]))
    for L in (torch, nbgrad):
        results[L] = L.tensor([2049, 2051, 65520, 2**24 + 1, -7]).to(lib_dtype(L, target))
    assert_close(results[nbgrad].double(), results[torch].double())


HALF_OPS = {
    "add": lambda L, x, y: x + y,
    "times_scalar": lambda L, x, y: x * 2.5,
    "plus_float32": lambda L, x, y: x + L.ones(6),  # float32
    "exp": lambda L, x, y: x.exp(),
    "sum": lambda L, x, y: x.sum(),
    "sum_as_float32": lambda L, x, y: x.sum(dtype=L.float32),
    "cumsum_as_float64": lambda L, x, y: x.cumsum(0, dtype=L.float64),
    "mean": lambda L, x, y: x.mean(),
    "softmax": lambda L, x, y: x.softmax(0),
    "max": lambda L, x, y: x.max(),
    "argmax": lambda L, x, y: x.argmax(),
    "lt": lambda L, x, y: x < y,
    "matmul": lambda L, x, y: x.reshape(2, 3) @ y.reshape(3, 2),
    "index": lambda L, x, y: x[[0, 2]],
    "setitem": lambda L, x, y: _set_items(x.clone()),
    "in_place": lambda L, x, y: x.clone().mul_(3),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_ops_on_float16_and_bfloat16_compute_in_float32(dtype):
    values = [1.5, -2.25, 0.1, 3.0, 1000.0, -0.5]
    rtol = float(torch.finfo(lib_dtype(torch, dtype)).eps)
    for name, op in HALF_OPS.items():
        results = {}
        for L in (torch, nbgrad):
            x = L.tensor(values, dtype=lib_dtype(L, dtype))
            results[L] = op(L, x, x.flip(0))
        assert dtype_name(results[nbgrad].dtype) == dtype_name(results[torch].dtype), name
        np.testing.assert_allclose(results[nbgrad].double().numpy(),
                                   results[torch].double().numpy(), rtol=rtol, err_msg=name)


def test_float16_tensors_refuse_gradients_clearly():
    with pytest.raises(RuntimeError, match=r"no gradients in float16: .*\.float\(\)"):
        nbgrad.ones(2, dtype=nbgrad.float16, requires_grad=True)
    with pytest.raises(RuntimeError, match="no gradients in bfloat16"):
        nbgrad.ones(2, requires_grad=True).bfloat16()
    with nbgrad.no_grad():
        assert nbgrad.ones(2, requires_grad=True).half().dtype == nbgrad.float16


def test_numpy_arrays_keep_their_dtype():
    for np_dtype in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
                     np.float64, np.bool_):
        array = np.array([1, 0, 3], np_dtype)
        for make in ("tensor", "from_numpy", "as_tensor"):
            ours = getattr(nbgrad, make)(array)
            assert dtype_name(ours.dtype) == dtype_name(getattr(torch, make)(array).dtype)
    shared = np.array([1.5, 2.0], np.float16)
    nbgrad.from_numpy(shared)[0] = 4.0
    assert shared[0] == 4.0


def test_finfo_and_iinfo():
    for name in ALL_DTYPES:
        ours, theirs = lib_dtype(nbgrad, name), lib_dtype(torch, name)
        if ours.is_floating_point:
            info, expected = nbgrad.finfo(ours), torch.finfo(theirs)
            attributes = ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution",
                          "dtype")
        elif name != "bool":
            info, expected = nbgrad.iinfo(ours), torch.iinfo(theirs)
            attributes = ("bits", "max", "min", "dtype")
        else:
            continue
        for attribute in attributes:
            assert getattr(info, attribute) == getattr(expected, attribute), (name, attribute)
        assert repr(info) == repr(expected)
    assert nbgrad.finfo().eps == torch.finfo().eps
    for case in (lambda L: L.finfo(L.int32), lambda L: L.iinfo(L.float32),
                 lambda L: L.iinfo(L.bool)):
        with pytest.raises(TypeError) as expected:
            case(torch)
        with pytest.raises(TypeError, match=re.escape(str(expected.value))):
            case(nbgrad)


@pytest.mark.parametrize("name", ALL_DTYPES)
def test_repr_of_every_dtype(name):
    for values in ([[1.5, 0.001], [100.25, 7.0]], [], [[0.0, 7.0]], [1e-5, 3.0]):
        tensors = {L: L.tensor(values).to(lib_dtype(L, name)) for L in (torch, nbgrad)}
        assert repr(tensors[nbgrad]) == repr(tensors[torch]).replace("torch.", "nbgrad.")


def _module_with_half_buffers(L):
    layer = L.nn.Linear(3, 2)
    with L.no_grad():
        layer.weight.copy_(L.tensor([[0.1, 1 / 3, -2.0], [1e-5, 70000.0, 1.0009765625]]))
        layer.bias.copy_(L.tensor([0.5, -0.25]))
    layer.register_buffer("scale", L.tensor([1.5, 2.25], dtype=L.float16))
    layer.register_buffer("shift", L.tensor([0.1, -3.0], dtype=L.bfloat16))
    return layer


def test_state_dict_keeps_float16_and_bfloat16():
    """A state_dict keeps half-precision buffers; one made half (`v.half()`) loads into float32
    parameters and half buffers."""
    loaded = {}
    for L in (torch, nbgrad):
        state = _module_with_half_buffers(L).state_dict()
        assert [dtype_name(v.dtype) for v in state.values()] == \
            ["float32", "float32", "float16", "bfloat16"]
        target = _module_with_half_buffers(L)
        with L.no_grad():
            target.scale.zero_()
        target.load_state_dict({key: value.half() for key, value in state.items()})
        loaded[L] = target.state_dict()
    for key in loaded[torch]:
        assert dtype_name(loaded[nbgrad][key].dtype) == dtype_name(loaded[torch][key].dtype)
        np.testing.assert_array_equal(loaded[nbgrad][key].double().numpy(),
                                      loaded[torch][key].double().numpy(), key)


# ---- the default dtype (torch.set_default_dtype) and Python types as dtypes

@pytest.fixture
def default_float64():
    """float64 as the default dtype in both libraries for the test, then float32 again."""
    for L in (torch, nbgrad):
        L.set_default_dtype(L.float64)
    yield
    for L in (torch, nbgrad):
        L.set_default_dtype(L.float32)


DEFAULT_DTYPE_CASES = {  # what follows the default dtype, and what does not
    "tensor_of_floats": lambda L: L.tensor([1.5, 2.0]),
    "tensor_of_ints": lambda L: L.tensor([1, 2]),
    "legacy_Tensor": lambda L: L.Tensor([1, 2]),
    "zeros_ones_empty": lambda L: L.zeros(2) + L.ones(2) + L.empty(2) * 0,
    "full_float_and_int": lambda L: (L.full((2,), 1.5), L.full((2,), 1)),
    "arange_linspace_eye": lambda L: (L.arange(0, 1, 0.25), L.arange(3), L.linspace(0, 1, 3), L.eye(2)),
    "rand_randn_normal": lambda L: (L.rand(2).dtype, L.randn(2).dtype, L.normal(0.0, 1.0, (2,)).dtype),
    "int_true_division": lambda L: L.arange(4) / 2,
    "sin_of_ints": lambda L: L.arange(3).sin(),
    "int_times_python_float": lambda L: L.arange(3) * 1.5,
    "float32_stays": lambda L: L.ones(2, dtype=L.float32) * 2.5 + 1,
    "float32_plus_0d_default": lambda L: L.ones(2, dtype=L.float32) + L.tensor(1.5),
    "linear_parameters": lambda L: (L.nn.Linear(2, 3).weight.dtype, L.nn.Conv2d(1, 2, 3).bias.dtype),
    "python_float_as_dtype": lambda L: (L.zeros(2, dtype=float), L.ones(2).to(float).dtype,
                                        L.tensor([1], dtype=float), L.arange(2, dtype=int)),
}


def _described(value):
    if isinstance(value, tuple):
        return tuple(_described(v) for v in value)
    text = repr(value).replace("nbgrad.", "torch.")
    return text if "dtype" in text or not hasattr(value, "dtype") else (text, repr(value.dtype).replace("nbgrad.", "torch."))


@pytest.mark.parametrize("name", DEFAULT_DTYPE_CASES)
def test_default_dtype_float64_as_torch(name, default_float64):
    """Dtypes and reprs (the repr leaves out the default dtype) under float64 as the default."""
    assert nbgrad.get_default_dtype() is nbgrad.float64
    make = DEFAULT_DTYPE_CASES[name]
    nbgrad.manual_seed(0)
    torch.manual_seed(0)
    theirs, ours = make(torch), make(nbgrad)
    if name in ("zeros_ones_empty", "rand_randn_normal"):  # (values not compared: empty)
        ours, theirs = (getattr(v, "dtype", v) for v in (ours, theirs))
    assert _described(ours) == _described(theirs)


def test_python_float_as_dtype_is_float64_under_the_float32_default():
    assert nbgrad.zeros(2, dtype=float).dtype is nbgrad.float64
    assert nbgrad.ones(2).to(float).dtype is nbgrad.float64


def test_set_default_dtype_errors_as_torch():
    for bad in ("int64", "bool"):
        with pytest.raises(TypeError, match="only floating-point types are supported as the default type"):
            nbgrad.set_default_dtype(getattr(nbgrad, bad))
        with pytest.raises(TypeError, match="only floating-point types are supported as the default type"):
            torch.set_default_dtype(getattr(torch, bad))
    with pytest.raises(NotImplementedError, match="float16 as the default dtype"):
        nbgrad.set_default_dtype(nbgrad.float16)  # (torch takes it; nbgrad computes halves in float32)
    assert nbgrad.get_default_dtype() is nbgrad.float32


def test_a_changed_default_dtype_reaches_deferred_graphs_and_compiled_steps(monkeypatch):
    """A graph fused under one default and a compiled step traced under it give the other
    default's dtypes after set_default_dtype (the graphs are forgotten; the step's call is
    keyed on the default), with torch's values; the float32 results come back after."""
    monkeypatch.setattr(deferred, "enabled", True)
    counts = nbgrad.arange(4)

    def step(w):
        loss = ((counts / 3) * w).sin().sum()
        loss.backward()
        return loss

    compiled = nbgrad.compile(step)
    for name in ("float32", "float64", "float32"):
        for L in (torch, nbgrad):
            L.set_default_dtype(getattr(L, name))
        try:
            # (w float32 in every round: the graph's and the call's inputs do not change)
            w_torch = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float32, requires_grad=True)
            loss_torch = ((torch.arange(4) / 3) * w_torch).sin().sum()
            loss_torch.backward()
            for run in (step, compiled):
                for _ in range(deferred.FUSE_AFTER + 2):
                    w = nbgrad.tensor([0.5, -1.0, 2.0, 0.25], dtype=nbgrad.float32,
                                      requires_grad=True)
                    loss = run(w)
                    assert dtype_name(loss.dtype) == dtype_name(loss_torch.dtype), (name, run)
                    assert_close(loss.item(), loss_torch.item(), rtol=1e-6 if name == "float32" else 1e-12)
                    assert_close(w.grad.numpy(), w_torch.grad.numpy(),
                                 rtol=1e-6 if name == "float32" else 1e-12)
        finally:
            for L in (torch, nbgrad):
                L.set_default_dtype(L.float32)
    assert compiled.stats["specializations"] == 2
