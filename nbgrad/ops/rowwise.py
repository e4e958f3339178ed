"""Row transforms: softmax, log_softmax, cumsum, cumprod and logcumsumexp. Each computes every row along `dim`
together into an output of the input's shape, and its VJP is another row program over the
gradient's rows (and the result's, where it reads it).

The kernels are row programs run by the reductions' (outer, row, inner) machinery
(`reduction.load_row_kernels`, `run_rows`). softmax and log_softmax are primitives (not
composites of exp and sum) for numerical stability (the max shift) and PyTorch's grad_fn
names; cumsum and cumprod because each is one loop per row, and so are their gradients (a
reversed cumsum; cumprod's also where the row holds zeros, which a division cannot handle).
"""
import math

import numpy as np

from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register
from .reduction import (EXP_SUM, ROW_MAX, as_rows, fused_kernel, fused_rows,
                        load_row_kernels, rows_like, rows_without_each, run_rows)

# NOTE: softmax and log_softmax shift by the row's maximum itself (logsumexp shifts an
# infinite maximum by 0): inf - inf is NaN, so a row holding +inf (or only -inf) is all NaN,
# as in PyTorch.
_SHIFTED_SUM = ROW_MAX + EXP_SUM
# name: a row program (see reduction.ROW_KERNELS); `name_grad` is its VJP, whose row
# arguments are what the primitive saves, then `g`.


def _log_add_exp(total, v):
    """Row-program lines for PyTorch's _log_add_exp_helper(v, total) into `total`: log(exp(v)
    + exp(total)) from the larger (a NaN total stays NaN; two equal infinities give v)."""
    return f"""if {total} != {total}:
    lo = {total}
    hi = {total}
else:
    lo = {total} if {total} < {v} else {v}
    hi = {total} if {v} < {total} else {v}
if lo != hi or lo - lo == 0:
    {total} = np.log1p(np.exp(lo - hi)) + hi
else:
    {total} = {v}
"""


def _indented(lines, depth=1):
    return "".join("    " * depth + line + "\n" for line in lines.splitlines())


ROW_KERNELS = {
    "softmax": (("x",), (), ("y",), (), (),
                _SHIFTED_SUM + "for r in range(x.shape[0]):\n    y[r] = exp(x[r] - m) / s"),
    "log_softmax": (("x",), (), ("y",), (), (),
                    _SHIFTED_SUM + "shift = m + np.log(s)\n"
                    "for r in range(x.shape[0]):\n    y[r] = x[r] - shift"),
    # As PyTorch on CPU: a float64 (int64) running sum, rounded to the result's dtype.
    "cumsum": (("x",), (), ("y",), (), (),
               "acc = wide_zero(x)\nfor r in range(x.shape[0]):\n    acc += x[r]\n    y[r] = acc"),
    "cumprod": (("x",), (), ("y",), (), (),
                "acc = wide_zero(x) + 1\nfor r in range(x.shape[0]):\n    acc *= x[r]\n    y[r] = acc"),
    # As PyTorch on CPU: a float64 running total, rounded to the result's dtype.
    "logcumsumexp": (("x",), (), ("y",), (), (),
                     "total = wide_zero(x) - np.inf\nfor r in range(x.shape[0]):\n"
                     "    v = wide_zero(x) + x[r]\n" + _indented(_log_add_exp("total", "v"))
                     + "    y[r] = total"),
    # PyTorch's logcumsumexp_backward: the positive and the negative parts of g, as logs
    # (the dtype's lowest value for none), each through a reversed logcumsumexp of
    # log|g| - y, plus x, exponentiated; their difference.
    "logcumsumexp_grad": (("x", "y", "g"), (), ("dx",), (), (),
                          "lowest = -3.4028234663852886e38 if g.itemsize == 4 else "
                          "-1.7976931348623157e308\n"
                          "positive = wide_zero(g) - np.inf\nnegative = wide_zero(g) - np.inf\n"
                          "for r in range(g.shape[0] - 1, -1, -1):\n"
                          "    magnitude = np.log(abs(wide_zero(g) + g[r]))\n"
                          "    v = (magnitude if g[r] > 0 else lowest) - y[r]\n"
                          + _indented(_log_add_exp("positive", "v"))
                          + "    v = (magnitude if g[r] < 0 else lowest) - y[r]\n"
                          + _indented(_log_add_exp("negative", "v"))
                          + "    dx[r] = np.exp(positive + x[r]) - np.exp(negative + x[r])"),
    "softmax_grad": (("y", "g"), (), ("dx",), (), (),
                     "s = 0.0\nfor r in range(y.shape[0]):\n    s += g[r] * y[r]\n"
                     "for r in range(y.shape[0]):\n    dx[r] = y[r] * (g[r] - s)"),
    "log_softmax_grad": (("y", "g"), (), ("dx",), (), (),
                         "s = 0.0\nfor r in range(y.shape[0]):\n    s += g[r]\n"
                         "for r in range(y.shape[0]):\n    dx[r] = g[r] - exp(y[r]) * s"),
    # The sum of g over this and every later position: cumsum of the reversed row, reversed.
    "cumsum_grad": (("g",), (), ("dx",), (), (),
                    "acc = wide_zero(g)\nfor r in range(g.shape[0] - 1, -1, -1):\n"
                    "    acc += g[r]\n    dx[r] = acc"),
    # PyTorch's cumprod_backward in O(n): before the row's first zero z, the reversed cumsum
    # of g * y divided by x; at z, the sum over j in [z, next zero) of g[j] * x[z+1..j]'s
    # product, times y[z - 1]; after z, 0.
    # A row of one element: the identity, as PyTorch (no division by an inf or NaN x).
    "cumprod_grad": (("x", "y", "g"), (), ("dx",), (), (),
                     """if x.shape[0] == 1:
    dx[0] = g[0]
else:
    z = x.shape[0]
    for r in range(x.shape[0]):
        if x[r] == 0:
            z = r
            break
    acc = wide_zero(g)
    for r in range(z - 1, -1, -1):
        acc += g[r] * y[r]
        dx[r] = acc / x[r]
    if z < x.shape[0]:
        acc = wide_zero(g)
        product = wide_zero(g) + 1
        for r in range(z, x.shape[0]):
            if r > z:
                if x[r] == 0:
                    break
                product *= x[r]
            acc += g[r] * product
        dx[z] = acc * y[z - 1] if z > 0 else acc
        for r in range(z + 1, x.shape[0]):
            dx[r] = 0"""),
}

