"""Operands: how Python scalars and NumPy arrays next to a tensor become tensor operands of
a primitive, with PyTorch's type promotion, and the call of a binary elementwise primitive
on them. Anything else (a list, as PyTorch) is refused with PyTorch's TypeError, which
an operator turns into NotImplemented (`methods.operator`)."""
import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.elementwise import ROWS as ELEMENTWISE_ROWS
from .dispatch import dispatch
from .tensor import Tensor, _meta

__all__ = ["binary", "scalar_operand", "array_operand", "operand_of_dtype", "not_a_tensor"]


_constants = {}


def as_tensor_arg(value, np_dtype):
    """A Python scalar operand as a constant 0-d tensor of NumPy dtype `np_dtype` (no grad,
    no upcast).

    Constants are cached: they are internal operands no user code can reach or modify.
    """
    key = (type(value), value, np_dtype)
    if not value and isinstance(value, (float, np.floating)) and np.signbit(value):
        key += ("-0.0",)  # NOTE: -0.0 == 0.0 (and hashes alike) but divides to -inf
    constant = _constants.get(key)
    if constant is None:
        try:
            array = np.array(value, dtype=np_dtype)
        except OverflowError:
            array = np.array(_dtype.out_of_range_integer(value, np_dtype, checked=False))
        array.flags.writeable = False
        constant = Tensor._wrap(array)
        if len(_constants) < 4096:
            _constants[key] = constant
    return constant


def result_dtype(*operands):
    # NOTE: a pending tensor's _meta is its op's record, which result_type reads as the array
    # to come.
    return _dtype.result_type(*(_meta(x) if isinstance(x, Tensor) else x for x in operands))


_NUMBERS = (int, float, bool, np.number, np.bool_)
# The functions of the primitives whose names are not theirs, for PyTorch's TypeError.
_FUNCTION_NAMES = {"div_trunc": "div", "div_floor": "div"}


def binary(name, a, b, grad_fn_name=None, into=None):
    """Call elementwise primitive `name` on `a` and `b`, at least one of them a Tensor;
    a Python scalar becomes a constant of the result dtype. (`into`: see dispatch.)"""
    if not isinstance(b, Tensor):
        np_dtype = _meta(a).dtype
        if (type(b) is float or type(b) is int) and np_dtype.kind == "f":
            # The common case (x * 2.0) skips the general promotion rules.
            b = as_tensor_arg(b, np_dtype)
        elif isinstance(b, _NUMBERS):
            b = scalar_operand(b, a, name)
        else:
            b = array_operand(b, _FUNCTION_NAMES.get(name, name))
    elif not isinstance(a, Tensor):
        if not isinstance(a, (*_NUMBERS, np.ndarray)):
            raise not_a_tensor(_FUNCTION_NAMES.get(name, name), a, "input", 1)
        a = scalar_operand(a, b, name)
    return dispatch(PRIMITIVES[name], (a, b), grad_fn_name=grad_fn_name, into=into)


def not_a_tensor(function, value, argument="other", position=2):
    """PyTorch's TypeError for `value` (a list, a string) where `function` takes a Tensor
    (or a number)."""
    return TypeError(f"{function}(): argument '{argument}' (position {position}) must be Tensor, "
                     f"not {type(value).__name__}")


def scalar_operand(scalar, tensor, name):
    """A Python scalar operand of `tensor` in primitive `name` as a 0-d constant of the
    result dtype. For a row that refuses bool operands a bool stays bool, so that the row
    sees it (`int_tensor - True`); elsewhere one dtype keeps the call on the fast path."""
    row = ELEMENTWISE_ROWS[name]
    if isinstance(scalar, (bool, np.bool_)) and row.bool_errors is not None:
        return as_tensor_arg(scalar, np.bool_)
    dtype = result_dtype(tensor, scalar)
    if row.result == "float" and not dtype.is_floating_point:
        # A row that computes integers in the default dtype (true division) takes the scalar
        # as it is, not converted (wrapped) to the integer dtype first: int8_tensor / 1000 is
        # 0.005.
        dtype = _dtype.get_default_dtype()
    return as_tensor_arg(scalar, dtype.np)


def array_operand(value, function):
    """A NumPy array operand of `function` as a tensor; PyTorch's TypeError for anything
    else (a list or tuple too, which PyTorch does not convert)."""
    if isinstance(value, np.ndarray):
        return Tensor._wrap(value)
    raise not_a_tensor(function, value)


_stand_ins = {}


def absent(np_dtype):
    """The shared zero-size stand-in of an absent optional input of NumPy dtype `np_dtype`
    (conv's bias, batch_norm's weight or statistics): a primitive then has one signature.
    NOTE: writeable, as the buffers it stands for, so that kernels compile for one array
    type; nothing writes into zero elements."""
    stand_in = _stand_ins.get(np_dtype)
    if stand_in is None:
        stand_in = _stand_ins[np_dtype] = Tensor._wrap(np.empty(0, np_dtype))
    return stand_in


def operand_of_dtype(value, dtype):
    """`value` itself if it is a Tensor, else a Python scalar as a constant of `dtype`."""
    return value if isinstance(value, Tensor) else as_tensor_arg(value, dtype.np)
