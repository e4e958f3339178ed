"""The Tensor methods and operators that compute something, listed by name, and the one loop
that installs them on Tensor.

Each entry is the API function itself (`x.add(y)` is `nbgrad.add(x, y)`, at the same cost),
or an adapter of one: an operator, a reflected operator or a cast (made here), an in-place
form (made by `inplace.inplace_form`).
"""
from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from . import arithmetic, conversion, factories, indexing, inplace, linalg, reductions, sampling, shape
from . import activation
from . import distance
from . import decompositions
from .dispatch import dispatch
from .inplace import inplace_form
from .tensor import Tensor

__all__ = ["METHODS"]


def operator(function):
    """Binary operator `function(self, other)` as PyTorch's: an operand it refuses with a
    TypeError (a list) gives NotImplemented, so that Python gives the other operand its turn,
    then raises its own error (`x * [1, 2]`: the list's repetition by x; `x == [1, 2]` is
    False)."""
    def method(self, other):
        try:
            return function(self, other)
        except TypeError:
            return NotImplemented
    return method


def reflected(function):
    """The reflected operator of `function`: `2 + x` is `function(2, x)`."""
    return operator(lambda self, other: function(other, self))


def _cast_to(dtype):
    """`x.float()` and the like: `x.to(dtype)`."""
    def method(self):
        return conversion.to(self, dtype)
    return method


def _reflected_div(self, other):
    # As PyTorch's Tensor.__rdiv__: `other / x` is `x.reciprocal() * other`.
    return arithmetic.mul(arithmetic.reciprocal(self), other)


def _where(self, condition, other):
    """`x.where(condition, y)` is `where(condition, x, y)`."""
    return arithmetic.where(condition, self, other)


def _primitive(self, name, *others, **params):
    """`x._primitive(name, *others, **params)`: primitive `name` on Tensors (x, *others),
    recorded like any op. For a row's `differentiable_vjp`, which lives in the ops layer and
    cannot import the API, and may need a primitive the API has no function for (a
    convolution's input gradient is a convolution of its own)."""
    return dispatch(PRIMITIVES[name], (self, *others), params)


def _new_factory(factory):
    """`x.new_zeros(...)` and the like: `factory` with x's dtype unless one is given."""
    def method(self, *args, dtype=None, **keywords):
        return factory(*args, dtype=self.dtype if dtype is None else dtype, **keywords)
    return method


