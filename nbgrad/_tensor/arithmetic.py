"""Elementwise functions: math (`exp`, `add`, `pow`, `clamp`, `where`, ...), comparisons and
logical operations, and the value comparisons of whole tensors (`equal`, `allclose`)."""
import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.elementwise import NOT_IMPLEMENTED
from ..ops.primitive import TORCH_TYPE_NAMES
from .conversion import to
from .indexing import nonzero
from .inplace import inplace_form
from .dispatch import dispatch
from .operands import as_tensor_arg, binary, not_a_tensor, operand_of_dtype, result_dtype
from .tensor import Tensor, _meta

# The math functions of one tensor that are each one elementwise row, and the arc names
# PyTorch also gives the inverse functions.
UNARY_MATH = ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "rsqrt",
              "erfc", "exp2", "frac", "deg2rad", "rad2deg", "sinc")
ARC_ALIASES = ("arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh")

__all__ = [
    "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "reciprocal",
    "neg", "negative", "abs", "absolute", "logical_not",
    "add", "sub", "subtract", "lerp", "mul", "multiply", "div", "divide", "true_divide", "pow", "rsub",
    "addcmul", "addcdiv",
    "maximum", "minimum", "square", "clamp", "clip", "clamp_min", "clamp_max", "where",
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
    "not_equal", "logical_and", "logical_or", "equal", "allclose", "isclose",
    "log10", "log2", "erf", "sign", "floor", "ceil", "trunc", "fix", "round", "remainder", "fmod",
    "atan2", "arctan2", "isnan", "isinf", "isfinite", "nan_to_num", "masked_fill",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_xor", "floor_divide",
    "bitwise_left_shift", "bitwise_right_shift", "nextafter",
    *(name + "_" for name in (
        "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu",
        "reciprocal", "neg", "negative", "abs", "square", "clamp", "clip", "clamp_min",
        "clamp_max", "log10", "log2", "erf", "floor", "ceil", "trunc", "fix", "round",
        "nan_to_num")),
    # the other math functions; PyTorch has the in-place functions of all but sgn, hypot,
    # copysign, logaddexp(2), fmax and fmin
    *UNARY_MATH, *ARC_ALIASES, "logit", "sgn",
    "xlogy", "hypot", "copysign", "logaddexp", "logaddexp2", "fmax", "fmin",
    *(name + "_" for name in (*UNARY_MATH, *ARC_ALIASES, "logit", "xlogy")),
]


def _unary_function(name):
    def function(input):
        try:
            return dispatch(PRIMITIVES[name], (input,))
        except AttributeError:
            # (checked after the fact: a call on a Tensor pays nothing for it)
            if not isinstance(input, Tensor):
                raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not "
                                f"{type(input).__name__}") from None
            raise
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

log10, log2, erf, sign, floor, ceil, trunc, isnan, isinf, isfinite, bitwise_not = (
    _unary_function(name) for name in ("log10", "log2", "erf", "sign", "floor", "ceil", "trunc",
                                       "isnan", "isinf", "isfinite", "bitwise_not"))
fix = trunc

mul = multiply = _binary_function("mul")


def rsub(input, other):
    """`other - input`: a Python number `other` (`2 - x`) is PyTorch's Scalar overload
    (RsubBackward1, the row's name), two tensors its Tensor overload (RsubBackward0)."""
    return binary("rsub", input, other,
                  grad_fn_name="RsubBackward0" if isinstance(other, Tensor) else None)

eq, ne, lt, le, gt, ge = (_binary_function(name) for name in ("eq", "ne", "lt", "le", "gt", "ge"))
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
bitwise_and, bitwise_or, bitwise_xor, bitwise_left_shift, bitwise_right_shift = (
    _binary_function(name) for name in ("bitwise_and", "bitwise_or", "bitwise_xor",
                                        "bitwise_left_shift", "bitwise_right_shift"))


def invert(input):
    """The operator ~: bitwise_not, for bool and integer tensors only (PyTorch's TypeError)."""
    if _dtype.from_numpy_dtype(_meta(input).dtype).is_floating_point:
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type "
                        "tensors")
    return bitwise_not(input)


