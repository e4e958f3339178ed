"""Reductions along dimensions: sum, prod, mean, amax/amin, argmax/argmin, var/std,
logsumexp, all/any and the vector norms.

Every op views its input as (outer, reduced, inner) and runs a kernel over the rows
`x[o, :, i]`. The kernels are generated from the row programs in `ROW_KERNELS`, so the loop
nest is written once; the row transforms (`rowwise`: softmax, log_softmax) generate theirs
with the same machinery (`load_row_kernels`, `run_rows`). var/std and logsumexp are
primitives (not composites) for numerical stability and to keep PyTorch's grad_fn names;
the vector norm because its gradient at a zero norm is 0 (a composite sqrt(sum(x**2)) gives
NaN there) and one pass over the row serves every order.
"""
import functools
import math

import numpy as np

from .._core import modules as _codegen
from .._core import threads as _threads
from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register
from . import elementwise

# name: (row arguments, per-row scalar arguments, row outputs, per-row scalar outputs,
#        parameters, body). Rows are 1-D strided views; scalars are read/written at [o, i].
_MAX_BODY = """best = x[0]
for r in range(1, x.shape[0]):
    v = x[r]
    if v != v:
        best = v
        break
    if v {cmp} best:
        best = v
out = best"""
_ARG_BODY = """best = x[0]
index = 0
for r in range(1, x.shape[0]):
    v = x[r]
    if best != best:
        break
    if v {cmp} best or v != v:
        best = v
        index = r
out = index"""
_MOMENTS = """mean = 0.0
for r in range(x.shape[0]):
    mean += x[r]
mean /= x.shape[0]
"""
# The row's maximum `m` (NaN if the row has one) and s = sum(exp(x - m)).
ROW_MAX = """m = x[0]
for r in range(1, x.shape[0]):
    if x[r] > m or x[r] != x[r]:
        m = x[r]
"""
EXP_SUM = """s = 0.0
for r in range(x.shape[0]):
    s += exp(x[r] - m)
"""
# NOTE: PyTorch's logsumexp shifts by 0 when the maximum is infinite (so [inf, 1] gives inf
# and [-inf, -inf] gives -inf), but softmax and log_softmax (`rowwise`) shift by the maximum
# itself.
_FINITE_SHIFTED_SUM = ROW_MAX + """if m == np.inf or m == -np.inf:
    m = typed(0.0, m)
""" + EXP_SUM
_LOGICAL_BODY = """out = not {result}
for r in range(x.shape[0]):
    if {stop}:
        out = {result}
        break"""
# The vector norm of order `ord` (PyTorch's linalg.vector_norm), accumulated in float64:
# 0 counts the nonzeros, +-inf is the largest (smallest) magnitude, NaN if there is one.
_VECTOR_NORM = """acc = 0.0
if ord == np.inf or ord == -np.inf:
    acc = np.inf if ord < 0 else 0.0
    for r in range(x.shape[0]):
        a = abs(x[r])
        if (a < acc if ord < 0 else a > acc) or a != a:
            acc = a
            if a != a:
                break
    out = acc
elif ord == 0:
    for r in range(x.shape[0]):
        acc += x[r] != 0
    out = acc
elif ord == 1:
    for r in range(x.shape[0]):
        acc += abs(x[r])
    out = acc
elif ord == 2:
    for r in range(x.shape[0]):
        acc += x[r] * x[r]
    out = np.sqrt(acc)
else:
    # the powers in the input's precision, as PyTorch (float32 overflows where it does)
    for r in range(x.shape[0]):
        acc += abs(x[r]) ** typed(ord, x[r])
    out = acc ** (1.0 / ord)"""
