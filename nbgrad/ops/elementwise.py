"""Elementwise primitives: each row is a scalar expression for the forward and one per input
for the VJP. Every kernel (forward and VJP, contiguous and broadcast/strided) is generated
from those expressions, so the family has a single definition; the fused code generator
reads the same expressions to inline chains of these ops into one loop.

Names in expressions: the inputs, the parameters, `g` (the incoming gradient), `out`
(the forward result) and the helpers in `HELPERS`. Numeric literals are emitted in the
data's dtype (see `typed`).
"""
import ast
import functools
import operator
import re

import numpy as np

from .._core import modules as _codegen
from .._core import threads as _threads
from .._core.dtype import COMPUTED_NUMPY, get_default_dtype, out_of_range_integer, result_type
from .._core import kernel_support as _kernel_support
from .._core import loops as _loops
from .._core import scalar_math as _scalar_math
from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register

_MAX_STRIDED_NDIM = 4


class Elementwise:
    """A row of the elementwise table (before it becomes a `Primitive`)."""

    def __init__(self, name, grad_fn, inputs, expr, grads=None, result="same", params=(),
                 promote=None, bool_errors=None, kinds="biuf", kernel=None, scalar_overloads=None,
                 not_implemented_overloads=None, result_overloads=None):
        self.name = name
        self.grad_fn = grad_fn
        self.inputs = inputs
        self.expr = expr
        self.grads = grads or {}
        # "same": the promoted input dtype; "float": same, but integers become the default
        # dtype (float32 unless set_default_dtype changed it);
        # "floating": same, for floats only; "bool": comparisons; "param": the `dtype`
        # keyword of the call (conversions).
        self.result = result
        # The NumPy kinds of the promoted dtype PyTorch has a kernel for; others raise its
        # NotImplementedError, which names the kernel (by default "<name>_cpu").
        self.kinds = "f" if result == "floating" else kinds
        self.kernel = kernel or f"{name}_cpu"
        self.params = params
        # Positions of inputs that take part in type promotion (where's condition does not).
        self.promote = tuple(range(len(inputs))) if promote is None else promote
        # PyTorch refuses some ops on bool tensors: (message when every input is bool,
        # message when one is), raised as RuntimeError before any kernel runs.
        self.bool_errors = bool_errors
        # grad_fn names of PyTorch's Scalar overloads -> the inputs their node links
        # (Primitive.scalar_overloads).
        self.scalar_overloads = scalar_overloads
        # grad_fn names of PyTorch's in-place overloads whose node saves the result
        # (Primitive.result_guarded) -> None, or what its backward refuses (`_from_result`).
        self.result_overloads = result_overloads or {}
        # grad_fn name -> a function of a node's parameters giving the error its backward
        # raises (or None): the overloads without a derivative (asinh_'s AsinhBackward1:
        # `not_implemented_overloads` maps them to what the error names), and those of
        # `result_overloads` that refuse some parameters.
        self.refusals = {name: functools.partial(_not_implemented, what)
                         for name, what in (not_implemented_overloads or {}).items()}
        self.refusals.update((name, refusal) for name, refusal in self.result_overloads.items()
                             if refusal is not None)
        # An overload without a derivative in PyTorch (`5 % x`) records its NotImplemented
        # node, whose backward raises.
        if NOT_IMPLEMENTED in (scalar_overloads or {}):
            self.refusals[NOT_IMPLEMENTED] = functools.partial(_derivative_missing, name)


def sign_expression(x):
    """torch.sign of expression `x`, as an expression: 0 at NaN (np.sign's is NaN)."""
    return f"(1.0 if {x} > 0.0 else (-1.0 if {x} < 0.0 else 0.0))"


# The VJP of ops whose derivative is zero wherever it exists (floor, sign): PyTorch's zeros.
_ZERO = "0.0"
_IS_FINITE = "(a == a and a != np.inf and a != -np.inf)"
_FLOOR_DIVIDE = "floor_divide(a, b)"
# The grad_fn of a row without a derivative formula in PyTorch (floor_divide): a call on
# inputs that require grad records this node, as PyTorch does, and a backward through it
# raises PyTorch's error.
NOT_IMPLEMENTED = "NotImplemented"
_NUMBER_KINDS = "iuf"  # PyTorch's rounding and remainder kernels take no bool


def _inplace_not_implemented(name):
    """PyTorch's in-place form of `name` has no derivative: its node, <Name>Backward1, raises."""
    return {f"{name.capitalize()}Backward1": f"inplace version of {name}"}


def _derivative_missing(name, params):
    return RuntimeError(f"derivative for aten::{name} is not implemented")


def _not_implemented(what, params):
    return NotImplementedError(f"the derivative for '{what}' is not implemented.")


def _from_result(parameter, message):
    """The refusal of PyTorch's in-place node that computes its gradient from the result:
    where `parameter` is negative (or NaN), the result's sign is not the input's, and its
    backward raises `message`."""
    def refusal(params):
        return None if params[parameter] >= 0.0 else RuntimeError(message)
    return refusal


# (PyTorch's messages: elu's names a slope too.)
_FROM_RESULT_ELU = _from_result(
    "alpha", "In-place elu backward calculation is triggered with a negative slope which is not "
    "supported. This is caused by calling in-place forward function with a negative slope, "
    "please call out-of-place version instead.")
_FROM_RESULT_LEAKY_RELU = _from_result(
    "negative_slope", "In-place leakyReLu backward calculation is triggered with a negative "
    "slope which is not supported. This is caused by calling in-place forward function with a "
    "negative slope, please call out-of-place version instead. File an issue at "
    "https://github.com/pytorch/pytorch if you do require supporting in-place leakRelu "
    "backward calculation with negative slope")


def _rounding(name, expr):
    return Elementwise(name, f"{name.capitalize()}Backward0", ("a",), expr, {"a": _ZERO},
                       kinds=_NUMBER_KINDS, kernel=f"{name}_vml_cpu")


# GELU (PyTorch's GeluKernelImpl and its backward): exact, through erf, and its tanh
# approximation. The tanh term is written out twice in the VJP (an expression has no local
# variables); LLVM computes it once.
_SQRT1_2, _GELU_PDF = "0.7071067811865476", "0.3989422804014327"  # 1/sqrt(2), 1/sqrt(2 pi)
_GELU_CDF = f"0.5 * (1.0 + erf(a * {_SQRT1_2}))"
_GELU_TANH = "tanh(0.7978845608028654 * (a + 0.044715 * (a * a * a)))"
_SIGMOID = "(1.0 / (1.0 + exp(-a)))"
_SIGMOID_B = "(1.0 / (1.0 + exp(-b)))"
_TANH_SOFTPLUS = "tanh(np.log1p(exp(a)))"
# min(max(x + 3, 0), 6); NaN stays NaN.
_RELU6_OF_X_PLUS_3 = "(0.0 if a + 3.0 < 0.0 else (6.0 if a + 3.0 > 6.0 else a + 3.0))"
_Z_OVER_1_PLUS_Z = "(exp(-abs(a)) / (1.0 + exp(-abs(a))))"  # z = exp(-|x|)
_WITHIN_LAMBD = "(a >= -lambd and a <= lambd)"


def _elu(name):
    """PyTorch's elu kernel and its backward from the input, with its three parameters
    (negcoef = alpha * scale, poscoef = scale, negiptcoef = input_scale): elu, selu and
    celu are this kernel. Its conditions exactly (`x <= 0 ?`): NaN takes the linear branch.
    (The in-place form's node saves the result: `result_overloads`.)"""
    grad_fn = f"{name.capitalize()}Backward"
    return Elementwise(name, grad_fn + "0", ("a",),
                       "alpha * scale * np.expm1(a * input_scale) if a <= 0.0 else a * scale",
                       {"a": "g * input_scale * (alpha * scale) * exp(a * input_scale) "
                             "if a <= 0.0 else g * scale"},
                       result="floating", params=("alpha", "scale", "input_scale"),
                       kernel="elu_cpu", result_overloads={grad_fn + "1": _FROM_RESULT_ELU})


