"""Small `numba` overloads that generated kernels call; imported by generated modules.

They let one generated kernel source serve both arrays and scalars, and write constants in
the dtype of the data, since in njit `float32 * 2.0` silently becomes float64.
"""
from numba import types
from numba.extending import overload


def at1(x, i):
    """`x[i]` for a 1-D array; `x` itself for a scalar (a broadcast size-1 operand)."""


def at4(x, i0, i1, i2, i3):
    """`x[i0, i1, i2, i3]` for a 4-D array; `x` itself for a scalar."""


def typed(value, like):
    """`value` converted to the element type of `like` (an array or a scalar)."""


@overload(at1, inline="always")
def _at1(x, i):
    if isinstance(x, types.Array):
        return lambda x, i: x[i]
    return lambda x, i: x


@overload(at4, inline="always")
def _at4(x, i0, i1, i2, i3):
    if isinstance(x, types.Array):
        return lambda x, i0, i1, i2, i3: x[i0, i1, i2, i3]
    return lambda x, i0, i1, i2, i3: x


@overload(typed, inline="always")
def _typed(value, like):
    target = like.dtype if isinstance(like, types.Array) else like
    return lambda value, like: target(value)


def wide_zero(like):
    """A zero accumulator for summing `like`'s elements: float64 for floats, int64 otherwise."""


@overload(wide_zero, inline="always")
def _wide_zero(like):
    if isinstance(like.dtype, types.Float):
        return lambda like: 0.0
    return lambda like: 0