def logical_xor(input, other):
    """Whether exactly one of `input` and `other` is nonzero (NaN counts as nonzero)."""
    if not isinstance(other, Tensor):
        raise TypeError("logical_xor(): argument 'other' (position 2) must be Tensor, not "
                        f"{type(other).__name__}")
    return ne(ne(input, 0), ne(other, 0))


def _tensor_function(name, method=False):
    """`name(input, other)` of two Tensors (no Python numbers: PyTorch's TypeError, which
    counts the arguments of a method after `self`)."""
    def function(input, other):
        for position, (argument, value) in enumerate((("input", input), ("other", other)),
                                                     0 if method else 1):
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}(): argument '{argument}' (position {position}) must be "
                                f"Tensor, not {type(value).__name__}")
        return binary(name, input, other)
    function.__name__ = name
    return function


# atan2: the angle of the point (other, input), arctan(input / other) in the right quadrant.
_TENSORS_ONLY = ("atan2", "hypot", "logaddexp", "logaddexp2", "fmax", "fmin", "maximum",
                 "minimum", "logical_and", "logical_or")
atan2, hypot, logaddexp, logaddexp2, fmax, fmin, maximum, minimum, logical_and, logical_or = (
    _tensor_function(name) for name in _TENSORS_ONLY)
arctan2 = atan2
# Their methods (`x.hypot(y)`), for PyTorch's argument positions in the TypeError.
TENSOR_METHODS = {name: _tensor_function(name, method=True) for name in _TENSORS_ONLY}


def _nextafter_function(method=False):
    """nextafter(input, other): the float next to `input` towards `other`, in their dtype."""
    tensors_only = _tensor_function("nextafter", method)

    def nextafter(input, other):
        if isinstance(input, Tensor) and isinstance(other, Tensor):
            dtype = result_dtype(input, other)
            if dtype in _dtype.HALF:
                # NOTE: the row would compute in float32 (_core.dtype.run_in_float32), whose
                # next float rounds back to `input`: NumPy steps in float16 and bfloat16
                # themselves. (No gradient: nbgrad refuses them for these dtypes.)
                with np.errstate(over="ignore"):
                    return Tensor._wrap(np.nextafter(input.to(dtype)._data,
                                                     other.to(dtype)._data))
        return tensors_only(input, other)
    return nextafter


nextafter = _nextafter_function()
TENSOR_METHODS["nextafter"] = _nextafter_function(method=True)

(tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, rsqrt, erfc, exp2, frac, deg2rad,
 rad2deg, sinc) = (_unary_function(name) for name in UNARY_MATH)
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def logit(input, eps=None):
    """log(p / (1 - p)), with p clamped to [eps, 1 - eps] when `eps` is given."""
    if eps is not None and not isinstance(eps, (int, float, np.number, Tensor)):
        raise TypeError(f"logit(): argument 'eps' (position 2) must be float, not "
                        f"{type(eps).__name__}")
    # (PyTorch passes None to its kernels as -1: any negative eps leaves p alone)
    return dispatch(PRIMITIVES["logit"], (input,), {"eps": -1.0 if eps is None else float(eps)})


def sgn(input):
    """sign(input) for real tensors, recorded as PyTorch's SgnBackward0 (its gradient is 0)."""
    return dispatch(PRIMITIVES["sign"], (input,), grad_fn_name="SgnBackward0")


def _invalid_combination(name, args, signatures):
    got = ", ".join(type(value).__name__ for value in args)
    expected = "".join(f"\n * ({signature}, *, Tensor out = None)" for signature in signatures)
    return TypeError(f"{name}() received an invalid combination of arguments - got ({got}), "
                     f"but expected one of:{expected}\n")


def _is_number(value):
    return isinstance(value, (int, float, np.number, np.bool_))