# (A NaN bound gives NaN, as PyTorch's.)
_ATAN2_RECIPROCAL = "(0.0 if a * a + b * b == 0.0 else 1.0 / (a * a + b * b))"
_CLAMPED = "(lo if (a < lo or lo != lo) else a)"
_LOGIT_CLAMPED = "(a if eps < 0.0 else (eps if a < eps else (1.0 - eps if a > 1.0 - eps else a)))"
_LOGIT_GRADIENT = "g / (abs(a) * (1.0 - a))"  # (abs: +-inf of g's sign at -0.0 too)
_PI = "3.141592653589793"
_SAME_INFINITY = "(a == b and abs(a) == np.inf)"
_LARGER = "(b if a < b else a)"  # std::max: a where either is NaN

_BOOL_SUBTRACTION = (
    "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or "
    "`logical_xor()` operator instead.",
    "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to "
    "invert a mask, use the `~` or `logical_not()` operator instead.")
_BOOL_NEGATION = ("Negation, the `-` operator, on a bool tensor is not supported. If you are "
                  "trying to invert a mask, use the `~` or `logical_not()` operator instead.",) * 2

# (AddBackward1, SubBackward1, MulBackward1: PyTorch's Scalar overloads, which ATen's C++
# composites record: `x + 1e-6` there. Python's `x + 1e-6` records the Tensor overload.)
TABLE = [
    Elementwise("add", "AddBackward0", ("a", "b"), "a + b", {"a": "g", "b": "g"},
                scalar_overloads={"AddBackward1": (0,)}),
    Elementwise("sub", "SubBackward0", ("a", "b"), "a - b", {"a": "g", "b": "-g"},
                bool_errors=_BOOL_SUBTRACTION, scalar_overloads={"SubBackward1": (0,)}),
    Elementwise("rsub", "RsubBackward1", ("a", "b"), "b - a", {"a": "-g", "b": "g"},
                bool_errors=_BOOL_SUBTRACTION, scalar_overloads={"RsubBackward1": (0,)}),
    # add/sub(alpha=...) of two tensors: one node, as PyTorch's
    Elementwise("add_scaled", "AddBackward0", ("a", "b"), "a + alpha * b",
                {"a": "g", "b": "g * alpha"}, params=("alpha",), kernel="add_cpu"),
    Elementwise("sub_scaled", "SubBackward0", ("a", "b"), "a - alpha * b",
                {"a": "g", "b": "-g * alpha"}, params=("alpha",), kernel="sub_cpu",
                bool_errors=_BOOL_SUBTRACTION),
    # PyTorch's two formulas: each exact at its end of the weight's range
    Elementwise("lerp", "LerpBackward1", ("a", "b", "w"),
                "a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1.0 - w)",
                {"a": "g * (1.0 - w)", "b": "g * w", "w": "g * (b - a)"}, result="floating",
                kernel="lerp_kernel_tensor", scalar_overloads={"LerpBackward0": (0, 1)}),
    Elementwise("mul", "MulBackward0", ("a", "b"), "a * b", {"a": "g * b", "b": "g * a"},
                scalar_overloads={"MulBackward1": (0,)}),
    # a + value * b * c and a + value * b / c in one pass (optimizers written by hand use them)
    Elementwise("addcmul", "AddcmulBackward0", ("a", "b", "c"), "a + value * (b * c)",
                {"a": "g", "b": "g * value * c", "c": "g * value * b"}, params=("value",)),
    Elementwise("addcdiv", "AddcdivBackward0", ("a", "b", "c"), "a + value * (b / c)",
                {"a": "g", "b": "g * value / c", "c": "-g * value * b / (c * c)"},
                params=("value",), kinds="f"),
    # PyTorch's order for b, (a / b) / b: the same rounding, and no overflow of b * b.
    Elementwise("div", "DivBackward0", ("a", "b"), "a / b",
                {"a": "g / b", "b": "-g * ((a / b) / b)"}, result="float",
                scalar_overloads={"DivBackward1": (0,)}),
    # Two tensors (PowBackward1), or a number to a tensor's power (PowBackward2): std::pow.
    Elementwise("pow", "PowBackward1", ("a", "b"), "tensor_pow(a, b)",
                {"a": "0.0 if b == 0.0 else g * (b * a ** (b - 1.0))",
                 "b": "0.0 if (a == 0.0 and b >= 0.0) else g * out * np.log(a)"},
                scalar_overloads={"PowBackward2": (1,)}, kinds=_NUMBER_KINDS, kernel="pow"),
    # A tensor to the power of a number (PowBackward0): PyTorch's kernel of that overload
    # has special cases (pow_by_number), which its gradient, exponent * x.pow(exponent - 1),
    # meets too.
    Elementwise("pow_scalar", "PowBackward0", ("a",), "pow_by_number(a, exponent)",
                {"a": "0.0 if exponent == 0.0 else "
                      "g * (exponent * pow_by_number(a, exponent - 1.0))"},
                params=("exponent",), kernel="pow"),
    Elementwise("neg", "NegBackward0", ("a",), "-a", {"a": "-g"}, bool_errors=_BOOL_NEGATION),
    Elementwise("reciprocal", "ReciprocalBackward0", ("a",), "1.0 / a", {"a": "-g * out * out"},
                result="float"),
    Elementwise("exp", "ExpBackward0", ("a",), "exp(a)", {"a": "g * out"}, result="float"),
    Elementwise("expm1", "Expm1Backward0", ("a",), "np.expm1(a)", {"a": "g * (out + 1.0)"},
                result="float"),
    Elementwise("log", "LogBackward0", ("a",), "np.log(a)", {"a": "g / a"}, result="float"),
    Elementwise("log1p", "Log1PBackward0", ("a",), "np.log1p(a)", {"a": "g / (a + 1.0)"},
                result="float"),
    Elementwise("sqrt", "SqrtBackward0", ("a",), "np.sqrt(a)", {"a": "g / (2.0 * out)"},
                result="float"),
    Elementwise("abs", "AbsBackward0", ("a",), "abs(a)", {"a": f"g * {sign_expression('a')}"}),
    Elementwise("sin", "SinBackward0", ("a",), "np.sin(a)", {"a": "g * np.cos(a)"},
                result="float"),
    Elementwise("cos", "CosBackward0", ("a",), "np.cos(a)", {"a": "-g * np.sin(a)"},
                result="float"),
    Elementwise("tanh", "TanhBackward0", ("a",), "tanh(a)", {"a": "g * (1.0 - out * out)"},
                result="float"),
    # ---- the other math functions of torch: derivatives.yaml's formulas, in its order of
    # operations (its rsqrt is 1 / sqrt). At the ends of a domain (asin at 1, acosh at 1,
    # atanh at -1 and 1, rsqrt at 0) the gradients are infinite, and NaN outside it, as
    # PyTorch's.
    Elementwise("tan", "TanBackward0", ("a",), "np.tan(a)", {"a": "g * (1.0 + out * out)"},
                result="float"),
    Elementwise("asin", "AsinBackward0", ("a",), "np.arcsin(a)",
                {"a": "g * (1.0 / np.sqrt(1.0 - a * a))"}, result="float"),
    Elementwise("acos", "AcosBackward0", ("a",), "np.arccos(a)",
                {"a": "g * -(1.0 / np.sqrt(1.0 - a * a))"}, result="float"),
    Elementwise("atan", "AtanBackward0", ("a",), "np.arctan(a)", {"a": "g / (a * a + 1.0)"},
                result="float"),
    Elementwise("sinh", "SinhBackward0", ("a",), "np.sinh(a)", {"a": "g * np.cosh(a)"},
                result="float"),
    Elementwise("cosh", "CoshBackward0", ("a",), "np.cosh(a)", {"a": "g * np.sinh(a)"},
                result="float"),
    Elementwise("asinh", "AsinhBackward0", ("a",), "np.arcsinh(a)",
                {"a": "g * (1.0 / np.sqrt(a * a + 1.0))"}, result="float",
                not_implemented_overloads=_inplace_not_implemented("asinh")),
    Elementwise("acosh", "AcoshBackward0", ("a",), "np.arccosh(a)",
                {"a": "g * (1.0 / np.sqrt(a * a - 1.0))"}, result="float",
                not_implemented_overloads=_inplace_not_implemented("acosh")),
    Elementwise("atanh", "AtanhBackward0", ("a",), "np.arctanh(a)", {"a": "g / (1.0 - a * a)"},
                result="float", not_implemented_overloads=_inplace_not_implemented("atanh")),
    Elementwise("rsqrt", "RsqrtBackward0", ("a",), "1.0 / np.sqrt(a)",
                {"a": "-0.5 * g * (out * out * out)"}, result="float"),
    Elementwise("erfc", "ErfcBackward0", ("a",), "erfc(a)",
                {"a": "-1.1283791670955126 * exp(-(a * a)) * g"}, result="float"),
    Elementwise("exp2", "Exp2Backward0", ("a",), "np.exp2(a)",
                {"a": "g * out * 0.6931471805599453"}, result="float"),
    # `eps` is PyTorch's: None (given as -1.0) leaves a alone, else a is clamped to
    # [eps, 1 - eps] and the gradient is 0 outside it. The gradient is PyTorch's kernel's:
    # NaN outside [0, 1] without eps, NaN at NaN, and g * inf at 0 and 1, also at -0.0.
    Elementwise("logit", "LogitBackward0", ("a",),
                f"np.log({_LOGIT_CLAMPED} / (1.0 - {_LOGIT_CLAMPED}))",
                {"a": f"(np.nan if (a < 0.0 or a > 1.0) else {_LOGIT_GRADIENT}) if eps < 0.0 "
                      f"else (0.0 if (a < eps or a > 1.0 - eps) else {_LOGIT_GRADIENT})"},
                result="float", params=("eps",)),
    Elementwise("frac", "FracBackward0", ("a",), "a - np.trunc(a)", {"a": "g"},
                result="floating"),
    # M_PI / 180 and 180 / M_PI, as PyTorch multiplies by them (in the data's dtype)
    Elementwise("deg2rad", "Deg2RadBackward0", ("a",), "a * 0.017453292519943295",
                {"a": "g * 0.017453292519943295"}, result="float"),
    Elementwise("rad2deg", "Rad2DegBackward0", ("a",), "a * 57.29577951308232",
                {"a": "g * 57.29577951308232"}, result="float"),
    # sin(pi a) / (pi a), 1 at 0; the gradient is 0 where a * a * pi is 0 (sinc_backward)
    Elementwise("sinc", "SincBackward0", ("a",),
                f"1.0 if a == 0.0 else np.sin({_PI} * a) / ({_PI} * a)",
                {"a": f"0.0 if a * a * {_PI} == 0.0 else "
                      f"g * ((a * {_PI}) * np.cos(a * {_PI}) - np.sin(a * {_PI})) / (a * a * {_PI})"},
                result="float"),
    # xlogy(0, y) is 0 (NaN if y is); the gradient of x is 0 where x is 0 and y <= 0.
    Elementwise("xlogy", "XlogyBackward0", ("a", "b"), "xlogy(a, b)",
                {"a": "0.0 if (a == 0.0 and b <= 0.0) else xlogy(g, b)", "b": "g * a / b"},
                result="float", scalar_overloads={"XlogyBackward2": (0,), "XlogyBackward1": (1,)}),
    Elementwise("hypot", "HypotBackward0", ("a", "b"), "np.hypot(a, b)",
                {"a": "g * a / out", "b": "g * b / out"}, result="floating"),
    # The gradient of a is g * out / a, 0 where a is 0; b's is 0. PyTorch's node keeps the
    # result also where only b needs a gradient (x.detach().copysign_(w)): a later write
    # into it is an error there too (`result_overloads`, its in-place form's name as well).
    Elementwise("copysign", "CopysignBackward0", ("a", "b"), "np.copysign(a, b)",
                {"a": "g * (0.0 if a == 0.0 else out / a)", "b": _ZERO}, result="float",
                scalar_overloads={"CopysignBackward1": (0,)},
                result_overloads={"CopysignBackward0": None}),
    # PyTorch's kernels: log(1 + exp(-|a - b|)) (not log1p) after the larger, and a itself
    # where a and b are the same infinity.
    Elementwise("logaddexp", "LogaddexpBackward0", ("a", "b"),
                f"a if {_SAME_INFINITY} else {_LARGER} + np.log(1.0 + exp(-abs(a - b)))",
                {"a": "g / (1.0 + exp(b - a))", "b": "g / (1.0 + exp(a - b))"},
                result="floating"),
    Elementwise("logaddexp2", "Logaddexp2Backward0", ("a", "b"),
                f"a if {_SAME_INFINITY} else {_LARGER} + np.log2(1.0 + 2.0 ** -abs(a - b))",
                {"a": "g / (1.0 + 2.0 ** (b - a))", "b": "g / (1.0 + 2.0 ** (a - b))"},
                result="floating"),
    # C's fmax/fmin: NaN only where both are. Ties and NaN in b give a the whole gradient.
    Elementwise("fmax", "FmaxBackward0", ("a", "b"), "a if (a >= b or b != b) else b",
                {"a": "g if (a >= b or b != b) else 0.0", "b": "0.0 if (a >= b or b != b) else g"}),
    Elementwise("fmin", "FminBackward0", ("a", "b"), "a if (a <= b or b != b) else b",
                {"a": "g if (a <= b or b != b) else 0.0", "b": "0.0 if (a <= b or b != b) else g"}),
    Elementwise("sigmoid", "SigmoidBackward0", ("a",), "1.0 / (1.0 + exp(-a))",
                {"a": "g * out * (1.0 - out)"}, result="float"),
    # PyTorch's formulas (softplus_kernel, softplus_backward_kernel): linear above the
    # threshold. A primitive: as a composite, the branch `where` does not take would still
    # send NaN (0 * inf from exp's overflow) into the gradient.
    Elementwise("softplus", "SoftplusBackward0", ("a",),
                "a if a * beta > threshold else np.log1p(exp(a * beta)) / beta",
                {"a": "g if a * beta > threshold else "
                      "g * exp(a * beta) / (exp(a * beta) + 1.0)"},
                result="floating", params=("beta", "threshold")),
    # PyTorch's relu backward looks at the result: the gradient at 0 is 0. NaN passes
    # through, with the gradient (PyTorch's `x <= 0 ? 0 : x`).
    Elementwise("relu", "ReluBackward0", ("a",), "0.0 if a <= 0.0 else a",
                {"a": "0.0 if out <= 0.0 else g"}),
    # min(max(a, lo), hi): with lo > hi every element becomes hi, as in PyTorch.
    Elementwise("clamp", "ClampBackward1", ("a",),
                f"hi if ({_CLAMPED} > hi or hi != hi) else {_CLAMPED}",
                {"a": "g if (a >= lo and a <= hi) else 0.0"}, params=("lo", "hi")),
    # NaN propagates; at ties each input gets half the gradient, as in PyTorch.
    # clamp with Tensor bounds: NaN in any operand gives NaN; the gradient formulas are
    # PyTorch's (clamp_backward, clamp_backward_min_max), where lo > hi makes hi win. An
    # absent max is +inf, and `min_only` (1 or 0) says so: PyTorch's min-only rule gives lo
    # its gradient wherever a < lo, lo = +inf included (where lo < hi fails).
    Elementwise("clamp_tensor", "ClampBackward0", ("a", "lo", "hi"),
                "hi if (lo if (a < lo or lo != lo) else a) > hi or hi != hi else "
                "(lo if (a < lo or lo != lo) else a)",
                {"a": "g if (a >= lo and a <= hi) else 0.0",
                 "lo": "g if (a < lo and (lo < hi or min_only > 0.0)) else 0.0",
                 "hi": "g if (a > hi or hi < lo) else 0.0"}, params=("min_only",)),
    # (PyTorch's masks: where either is NaN, both get the whole gradient.)
    Elementwise("maximum", "MaximumBackward0", ("a", "b"), "a if (a > b or a != a) else b",
                {"a": "0.5 * g if a == b else (0.0 if a < b else g)",
                 "b": "0.5 * g if a == b else (0.0 if a > b else g)"}),
    Elementwise("minimum", "MinimumBackward0", ("a", "b"), "a if (a < b or a != a) else b",
                {"a": "0.5 * g if a == b else (0.0 if a > b else g)",
                 "b": "0.5 * g if a == b else (0.0 if a < b else g)"}),
    Elementwise("where", "WhereBackward0", ("condition", "a", "b"), "a if condition else b",
                {"a": "g if condition else 0.0", "b": "0.0 if condition else g"},
                promote=(1, 2), scalar_overloads={"TrilBackward0": (1,), "TriuBackward0": (1,)}),
    Elementwise("to_copy", "ToCopyBackward0", ("a",), "a", {"a": "g"}, result="param"),
    Elementwise("eq", None, ("a", "b"), "a == b", result="bool"),
    Elementwise("ne", None, ("a", "b"), "a != b", result="bool"),
    Elementwise("lt", None, ("a", "b"), "a < b", result="bool"),
    Elementwise("le", None, ("a", "b"), "a <= b", result="bool"),
    Elementwise("gt", None, ("a", "b"), "a > b", result="bool"),
    Elementwise("ge", None, ("a", "b"), "a >= b", result="bool"),
    Elementwise("logical_not", None, ("a",), "not a", result="bool"),
    Elementwise("logical_and", None, ("a", "b"), "a and b", result="bool"),
    Elementwise("logical_or", None, ("a", "b"), "a or b", result="bool"),
    # The operators &, |, ^ (on bools the logical operations, on integers bitwise).
    Elementwise("bitwise_and", None, ("a", "b"), "a & b", kinds="biu"),
    Elementwise("bitwise_or", None, ("a", "b"), "a | b", kinds="biu"),
    Elementwise("bitwise_xor", None, ("a", "b"), "a ^ b", kinds="biu"),
    Elementwise("bitwise_not", None, ("a",), "inverted(a)", kinds="biu"),
    # The operators << and >> (integers only: PyTorch has no bool kernel).
    Elementwise("bitwise_left_shift", None, ("a", "b"), "shifted_left(a, b)", kinds="iu",
                kernel="lshift_cpu"),
    Elementwise("bitwise_right_shift", None, ("a", "b"), "shifted_right(a, b)", kinds="iu",
                kernel="rshift_cpu"),
    # torch's derivative formulas (derivatives.yaml), with its constants ln(10) and ln(2).
    Elementwise("log10", "Log10Backward0", ("a",), "np.log10(a)",
                {"a": "g / (a * 2.3025850929940456)"}, result="float"),
    Elementwise("log2", "Log2Backward0", ("a",), "np.log2(a)",
                {"a": "g / (a * 0.6931471805599453)"}, result="float"),
    Elementwise("erf", "ErfBackward0", ("a",), "erf(a)",
                {"a": "1.1283791670955126 * exp(-(a * a)) * g"}, result="float"),
    # sign(NaN) is 0, as in PyTorch.
    Elementwise("sign", "SignBackward0", ("a",), sign_expression("a"), {"a": _ZERO}),
    _rounding("floor", "floor_value(a)"),
    _rounding("ceil", "ceil_value(a)"),
    _rounding("trunc", "trunc_value(a)"),
    _rounding("round", "rint_value(a)"),
    Elementwise("round_decimals", "RoundBackward1", ("a",), "round_decimals(a, decimals)",
                {"a": _ZERO}, result="floating", params=("decimals",), kernel="round_cpu"),
    # Gradients as PyTorch's: d/db = -floor(a / b) (remainder), -trunc(a / b) (fmod).
    Elementwise("remainder", "RemainderBackward1", ("a", "b"), "floored_remainder(a, b)",
                {"a": "g", "b": "-g * floor_divide(a, b)"}, kinds=_NUMBER_KINDS,
                scalar_overloads={"RemainderBackward0": (0,), NOT_IMPLEMENTED: (1,)}),
    Elementwise("fmod", "FmodBackward1", ("a", "b"), "truncated_remainder(a, b)",
                {"a": "g", "b": "-g * np.trunc(a / b)"}, kinds=_NUMBER_KINDS,
                scalar_overloads={"FmodBackward0": (0,)}),
    # div(rounding_mode=...): PyTorch defines the gradient as zero (DivBackward2).
    Elementwise("div_floor", "DivBackward2", ("a", "b"), _FLOOR_DIVIDE, {"a": _ZERO, "b": _ZERO},
                kinds=_NUMBER_KINDS),
    Elementwise("div_trunc", "DivBackward2", ("a", "b"), "truncated_divide(a, b)",
                {"a": _ZERO, "b": _ZERO}, kinds=_NUMBER_KINDS),
    # The same quotient without a derivative formula in PyTorch (see NOT_IMPLEMENTED).
    Elementwise("floor_divide", NOT_IMPLEMENTED, ("a", "b"), _FLOOR_DIVIDE, kinds=_NUMBER_KINDS,
                kernel="div_floor_cpu"),
    # PyTorch's formula, with its reciprocal taken as 0 where a * a + b * b is 0 (atan2(0, 0)).
    Elementwise("atan2", "Atan2Backward0", ("a", "b"), "np.arctan2(a, b)",
                {"a": f"g * b * {_ATAN2_RECIPROCAL}", "b": f"g * -a * {_ATAN2_RECIPROCAL}"},
                result="float"),
    # PyTorch's derivatives: the input's gradient passes through where the result moved
    # (a != b), `other` gets zeros.
    Elementwise("nextafter", "NextafterBackward0", ("a", "b"), "np.nextafter(a, b)",
                {"a": "g if a != b else 0.0", "b": _ZERO}, kinds="f"),
    Elementwise("isnan", None, ("a",), "a != a", result="bool"),
    Elementwise("isinf", None, ("a",), "(a == np.inf or a == -np.inf)", result="bool"),
    Elementwise("isfinite", None, ("a",), _IS_FINITE, result="bool"),
    Elementwise("nan_to_num", "NanToNumBackward0", ("a",),
                "nan_fill if a != a else (posinf_fill if a == np.inf else "
                "(neginf_fill if a == -np.inf else a))",
                # (PyTorch's grad * isfinite(x): NaN where g is not finite)
                {"a": f"g * (1.0 if {_IS_FINITE} else 0.0)"},
                params=("nan_fill", "posinf_fill", "neginf_fill")),
    # `value` is a 0-d tensor of a's dtype (the API converts a Python number).
    Elementwise("masked_fill", "MaskedFillBackward0", ("a", "mask", "value"),
                "value if mask else a",
                {"a": "0.0 if mask else g", "value": "g if mask else 0.0"}, promote=(0, 2),
                scalar_overloads={"MaskedFillBackward0": (0,)}),
    # fill_, zero_ and copy_ of a tensor in the graph: `value` (broadcast, of a's dtype: the
    # API converts it) replaces a, whose old node gets zeros (PyTorch's nodes: FillBackward2
    # for a number, FillBackward3 for a 0-d tensor, ZeroBackward0, CopyBackwards).
    Elementwise("fill", "FillBackward3", ("a", "value"), "value", {"a": _ZERO, "value": "g"},
                promote=(0,), scalar_overloads={"FillBackward2": (0,), "ZeroBackward0": (0,)}),
    # ---- activations (torch.nn.functional), PyTorch's kernels and backward kernels
    Elementwise("gelu", "GeluBackward0", ("a",), f"a * {_GELU_CDF}",
                {"a": f"g * ({_GELU_CDF} + a * ({_GELU_PDF} * exp(a * a * -0.5)))"},
                result="floating", kernel="GeluKernelImpl"),
    Elementwise("gelu_tanh", "GeluBackward0", ("a",), f"0.5 * a * (1.0 + {_GELU_TANH})",
                {"a": f"g * (0.5 * (1.0 + {_GELU_TANH}) + 0.5 * a * "
                      f"(1.0 - {_GELU_TANH} * {_GELU_TANH}) * "
                      "(0.7978845608028654 * (1.0 + 3.0 * 0.044715 * (a * a))))"},
                result="floating", kernel="GeluKernelImpl"),
    Elementwise("silu", "SiluBackward0", ("a",), "a / (1.0 + exp(-a))",
                {"a": f"g * {_SIGMOID} * (1.0 + a * (1.0 - {_SIGMOID}))"}, result="floating"),
    # At 0 the gradient is negative_slope's (PyTorch's `x > 0 ? g : g * slope`).
    Elementwise("leaky_relu", "LeakyReluBackward0", ("a",),
                "a if a > 0.0 else a * negative_slope",
                {"a": "g if a > 0.0 else g * negative_slope"}, result="floating",
                params=("negative_slope",),
                # (eval-mode rrelu_ is leaky_relu_ under its own in-place node)
                result_overloads=dict.fromkeys(("LeakyReluBackward1", "RreluWithNoiseBackward1"),
                                               _FROM_RESULT_LEAKY_RELU)),
    _elu("elu"),
    # Unlike clamp's, the gradient is 0 on the bounds (PyTorch's hardtanh_backward).
    Elementwise("hardtanh", "HardtanhBackward0", ("a",),
                "min_val if a < min_val else (max_val if a > max_val else a)",
                {"a": "0.0 if (a <= min_val or a >= max_val) else g"},
                params=("min_val", "max_val"),
                bool_errors=("Bool inputs not supported for hardtanh",) * 2),
    # CELU is PyTorch's elu kernel with scale 1 and input_scale 1 / alpha, under a node of
    # its own (SELU's node is elu's: EluBackward0).
    _elu("celu"),
    Elementwise("mish", "MishBackward0", ("a",), f"a * {_TANH_SOFTPLUS}",
                {"a": f"g * ({_TANH_SOFTPLUS} + a * {_SIGMOID} * "
                      f"(1.0 - {_TANH_SOFTPLUS} * {_TANH_SOFTPLUS}))"}, result="floating"),
    # The bounds as PyTorch's backward kernels: hardswish's slope formula holds on (-3, 3),
    # with 0 at -3 and 1 at 3; hardsigmoid's gradient is 0 at both, and inside it is g times
    # PyTorch's constant 1.0f / 6.0f (a float32, in float64 too).
    Elementwise("hardswish", "HardswishBackward0", ("a",), f"a * {_RELU6_OF_X_PLUS_3} / 6.0",
                {"a": "0.0 if a <= -3.0 else (g * (a / 3.0 + 0.5) if a < 3.0 else g)"},
                result="floating"),
    Elementwise("hardsigmoid", "HardsigmoidBackward0", ("a",), f"{_RELU6_OF_X_PLUS_3} / 6.0",
                {"a": "g * 0.1666666716337204 if (a > -3.0 and a < 3.0) else 0.0"}, result="floating"),
    # min(x, 0) - log1p(exp(-|x|)): no overflow for large |x| (PyTorch's log_sigmoid kernels).
    Elementwise("logsigmoid", "LogSigmoidBackward0", ("a",),
                "(a if a < 0.0 else 0.0) - np.log1p(exp(-abs(a)))",
                {"a": f"g * (1.0 - {_Z_OVER_1_PLUS_Z}) if a < 0.0 else g * {_Z_OVER_1_PLUS_Z}"},
                result="floating", kernel="log_sigmoid_cpu"),
    # Zero on [-lambd, lambd] as `a * 0` (PyTorch's scalar kernel: NaN stays NaN; its
    # vectorized one gives +0.0 for -0.0); the gradient is 0 on the bounds. (PyTorch names its
    # lambda check as the kernel of an integer call.)
    Elementwise("softshrink", "SoftshrinkBackward0", ("a",),
                "a - lambd if a > lambd else (a + lambd if a < -lambd else a * 0.0)",
                {"a": f"0.0 if {_WITHIN_LAMBD} else g"}, result="floating", params=("lambd",),
                kernel="softshrink_check"),
    Elementwise("hardshrink", "HardshrinkBackward0", ("a",), f"0.0 if {_WITHIN_LAMBD} else a",
                {"a": f"0.0 if {_WITHIN_LAMBD} else g"}, result="floating", params=("lambd",)),
    # Integers too (the parameters typed like the data, as PyTorch's); the gradient is 0 on
    # the threshold itself.
    Elementwise("threshold", "ThresholdBackward0", ("a",), "value if a <= threshold else a",
                {"a": "0.0 if a <= threshold else g"}, params=("threshold", "value"),
                kinds=_NUMBER_KINDS),
    # GLU on the input's two halves (the API's views): a * sigmoid(b), PyTorch's formulas.
    Elementwise("glu", "GluBackward0", ("a", "b"), f"a * {_SIGMOID_B}",
                {"a": f"{_SIGMOID_B} * g", "b": f"(1.0 - {_SIGMOID_B}) * {_SIGMOID_B} * a * g"},
                result="floating"),
    # PyTorch's _prelu_kernel: the weight broadcasts (the API shapes it along dim 1); its
    # gradient is summed back to its shape by the engine.
    Elementwise("prelu", "PreluKernelBackward0", ("a", "weight"), "a if a > 0.0 else weight * a",
                {"a": "g if a > 0.0 else weight * g", "weight": "0.0 if a > 0.0 else a * g"},
                result="floating"),
    # RReLU while training: `noise` (not differentiable) holds the drawn slope of each element
    # at or below 0 and 1 elsewhere (NaN too), as PyTorch's node saves it; the gradient is
    # g * noise everywhere. (In eval mode RReLU is leaky_relu under this node's name.)
    Elementwise("rrelu_with_noise", "RreluWithNoiseBackward0", ("a", "noise"), "a * noise",
                {"a": "g * noise"}, result="floating", kernel="rrelu_with_noise_out_cpu",
                result_overloads={"RreluWithNoiseBackward1": None}),
]