METHODS = {
    "_primitive": _primitive,
    "new_zeros": _new_factory(factories.zeros), "new_ones": _new_factory(factories.ones),
    "new_empty": _new_factory(factories.empty), "new_full": _new_factory(factories.full),
    "new_tensor": _new_factory(factories.tensor),
    # elementwise math and comparisons
    "exp": arithmetic.exp, "log": arithmetic.log, "sqrt": arithmetic.sqrt, "sin": arithmetic.sin,
    "cos": arithmetic.cos, "tanh": arithmetic.tanh, "sigmoid": arithmetic.sigmoid,
    "relu": arithmetic.relu, "abs": arithmetic.abs, "neg": arithmetic.neg,
    "negative": arithmetic.neg, "reciprocal": arithmetic.reciprocal, "square": arithmetic.square,
    "add": arithmetic.add, "sub": arithmetic.sub, "lerp": arithmetic.lerp, "mul": arithmetic.mul,
    "addcmul": arithmetic.addcmul, "addcdiv": arithmetic.addcdiv,
    "div": arithmetic.div,
    "pow": arithmetic.pow,
    "clamp": arithmetic.clamp, "clip": arithmetic.clamp, "clamp_min": arithmetic.clamp_min,
    "clamp_max": arithmetic.clamp_max, "where": _where,
    "floor_divide": arithmetic.floor_divide,
    "eq": arithmetic.eq, "ne": arithmetic.ne, "lt": arithmetic.lt, "le": arithmetic.le,
    "gt": arithmetic.gt, "ge": arithmetic.ge, "logical_not": arithmetic.logical_not,
    "equal": arithmetic.equal, "allclose": arithmetic.allclose, "isclose": arithmetic.isclose,
    "log1p": arithmetic.log1p, "expm1": arithmetic.expm1,
    "log10": arithmetic.log10, "log2": arithmetic.log2, "erf": arithmetic.erf,
    "sign": arithmetic.sign, "floor": arithmetic.floor, "ceil": arithmetic.ceil,
    "hardshrink": activation.hardshrink, "prelu": activation.prelu,
    "trunc": arithmetic.trunc, "fix": arithmetic.trunc, "round": arithmetic.round,
    "remainder": arithmetic.remainder, "fmod": arithmetic.fmod,
    "arctan2": arithmetic.TENSOR_METHODS["atan2"], "isnan": arithmetic.isnan, "isinf": arithmetic.isinf,
    "isfinite": arithmetic.isfinite, "nan_to_num": arithmetic.nan_to_num,
    "masked_fill": arithmetic.masked_fill, "bitwise_and": arithmetic.bitwise_and,
    "bitwise_or": arithmetic.bitwise_or, "bitwise_xor": arithmetic.bitwise_xor,
    "logical_xor": arithmetic.logical_xor, "bitwise_not": arithmetic.bitwise_not,
    "bitwise_left_shift": arithmetic.bitwise_left_shift,
    "bitwise_right_shift": arithmetic.bitwise_right_shift,
    "bitwise_left_shift_": inplace_form(arithmetic.bitwise_left_shift),
    "bitwise_right_shift_": inplace_form(arithmetic.bitwise_right_shift),
    # the other math functions, their arc aliases, and the in-place forms PyTorch has as
    # methods only (the others come with the in-place functions below)
    **{name: getattr(arithmetic, name) for name in (
        *arithmetic.UNARY_MATH, *arithmetic.ARC_ALIASES, "logit", "sgn", "xlogy", "copysign")},
    **arithmetic.TENSOR_METHODS,
    "sgn_": inplace_form(arithmetic.sgn), "hypot_": inplace_form(arithmetic.TENSOR_METHODS["hypot"]),
    "copysign_": inplace_form(arithmetic.copysign),
    "nextafter_": inplace_form(arithmetic.TENSOR_METHODS["nextafter"]),
    "atan2_": inplace_form(arithmetic.TENSOR_METHODS["atan2"]),
    "arctan2_": inplace_form(arithmetic.TENSOR_METHODS["atan2"]),
    # in-place logical and bitwise operations: the result cast to the target's dtype (1 and 0
    # for true and false). NOTE: not the comparisons (eq_, lt_ ...): on a tensor that
    # requires grad, PyTorch records a node of zero gradients (EqBackward1), which this form
    # would not (the old node would stay, and pass the gradient through).
    **{name + "_": inplace_form(function) for name, function in (
        ("logical_not", arithmetic.logical_not), ("logical_xor", arithmetic.logical_xor),
        ("logical_and", arithmetic.TENSOR_METHODS["logical_and"]),
        ("logical_or", arithmetic.TENSOR_METHODS["logical_or"]),
        ("bitwise_and", arithmetic.bitwise_and), ("bitwise_or", arithmetic.bitwise_or),
        ("bitwise_xor", arithmetic.bitwise_xor), ("bitwise_not", arithmetic.bitwise_not),
        ("remainder", arithmetic.remainder), ("fmod", arithmetic.fmod))},
    # reductions, the softmax family, cumsum
    "sum": reductions.sum, "mean": reductions.mean, "amax": reductions.amax,
    "amin": reductions.amin, "max": reductions.max, "min": reductions.min,
    "argmax": reductions.argmax, "argmin": reductions.argmin, "var": reductions.var,
    "std": reductions.std, "logsumexp": reductions.logsumexp, "softmax": reductions.softmax,
    "log_softmax": reductions.log_softmax, "cumsum": reductions.cumsum,
    "sum_to_size": reductions.sum_to_size,
    "prod": reductions.prod, "all": reductions.all, "any": reductions.any,
    "norm": reductions.norm, "dist": distance.dist,
    "cumprod": reductions.cumprod, "sort": reductions.sort, "argsort": reductions.argsort,
    "topk": reductions.topk, "histc": reductions.histc, "histogram": reductions.histogram,
    # matrix products
    "matmul": linalg.matmul, "mm": linalg.mm, "mv": linalg.mv, "dot": linalg.dot,
    "bmm": linalg.bmm,
    # shapes
    "reshape": shape.reshape, "view": shape.view, "view_as": shape.view_as,
    "flatten": shape.flatten, "unflatten": shape.unflatten, "narrow": shape.narrow,
    "select": shape.select, "movedim": shape.movedim, "moveaxis": shape.movedim,
    "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze, "permute": shape.permute,
    "transpose": shape.transpose, "swapaxes": shape.transpose, "t": shape.t,
    "T": property(shape.reverse_dims), "mT": property(shape.matrix_transpose),
    "expand": shape.expand, "expand_as": shape.expand_as, "contiguous": shape.contiguous,
    "clone": shape.clone, "split": shape.split, "chunk": shape.chunk, "unbind": shape.unbind,
    "repeat": shape.repeat, "tile": shape.tile, "flip": shape.flip, "roll": shape.roll,
    "tril": shape.tril, "triu": shape.triu, "outer": linalg.outer, "ger": linalg.outer,
    # indexing
    "__getitem__": indexing.getitem, "__setitem__": indexing.setitem,
    "nonzero": indexing.nonzero, "gather": indexing.gather, "scatter": indexing.scatter,
    "scatter_add": indexing.scatter_add, "index_select": indexing.index_select,
    "index_fill": indexing.index_fill, "scatter_": indexing.scatter_,
    "scatter_add_": indexing.scatter_add_, "index_fill_": indexing.index_fill_,
    # conversion
    "to": conversion.to, "type": conversion.type_name_or_cast, "cpu": conversion.cpu,
    "type_as": lambda input, other: conversion.to(input, other.dtype),
    "cuda": conversion.cuda,
    "float": _cast_to(_dtype.float32), "double": _cast_to(_dtype.float64),
    "long": _cast_to(_dtype.int64), "bool": _cast_to(_dtype.bool_),
    "int": _cast_to(_dtype.int32), "short": _cast_to(_dtype.int16),
    "char": _cast_to(_dtype.int8), "byte": _cast_to(_dtype.uint8),
    "half": _cast_to(_dtype.float16), "bfloat16": _cast_to(_dtype.bfloat16),
    # random sampling
    "multinomial": sampling.multinomial, "bernoulli": sampling.bernoulli,
    "normal_": sampling.normal_, "uniform_": sampling.uniform_, "bernoulli_": sampling.bernoulli_,
    "random_": sampling.random_, "exponential_": sampling.exponential_,
    "geometric_": sampling.geometric_, "log_normal_": sampling.log_normal_,
    "cauchy_": sampling.cauchy_,
    # in place
    "fill_": inplace.fill_, "zero_": inplace.zero_, "copy_": inplace.copy_,
    "transpose_": inplace.transpose_, "swapaxes_": inplace.transpose_,
    "swapdims_": inplace.transpose_, "t_": inplace.t_, "squeeze_": inplace.squeeze_,
    "unsqueeze_": inplace.unsqueeze_, "tril_": inplace_form(shape.tril),
    "triu_": inplace_form(shape.triu), "fill_diagonal_": indexing.fill_diagonal_,
    "index_put": indexing.index_put, "index_put_": indexing.index_put_,
    "add_": arithmetic.add_, "sub_": arithmetic.sub_,
    "lerp_": inplace_form(arithmetic.lerp), "addcmul_": inplace_form(arithmetic.addcmul),
    "addcdiv_": inplace_form(arithmetic.addcdiv),
    "mul_": arithmetic.mul_, "div_": inplace_form(arithmetic.div),
    "pow_": inplace_form(arithmetic.pow), "sign_": inplace_form(arithmetic.sign),
    "masked_fill_": inplace_form(arithmetic.masked_fill),
    "floor_divide_": inplace_form(arithmetic.floor_divide),
    # the in-place functions (`torch.relu_`) as methods
    **{name: getattr(arithmetic, name) for name in arithmetic.__all__ if name.endswith("_")},
    # operators. NOTE: a commutative op's reflected form is the op itself, as in PyTorch: `2 * x`
    # records (x, 2), so that grad_fn.next_functions lists x's node first.
    **{name: operator(function) for name, function in {
        "__add__": arithmetic.add, "__radd__": arithmetic.add,
        "__iadd__": arithmetic.add_,
        "__sub__": arithmetic.sub, "__rsub__": arithmetic.rsub,
        "__isub__": arithmetic.sub_,
        "__mul__": arithmetic.mul, "__rmul__": arithmetic.mul,
        "__imul__": arithmetic.mul_,
        "__truediv__": arithmetic.div, "__rtruediv__": _reflected_div,
        "__itruediv__": inplace_form(arithmetic.div),
        "__floordiv__": arithmetic.floor_divide,
        "__ifloordiv__": inplace_form(arithmetic.floor_divide),
        "__pow__": arithmetic.pow, "__ipow__": inplace_form(arithmetic.pow),
        "__matmul__": linalg.matmul,
        "__and__": arithmetic.bitwise_and, "__rand__": arithmetic.bitwise_and,
        "__or__": arithmetic.bitwise_or, "__ror__": arithmetic.bitwise_or,
        "__xor__": arithmetic.bitwise_xor, "__rxor__": arithmetic.bitwise_xor,
        "__mod__": arithmetic.remainder, "__imod__": inplace_form(arithmetic.remainder),
        "__iand__": inplace_form(arithmetic.bitwise_and),
        "__ior__": inplace_form(arithmetic.bitwise_or),
        "__ixor__": inplace_form(arithmetic.bitwise_xor),
        "__lshift__": arithmetic.bitwise_left_shift,
        "__ilshift__": inplace_form(arithmetic.bitwise_left_shift),
        "__rshift__": arithmetic.bitwise_right_shift,
        "__irshift__": inplace_form(arithmetic.bitwise_right_shift),
        "__eq__": arithmetic.eq, "__ne__": arithmetic.ne, "__lt__": arithmetic.lt,
        "__le__": arithmetic.le, "__gt__": arithmetic.gt, "__ge__": arithmetic.ge}.items()},
    "__rfloordiv__": reflected(arithmetic.floor_divide), "__rpow__": reflected(arithmetic.pow),
    "__rmatmul__": reflected(linalg.matmul), "__rmod__": reflected(arithmetic.remainder),
    "__rlshift__": reflected(arithmetic.bitwise_left_shift),
    "__rrshift__": reflected(arithmetic.bitwise_right_shift),
    "__neg__": arithmetic.neg, "__abs__": arithmetic.abs, "__invert__": arithmetic.invert,
    # more shape, indexing, reduction and linear-algebra functions (test_more_ops.py)
    "swapdims": shape.transpose, "reshape_as": shape.reshape_as, "ravel": shape.ravel,
    "fliplr": shape.fliplr, "flipud": shape.flipud, "rot90": shape.rot90,
    "tensor_split": shape.tensor_split, "hsplit": shape.hsplit, "vsplit": shape.vsplit,
    "dsplit": shape.dsplit, "diagonal": shape.diagonal, "unfold": shape.unfold, "diag": shape.diag,
    "diag_embed": shape.diag_embed, "trace": shape.trace,
    "addmm": linalg.addmm, "addmv": linalg.addmv, "addr": linalg.addr,
    "baddbmm": linalg.baddbmm, "addbmm": linalg.addbmm, "inner": linalg.inner,
    "kron": linalg.kron, "cross": linalg.cross, "vdot": linalg.vdot,
    "take_along_dim": indexing.take_along_dim, "masked_select": indexing.masked_select,
    "index_add": indexing.index_add, "index_add_": indexing.index_add_,
    "index_copy": indexing.index_copy, "index_copy_": indexing.index_copy_,
    "repeat_interleave": indexing.repeat_interleave, "argwhere": indexing.argwhere,
    "addmm_": inplace_form(linalg.addmm), "addmv_": linalg.addmv_,
    "addr_": inplace_form(linalg.addr), "baddbmm_": inplace_form(linalg.baddbmm),
    "addbmm_": inplace_form(linalg.addbmm),
    "count_nonzero": reductions.count_nonzero, "nansum": reductions.nansum,
    "nanmean": reductions.nanmean, "diff": reductions.diff, "bincount": reductions.bincount,
    "unique": reductions.unique, "unique_consecutive": reductions.unique_consecutive,
    "kthvalue": reductions.kthvalue, "median": reductions.median,
    "nanmedian": reductions.nanmedian, "mode": reductions.mode, "cummax": reductions.cummax,
    "cummin": reductions.cummin, "logcumsumexp": reductions.logcumsumexp,
    "msort": reductions.msort, "aminmax": reductions.aminmax,
    "quantile": reductions.quantile, "nanquantile": reductions.nanquantile,
    **decompositions.METHODS,
}

# NOTE: the one place outside tensor.py that sets attributes of Tensor. tensor.py is the layer
# below these modules (they import it), so it cannot name their functions; the methods are
# installed here, once, from the table above.
for _name, _attribute in METHODS.items():
    setattr(Tensor, _name, _attribute)