def xlogy(input, other):
    """input * log(other), 0 where input is 0 (NaN where other is NaN). A Python number on
    either side is PyTorch's Scalar overload: XlogyBackward2 for `other`, XlogyBackward1
    for `input`, whose node links the tensor alone."""
    if isinstance(input, Tensor) and (isinstance(other, Tensor) or _is_number(other)):
        return binary("xlogy", input, other,
                      grad_fn_name=None if isinstance(other, Tensor) else "XlogyBackward2")
    if _is_number(input) and isinstance(other, Tensor):
        return binary("xlogy", input, other, grad_fn_name="XlogyBackward1")
    raise _invalid_combination("xlogy", (input, other), (
        "Tensor input, Tensor other", "Number self, Tensor other", "Tensor input, Number other"))


def copysign(input, other):
    """|input| with the sign of `other` (a Tensor, or a number: CopysignBackward1)."""
    if not (isinstance(input, Tensor) and (isinstance(other, Tensor) or _is_number(other))):
        raise _invalid_combination("copysign", (input, other), (
            "Tensor input, Tensor other", "Tensor input, Number other"))
    return binary("copysign", input, other,
                  grad_fn_name=None if isinstance(other, Tensor) else "CopysignBackward1")


def _scaled(other, alpha):
    # `other` times `alpha`: a Python number stays one (a wrapped number for promotion).
    return mul(other, alpha) if isinstance(other, Tensor) else other * alpha


def _with_alpha(name, input, other, alpha, into=None):
    """add/sub: `input (+|-) alpha * other`; two tensors are one node (PyTorch's).
    (`into`: see dispatch.)"""
    if alpha == 1:
        return binary(name, input, other, into=into)
    dtype = result_dtype(input, other)
    if not dtype.is_floating_point and isinstance(alpha, float):
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating "
                           "point number.")
    if dtype is _dtype.bool_:
        # In bools, alpha * other is other, or False where alpha is 0. (Scaled as numbers,
        # True * 2 is an int, which would promote the bools to int64.)
        if not alpha:
            other = mul(other, False) if isinstance(other, Tensor) else False
        return binary(name, input, other, into=into)
    if isinstance(input, Tensor) and isinstance(other, Tensor):
        return dispatch(PRIMITIVES[f"{name}_scaled"], (input, other), {"alpha": alpha}, into=into)
    return binary(name, input, _scaled(other, alpha), into=into)


def add(input, other, *, alpha=1):
    return _with_alpha("add", input, other, alpha)


def sub(input, other, *, alpha=1):
    return _with_alpha("sub", input, other, alpha)


def lerp(input, end, weight):
    """`input + weight * (end - input)`, in floating dtypes only, without type promotion."""
    for name, operand in (("end", end), ("weight", weight)):
        if isinstance(operand, Tensor) and operand.dtype != input.dtype:
            raise RuntimeError(f"expected dtype {_dtype.C_TYPE_NAMES[input.dtype.name]} for "
                               f"`{name}` but got dtype {_dtype.C_TYPE_NAMES[operand.dtype.name]}")
    if isinstance(weight, Tensor):
        return dispatch(PRIMITIVES["lerp"], (input, end, weight))
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f'"lerp_kernel_scalar" not implemented for '
                                  f"'{input.dtype.scalar_type}'")
    return dispatch(PRIMITIVES["lerp"], (input, end, as_tensor_arg(weight, _meta(input).dtype)),
                    grad_fn_name="LerpBackward0")


subtract = sub


def addcmul(input, tensor1, tensor2, *, value=1):
    """`input + value * tensor1 * tensor2` (broadcast), one node (AddcmulBackward0)."""
    return dispatch(PRIMITIVES["addcmul"], (input, tensor1, tensor2), {"value": value})


_INTEGER_ADDCDIV = (
    "Integer division with addcdiv is no longer supported, and in a future release addcdiv "
    "will perform a true division of tensor1 and tensor2. The historic addcdiv behavior can "
    "be implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
    "integer inputs and as (input + value * tensor1 / tensor2) for float inputs. The future "
    "addcdiv behavior is just the latter implementation: (input + value * tensor1 / tensor2), "
    "for all dtypes.")