# ---------------------------------------------------------------------------------------
# Code generation: two kernels per expression, one over flat contiguous arrays (size-1
# operands passed as scalars) and one over 4-D strided views (broadcasting, transposes);
# and, in a module of its own imported on first use, the flat one spread over threads.

# Functions that expressions call by these names: a vectorizable exp and a float32 tanh built
# on it (libm's tanhf is ~20 ns an element), and PyTorch's scalar formulas of _scalar_math.
_FROM_KERNEL_SUPPORT = ("exp", "tanh")
HELPERS = {**{name: getattr(_kernel_support, name) for name in _FROM_KERNEL_SUPPORT},
           **{name: getattr(_scalar_math, name) for name in (
               "erf", "erfc", "xlogy", "inverted", "floor_value", "ceil_value", "trunc_value",
               "rint_value", "round_decimals", "floored_remainder", "truncated_remainder",
               "floor_divide", "truncated_divide", "tensor_pow", "pow_by_number",
               "shifted_left", "shifted_right")}}


def _header(parallel):
    return f'''"""Generated by nbgrad.ops.elementwise from its table; do not edit."""
import numba
import numpy as np
from nbgrad._core.kernel_support import at1, at4, {", ".join(_FROM_KERNEL_SUPPORT)}, typed
from nbgrad._core.scalar_math import {", ".join(sorted(set(HELPERS) - set(_FROM_KERNEL_SUPPORT)))}

_jit = numba.njit(cache=True, error_model="numpy", fastmath=False, parallel={parallel})
'''


