"""Elementwise functions: math (`exp`, `add`, `pow`, `clamp`, `where`, ...), comparisons and
logical operations, and the value comparisons of whole tensors (`equal`, `allclose`)."""
import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from .indexing import nonzero
from .dispatch import dispatch
from .operands import binary, operand_of_dtype, result_dtype
from .tensor import Tensor, _meta

__all__ = [
    "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "reciprocal",
    "neg", "negative", "abs", "absolute", "logical_not",
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "pow", "rsub",
    "maximum", "minimum", "square", "clamp", "clip", "clamp_min", "clamp_max", "where",
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
    "not_equal", "logical_and", "logical_or", "equal", "allclose", "isclose",
]


def _unary_function(name):
    def function(input):
        return dispatch(PRIMITIVES[name], (input,))
    function.__name__ = name
    return function


def _binary_function(name):
    def function(input, other):
        return binary(name, input, other)
    function.__name__ = name
    return function


exp, log, log1p, expm1, sqrt, sin, cos, tanh, sigmoid, relu, reciprocal, neg, abs, logical_not = (
    _unary_function(name) for name in ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh",
                                       "sigmoid", "relu", "reciprocal", "neg", "abs", "logical_not"))
negative = neg
absolute = abs

mul, rsub, maximum, minimum, logical_and, logical_or = (
    _binary_function(name) for name in ("mul", "rsub", "maximum", "minimum", "logical_and",
                                        "logical_or"))
multiply = mul

eq, ne, lt, le, gt, ge = (_binary_function(name) for name in ("eq", "ne", "lt", "le", "gt", "ge"))
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return binary("add", input, other)


def sub(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return binary("sub", input, other)


subtract = sub


def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        raise NotImplementedError("div(rounding_mode=...) is not supported by nbgrad")
    return binary("div", input, other)


divide = true_divide = div


def pow(input, exponent):
    if not isinstance(input, Tensor):
        return binary("pow", input, exponent, grad_fn_name="PowBackward2")
    if isinstance(exponent, Tensor):
        return binary("pow", input, exponent, grad_fn_name="PowBackward1")
    if input.dtype is _dtype.int64 and not isinstance(exponent, float) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    return binary("pow", input, exponent)


def square(input):
    return pow(input, 2)


def clamp(input, min=None, max=None, *, _grad_fn_name="ClampBackward1"):
    if min is None and max is None:
        raise RuntimeError("At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # Tensor bounds: the gradient goes to whichever operand is selected, as in PyTorch.
        out = input
        if min is not None:
            out = where(lt(out, min), min, out)
        if max is not None:
            out = where(gt(out, max), max, out)
        return out
    # NOTE: dtypes and layouts from `_meta`, never `_data`: reading a deferred input's array
    # runs the tape, and a graph that runs early is never fused.
    floating = _meta(input).dtype.kind == "f"
    info = np.iinfo(np.int64)
    lo = (-np.inf if floating else info.min) if min is None else min
    hi = (np.inf if floating else info.max) if max is None else max
    return dispatch(PRIMITIVES["clamp"], (input,), {"lo": lo, "hi": hi}, grad_fn_name=_grad_fn_name)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min, _grad_fn_name="ClampMinBackward0")


def clamp_max(input, max):
    return clamp(input, max=max, _grad_fn_name="ClampMaxBackward0")


def where(condition, input=None, other=None):
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    dtype = result_dtype(input, other)
    input, other = operand_of_dtype(input, dtype), operand_of_dtype(other, dtype)
    if condition.dtype is not _dtype.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {condition.dtype.name}")
    return dispatch(PRIMITIVES["where"], (condition, input, other))


def equal(input, other):
    return input.shape == other.shape and bool(np.array_equal(input._data, other._data))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(np.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return Tensor._wrap(np.isclose(input._data, other._data, rtol=rtol, atol=atol,
                                   equal_nan=equal_nan))
