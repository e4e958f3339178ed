"""Scalar functions that elementwise expressions call by name (`nbgrad.ops.elementwise`
imports them into its generated kernels, the fused code generator into fused steps): each
is PyTorch's formula for one element, written once for every dtype the op accepts.

NOTE: their names must not end a NumPy function's name used in an expression (`floor`
would match `np.floor(`): the fused code generator renames helper calls by a regex.
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .kernel_support import typed


def erf(x):
    """The error function of a float scalar (in its own precision)."""


@overload(erf)
def _erf(x):
    return lambda x: math.erf(x)


def erfc(x):
    """The complementary error function 1 - erf(x) of a float scalar (in its own
    precision), without erf's cancellation for large x."""


@overload(erfc)
def _erfc(x):
    return lambda x: math.erfc(x)


def xlogy(x, y):
    """x * log(y) as PyTorch's xlogy_kernel: NaN where y is NaN, else 0 where x is 0 (so
    xlogy(0, 0) is 0), for two floats of one type."""


@overload(xlogy)
def _xlogy(x, y):
    def implementation(x, y):
        if y != y:
            return typed(np.nan, x)
        if x == 0:
            return typed(0.0, x)
        return x * np.log(y)
    return implementation


def _integers_unchanged(float_function):
    """An overload implementation: integers pass through (PyTorch's floor of an integer is
    itself; a round trip through float64 would lose int64 values above 2**53)."""
    def implementation(x):
        if isinstance(x, types.Integer):
            return lambda x: x
        return lambda x: float_function(x)
    return implementation


def floor_value(x):
    """floor(x); integers unchanged."""


def ceil_value(x):
    """ceil(x); integers unchanged."""


def trunc_value(x):
    """trunc(x) (towards zero); integers unchanged."""


def rint_value(x):
    """x rounded to the nearest integer, halves to even (PyTorch's round); integers
    unchanged."""


overload(floor_value)(_integers_unchanged(np.floor))
overload(ceil_value)(_integers_unchanged(np.ceil))
overload(trunc_value)(_integers_unchanged(np.trunc))
overload(rint_value)(_integers_unchanged(np.rint))


def inverted(x):
    """~x: the logical not of a bool, the bitwise not of an integer."""


@overload(inverted)
def _inverted(x):
    if isinstance(x, types.Boolean):
        return lambda x: not x
    return lambda x: ~x


def round_decimals(x, decimals):
    """PyTorch's round(x, decimals=d) (round_decimals_kernel): with 10**|d| in the data's
    precision, rint(x * 10**d) / 10**d, or for d < 0 rint(x / 10**-d) * 10**-d."""


@overload(round_decimals)
def _round_decimals(x, decimals):
    def implementation(x, decimals):
        scale = typed(10.0 ** abs(decimals), x)
        if decimals < 0:
            return np.rint(x / scale) * scale
        return np.rint(x * scale) / scale
    return implementation


def floored_remainder(a, b):
    """a - floor(a / b) * b: the remainder with the sign of the divisor (Python's %,
    PyTorch's remainder)."""


def truncated_remainder(a, b):
    """a - trunc(a / b) * b: the remainder with the sign of the dividend (C's fmod,
    PyTorch's fmod)."""


# NOTE: integer division by zero is PyTorch's RuntimeError; the kernel raises it (the
# values are data, unknown before the kernel runs).
_INTEGER_DIVISION_BY_ZERO = "ZeroDivisionError"


@overload(floored_remainder)
def _floored_remainder(a, b):
    if isinstance(a, types.Integer) and isinstance(b, types.Integer):
        def integer(a, b):
            if b == 0:
                raise RuntimeError(_INTEGER_DIVISION_BY_ZERO)
            return a % b  # Python's semantics in Numba: the sign of b
        return integer

    def floating(a, b):
        # PyTorch's formula: fmod, moved into b's sign (NaN for b == 0).
        remainder = np.fmod(a, b)
        if remainder != 0 and (b < 0) != (remainder < 0):
            remainder += b
        return remainder
    return floating


@overload(truncated_remainder)
def _truncated_remainder(a, b):
    if isinstance(a, types.Integer) and isinstance(b, types.Integer):
        def integer(a, b):
            if b == 0:
                raise RuntimeError(_INTEGER_DIVISION_BY_ZERO)
            remainder = a % b
            if remainder != 0 and (remainder < 0) != (a < 0):
                remainder -= b
            return remainder
        return integer
    return lambda a, b: np.fmod(a, b)


def floor_divide(a, b):
    """floor(a / b) as PyTorch computes it (div_floor_floating, div_floor_integer): for
    floats from the exact remainder, so that a quotient just below an integer is not rounded
    up to it; integers exactly."""