def _names_in(expr, candidates):
    return [n for n in candidates if re.search(rf"\b{n}\b", expr)]


def _vjp_args(row, grad):
    """The arguments of the VJP kernel of expression `grad`: always `g` first (it types the
    numbers; a zero gradient reads nothing else), then what `grad` reads."""
    return ["g"] + _names_in(grad, ("out",) + row.inputs + row.params)


def _kernel_source(kernel_name, expr, args, reference, parallel, in_place=False):
    """Source for the kernels computing `expr`: `<kernel_name>_flat` and `_strided`, or with
    `parallel` `_flat_parallel` (the flat loop spread over threads); with `in_place`, only
    the flat one (`_flat_in_place`, `_flat_in_place_parallel`), whose result is its first
    operand's array: it takes `result` in that operand's place."""
    # Each argument's name in the kernel's signature.
    sources = {name: name for name in args}
    if in_place:
        sources[args[0]] = "result"
    body, constants = _loops.hoist_constants(expr, sources.get(reference, reference),
                                             lambda count: f"_c{count}")
    hoisted = "".join(f"    {line}\n" for line in constants)
    signature = ", ".join(sources.values() if in_place else args + ["result"])

    # NOTE: each operand is read into a local `_<name>` before the expression: Numba's parfor
    # pass rejects `at1` inlined inside a conditional expression ("Overwrite of parallel
    # loop index").
    element = _loops.substitute(body, {name: f"_{name}" for name in args})

    def kernel(suffix, indices, reader):
        index = ", ".join(indices)
        statements = [f"_{name} = {reader}({sources[name]}, {index})" for name in args]
        statements.append(f"result[{index}] = {element}")
        loops = _loops.loop_nest(indices, [f"result.shape[{d}]" for d in range(len(indices))],
                                 statements, parallel)
        return f"@_jit\ndef {kernel_name}_{suffix}({signature}):\n{hoisted}" + \
            "".join(line + "\n" for line in loops)

    if in_place:
        return kernel("flat_in_place_parallel" if parallel else "flat_in_place", ["i"], "at1")
    if parallel:
        return kernel("flat_parallel", ["i"], "at1")
    return "\n\n".join([
        kernel("flat", ["i"], "at1"),
        kernel("strided", _loops.index_names(_MAX_STRIDED_NDIM), "at4"),
    ])


