"""Small `numba` overloads that generated kernels call; imported by generated modules.

They let one generated kernel source serve both arrays and scalars, write constants in
the dtype of the data (in njit `float32 * 2.0` silently becomes float64), compute exp
in a form LLVM can vectorize, and make a fused step's views of its buffers cheaply.
"""
import math
from decimal import Decimal

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.np.arrayobj import make_array, populate_array
from numba.extending import intrinsic, overload

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


@intrinsic
def view(typingctx, array, offset, shape):
    """The C-contiguous `shape` view of the C-contiguous `array` from flat element `offset`.

    Why: `array[a:b].reshape(shape)` compiles a size check and its exception path at each
    use, about 25 ms of compile time apiece; a fused step makes dozens of views.
    NOTE: nothing is checked at run time: the caller (the fused-step generator, whose arena
    layout fixes every offset and shape) guarantees that the view lies inside `array`.
    """
    if not (isinstance(array, types.Array) and array.layout == "C"
            and isinstance(shape, types.BaseTuple)
            and all(isinstance(size, types.Integer) for size in shape)):
        return None
    result = types.Array(array.dtype, len(shape), "C", readonly=not array.mutable)

    def codegen(context, builder, signature, args):
        source = make_array(array)(context, builder, args[0])
        return _c_view(context, builder, result, source, builder.gep(source.data, [args[1]]),
                       cgutils.unpack_tuple(builder, args[2]))

    return result(array, types.intp, shape), codegen


def _c_view(context, builder, result, source, data, sizes):
    """A `result` array (C-contiguous) of `sizes` at `data`, which lies in `source`."""
    target = make_array(result)(context, builder)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
        context.get_data_type(result.dtype)))
    strides, stride = [], itemsize
    for size in reversed(sizes):
        strides.insert(0, stride)
        stride = builder.mul(stride, size)
    populate_array(target, data=data, shape=sizes, strides=strides, itemsize=itemsize,
                   meminfo=source.meminfo)
    # NOTE: the view holds a reference of its own to the memory (else freed twice).
    return impl_ret_borrowed(context, builder, result, target._getvalue())


@intrinsic
def reshaped(typingctx, array, shape):
    """`array.reshape(shape)` (a size or -1, or a tuple of sizes) of a C-contiguous array,
    as inline code with one size check.

    Why: `.reshape` compiles its checks and its exception path at each use (about 25 ms of
    compile time apiece), and a function made per signature (an `overload`) still costs a
    compilation of its own for each array type and shape length; a fused step has dozens.
    Other layouts get Numba's `.reshape`.
    """
    if not isinstance(array, types.Array):
        return None
    if isinstance(shape, types.Integer):
        sizes_type = types.UniTuple(shape, 1)
    elif isinstance(shape, types.UniTuple) and isinstance(shape.dtype, types.Integer) or \
            isinstance(shape, types.Tuple) and len(shape) == 0:
        sizes_type = shape
    else:
        return None
    if array.layout != "C":
        method = typingctx.resolve_getattr(array, "reshape")
        general = typingctx.resolve_function_type(method, (shape,), {})

        def codegen_general(context, builder, signature, args):
            return context.compile_internal(builder, lambda array, shape: array.reshape(shape),
                                            signature, args)

        return general.return_type(array, shape), codegen_general
    result = types.Array(array.dtype, len(sizes_type), "C", readonly=not array.mutable)

    def codegen(context, builder, signature, args):
        source = make_array(array)(context, builder, args[0])
        sizes = [args[1]] if isinstance(shape, types.Integer) else \
            cgutils.unpack_tuple(builder, args[1])
        sizes = [context.cast(builder, size, kind, types.intp)
                 for size, kind in zip(sizes, sizes_type)]
        if isinstance(shape, types.Integer):  # -1: all the elements
            negative = builder.icmp_signed("<", sizes[0], context.get_constant(types.intp, 0))
            sizes = [builder.select(negative, source.nitems, sizes[0])]
        count = context.get_constant(types.intp, 1)
        for size in sizes:
            count = builder.mul(count, size)
        with builder.if_then(builder.icmp_signed("!=", count, source.nitems), likely=False):
            context.call_conv.return_user_exc(
                builder, ValueError, ("cannot reshape an array to a shape of another size",))
        return _c_view(context, builder, result, source, source.data, sizes)

    return result(array, shape), codegen


@intrinsic
def permuted(typingctx, array, axes):
    """`array.transpose(axes)` for a literal tuple of axes (a fused step's permute): the same
    memory with its shape and strides reordered.

    Why: Numba's `.transpose(axes)` permutes its shape and strides through arrays assigned by
    slice, whose shape-mismatch error message (string formatting) compiled for 1.8-3.7 s in
    each step that transposed (a one-block GPT training step: 26.5 -> 19.0 s cold, with
    embedding_kernel written without slice assignments too).
    NOTE: the axes are not checked: the generator passes a permutation of the array's
    dimensions, as eager's permute checked it.
    """
    if not (isinstance(array, types.Array) and isinstance(axes, types.BaseTuple)
            and all(isinstance(axis, types.IntegerLiteral) for axis in axes)
            and sorted(axis.literal_value for axis in axes) == list(range(array.ndim))):
        return None
    order = [axis.literal_value for axis in axes]
    layout = "A" if order != list(range(array.ndim)) or array.layout != "C" else "C"
    result = types.Array(array.dtype, array.ndim, layout, readonly=not array.mutable)

    def codegen(context, builder, signature, args):
        source = make_array(array)(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, source.shape)
        strides = cgutils.unpack_tuple(builder, source.strides)
        target = make_array(result)(context, builder)
        populate_array(target, data=source.data, shape=[shape[axis] for axis in order],
                       strides=[strides[axis] for axis in order], itemsize=source.itemsize,
                       meminfo=source.meminfo)
        return impl_ret_borrowed(context, builder, result, target._getvalue())

    return result(array, axes), codegen