_kernels = load_row_kernels("rowwise", ROW_KERNELS)


def _dims(x, dim):
    # A 0-d tensor is one row of one element.
    return (dim,) if x.ndim else ()


def _float_result(name, x, dim, dtype=None):
    """softmax's result dtype: the input's; PyTorch has no integer kernel (an empty input is
    returned as it is, unchecked)."""
    if x.dtype.kind != "f" and math.prod(x.shape):
        kernel_name = name + ("_lastdim" if dim == x.ndim - 1 or not x.ndim else "")
        raise NotImplementedError(f'"{kernel_name}_kernel_impl" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[x.dtype.name]}'")
    return x.dtype


def _sum_result(name, x, dim, dtype=None):
    """cumsum's and cumprod's result dtype: `dtype` if given (the input is cast to it
    first), else the input's for floats and int64 for integers and bools."""
    if dtype is not None:
        return dtype
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.int64)


def _logcumsumexp_result(name, x, dim, dtype=None):
    """logcumsumexp's result dtype: the input's, floats only."""
    if x.dtype.kind != "f":
        raise NotImplementedError(f'"logcumsumexp_out_cpu" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[x.dtype.name]}'")
    return x.dtype


# ---------------------------------------------------------------------------------------
# Fused rule: the same row kernels on (O, R, I) views of the fused step's buffers (made
# before the rows, which are given it).

class _RowTransformFusion:
    def __init__(self, name, result_dtype):
        self.kernel = getattr(_kernels, name)
        self.grad_kernel = getattr(_kernels, name + "_grad")
        self.result_dtype = result_dtype

    @staticmethod
    def _rows(shape, dim):
        return fused_rows(shape, (dim,) if shape else ())

    def forward(self, em, arrays, params, out):
        (x,) = arrays
        if x.dtype.kind != "f" and self.result_dtype is _float_result:
            raise Unfusable(f"{self.kernel.__name__} of an (empty) integer tensor")
        cast = params.get("dtype")
        # NOTE: not `cast in (None, x.dtype)`: NumPy compares a float64 dtype equal to None.
        if cast is not None and cast != x.dtype:
            raise Unfusable(f"{self.kernel.__name__} with a dtype cast")
        kernel, rows = fused_kernel(self.kernel, self._rows(x.shape, params["dim"]))
        em.emit(f"{em.kernel(kernel)}({em.ref(x)}.reshape({rows!r}), "
                f"{em.out(out)}.reshape({rows!r}))")

    def vjp(self, em, node, g, input_grads):
        kernel, rows = fused_kernel(self.grad_kernel, self._rows(g.shape, node.params["dim"]))
        rows_in = ", ".join(f"{em.ref(a)}.reshape({rows!r})" for a in (*node.saved, g))
        em.emit(f"{em.kernel(kernel)}({rows_in}, {em.out(input_grads[0])}.reshape({rows!r}))")


# ---------------------------------------------------------------------------------------
# Primitives.

def _reversed_cumsum(t, dim):
    """The sum of `t` over each position and every later one along `dim` (Tensor ops)."""
    return t.flip(dim).cumsum(dim).flip(dim)


# Differentiable VJPs (create_graph=True; Primitive's `differentiable_vjp`): each `name_grad`
# row program again as Tensor operations, on the saved Tensors and `g` (cast to the input's
# dtype), with `dim` the row's dimension (0 for a 0-d input).

def _softmax_differentiable_vjp(g, dim, out):
    return out * (g - (g * out).sum(dim, keepdim=True))


def _log_softmax_differentiable_vjp(g, dim, out):
    return g - out.exp() * g.sum(dim, keepdim=True)


def _cumprod_differentiable_vjp(g, dim, x, out):
    """PyTorch's cumprod_backward: without zeros in x the reversed cumsum of g * out over x;
    with zeros, dx_k = sum over j >= k of g_j * (the product of x_0..x_j but x_k), from the
    (k, j) matrix of those products (O(n^2), as PyTorch's double-backward formula)."""
    if not x.ndim or x.shape[dim] == 1:
        return g
    if not bool((x == 0).any()):
        return _reversed_cumsum(g * out, dim) / x
    # [..., k, j]: the product of x_0..x_j but x_k, for j >= k
    products = rows_without_each(x.transpose(dim, -1)).cumprod(-1).triu()
    return (products * g.transpose(dim, -1).unsqueeze(-2)).sum(-1).transpose(dim, -1)


def _logcumsumexp_differentiable_vjp(g, dim, x, out):
    """The `logcumsumexp_grad` row program as Tensor operations (PyTorch's formula)."""
    lowest = float(np.finfo(np.dtype(g.dtype.name)).min)
    magnitude = g.abs().log()
    total = None
    for part in (g > 0, g < 0):
        shifted = magnitude.masked_fill(part.logical_not(), lowest) - out
        term = (shifted.flip(dim).logcumsumexp(dim).flip(dim) + x).exp()
        total = term if total is None else total - term
    return total


def _row_transform(name, grad_fn, result_dtype, save, grad_rule):
    """The primitive of row program `name` (called with `dim`, and cumsum's `dtype`): its
    VJP runs `name_grad` on the rows of what it saves ("out": the result) and of the
    gradient, cast to the input's dtype first (as PyTorch's cumsum backward does);
    `grad_rule(g, dim, *saved)` is that VJP as Tensor operations."""
    kernel, grad_kernel = getattr(_kernels, name), getattr(_kernels, name + "_grad")

    def infer(x, dim, **options):
        return x.shape, result_dtype(name, x, dim, **options)

    def forward(x, dim, **options):
        dtype = result_dtype(name, x, dim, **options)
        if options.get("dtype") is not None and x.dtype != dtype:
            x = x.astype(dtype)
        view, out, rows, _ = rows_like(x, _dims(x, dim), dtype)
        if out.size:
            run_rows(kernel, (view, rows), ())
        return out

    def vjp(node, g):
        dims = _dims(g, node.params["dim"])
        input_dtype = node.input_meta[0][1]
        if g.dtype != input_dtype:
            g = g.astype(input_dtype)
        view, result, rows, _ = rows_like(g, dims)
        if result.size:
            run_rows(grad_kernel, (*[as_rows(a, dims)[0] for a in node.saved], view, rows), ())
        return (result,)

    def differentiable_vjp(node, g, saved):
        return (grad_rule(g.to(node.input_meta[0][1]), node.params["dim"], *saved),)

    return register(Primitive(name, grad_fn, infer, forward, vjp, save=save,
                              fuse=_RowTransformFusion(name, result_dtype),
                              differentiable_vjp=differentiable_vjp))


PRIMS = {
    "softmax": _row_transform("softmax", "SoftmaxBackward0", _float_result, ("out",),
                              _softmax_differentiable_vjp),
    "log_softmax": _row_transform("log_softmax", "LogSoftmaxBackward0", _float_result, ("out",),
                                  _log_softmax_differentiable_vjp),
    "cumsum": _row_transform("cumsum", "CumsumBackward0", _sum_result, (), _reversed_cumsum),
    "cumprod": _row_transform("cumprod", "CumprodBackward0", _sum_result, (0, "out"),
                              _cumprod_differentiable_vjp),
    # A primitive for numerical stability: a running log-sum-exp, one loop per row.
    "logcumsumexp": _row_transform("logcumsumexp", "LogcumsumexpBackward0", _logcumsumexp_result,
                                   (0, "out"), _logcumsumexp_differentiable_vjp),
}