# Its VJP, PyTorch's norm_backward case by case (sgn(0) = sgn(NaN) = 0): 2-norm x / norm,
# 0 where the norm is 0; +-inf: g shared by the elements whose magnitude is the norm (or is
# NaN); order 0 has no gradient (the primitive returns none).
_VECTOR_NORM_GRAD = """count = 0
if ord == np.inf or ord == -np.inf:
    for r in range(x.shape[0]):
        a = abs(x[r])
        count += a == out or a != a
for r in range(x.shape[0]):
    sgn = 1.0 if x[r] > 0 else (-1.0 if x[r] < 0 else 0.0)
    a = abs(x[r])
    if ord == 2:
        dx[r] = 0.0 if out == 0 else g * (x[r] / out)
    elif ord == 1:
        dx[r] = sgn * g
    elif ord == np.inf or ord == -np.inf:
        dx[r] = sgn * (g / count) if a == out or a != a else 0.0
    elif ord < 1:
        # (0 at a zero element, times the rest: NaN where the norm is inf, as PyTorch's)
        dx[r] = (0.0 if x[r] == 0 else sgn * a ** typed(ord - 1, a)) * g * out ** typed(1 - ord, a)
    elif out == 0:
        dx[r] = 0.0
    elif ord < 2:
        dx[r] = sgn * a ** typed(ord - 1, a) * (g / out ** typed(ord - 1, a))
    else:
        dx[r] = x[r] * a ** typed(ord - 2, a) * (g / out ** typed(ord - 1, a))"""
ROW_KERNELS = {
    "sum": (("x",), (), (), ("out",), ("scale",),
            "acc = wide_zero(x)\nfor r in range(x.shape[0]):\n    acc += x[r]\nout = acc * scale"),
    "prod": (("x",), (), (), ("out",), (),
             "acc = wide_zero(x) + 1\nfor r in range(x.shape[0]):\n    acc *= x[r]\nout = acc"),
    "amax": (("x",), (), (), ("out",), (), _MAX_BODY.format(cmp=">")),
    "amin": (("x",), (), (), ("out",), (), _MAX_BODY.format(cmp="<")),
    "argmax": (("x",), (), (), ("out",), (), _ARG_BODY.format(cmp=">")),
    "argmin": (("x",), (), (), ("out",), (), _ARG_BODY.format(cmp="<")),
    "var": (("x",), (), (), ("out",), ("denom", "root"),
            _MOMENTS + "acc = 0.0\nfor r in range(x.shape[0]):\n    acc += (x[r] - mean) ** 2\n"
            "out = np.sqrt(acc / denom) if root else acc / denom"),
    "logsumexp": (("x",), (), (), ("out",), (), _FINITE_SHIFTED_SUM + "out = m + np.log(s)"),
    # all/any: NaN counts as true (nonzero), as in PyTorch.
    "all": (("x",), (), (), ("out",), (), _LOGICAL_BODY.format(stop="x[r] == 0", result="False")),
    "any": (("x",), (), (), ("out",), (), _LOGICAL_BODY.format(stop="x[r] != 0", result="True")),
    "vector_norm": (("x",), (), (), ("out",), ("ord",), _VECTOR_NORM),
    # VJPs: `g` is the gradient of the output, `dx` the gradient written for the input.
    # amax/amin (PyTorch's formula exactly): g / count at the maxima, times the mask; a NaN
    # maximum equals nothing, so g / 0 times 0 makes the whole row NaN.
    "extreme_grad": (("x",), ("out", "g"), ("dx",), (), (),
                     "count = 0\nfor r in range(x.shape[0]):\n    count += x[r] == out\n"
                     "for r in range(x.shape[0]):\n    dx[r] = g / count * (x[r] == out)"),
    # max()/min() without dim: g shared evenly by the maxima, which are the NaNs if the
    # maximum is NaN; zero elsewhere.
    "evenly_distributed_grad": (("x",), ("out", "g"), ("dx",), (), (),
                                "nan = out != out\ncount = 0\nfor r in range(x.shape[0]):\n"
                                "    count += (x[r] != x[r]) if nan else (x[r] == out)\n"
                                "for r in range(x.shape[0]):\n"
                                "    hit = (x[r] != x[r]) if nan else (x[r] == out)\n"
                                "    dx[r] = g / count if hit else 0.0"),
    "var_grad": (("x",), ("out", "g"), ("dx",), (), ("denom", "root"),
                 # std's gradient is 0 where std is 0 (PyTorch masks g / (2 std) there).
                 _MOMENTS + "scale = (g / (denom * out) if out != 0 else 0.0) if root else "
                 "2.0 * g / denom\n"
                 "for r in range(x.shape[0]):\n    dx[r] = scale * (x[r] - mean)"),
    "logsumexp_grad": (("x",), ("out", "g"), ("dx",), (), (),
                       "for r in range(x.shape[0]):\n    dx[r] = g * exp(x[r] - out)"),
    "vector_norm_grad": (("x",), ("out", "g"), ("dx",), (), ("ord",), _VECTOR_NORM_GRAD),
    # PyTorch's prod_backward: g * out / x, or where the row holds a zero (dividing by it
    # is wrong), g times the product of the others: before r times after r.
    "prod_grad": (("x",), ("out", "g"), ("dx",), (), (), """zeros = 0
for r in range(x.shape[0]):
    zeros += x[r] == 0
if zeros == 0:
    for r in range(x.shape[0]):
        dx[r] = g * (out / x[r])
else:
    before = wide_zero(x) + 1
    for r in range(x.shape[0]):
        dx[r] = before
        before *= x[r]
    after = wide_zero(x) + 1
    for r in range(x.shape[0] - 1, -1, -1):
        dx[r] = g * (dx[r] * after)
        after *= x[r]"""),
}