def addcdiv(input, tensor1, tensor2, *, value=1):
    """`input + value * tensor1 / tensor2` (broadcast), one node (AddcdivBackward0)."""
    if not (tensor1.dtype.is_floating_point or tensor2.dtype.is_floating_point):
        raise RuntimeError(_INTEGER_ADDCDIV)
    return dispatch(PRIMITIVES["addcdiv"], (input, tensor1, tensor2), {"value": value})


_NOT_GIVEN = object()


def div(input, other, *, rounding_mode=_NOT_GIVEN):
    """True division, or with `rounding_mode` "trunc" or "floor" the quotient rounded (in the
    inputs' dtype, integers too), whose gradient PyTorch defines as zero (DivBackward2).
    (PyTorch's node is DivBackward2 whenever rounding_mode is given, None included.)"""
    if rounding_mode is _NOT_GIVEN or rounding_mode is None:
        return binary("div", input, other,
                      grad_fn_name=None if rounding_mode is _NOT_GIVEN else "DivBackward2")
    if rounding_mode not in ("trunc", "floor"):
        raise RuntimeError("div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                           f"but found '{rounding_mode}'")
    return binary(f"div_{rounding_mode}", input, other)


divide = true_divide = div


def pow(input, exponent):
    if not isinstance(input, Tensor):
        return binary("pow", input, exponent, grad_fn_name="PowBackward2")
    if isinstance(exponent, Tensor):
        return binary("pow", input, exponent)
    if not _is_number(exponent):
        raise _invalid_combination("pow", (input, exponent), (
            "Tensor input, Tensor exponent", "Number self, Tensor exponent",
            "Tensor input, Number exponent"))
    if not input.dtype.is_floating_point and not isinstance(exponent, float) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    # PyTorch's Scalar overload: the input in the result dtype (an integer tensor to a float
    # power computes in the default float dtype), the exponent a parameter of that dtype.
    dtype = result_dtype(input, exponent)
    if _meta(input).dtype != dtype.np:
        input = to(input, dtype)
    return dispatch(PRIMITIVES["pow_scalar"], (input,), {"exponent": exponent})


def square(input):
    return pow(input, 2)


def clamp(input, min=None, max=None, *, _grad_fn_name="ClampBackward1"):
    if min is None and max is None:
        raise RuntimeError("At least one of 'min' or 'max' must not be None")
    # The result dtype promotes the input with the bounds given, numbers too (an integer
    # tensor clamped at 1.5 gives floats); an absent bound is the widest value of that dtype.
    dtype = result_dtype(input, *[bound for bound in (min, max) if bound is not None])
    if dtype.is_floating_point:
        widest = (-np.inf, np.inf)
    elif dtype is _dtype.bool_:
        widest = (False, True)
    else:
        widest = (int(np.iinfo(dtype.np).min), int(np.iinfo(dtype.np).max))
    lo = widest[0] if min is None else min
    hi = widest[1] if max is None else max
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # Tensor bounds: PyTorch's clamp.Tensor, whose node links all three operands (an
        # absent bound, here the widest value, as `(None, 0)`).
        operands = [operand_of_dtype(x, dtype) for x in (input, lo, hi)]
        return dispatch(PRIMITIVES["clamp_tensor"], operands, {"min_only": int(max is None)})
    if dtype is _dtype.bool_:
        kernel = "clamp" if min is not None and max is not None else \
            "clamp_min" if max is None else "clamp_max"
        raise NotImplementedError(f'"{kernel}_scalar_cpu" not implemented for \'Bool\'')
    # NOTE: the dtype from `_meta`, never `_data`: reading a deferred input's array runs the
    # tape, and a graph that runs early is never fused.
    if _meta(input).dtype != dtype.np:
        input = to(input, dtype)
    return dispatch(PRIMITIVES["clamp"], (input,), {"lo": lo, "hi": hi}, grad_fn_name=_grad_fn_name)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min, _grad_fn_name="ClampMinBackward0")