# ---------------------------------------------------------------------------------------
# exp. Without SVML (this llvmlite has none) `np.exp` in a loop is one libm call per element,
# which LLVM cannot vectorize; this version is plain arithmetic, so the loop vectorizes
# (about 5x faster at 1e6 float32 elements). Within 1.3 ulp of the exact result, with
# PyTorch's results at inf, -inf, NaN, overflow and in the subnormal range.

def exp(x):
    """e ** x for a float32 or float64 scalar."""


@intrinsic
def _float_with_bits(typingctx, bits, like):
    """The float of `like`'s type whose bit pattern is the integer `bits`."""
    def codegen(context, builder, signature, args):
        same_width = types.int32 if like == types.float32 else types.int64
        pattern = context.cast(builder, args[0], bits, same_width)
        return builder.bitcast(pattern, context.get_value_type(like))
    return like(bits, like), codegen


_LN2 = Decimal("0.693147180559945309417232121458176568075500134360255254120680")
# ln 2 split as hi + lo (Cody-Waite): hi has 11 fractional bits, so n * hi is exact for
# every n that occurs and x - n * hi loses nothing.
_LN2_HI = 1420 / 2048


def _exp_implementation(float_type, int_type, mantissa_bits, exponent_bias, degree,
                        lowest, highest):
    """exp(x) = 2**n * exp(r) with n = round(x / ln 2) and |r| <= ln(2) / 2, where a Taylor
    polynomial of `degree` is accurate to well below an ulp; `lowest`/`highest` are where the
    result is certainly 0 / inf."""
    log2e, half, zero_int = float_type(1 / math.log(2)), float_type(0.5), int_type(0)
    ln2_hi, ln2_lo = float_type(_LN2_HI), float_type(float(_LN2 - Decimal(_LN2_HI)))
    # Horner's scheme, highest power first.
    leading = float_type(1 / math.factorial(degree))
    coefficients = tuple(float_type(1 / math.factorial(k)) for k in range(degree - 1, -1, -1))
    lowest, highest = float_type(lowest), float_type(highest)

    def impl(x):
        # NOTE: NaN fails both comparisons and passes through; inf and -inf are clamped so
        # that 2**n stays representable and the result overflows to inf or rounds to 0.
        x = highest if x > highest else (lowest if x < lowest else x)
        n = np.floor(x * log2e + half)
        r = (x - n * ln2_hi) - n * ln2_lo
        p = leading
        for c in coefficients:
            p = p * r + c
        # NOTE: converting NaN to an integer is undefined in LLVM; NaN's p is NaN anyway.
        k = int_type(n) if n == n else zero_int
        # 2**k in two factors, each a normal float, so results in the subnormal range are
        # rounded once, at the last multiplication.
        k_half = k >> 1
        return (p * _float_with_bits((k_half + exponent_bias) << mantissa_bits, x)
                * _float_with_bits((k - k_half + exponent_bias) << mantissa_bits, x))

    return impl


_EXP = {
    types.float32: _exp_implementation(np.float32, np.int32, 23, 127, 7, -104.0, 89.0),
    types.float64: _exp_implementation(np.float64, np.int64, 52, 1023, 13, -746.0, 710.0),
}


@overload(exp)
def _exp(x):
    return _EXP.get(x)


# ---------------------------------------------------------------------------------------
# tanh. NOTE: `np.tanh` in njit is libm's tanhf for float32, ~20 ns an element (it goes
# through expm1f), 4-5 times this version: tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|)
# in float64 arithmetic (no cancellation that float32 would see; the exp above, so a loop
# can vectorize), rounded once to float32, with tanh(x) = x below 2**-12 (where x is the
# correctly rounded tanh(x), and where e rounds to 1). float64 keeps libm's tanh.

def tanh(x):
    """tanh of a float32 or float64 scalar."""


_TINY_FOR_TANH = 2.0 ** -12


@numba.njit(error_model="numpy", cache=True)
def _tanh_float32(x):
    magnitude = abs(np.float64(x))
    e = exp(-2.0 * magnitude)
    # (NaN stays NaN; +-inf give e = 0, so +-1; -0.0 is tiny, so -0.0)
    result = np.float32(np.copysign((1.0 - e) / (1.0 + e), np.float64(x)))
    return x if magnitude < _TINY_FOR_TANH else result


# NOTE: a function of its own compiled with NumPy's error model: with Python's (an overload's
# default), its division checks for zero and may raise, and a loop calling it neither
# inlined nor vectorized it (20-50 ns an element instead of 2). Inlined by Numba instead
# (overload inline="always"), the conditional tripped Numba's SSA check (warnings).
@overload(tanh)
def _tanh(x):
    if x == types.float32:
        return lambda x: _tanh_float32(x)
    if x == types.float64:
        return lambda x: np.tanh(x)
    return None