_HEADER = '''"""Generated by nbgrad.ops.%s from its ROW_KERNELS; do not edit."""
import numba
import numpy as np
from nbgrad._core.kernel_support import exp, typed, wide_zero

_jit = numba.njit(cache=True, error_model="numpy")
# Sums may be reassociated so LLVM vectorizes them (NaN and inf semantics are kept).
_jit_sum = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
_jit_sum_parallel = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"},
                               parallel=True)
'''
# Row programs whose one loop is a sum Numba can split over threads (`prange` with `+=`);
# their contiguous kernel also comes in that form, for rows of at least PARALLEL_THRESHOLD
# elements (sum of 1e6 float32 on 2 cores: 42 us serial, 24 us threaded, as torch's 25 us).
_PARALLEL_SUMS = ("sum",)


def _row_kernel_source(name, rows, scalars_in, rows_out, scalars_out, params, body,
                       contiguous, parallel=False):
    """Kernel `name` over (O, R, I) arrays, or `name_contiguous` over C-contiguous (O, R)
    arrays (I == 1): there each row is a unit-stride 1-D array, which LLVM vectorizes;
    `name_contiguous_parallel` sums each row over threads."""
    args = [f"{a}3" for a in rows + rows_out] + [f"{a}2" for a in scalars_in + scalars_out]
    decorator = "_jit_sum" if name == "sum" else "_jit"
    suffix = "_contiguous" if contiguous else ""
    if parallel:
        decorator, suffix = decorator + "_parallel", suffix + "_parallel"
        body = body.replace("for r in range(", "for r in numba.prange(")
    inner = "(1)" if contiguous else f"({rows[0]}3.shape[2])"
    lines = [f"@{decorator}\ndef {name}{suffix}({', '.join(args + list(params))}):",
             f"    for o in range({rows[0]}3.shape[0]):",
             f"        for i in range{inner}:"]
    lines += [f"            {a} = {a}3[o]" if contiguous else f"            {a} = {a}3[o, :, i]"
              for a in rows + rows_out]
    lines += [f"            {a} = {a}2[o, i]" for a in scalars_in]
    lines += ["            " + line for line in body.splitlines()]
    lines += [f"            {a}2[o, i] = {a}" for a in scalars_out]
    return "\n".join(lines) + "\n"


# Every row kernel -> its variant over C-contiguous rows (and over threads), for `run_rows`.
_CONTIGUOUS = {}
_CONTIGUOUS_PARALLEL = {}


def load_row_kernels(family, programs, parallel_sums=()):
    """The generated module of `programs` (name: row program, as in ROW_KERNELS) of op family
    `family`: each kernel with its contiguous variant, and the threaded one of those in
    `parallel_sums`, all known to `run_rows`."""
    kernels = _codegen.load_module(family, _HEADER % family + "\n\n".join(
        [_row_kernel_source(name, *spec, contiguous) for name, spec in programs.items()
         for contiguous in (False, True)]
        + [_row_kernel_source(name, *programs[name], True, True) for name in parallel_sums]))
    for name in programs:
        _CONTIGUOUS[getattr(kernels, name)] = getattr(kernels, name + "_contiguous")
    for name in parallel_sums:
        _CONTIGUOUS_PARALLEL[getattr(kernels, name)] = getattr(kernels,
                                                               name + "_contiguous_parallel")
    return kernels


_kernels = load_row_kernels("reduction", ROW_KERNELS, _PARALLEL_SUMS)