def _generate_module(parallel, in_place=False):
    """The kernels of every row: forward and VJPs, or with `in_place` the forwards only."""
    parts = [_header(parallel)]
    for row in TABLE:
        reference = row.inputs[row.promote[0]]
        parts.append(_kernel_source(row.name, row.expr, list(row.inputs) + list(row.params),
                                    reference, parallel, in_place))
        if in_place:
            continue
        for wrt, grad in row.grads.items():
            if grad == "g":
                continue
            args = _vjp_args(row, grad)
            parts.append(_kernel_source(f"{row.name}_d{wrt}", grad, args, "g", parallel))
    return "\n\n".join(parts)


_kernels = _codegen.load_module("elementwise", _generate_module(parallel=False))


@functools.cache
def _parallel_kernels():
    # Imported (and each kernel compiled or loaded from the cache) when a large array first
    # needs it, so programs on small arrays never pay for it.
    _threads.start()
    return _codegen.load_module("elementwise_parallel", _generate_module(parallel=True))


@functools.cache
def _in_place_kernels(parallel):
    """The forward kernels that write their result over their first operand (an in-place
    op's target), imported on first use as the threaded ones. NOTE: the flat kernel given
    that operand's array as its result too runs one element at a time: LLVM's vectorized
    loop checks at run time that the result does not overlap an operand, and it does."""
    if parallel:
        _threads.start()
    return _codegen.load_module("elementwise_in_place" + "_parallel" * parallel,
                                _generate_module(parallel, in_place=True))