def truncated_divide(a, b):
    """trunc(a / b) as PyTorch computes it (div_trunc): integers exactly."""


def _integer_division(rounded):
    """The integer implementation of a division that rounds the quotient: PyTorch's error
    for a zero divisor, and -a for -1.

    NOTE: the lowest integer divided by -1 traps in hardware (x86's idiv); PyTorch's result,
    -a, wraps around to it."""
    def integer(a, b):
        if b == 0:
            raise RuntimeError(_INTEGER_DIVISION_BY_ZERO)
        if b == -1:
            return -a
        return rounded(a, b)
    return integer


@numba.njit
def _floored(a, b):
    return a // b  # Python's semantics in Numba: rounded down


@numba.njit
def _truncated(a, b):
    quotient = a // b
    if quotient < 0 and quotient * b != a:  # the signs differ: floor is one below trunc
        quotient += 1
    return quotient


@overload(floor_divide)
def _floor_divide(a, b):
    if isinstance(a, types.Integer) and isinstance(b, types.Integer):
        return _integer_division(_floored)

    def implementation(a, b):
        if b == 0:
            return a / b
        one, half = typed(1.0, a), typed(0.5, a)
        remainder = np.fmod(a, b)
        quotient = (a - remainder) / b
        if remainder != 0 and (b < 0) != (remainder < 0):
            quotient -= one
        if quotient == 0:
            return np.copysign(typed(0.0, a), a / b)
        floored = np.floor(quotient)
        if quotient - floored > half:
            floored += one
        return floored
    return implementation


@overload(truncated_divide)
def _truncated_divide(a, b):
    if isinstance(a, types.Integer) and isinstance(b, types.Integer):
        return _integer_division(_truncated)
    return lambda a, b: np.trunc(a / b)


def tensor_pow(a, b):
    """a ** b for two tensors' elements, as PyTorch's pow kernel: an integer to a negative
    integer power is 1 at 1, 1 or -1 at -1 and 0 elsewhere (its powi). NOTE: Numba's
    integer power goes through a float there, and 0 ** -1 gave the lowest integer."""


@overload(tensor_pow)
def _tensor_pow(a, b):
    if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return lambda a, b: a ** b

    def integer(a, b):
        if b >= 0:
            return a ** b
        if a == 1:
            return a
        if a == -1:
            return a if b % 2 else -a
        return a - a
    return integer


def shifted_left(a, b):
    """a << b as PyTorch's lshift kernel: 0 where b is negative or at least the width of the
    type, else a's bits moved left (what leaves the type is dropped: an unsigned shift)."""


def shifted_right(a, b):
    """a >> b as PyTorch's rshift kernel: where b is negative or at least the width of the
    type, a's sign (0 or -1; 0 for unsigned types), else a's bits moved right (the sign
    copied in)."""


# NOTE: the widths are the operands' own (both have the promoted dtype): Numba computes a
# shift of int8 values in int64, so the result is cut to the type where it is stored, and
# LLVM's shift by the width or more is undefined, so it is never made.
@overload(shifted_left)
def _shifted_left(a, b):
    width = a.bitwidth

    def implementation(a, b):
        if b < 0 or b >= width:
            return a - a
        return a << b
    return implementation


@overload(shifted_right)
def _shifted_right(a, b):
    width = a.bitwidth
    if not a.signed:
        return lambda a, b: a - a if b >= width else a >> b

    def signed(a, b):
        if b < 0 or b >= width:
            return a >> (width - 1)
        return a >> b
    return signed


def pow_by_number(x, exponent):
    """x to the power of a number (PyTorch's Scalar overload of pow), as its CPU kernel:
    sqrt at 0.5 (so -0.0 stays -0.0 and -inf gives NaN, unlike std::pow), 1 / sqrt at -0.5,
    1 / x at -1, products at 2, 3 and -2, std::pow otherwise; integers by std::pow (the
    products are exact there too)."""


@overload(pow_by_number)
def _pow_by_number(x, exponent):
    if isinstance(x, types.Integer):
        return lambda x, exponent: x ** exponent

    def implementation(x, exponent):
        if exponent == 0.5:
            return np.sqrt(x)
        if exponent == -0.5:
            return typed(1.0, x) / np.sqrt(x)
        if exponent == -1.0:
            return typed(1.0, x) / x
        if exponent == 2.0:
            return x * x
        if exponent == 3.0:
            return x * x * x
        if exponent == -2.0:
            return typed(1.0, x) / (x * x)
        return x ** exponent
    return implementation