def run_rows(kernel, row_arrays, scalar_arrays, *params):
    """Call a row kernel on (O, R, I) views, taking its contiguous variant when every row
    array is C-contiguous with I == 1 (over threads for long rows, where it has one)."""
    for a in row_arrays:
        if a.shape[2] != 1 or not a.flags.c_contiguous:
            kernel(*row_arrays, *scalar_arrays, *params)
            return
    _contiguous_kernel(kernel, row_arrays[0].shape[1])(
        *[a.reshape(a.shape[:2]) for a in row_arrays], *scalar_arrays, *params)


def _contiguous_kernel(kernel, length):
    """The variant of `kernel` over C-contiguous rows of `length` elements."""
    if (length >= _threads.PARALLEL_THRESHOLD and kernel in _CONTIGUOUS_PARALLEL
            and _threads.start()):
        return _CONTIGUOUS_PARALLEL[kernel]
    return _CONTIGUOUS[kernel]


# ---------------------------------------------------------------------------------------
# Layout: any set of dims -> an (outer, reduced, inner) view.

class AllDims(tuple):
    """The dims of a reduction called without a dim: every dim. (PyTorch's errors for an
    empty input differ from those of the same dims given one by one.)"""


# One per rank (NumPy has at most 64 dims), made once: a lookup is cheaper than a tuple.
_ALL_DIMS = [AllDims(range(ndim)) for ndim in range(65)]


def normalize_dims(dim, ndim):
    """`dim` (None, int or sequence) -> sorted tuple of non-negative dims; PyTorch's errors."""
    if dim is None:
        return _ALL_DIMS[ndim]
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    if not dims:
        return _ALL_DIMS[ndim]
    rank = max(ndim, 1)
    result = []
    for d in dims:
        if not -rank <= d < rank:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-rank}, {rank - 1}], but got {d})")
        d = d % rank
        if d in result:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
        result.append(d)
    return tuple(sorted(d for d in result if d < ndim))


# NOTE: the layout helpers are memoised: shapes repeat every training step, and working a
# layout out again costs more than the kernel on small arrays.

@functools.lru_cache(maxsize=4096)
def reduced_shape(shape, dims, keepdim):
    if keepdim:
        return tuple(1 if d in dims else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if d not in dims)


@functools.lru_cache(maxsize=4096)
def _row_layout(shape, dims):
    """(permutation or None, (O, R, I)) that puts the reduced `dims` of `shape` in the middle."""
    ndim = len(shape)
    if len(dims) == ndim:
        return None, (1, math.prod(shape), 1)
    if not dims or dims[-1] - dims[0] == len(dims) - 1:
        lo, hi = (dims[0], dims[-1] + 1) if dims else (ndim, ndim)
        return None, (math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:]))
    kept = tuple(d for d in range(ndim) if d not in dims)
    return kept + dims, (math.prod([shape[d] for d in kept]), math.prod([shape[d] for d in dims]), 1)


def as_rows(x, dims):
    """(view of shape (O, R, I), permutation or None) with the reduced dims in the middle."""
    order, rows = _row_layout(x.shape, dims)
    if order is None:
        return x.reshape(rows), None
    return x.transpose(order).reshape(rows), order


def rows_like(x, dims, dtype=None):
    """`x`'s (O, R, I) view, a new array shaped like `x` with its own (O, R, I) view, and how
    to undo the permutation of the new array."""
    view, order = as_rows(x, dims)
    if order is None:
        out = np.empty(x.shape, dtype or x.dtype)
        return view, out, out.reshape(view.shape), None
    moved_shape = tuple(x.shape[d] for d in order)
    out = np.empty(moved_shape, dtype or x.dtype)
    return view, out, out.reshape(view.shape), np.argsort(order)


def _finish(out, inverse):
    return out if inverse is None else np.ascontiguousarray(out.transpose(inverse))


def reduce(kernel, x, dims, keepdim, out_dtype, *params, out_shape=None):
    """Run a row reduction kernel; returns an array of the reduced shape (or of `out_shape`,
    one with the same elements)."""
    out = np.empty(reduced_shape(x.shape, dims, keepdim) if out_shape is None else out_shape,
                   out_dtype)
    if not out.size:
        return out
    order, (outer, length, inner) = _row_layout(x.shape, dims)
    if order is None and inner == 1 and x.flags.c_contiguous:
        # The common case (trailing or all dims of a contiguous array), without run_rows's
        # generic checks: on small arrays they cost more than the kernel.
        _contiguous_kernel(kernel, length)(x.reshape(outer, length), out.reshape(outer, 1),
                                           *params)
    else:
        view, _ = as_rows(x, dims)
        run_rows(kernel, (view,), (out.reshape(outer, inner),), *params)
    return out