class KernelPair:
    """The flat and strided kernels of one expression, with their argument names; the flat
    kernel also comes spread over threads, for arrays of at least PARALLEL_THRESHOLD, and
    (a row's forward) writing over its first operand."""

    __slots__ = ("name", "flat", "strided", "args")

    def __init__(self, name, args):
        self.name = name
        self.flat = getattr(_kernels, name + "_flat")
        self.strided = getattr(_kernels, name + "_strided")
        self.args = args

    @property
    def flat_parallel(self):
        return getattr(_parallel_kernels(), self.name + "_flat_parallel")

    def flat_in_place(self, threaded):
        return getattr(_in_place_kernels(threaded),
                       self.name + "_flat_in_place" + "_parallel" * threaded)


# ---------------------------------------------------------------------------------------
# Running a kernel pair: the one place that handles broadcasting, strides and size-1 operands.

_broadcast_cache = {}


def broadcast_shapes(*shapes):
    """np.broadcast_shapes with PyTorch's error message, memoised (it is on the hot path)."""
    try:
        return _broadcast_cache[shapes]
    except KeyError:
        pass
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    result = []
    for sizes in zip(*padded):
        result.append(max(sizes) if min(sizes) != 0 else 0)
    # PyTorch reports the last mismatching dimension first.
    for dim in reversed(range(ndim)):
        sizes = [p[dim] for p in padded]
        if any(s != result[dim] and s != 1 for s in sizes):
            sizes = [s for s in sizes if s != 1] + [1, 1]
            raise RuntimeError(f"The size of tensor a ({sizes[0]}) must match the size of tensor b "
                               f"({sizes[1]}) at non-singleton dimension {dim}; shapes are "
                               f"{' and '.join(str(tuple(p)) for p in shapes)}")
    result = tuple(result)
    _broadcast_cache[shapes] = result
    return result


def run(kernels, operands, params, shape, dtype, out=None):
    """Evaluate `kernels` over NumPy `operands` broadcast to `shape`, into `out` (or a new array)."""
    if out is None:
        out = np.empty(shape, dtype)
    elif not out.flags.c_contiguous:
        return _run_strided(kernels, operands, params, shape, dtype, out)
    if out.size == 0:
        return out
    args = []
    for x in operands:
        if x.shape == shape and x.flags.c_contiguous:
            args.append(x if x.ndim == 1 else x.reshape(-1))
        elif x.size == 1:
            args.append(x[()] if x.ndim == 0 else x.reshape(-1)[0])
        elif not any(x.strides):  # one value broadcast (a view): read it as a scalar
            args.append(x[(0,) * x.ndim])
        else:
            return _run_strided(kernels, operands, params, shape, dtype, out)
    threaded = out.size >= _threads.PARALLEL_THRESHOLD and _threads.start()
    if operands[0] is out:  # an in-place op's target (dispatch's `into`): written over
        kernels.flat_in_place(threaded)(*args, *params)
        return out
    kernel = kernels.flat_parallel if threaded else kernels.flat
    kernel(*args, *params, out if out.ndim == 1 else out.reshape(-1))
    return out


def _run_strided(kernels, operands, params, shape, dtype, out):
    if out.size == 0:
        return out
    if len(shape) > _MAX_STRIDED_NDIM:
        # NOTE: beyond 4-D, copy the broadcast operands flat; correct, rare, not fast.
        flat_out = out if out.flags.c_contiguous else np.empty(shape, dtype)
        run(kernels, [np.ascontiguousarray(np.broadcast_to(x, shape)) for x in operands],
            params, shape, dtype, flat_out)
        if flat_out is not out:
            out[...] = flat_out
        return out
    pad = (1,) * (_MAX_STRIDED_NDIM - len(shape))
    views = [np.broadcast_to(x, shape).reshape(pad + shape) for x in operands]
    kernels.strided(*views, *params, out.reshape(pad + shape))
    return out


def scalar_param(value, np_dtype):
    try:
        return np_dtype.type(value)
    except OverflowError:
        return out_of_range_integer(value, np_dtype, checked=True)


# ---------------------------------------------------------------------------------------
# Rows -> primitives.