def clamp_max(input, max):
    return clamp(input, max=max, _grad_fn_name="ClampMaxBackward0")


def where(condition, input=None, other=None):
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    if not all(isinstance(value, Tensor) or _is_number(value) for value in (input, other)):
        # (PyTorch's message goes on to say why each signature did not match)
        got = ", ".join(type(value).__name__ for value in (condition, input, other))
        raise TypeError(f"where() received an invalid combination of arguments - got ({got}), "
                        "but expected one of:\n * (Tensor condition)\n * (Tensor condition, "
                        "Tensor input, Tensor other, *, Tensor out = None)\n * (Tensor condition, "
                        "Number self, Tensor other)\n * (Tensor condition, Tensor input, Number "
                        "other)\n * (Tensor condition, Number self, Number other)\n")
    dtype = result_dtype(input, other)
    input, other = operand_of_dtype(input, dtype), operand_of_dtype(other, dtype)
    if condition.dtype is not _dtype.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {condition.dtype.name}")
    return dispatch(PRIMITIVES["where"], (condition, input, other))


def equal(input, other):
    return input.shape == other.shape and bool(np.array_equal(input._data, other._data))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other| elementwise (broadcast), with PyTorch's checks:
    two tensors of one dtype, tolerances not negative."""
    for position, (argument, value) in enumerate((("input", input), ("other", other)), 1):
        if not isinstance(value, Tensor):
            raise not_a_tensor("isclose", value, argument, position)
    if input.dtype != other.dtype:
        raise RuntimeError(f"{TORCH_TYPE_NAMES[input.dtype.name]} did not match "
                           f"{TORCH_TYPE_NAMES[other.dtype.name]}")
    for name, tolerance in (("rtol", rtol), ("atol", atol)):
        if tolerance < 0:
            raise RuntimeError(f"{name} must be greater than or equal to zero, but got "
                               f"{tolerance:g}")
    return Tensor._wrap(np.isclose(input._data, other._data, rtol=rtol, atol=atol,
                                   equal_nan=equal_nan))


def round(input, *, decimals=None):
    # NOTE: PyTorch has two overloads, told apart by whether `decimals` is given (even as
    # 0): RoundBackward0, for every number kind, and RoundBackward1, for floats only.
    if decimals is None:
        return dispatch(PRIMITIVES["round"], (input,))
    return dispatch(PRIMITIVES["round_decimals"], (input,), {"decimals": int(decimals)})


def _scalar_overload(name, input, other):
    """`name(input, other)`: a Python number `other` is PyTorch's Scalar overload, whose
    node is `<Name>Backward0` (the Tensor overload's is `Backward1`)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}() received an invalid combination of arguments - got "
                        f"({type(input).__name__}, {type(other).__name__}), but expected "
                        "(Tensor input, Tensor other) or (Tensor input, Number other)")
    scalar = not isinstance(other, Tensor)
    return binary(name, input, other,
                  grad_fn_name=f"{name.capitalize()}Backward0" if scalar else None)


def remainder(input, other):
    """Python's modulo: the result has the sign of `other`. A Python number `input`
    (`5 % x`) is PyTorch's Scalar_Tensor overload, whose node has no derivative."""
    if isinstance(other, Tensor) and isinstance(input, (int, float, np.number)):
        return binary("remainder", input, other, grad_fn_name=NOT_IMPLEMENTED)
    return _scalar_overload("remainder", input, other)