def broadcast_reduced(g, dims, shape):
    """A reduced gradient broadcast back to `shape` as a read-only view (PyTorch's expand),
    not written out: elementwise kernels read a repeated single value as a scalar, and the
    engine copies a view before it writes into it."""
    if g.size == 1:
        # NOTE: np.broadcast_to takes ~2.5 us, a tenth of a tiny training step; this view
        # of the one element with zero strides is the same thing for a tenth of that.
        view = np.ndarray(shape, g.dtype, g, 0, (0,) * len(shape))
        view.flags.writeable = False
        return view
    return np.broadcast_to(g.reshape(reduced_shape(shape, dims, True)), shape)


_summed_dims = {}


def sum_to_shape(g, shape):
    """Sum a broadcast gradient back to `shape` (the engine's broadcasting rule, done once)."""
    key = (g.shape, shape)
    dims = _summed_dims.get(key)
    if dims is None:
        lead = g.ndim - len(shape)
        dims = tuple(range(lead)) + tuple(lead + d for d, s in enumerate(shape)
                                          if s == 1 and g.shape[lead + d] != 1)
        if len(_summed_dims) < 4096:  # shapes repeat every training step
            _summed_dims[key] = dims
    # Written straight into an array of `shape`, so the engine owns the result.
    return reduce(_kernels.sum, g, dims, True, g.dtype, _scale_of(g.dtype, 1), out_shape=shape)


def _scale_of(dtype, value):
    return np.float64(value) if dtype.kind == "f" else np.int64(value)


# ---------------------------------------------------------------------------------------
# Fused rules: the same row kernels, called on (O, R, I) views inside a fused step (made
# before the rows, which are given them).

def fused_rows(shape, dims):
    """(O, R, I) for reducing `dims` of `shape`; only consecutive dims have a fused rule."""
    if dims and dims[-1] - dims[0] != len(dims) - 1:
        raise Unfusable(f"reducing non-adjacent dims {dims}")
    lo, hi = (dims[0], dims[-1] + 1) if dims else (len(shape), len(shape))
    return math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:])


def fused_kernel(kernel, rows):
    """The kernel variant and row-array shape for (O, R, I) in a fused step, whose arrays
    are all C-contiguous: with I == 1 the contiguous variant over (O, R)."""
    if rows[2] == 1:
        return _CONTIGUOUS[kernel], rows[:2]
    return kernel, rows


class _SumFusion:
    def __init__(self, mean):
        self.mean = mean

    def forward(self, em, arrays, params, out):
        (x,) = arrays
        outer, rows, inner = fused_rows(x.shape, params["dims"])
        scale = _mean_scale(rows) if self.mean else 1
        kind = np.float64 if _sum_dtype(x.dtype).kind == "f" else np.int64
        kernel, view = fused_kernel(_kernels.sum, (outer, rows, inner))
        arguments = (f"({em.ref(x)}.reshape({view!r}), {em.out(out)}.reshape({(outer, inner)!r}),"
                     f" {em.literal(scale, kind)})")
        if inner != 1 or rows < _threads.PARALLEL_THRESHOLD:
            em.emit(em.kernel(kernel) + arguments)
            return
        # Long contiguous rows: the threaded variant, as eager mode takes (`run_rows`).
        threaded = em.kernel(_CONTIGUOUS_PARALLEL[_kernels.sum])
        em.threaded_call(em.kernel(kernel) + arguments, threaded + arguments, outer * rows)

    def vjp(self, em, node, g, input_grads):
        shape = node.input_meta[0][0]
        dims = node.params["dims"]
        keep = reduced_shape(shape, dims, True)
        name = em.ref(g)
        if self.mean:
            scale = em.literal(_mean_scale(_count(shape, dims)), g.dtype)
            em.elementwise("g * s", {"g": (name, keep), "s": scale}, em.out(input_grads[0]), shape, name)
        else:
            em.elementwise("g", {"g": (name, keep)}, em.out(input_grads[0]), shape, name)


# ---------------------------------------------------------------------------------------
# Primitives.

def _sum_dtype(dtype):
    return dtype if dtype.kind == "f" else np.dtype(np.int64)


def _require_float(name, dtype):
    if dtype.kind != "f":
        raise RuntimeError(f"{name}(): could not infer output dtype. Input dtype must be either "
                           f"a floating point or complex dtype. Got: {TORCH_TYPE_NAMES[dtype.name]}")