def _result_dtype(row, arrays, params):
    promoted = [arrays[i] for i in row.promote]
    if row.bool_errors is not None:
        _refuse_bool(row, promoted)
    compute = promoted[0].dtype
    if any(a.dtype != compute for a in promoted):
        compute = result_type(*promoted).np
    if compute.kind not in row.kinds:
        raise NotImplementedError(f'"{row.kernel}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[compute.name]}'")
    if row.result in ("same", "floating"):
        return compute, compute
    if row.result == "float":
        if compute.kind == "f":
            return compute, compute
        default = get_default_dtype().np
        return default, default
    if row.result == "bool":
        return compute, np.dtype(np.bool_)
    return compute, params["dtype"]


def _refuse_bool(row, arrays):
    bools = sum(a.dtype == np.bool_ for a in arrays)
    if bools:
        raise RuntimeError(row.bool_errors[0 if bools == len(arrays) else 1])


# ---------------------------------------------------------------------------------------
# Fused rule: the same expressions, emitted as loops inside a fused step (made before the
# row, which is given it).

def _calling_imported_helpers(em, expr):
    """`expr` with each helper it calls renamed to the fused module's import of it."""
    for name in _names_in(expr, HELPERS):
        expr = re.sub(rf"\b{name}\(", em.helper(HELPERS[name]) + "(", expr)
    return expr


class _ElementwiseFusion:
    def __init__(self, row):
        self.row = row

    def _operands(self, em, named_arrays, dtype):
        """Each array's operand of `em.elementwise`; promoted inputs of another dtype are
        converted to `dtype` as they are read, as eager converts them (`astype`) first."""
        operands = {}
        convert = "bool_" if dtype.kind == "b" else dtype.name
        for name, array in named_arrays:
            operands[name] = (em.ref(array), array.shape) \
                if array.dtype == dtype or name not in self._promoted else \
                (em.ref(array), array.shape, convert)
        return operands

    @property
    def _promoted(self):
        return {self.row.inputs[i] for i in self.row.promote}

    def forward(self, em, arrays, params, out):
        row = self.row
        compute = _result_dtype(row, arrays, params)[0]
        operands = self._operands(em, zip(row.inputs, arrays), compute)
        for name in row.params:
            operands[name] = em.literal(params[name], compute)
        result = em.out(out)
        # Numbers in the expression are typed like an input of the compute dtype, or like the
        # result (integers into a float result: log2 of int64 computes in float32).
        reference = next((operands[row.inputs[i]][0] for i in row.promote
                          if arrays[i].dtype == compute), None)
        if reference is None:
            if out.dtype != compute:
                raise Unfusable(f"{row.name} computes in {compute}, the dtype of none of its "
                                "inputs nor of its result")
            reference = result
        em.elementwise(_calling_imported_helpers(em, row.expr), operands, result, out.shape,
                       reference)

    def vjp(self, em, node, g, input_grads):
        row = self.row
        if row.grad_fn == NOT_IMPLEMENTED:
            raise Unfusable(f"derivative for aten::{row.name} is not implemented")
        refusal = row.refusals.get(type(node).__name__)
        error = refusal and refusal(node.params)
        if error is not None:
            raise Unfusable(f"{type(node).__name__}'s backward raises: {error}")
        named = [("g", g)]
        for key, array in zip(node.prim.save, node.saved):
            if array is not None:  # None: read only by the VJP of an input that needs none
                named.append(("out" if key == "out" else row.inputs[key], array))
        operands = self._operands(em, named, g.dtype)
        for name in row.params:
            operands[name] = em.literal(node.params[name], g.dtype)
        for wrt, grad in zip(row.inputs, input_grads):
            if grad is None:
                continue
            if grad is g:
                em.same(grad, g)
                continue
            expr = row.grads[wrt]
            used = {name: operands[name] for name in _names_in(expr, tuple(operands))}
            em.elementwise(_calling_imported_helpers(em, expr), used, em.out(grad), g.shape,
                           operands["g"][0])


# ---------------------------------------------------------------------------------------
# Differentiable VJPs (create_graph=True): the row's VJP expressions evaluated over Tensors,
# each operation a Tensor method or operator that dispatch records, so the gradient they
# make can be differentiated again. One small evaluator of the expression language above.

# The functions expressions call, as Tensor methods. NOTE: floor_divide is PyTorch's
# div(rounding_mode="floor") (DivBackward2, a zero gradient), as remainder's backward calls
# it; Tensor.floor_divide would record a node without a derivative.
_TENSOR_FUNCTIONS = {
    "exp": lambda a: a.exp(), "np.log": lambda a: a.log(), "np.log1p": lambda a: a.log1p(),
    "np.expm1": lambda a: a.expm1(), "np.sqrt": lambda a: a.sqrt(), "np.sin": lambda a: a.sin(),
    "np.cos": lambda a: a.cos(), "tanh": lambda a: a.tanh(), "abs": lambda a: a.abs(),
    "np.sinh": lambda a: a.sinh(), "np.cosh": lambda a: a.cosh(),
    "xlogy": lambda a, b: a.xlogy(b),
    "np.log10": lambda a: a.log10(), "np.log2": lambda a: a.log2(), "erf": lambda a: a.erf(),
    "np.trunc": lambda a: a.trunc(), "floor_value": lambda a: a.floor(),
    "ceil_value": lambda a: a.ceil(), "trunc_value": lambda a: a.trunc(),
    "rint_value": lambda a: a.round(), "inverted": lambda a: a.bitwise_not(),
    "round_decimals": lambda a, decimals: a.round(decimals=decimals),
    "np.arctan2": lambda a, b: a.atan2(b), "floored_remainder": lambda a, b: a.remainder(b),
    "truncated_remainder": lambda a, b: a.fmod(b),
    "floor_divide": lambda a, b: a.div(b, rounding_mode="floor"),
    "truncated_divide": lambda a, b: a.div(b, rounding_mode="trunc"),
    "tensor_pow": lambda a, b: a ** b,
    "pow_by_number": lambda a, exponent: a ** exponent,
}
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
              ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
              ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_NUMPY_CONSTANTS = {"np.inf": float(np.inf), "np.nan": float(np.nan)}


def _dotted(node):
    """`np.log` for the AST of `np.log`, `exp` for `exp`."""
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else node.id


def _is_number(value):
    return isinstance(value, (int, float))


def _constant_like(value, g):
    """Python number `value` as a 0-d Tensor of `g`'s dtype (the eager kernels type numbers
    like `g`): where PyTorch's promotion would make two numbers float32."""
    return g._new_plain(np.array(value, g.dtype.np))


def _evaluate(node, values, g):
    """The value of expression AST `node` with `values` for its names: Tensors (or numbers
    where every operand is a number), by Tensor methods and operators."""
    kind = type(node)
    if kind is ast.Constant:
        return node.value
    if kind is ast.Name:
        return values[node.id]
    if kind is ast.Attribute:
        return _NUMPY_CONSTANTS[_dotted(node)]
    if kind is ast.BinOp:
        return _OPERATORS[type(node.op)](_evaluate(node.left, values, g),
                                         _evaluate(node.right, values, g))
    if kind is ast.UnaryOp:
        operand = _evaluate(node.operand, values, g)
        return operand.logical_not() if type(node.op) is ast.Not else \
            _OPERATORS[type(node.op)](operand)
    if kind is ast.Compare:
        (op,), (right,) = node.ops, node.comparators
        return _OPERATORS[type(op)](_evaluate(node.left, values, g), _evaluate(right, values, g))
    if kind is ast.BoolOp:
        combine = "logical_and" if type(node.op) is ast.And else "logical_or"
        result = _evaluate(node.values[0], values, g)
        for operand in node.values[1:]:
            result = getattr(result, combine)(_evaluate(operand, values, g))
        return result
    if kind is ast.IfExp:
        # `x if c else y` is where(c, x, y); a number branch becomes a 0-d Tensor of g's dtype
        # (it broadcasts, and never promotes a dimensioned operand). A test of parameters
        # alone (logit's `eps < 0.0`) is a Python bool: it picks its branch.
        test = _evaluate(node.test, values, g)
        if isinstance(test, bool):
            return _evaluate(node.body if test else node.orelse, values, g)
        chosen = _evaluate(node.body, values, g)
        other = _evaluate(node.orelse, values, g)
        if _is_number(chosen):
            chosen = _constant_like(chosen, g)
        return chosen.where(test, other)
    if kind is ast.Call:
        return _TENSOR_FUNCTIONS[_dotted(node.func)](*(_evaluate(a, values, g) for a in node.args))
    raise NotImplementedError(f"nbgrad's differentiable VJPs cannot evaluate {ast.dump(node)}")


def _checked_tree(row, expr):
    """The AST of VJP expression `expr`, refused at import if `_evaluate` cannot evaluate it
    (a function without a Tensor method, a chained comparison)."""
    tree = ast.parse(expr, mode="eval").body
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) not in _TENSOR_FUNCTIONS or \
                isinstance(node, ast.Compare) and len(node.ops) > 1:
            raise NotImplementedError(f"elementwise row {row.name}: {ast.unparse(node)} in "
                                      f"{expr!r} has no differentiable form (_TENSOR_FUNCTIONS)")
    return tree