def fmod(input, other):
    """C's fmod: the result has the sign of `input`."""
    return _scalar_overload("fmod", input, other)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN, inf and -inf replaced by `nan`, `posinf` and `neginf` (by default the dtype's
    largest and lowest finite values); integer and bool tensors hold none of them."""
    dtype = _dtype.from_numpy_dtype(_meta(input).dtype)
    if not dtype.is_floating_point:
        nan = posinf = neginf = 0
    else:
        nan = 0.0 if nan is None else nan  # (None, as PyTorch takes it: the default)
        info = _dtype.finfo(dtype)  # of float16 and bfloat16 too, which compute in float32
        posinf = info.max if posinf is None else posinf
        neginf = info.min if neginf is None else neginf
    return dispatch(PRIMITIVES["nan_to_num"], (input,),
                    {"nan_fill": nan, "posinf_fill": posinf, "neginf_fill": neginf})


# The C++ type names PyTorch's messages give dtypes by (masked_fill's, the legacy
# constructors'), by NumPy name.


def masked_fill(input, mask, value):
    """`input` with `value` (a number or a 0-d tensor, converted to input's dtype) where
    `mask` (bool, broadcast) is True."""
    mask_dtype = _meta(mask).dtype
    if mask_dtype.kind != "b":
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{_dtype.C_TYPE_NAMES[mask_dtype.name]}")
    dtype = _meta(input).dtype
    if not isinstance(value, Tensor):
        return dispatch(PRIMITIVES["masked_fill"], (input, mask, as_tensor_arg(value, dtype)))
    if value.ndim != 0:
        raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value.ndim} dimension(s).")
    if _meta(value).dtype != dtype:
        value = to(value, input.dtype)
    return dispatch(PRIMITIVES["masked_fill"], (input, mask, value),
                    grad_fn_name="MaskedFillBackward1")


def floor_divide(input, other):
    """`input // other`: div(rounding_mode="floor") without a derivative: PyTorch records a
    NotImplemented node, and a backward through it raises."""
    return binary("floor_divide", input, other)


def _add_into(input, other, *, alpha=1, into):
    return _with_alpha("add", input, other, alpha, into)


def _sub_into(input, other, *, alpha=1, into):
    return _with_alpha("sub", input, other, alpha, into)


def _mul_into(input, other, *, into):
    return binary("mul", input, other, into=into)


def _unary_into(name):
    def function(input, *, into):
        return dispatch(PRIMITIVES[name], (input,), into=into)
    return function


# The in-place forms of add, sub and mul (methods and operators), whose kernels write the
# target where nothing is recorded.
add_, sub_, mul_ = (inplace_form(function, writes_into=into) for function, into in (
    (add, _add_into), (sub, _sub_into), (mul, _mul_into)))

# In-place forms that PyTorch also has as functions (`torch.relu_(x)`); methods too.
(exp_, log_, log1p_, expm1_, sqrt_, sin_, cos_, tanh_, sigmoid_, relu_, reciprocal_, neg_, abs_,
 log10_, log2_, erf_, floor_, ceil_, trunc_) = (
    inplace_form(function, writes_into=_unary_into(function.__name__)) for function in (
        exp, log, log1p, expm1, sqrt, sin, cos, tanh, sigmoid, relu, reciprocal, neg, abs,
        log10, log2, erf, floor, ceil, trunc))
square_, clamp_, clamp_min_, clamp_max_, round_, nan_to_num_ = (inplace_form(function) for function in (
    square, clamp, clamp_min, clamp_max, round, nan_to_num))
negative_, clip_, fix_ = neg_, clamp_, trunc_


def _without_inplace_derivative(name):
    """Function `name` as its in-place form runs it: PyTorch records <Name>Backward1, which
    has no derivative (its backward raises)."""
    def function(input):
        return dispatch(PRIMITIVES[name], (input,), grad_fn_name=f"{name.capitalize()}Backward1")
    function.__name__ = name
    return function


(tan_, asin_, acos_, atan_, sinh_, cosh_, rsqrt_, erfc_, exp2_, frac_, deg2rad_, rad2deg_, sinc_,
 logit_, xlogy_, asinh_, acosh_, atanh_) = (inplace_form(function) for function in (
    tan, asin, acos, atan, sinh, cosh, rsqrt, erfc, exp2, frac, deg2rad, rad2deg, sinc, logit, xlogy,
    *(_without_inplace_derivative(name) for name in ("asinh", "acosh", "atanh"))))
arcsin_, arccos_, arctan_, arcsinh_, arccosh_, arctanh_ = asin_, acos_, atan_, asinh_, acosh_, atanh_