def _require_nonempty(name, shape, dims):
    for d in dims:
        if shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _reduction(name, grad_fn, out_dtype, kernel, params, vjp, save=(), check=None, fuse=None,
               differentiable_vjp=None):
    def infer(x, dims, keepdim):
        if check:
            check(name, x.shape, x.dtype, dims)
        return reduced_shape(x.shape, dims, keepdim), out_dtype(x.dtype)

    def forward(x, dims, keepdim):
        if check:
            check(name, x.shape, x.dtype, dims)
        return reduce(kernel, x, dims, keepdim, out_dtype(x.dtype), *params(x, dims))

    return register(Primitive(name, grad_fn, infer, forward, vjp, save=save, fuse=fuse,
                              differentiable_vjp=differentiable_vjp))


def _count(shape, dims):
    return math.prod([shape[d] for d in dims])


def _mean_scale(count):
    """1 / count; the mean of no elements is 0 * NaN = NaN, as in PyTorch."""
    return 1.0 / count if count else math.nan


def _sum_vjp(node, g):
    return (broadcast_reduced(g, node.params["dims"], node.input_meta[0][0]),)


def _mean_vjp(node, g):
    shape = node.input_meta[0][0]
    dims = node.params["dims"]
    scale = g.dtype.type(_mean_scale(_count(shape, dims)))
    if g.size == 1:
        # One value (a full mean): NumPy scalar arithmetic, a tenth of a kernel call's cost.
        scaled = np.array(g.reshape(-1)[0] * scale)
    else:
        scaled = elementwise.run(elementwise.FORWARD["mul"], (g, np.array(scale)), (), g.shape,
                                 g.dtype)
    return (broadcast_reduced(scaled, dims, shape),)


def _check_mean(name, shape, dtype, dims):
    _require_float(name, dtype)


def _check_extreme(name, shape, dtype, dims):
    if type(dims) is AllDims and 0 in shape:
        if name.startswith("arg"):
            raise IndexError(f"{name}(): Expected reduction dim to be specified for "
                             "input.numel() == 0.")
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           "Specify the reduction dim with the 'dim' argument.")
    _require_nonempty(name, shape, dims)


def _reduction_vjp(kernel, node, g, *params):
    """Run a `*_grad` row kernel that reads the input, the forward result and `g`."""
    x, out = node.saved
    dims = node.params["dims"]
    keep = reduced_shape(x.shape, dims, True)
    view, result, rows, inverse = rows_like(x, dims, g.dtype)
    shape2 = (view.shape[0], view.shape[2])
    run_rows(kernel, (view, rows), (out.reshape(keep).reshape(shape2),
                                   g.reshape(keep).reshape(shape2)), *params)
    return (_finish(result, inverse),)


# NOTE: max() and min() without a dim run the amax/amin primitive under PyTorch's names;
# the name also selects PyTorch's backward formula, which differs from amax's for NaN.
_EVENLY_DISTRIBUTED = ("MaxBackward1", "MinBackward1")


def _extreme_vjp(node, g):
    kernel = (_kernels.evenly_distributed_grad if node.name() in _EVENLY_DISTRIBUTED
              else _kernels.extreme_grad)
    return _reduction_vjp(kernel, node, g)


def _logsumexp_vjp(node, g):
    return _reduction_vjp(_kernels.logsumexp_grad, node, g)


def _prod_vjp(node, g):
    return _reduction_vjp(_kernels.prod_grad, node, g)


# ---------------------------------------------------------------------------------------
# Differentiable VJPs (create_graph=True; Primitive's `differentiable_vjp`): the VJPs above
# again, as Tensor operations whose results can be differentiated once more. Each follows
# its row kernel's arithmetic (PyTorch's derivatives.yaml formula), so the two agree.

def _kept(t, node):
    """Reduced Tensor `t` (the gradient or the result) with the reduced dims back, of size 1."""
    return t.reshape(reduced_shape(node.input_meta[0][0], node.params["dims"], True))


def _sum_differentiable_vjp(node, g, saved):
    return (_kept(g, node).expand(node.input_meta[0][0]),)


def _mean_differentiable_vjp(node, g, saved):
    shape = node.input_meta[0][0]
    scale = _mean_scale(_count(shape, node.params["dims"]))
    return (_kept(g * scale, node).expand(shape),)