def _differentiable_vjp(row, save):
    """The row's `differentiable_vjp`: its VJP expressions evaluated over Tensors (see
    Primitive.differentiable_vjp), read as the eager VJP kernels read them: promoted inputs
    cast to g's dtype, parameters as Python numbers."""
    trees = [None if row.grads.get(name) in (None, "g") else _checked_tree(row, row.grads[name])
             for name in row.inputs]
    names = ["out" if key == "out" else row.inputs[key] for key in save]
    promoted = [key != "out" and key in row.promote for key in save]

    def differentiable_vjp(node, g, saved):
        values = {"g": g}
        for name, cast, tensor in zip(names, promoted, saved):
            if tensor is not None:
                values[name] = tensor.to(g.dtype) if cast and tensor.dtype != g.dtype else tensor
        for name in row.params:
            value = node.params[name]
            values[name] = value.item() if isinstance(value, np.generic) else value
        grads = []
        for needed, tree in zip(node.needs, trees):
            if not needed:
                grads.append(None)
            elif tree is None:
                grads.append(g)  # "g": the gradient passes through
            else:
                grad = _evaluate(tree, values, g)
                # A constant gradient (0.0 where the derivative is zero): a Tensor of g's
                # shape, as PyTorch's zeros_like(grad).
                grads.append(_constant_like(grad, g).expand(g.shape) if _is_number(grad)
                             else grad)
        return grads

    return differentiable_vjp


def _derivative_not_implemented(name):
    """The VJP of a row without a derivative formula: PyTorch's error (the same function is
    its differentiable VJP, which `saved` is given to)."""
    def vjp(node, g, saved=None):
        raise _derivative_missing(name, node.params)
    return vjp


def _refusing_overloads(refusals, vjp):
    """`vjp` (or a differentiable VJP), raising PyTorch's error on the nodes of the overloads
    in `refusals` (grad_fn name -> a function of the node's parameters: the error, or None)."""
    def checked(node, g, *saved):
        refusal = refusals.get(type(node).__name__)
        if refusal is not None:
            error = refusal(node.params)
            if error is not None:
                raise error
        return vjp(node, g, *saved)
    return checked


FORWARD = {row.name: KernelPair(row.name, row.inputs) for row in TABLE}
COPY = FORWARD["to_copy"]


def _make_primitive(row):
    forward_kernels = FORWARD[row.name]
    # The engine may pass the incoming gradient through unchanged when the VJP is `g`.
    grad_kernels = {wrt: None if grad == "g" else
                    KernelPair(f"{row.name}_d{wrt}", _vjp_args(row, grad))
                    for wrt, grad in row.grads.items()}

    # The result dtype of a call whose inputs all have one dtype that needs no cast (the
    # common case), so such calls skip the promotion rules.
    plain_results = {}
    if len(row.promote) == len(row.inputs) and row.result != "param":
        for dtype in COMPUTED_NUMPY:
            try:
                compute, result = _result_dtype(row, [np.empty(0, dtype)] * len(row.inputs), {})
            except (RuntimeError, NotImplementedError):
                continue  # refused: such calls take the general path, which raises
            if compute == dtype:
                plain_results[dtype] = result

    def shape_and_plain_result(arrays):
        """The broadcast shape, and the result dtype if no input needs a cast (else None)."""
        first = arrays[0]
        shape, dtype = first.shape, first.dtype
        result = plain_results.get(dtype)
        for a in arrays:
            if a.dtype != dtype:
                result = None
            if a.shape != shape and a.shape:  # a 0-d operand never changes the shape
                shape = broadcast_shapes(shape, a.shape) if shape else a.shape
        return shape, result

    def infer(*arrays, **params):
        shape, result = shape_and_plain_result(arrays)
        return shape, result if result is not None else _result_dtype(row, arrays, params)[1]

    def forward(*arrays, into=None, **params):
        """The result, written into array `into` where it has the result's shape and dtype
        (an in-place op's target: the kernel reads each element before it writes it)."""
        shape, result = shape_and_plain_result(arrays)
        if result is not None:
            dtype = arrays[0].dtype
            values = [scalar_param(params[p], dtype) for p in row.params] if row.params else ()
            out = into if into is not None and into.shape == shape and into.dtype == result \
                else None
            return run(forward_kernels, arrays, values, shape, result, out)
        compute, result = _result_dtype(row, arrays, params)
        operands = [a if a.dtype == compute or i not in row.promote else a.astype(compute)
                    for i, a in enumerate(arrays)]
        values = [scalar_param(params[p], compute) for p in row.params]
        out = into if into is not None and into.shape == shape and into.dtype == result else None
        return run(forward_kernels, operands, values, shape, result, out)

    uses = " ".join(row.grads.values())
    # Every input is saved if any VJP reads an input (positions keep the table simple);
    # "out" is saved only when a VJP reads it.
    save = ()
    if _names_in(uses, row.inputs):
        save = tuple(range(len(row.inputs)))
    if _names_in(uses, ("out",)):
        save += ("out",)

    def source(name):
        """Where a VJP kernel argument comes from: (kind, index, cast to g's dtype)."""
        if name == "g":
            return ("g", None, False)
        if name in row.params:
            return ("param", name, True)
        position = "out" if name == "out" else row.inputs.index(name)
        return ("saved", save.index(position), position in row.promote)

    # Per input: None (no VJP), "g" (the gradient passes through) or (kernels, sources).
    plans = []
    for name in row.inputs:
        grad = row.grads.get(name)
        if grad is None or grad == "g":
            plans.append(grad)
            continue
        kernels = grad_kernels[name]
        plans.append((kernels, [source(a) for a in kernels.args if a not in row.params],
                      [source(a) for a in kernels.args if a in row.params]))

    def fetch(sources, node, g):
        values = []
        for kind, key, cast in sources:
            if kind == "g":
                values.append(g)
            elif kind == "saved":
                value = node.saved[key]
                values.append(value.astype(g.dtype) if cast and value.dtype != g.dtype else value)
            else:
                values.append(scalar_param(node.params[key], g.dtype))
        return values

    def vjp(node, g):
        grads = []
        for needed, plan in zip(node.needs, plans):
            if not needed:
                grads.append(None)
            elif plan == "g":
                grads.append(g)
            else:
                kernels, operands, params = plan
                grads.append(run(kernels, fetch(operands, node, g),
                                 fetch(params, node, g) if params else (), g.shape, g.dtype))
        return grads

    differentiable = tuple(i for i, name in enumerate(row.inputs) if name in row.grads)
    differentiable_vjp = _differentiable_vjp(row, save) if differentiable else None
    if row.grad_fn == NOT_IMPLEMENTED:
        vjp, differentiable = _derivative_not_implemented(row.name), row.promote
        differentiable_vjp = vjp
    if row.refusals:
        vjp = _refusing_overloads(row.refusals, vjp)
        differentiable_vjp = _refusing_overloads(row.refusals, differentiable_vjp)
    save_for = tuple(
        tuple(key for key in save
              if _names_in(row.grads.get(name, ""), ("out",) if key == "out" else
                           (row.inputs[key],)))
        for name in row.inputs)
    return register(Primitive(row.name, row.grad_fn, infer, forward,
                              vjp if differentiable else None, save=save, save_for=save_for,
                              differentiable=differentiable, fuse=_ElementwiseFusion(row),
                              differentiable_vjp=differentiable_vjp,
                              scalar_overloads=row.scalar_overloads,
                              result_guarded=frozenset(row.result_overloads)))


PRIMS = {row.name: _make_primitive(row) for row in TABLE}
# The table by name (for the API: which rows refuse bool operands).
ROWS = {row.name: row for row in TABLE}