def _extreme_differentiable_vjp(node, g, saved):
    x, out = saved
    g, out = _kept(g, node), _kept(out, node)
    dims = node.params["dims"]
    if node.name() in _EVENLY_DISTRIBUTED:
        hits = (x == out) | (x.isnan() & out.isnan())  # where the maximum is NaN: the NaNs
        return ((g / hits.sum(dims, keepdim=True)).where(hits, 0.0),)
    hits = x == out
    return (g / hits.sum(dims, keepdim=True) * hits,)


def _logsumexp_differentiable_vjp(node, g, saved):
    x, out = saved
    return (_kept(g, node) * (x - _kept(out, node)).exp(),)


def rows_without_each(t):
    """(..., n, n) from Tensor `t` (..., n): [..., k, i] is t[..., i], but 1 at i == k. Its
    products are those of all elements of a row but one: prod's and cumprod's gradients
    where a row holds zeros, which dividing the product cannot give."""
    n = t.shape[-1]
    rows = t.unsqueeze(-2).expand(tuple(t.shape[:-1]) + (n, n)).clone()
    rows[Ellipsis, np.arange(n), np.arange(n)] = 1.0
    return rows


def _prod_differentiable_vjp(node, g, saved):
    """g * out / x, or where x holds zeros, g times the product of the others (prod takes
    one dim or all of them)."""
    x, out = saved
    g = _kept(g, node)
    if not bool((x == 0).any()):
        return (g * (_kept(out, node) / x),)
    dims = node.params["dims"]
    if len(dims) == 1:
        others = rows_without_each(x.transpose(dims[0], -1)).prod(-1).transpose(dims[0], -1)
    else:
        others = rows_without_each(x.reshape(-1)).prod(-1).reshape(x.shape)
    return (g * others,)


def _vector_norm_differentiable_vjp(node, g, saved):
    """`_VECTOR_NORM_GRAD` case by case (the order `ord` is a parameter, known here); sign()
    is its sgn (0 at 0 and NaN), and keeps the result in the graph as PyTorch's sgn()."""
    ord = node.params["ord"]
    if ord == 0:
        return (None,)
    x, out = saved
    g, out = _kept(g, node), _kept(out, node)
    if ord == 2:
        return ((g * (x / out)).where(out != 0, 0.0),)
    if ord == 1:
        return (x.sign() * g,)
    magnitude = x.abs()
    if math.isinf(ord):
        hits = (magnitude == out) | x.isnan()
        count = hits.sum(node.params["dims"], keepdim=True)
        return ((x.sign() * (g / count)).where(hits, 0.0),)
    if ord < 1:
        return ((x.sign() * magnitude ** (ord - 1) * g * out ** (1 - ord)).where(x != 0, 0.0),)
    if ord < 2:
        grad = x.sign() * magnitude ** (ord - 1) * (g / out ** (ord - 1))
    else:
        grad = x * magnitude ** (ord - 2) * (g / out ** (ord - 1))
    return (grad.where(out != 0, 0.0),)


def _var_family(name, grad_fn, root):
    def infer(x, dims, keepdim, correction):
        _require_float(name, x.dtype)
        return reduced_shape(x.shape, dims, keepdim), x.dtype

    def forward(x, dims, keepdim, correction):
        _require_float(name, x.dtype)
        denom = np.float64(max(_count(x.shape, dims) - correction, 0))
        return reduce(_kernels.var, x, dims, keepdim, x.dtype, denom, np.bool_(root))

    def vjp(node, g):
        (x, _), dims = node.saved, node.params["dims"]
        denom = np.float64(max(_count(x.shape, dims) - node.params["correction"], 0))
        return _reduction_vjp(_kernels.var_grad, node, g, denom, np.bool_(root))

    def differentiable_vjp(node, g, saved):
        x, out = saved
        dims = node.params["dims"]
        denom = float(max(_count(x.shape, dims) - node.params["correction"], 0))
        g = _kept(g, node)
        centered = x - x.mean(dims, keepdim=True)
        if root:
            # std's gradient is 0 where std is 0, as in the kernel
            out = _kept(out, node)
            return ((g / (out * denom)).masked_fill(out == 0, 0.0) * centered,)
        return (2.0 * g / denom * centered,)

    return register(Primitive(name, grad_fn, infer, forward, vjp, save=(0, "out"),
                              differentiable_vjp=differentiable_vjp))


def _no_params(x, dims):
    return ()


def _logical_dtype(dtype):
    """all/any give bools, but uint8 for uint8 (PyTorch keeps that type for old code)."""
    return dtype if dtype == np.uint8 else np.dtype(np.bool_)


def _vector_norm_primitive():
    """linalg.vector_norm(x, ord, dims, keepdim) (Tensor.norm and linalg.norm reach it)."""
    name = "linalg.vector_norm"  # in messages; the primitive is "vector_norm"

    def check(x, dims, ord):
        if x.dtype.kind != "f":
            raise RuntimeError(f"{name}: Expected a floating point or complex tensor as input. "
                               f"Got {TORCH_TYPE_NAMES[x.dtype.name]}")
        if ord < 0 or math.isinf(ord):
            if type(dims) is AllDims and not math.prod(x.shape):
                where = "an empty tensor because"
            else:
                empty = [d for d in dims if x.shape[d] == 0]
                # (sic: PyTorch's message has no space after the dimension)
                where = empty and f"the dimension {empty[0]}because this dimension is empty and"
            if where:
                raise RuntimeError(f"{name} cannot compute the {ord:g} norm on {where} the "
                                   "operation does not have an identity")

    def infer(x, dims, keepdim, ord):
        check(x, dims, ord)
        return reduced_shape(x.shape, dims, keepdim), x.dtype

    def forward(x, dims, keepdim, ord):
        check(x, dims, ord)
        return reduce(_kernels.vector_norm, x, dims, keepdim, x.dtype, np.float64(ord))

    def vjp(node, g):
        ord = node.params["ord"]
        if ord == 0:
            return (None,)  # as PyTorch: the 0-"norm" counts, it has no gradient
        return _reduction_vjp(_kernels.vector_norm_grad, node, g, np.float64(ord))

    return register(Primitive("vector_norm", "LinalgVectorNormBackward0", infer, forward, vjp,
                              save=(0, "out"),
                              differentiable_vjp=_vector_norm_differentiable_vjp))


PRIMS = {
    "sum": _reduction("sum", "SumBackward1", _sum_dtype, _kernels.sum,
                      lambda x, dims: (_scale_of(_sum_dtype(x.dtype), 1),), _sum_vjp,
                      fuse=_SumFusion(mean=False), differentiable_vjp=_sum_differentiable_vjp),
    "mean": _reduction("mean", "MeanBackward1", lambda d: d, _kernels.sum,
                       lambda x, dims: (np.float64(_mean_scale(_count(x.shape, dims))),),
                       _mean_vjp, check=_check_mean, fuse=_SumFusion(mean=True),
                       differentiable_vjp=_mean_differentiable_vjp),
    "amax": _reduction("amax", "AmaxBackward0", lambda d: d, _kernels.amax, _no_params,
                       _extreme_vjp, save=(0, "out"), check=_check_extreme,
                       differentiable_vjp=_extreme_differentiable_vjp),
    "amin": _reduction("amin", "AminBackward0", lambda d: d, _kernels.amin, _no_params,
                       _extreme_vjp, save=(0, "out"), check=_check_extreme,
                       differentiable_vjp=_extreme_differentiable_vjp),
    "argmax": _reduction("argmax", None, lambda d: np.dtype(np.int64), _kernels.argmax,
                         _no_params, None, check=_check_extreme),
    "argmin": _reduction("argmin", None, lambda d: np.dtype(np.int64), _kernels.argmin,
                         _no_params, None, check=_check_extreme),
    "logsumexp": _reduction("logsumexp", "LogsumexpBackward0", lambda d: d, _kernels.logsumexp,
                            _no_params, _logsumexp_vjp, save=(0, "out"),
                            check=lambda name, shape, dtype, dims: _require_float(name, dtype),
                            differentiable_vjp=_logsumexp_differentiable_vjp),
    "prod": _reduction("prod", "ProdBackward1", _sum_dtype, _kernels.prod, _no_params, _prod_vjp,
                       save=(0, "out"), differentiable_vjp=_prod_differentiable_vjp),
    "all": _reduction("all", None, _logical_dtype, _kernels.all, _no_params, None),
    "any": _reduction("any", None, _logical_dtype, _kernels.any, _no_params, None),
    "vector_norm": _vector_norm_primitive(),
    "var": _var_family("var", "VarBackward0", False),
    "std": _var_family("std", "StdBackward0", True),
}


