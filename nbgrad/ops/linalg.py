"""Products through BLAS: primitives because each is a BLAS call, nbgrad.ops.blas's gemm
(which the convolutions call too), not np.dot: one compilation of gemm for every
product, and smaller kernels (np.dot compiles its checks and each layout's call into each
kernel that calls it). Measured, CPU of cold compiles, gemm cached: linear_kernel
0.25-0.29 -> 0.12 s, linear_vjp_kernel 0.45-0.48 -> 0.16-0.23 s; the digits CNN's first
nbgrad.compile call, cold, 5.39-5.63 -> 5.05-5.19 s. Results are those of np.dot's gemm
(beta 0, the bias added after).

- `matmul`: every case (dot, mv, vm, mm, batched with broadcasting) is reduced in Python to
  one 2-D or one batched 3-D product: `matmul_kernel` (one gemm per matrix of the batch;
  a transposed or broadcast operand is read in place), or a loop kernel for integers.
- `linear` (x @ W.T + b for a 2-D x): matmul_kernel's product plus the bias in one kernel,
  and PyTorch's `AddmmBackward0`; the backward needs no transposed copies.
"""
import functools
import math

import numba
import numpy as np

from .._core.dtype import C_TYPE_NAMES
from .._core.unlinked import calling_unlinked, unlinked
from .blas import gemm
from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register

_jit = numba.njit(cache=True, error_model="numpy")


@calling_unlinked
@_jit
def matmul_kernel(a, b, out, layout, scalars):
    """out[i] = op(a[i]) (m, k) @ op(b[i]) (k, n) for i < batch, all flat and C-ordered, through
    gemm; `layout`: (batch, m, n, k, whether a holds each op(a[i]) transposed, whether b
    does, a's batch stride, b's): see `_stored_batch`. `scalars`: gemm's 1 and 0."""
    batch, m, n, k = layout[0], layout[1], layout[2], layout[3]
    a_transposed, b_transposed = layout[4] != 0, layout[5] != 0
    for i in range(batch):
        gemm(m, n, k, a, i * layout[6], m if a_transposed else k, a_transposed, b,
             i * layout[7], k if b_transposed else n, b_transposed, out, i * m * n, n, scalars,
             0 * m, 0 * m + 1)


matmul = unlinked(matmul_kernel)  # (linear_kernel's call: see nbgrad._core.unlinked)


@numba.njit(cache=True)
def bmm_integer_kernel(a, b, out):
    # NOTE: BLAS is floats only; integer products need explicit loops.
    for i in range(a.shape[0]):
        for r in range(a.shape[1]):
            for c in range(b.shape[2]):
                acc = 0
                for k in range(a.shape[2]):
                    acc += a[i, r, k] * b[i, k, c]
                out[i, r, c] = acc


def _product(a, b):
    """a @ b for 2-D or 3-D operands of equal batch size; always a new C-contiguous array."""
    out_shape = a.shape[:-1] + b.shape[-1:]
    dtype = np.result_type(a.dtype, b.dtype)
    if a.shape[-1] == 0 or 0 in out_shape:
        return np.zeros(out_shape, dtype)
    out = np.empty(out_shape, dtype)
    if dtype.kind != "f":
        a3, b3 = (x.reshape((1,) + x.shape) if x.ndim == 2 else x for x in (a, b))
        bmm_integer_kernel(a3, b3, out.reshape((-1,) + out_shape[-2:]))
        return out
    if a.ndim == 2:  # (apart: the small products of eager steps pay each view, 0.3 us)
        (a_flat, a_transposed), (b_flat, b_transposed) = _stored(a), _stored(b)
        layout = _matmul_layout(1, *out_shape, a.shape[1], a_transposed, b_transposed, 0, 0)
    else:
        (a_flat, a_transposed, a_stride), (b_flat, b_transposed, b_stride) = \
            _stored_batch(a), _stored_batch(b)
        layout = _matmul_layout(*out_shape, a.shape[2], a_transposed, b_transposed, a_stride,
                                b_stride)
    matmul_kernel(a_flat, b_flat, out.reshape(-1), layout, GEMM_SCALARS[dtype])
    return out


def _stored(matrix):
    """(`matrix` as a flat C-ordered array, whether that array holds its transpose): an
    F-ordered matrix (a transposed weight) is read as it is; other strides are copied."""
    if matrix.flags.c_contiguous:
        return matrix.reshape(-1), 0
    if matrix.flags.f_contiguous:
        return matrix.T.reshape(-1), 1
    return np.ascontiguousarray(matrix).reshape(-1), 0


def _stored_batch(matrices):
    """(`matrices` (count, r, c) as a flat C-ordered array, whether it holds each matrix
    transposed, the batch stride): a batch broadcast from one matrix is that matrix with
    stride 0, a batch of F-ordered matrices (`_swap` of a C-ordered one) is read as it is,
    other strides are copied."""
    count, rows, cols = matrices.shape
    if matrices.strides[0] == 0 or count == 1:
        return (*_stored(matrices[0]), 0)
    if matrices.flags.c_contiguous:
        return matrices.reshape(-1), 0, rows * cols
    swapped = _swap(matrices)
    if swapped.flags.c_contiguous:
        return swapped.reshape(-1), 1, rows * cols
    return np.ascontiguousarray(matrices).reshape(-1), 0, rows * cols


@functools.cache
def _matmul_layout(*values):
    layout = np.array(values, np.int64)
    layout.flags.writeable = False
    return layout


# gemm's alpha and beta by dtype (never written: writable, as the convolutions' workspace
# that holds theirs, so that both call one compilation of gemm).
GEMM_SCALARS = {np.dtype(t): np.array([1, 0], t) for t in (np.float32, np.float64)}


def _shape_str(shape):
    return "x".join(str(s) for s in shape)


def _plan(a_shape, b_shape, a_dtype, b_dtype):
    """Check operands; return (output shape, batch shape) in PyTorch's terms."""
    if not a_shape or not b_shape:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{len(a_shape)}D and {len(b_shape)}D")
    if a_dtype != b_dtype:
        # The message of the kernel PyTorch's matmul folds the call into: dot, mv (addmv,
        # whose result has the vector's dtype), mm, or a batched product.
        a_name, b_name = TORCH_TYPE_NAMES[a_dtype.name], TORCH_TYPE_NAMES[b_dtype.name]
        if len(a_shape) == len(b_shape) == 1:
            raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                               f"{a_name} and {b_name}")
        if len(b_shape) == 1:
            raise RuntimeError(f"addmv input tensors must have the same dtype, but got {b_name}, "
                               f"{a_name}, and {b_name}")
        if len(b_shape) > 2:
            raise RuntimeError(f"expected scalar type {a_name} but found {b_name}")
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{C_TYPE_NAMES[a_dtype.name]} != {C_TYPE_NAMES[b_dtype.name]}")
    k_a = a_shape[-1]
    k_b = b_shape[-2] if len(b_shape) > 1 else b_shape[0]
    if k_a != k_b:
        if len(a_shape) == 1 and len(b_shape) == 1:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{k_a}] and src [{k_b}] "
                               f"to have the same number of elements, but got {k_a} and {k_b} "
                               "elements respectively")
        a2 = a_shape if len(a_shape) > 1 else (1,) + a_shape
        b2 = b_shape if len(b_shape) > 1 else b_shape + (1,)
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape_str(a2[-2:])} "
                           f"and {_shape_str(b2[-2:])}); shapes are {tuple(a_shape)} and {tuple(b_shape)}")
    batch_a, batch_b = a_shape[:-2], b_shape[:-2]
    try:
        batch = np.broadcast_shapes(batch_a, batch_b)
    except ValueError:
        raise RuntimeError(f"The batch dimensions of matmul operands {tuple(a_shape)} and "
                           f"{tuple(b_shape)} cannot be broadcast") from None
    out = batch + (a_shape[-2:-1] if len(a_shape) > 1 else ()) + (b_shape[-1:] if len(b_shape) > 1 else ())
    if a_dtype.kind == "b":
        _check_bool(len(a_shape), len(b_shape), k_a, out)
    return out, batch


def _check_bool(a_ndim, b_ndim, k, out_shape):
    """PyTorch has no bool kernel for products; it raises from the kernel it dispatches to,
    which returns zeros for an empty product before it gets there (all but dot)."""
    if a_ndim == 1 and b_ndim == 1:
        kernel = "dot"
    elif k == 0 or 0 in out_shape:
        return
    else:
        kernel = "addmv_impl_cpu" if b_ndim == 1 else "addmm_impl_cpu_" if b_ndim == 2 else "bmm"
    raise NotImplementedError(f'"{kernel}" not implemented for \'Bool\'')


def _as_matrices(a, b, batch):
    """Operands as (batch, n, k) and (batch, k, p) arrays, or 2-D when there is no batch."""
    a2 = a if a.ndim > 1 else a.reshape(1, -1)
    b2 = b if b.ndim > 1 else b.reshape(-1, 1)
    if not batch:
        return a2, b2
    # NOTE: the batch count is spelled out: reshape cannot infer -1 for an array with a 0 dim.
    count = math.prod(batch)
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:]).reshape((count,) + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:]).reshape((count,) + b2.shape[-2:])
    return a3, b3


def _swap(x):
    return x.T if x.ndim == 2 else x.transpose(0, 2, 1)


def infer(a, b):
    return _plan(a.shape, b.shape, a.dtype, b.dtype)[0], a.dtype


def forward(a, b):
    out_shape, batch = _plan(a.shape, b.shape, a.dtype, b.dtype)
    a_m, b_m = _as_matrices(a, b, batch)
    return _product(a_m, b_m).reshape(out_shape)


def vjp(node, g):
    a, b = node.saved
    out_shape, batch = _plan(a.shape, b.shape, a.dtype, b.dtype)
    a_m, b_m = _as_matrices(a, b, batch)
    # The gradient in matrix form: the output's (n, p) dims, with 1-D operands' unit dims back.
    g_m = g.reshape(a_m.shape[:-1] + b_m.shape[-1:])
    grad_a = grad_b = None
    if node.needs[0]:
        grad_a = _product(g_m, _swap(b_m))
        # Batch dims first, then a's own dims: the engine sums the broadcast batch away.
        grad_a = _reshaped(grad_a, batch + a.shape[-2:])
    if node.needs[1]:
        grad_b = _reshaped(_product(_swap(a_m), g_m), batch + b.shape[-2:])
    return grad_a, grad_b


def differentiable_vjp(node, g, saved):
    """`vjp` as Tensor operations: 1-D operands as matrices (a row, a column), then
    g @ b^T and a^T @ g in the batch's broadcast (the engine sums it away)."""
    a, b = saved
    (a_shape, a_dtype), (b_shape, b_dtype) = node.input_meta
    batch = _plan(a_shape, b_shape, a_dtype, b_dtype)[1]
    a_m = a if a.ndim > 1 else a.reshape(1, -1)
    b_m = b if b.ndim > 1 else b.reshape(-1, 1)
    g_m = g.reshape(batch + (a_m.shape[-2], b_m.shape[-1]))
    return ((g_m @ b_m.mT).reshape(batch + a_shape[-2:]) if node.needs[0] else None,
            (a_m.mT @ g_m).reshape(batch + b_shape[-2:]) if node.needs[1] else None)


def _reshaped(x, shape):
    # A fresh array keeps `base is None` (the engine may then reuse it) if no reshape is needed.
    return x if x.shape == shape else x.reshape(shape)


def grad_fn_name(a_ndim, b_ndim):
    """PyTorch names matmul's node after the product it dispatches to."""
    if a_ndim == 1 and b_ndim == 1:
        return "DotBackward0"
    if a_ndim == 2 and b_ndim == 1:
        return "MvBackward0"
    if a_ndim == 1 and b_ndim == 2:
        return "SqueezeBackward4"
    if a_ndim == 2 and b_ndim == 2:
        return "MmBackward0"
    return "UnsafeViewBackward0"


class _MatmulFusion:
    """Products as the eager kernel's, into preallocated buffers: 1-D and 2-D operands, and
    batches where each operand's batch is the whole broadcast batch or a single matrix
    (x (B, S, in) @ w.T, bmm); in a fused step every operand is a C-ordered buffer."""

    @staticmethod
    def _plan(a, b):
        """(batch count, m, n, k, a's batch stride, b's) of a @ b."""
        if a.dtype.kind != "f":
            raise Unfusable("batched or integer matmul")
        batch = _plan(a.shape, b.shape, a.dtype, b.dtype)[1]
        (m, k), (_, n) = a.shape[-2:] if a.ndim > 1 else (1, a.shape[0]), \
            b.shape[-2:] if b.ndim > 1 else (b.shape[0], 1)
        strides = []
        for own, size in ((a.shape[:-2], m * k), (b.shape[:-2], k * n)):
            if math.prod(own) == 1:
                strides.append(0)  # one matrix for the whole batch
            elif (1,) * (len(batch) - len(own)) + tuple(own) == batch:
                strides.append(size)
            else:
                raise Unfusable("batched or integer matmul")  # (both operands broadcast)
        return math.prod(batch), m, n, k, *strides

    @staticmethod
    def _emit(em, a, b, out, layout):
        """out = op(a) @ op(b) for each matrix of the batch, all C-ordered buffers (see
        matmul_kernel)."""
        count, m, n = layout[:3]
        if out.size != count * m * n:
            raise Unfusable("batched or integer matmul")
        em.blas()
        em.emit(f"{em.kernel(matmul_kernel)}({em.ref(a)}.reshape({a.size}), "
                f"{em.ref(b)}.reshape({b.size}), {em.out(out)}.reshape({out.size}), "
                f"{em.constant(_matmul_layout(*layout))}, "
                f"{em.constant(GEMM_SCALARS[out.dtype])})")

    def forward(self, em, arrays, params, out):
        a, b = arrays
        count, m, n, k, a_stride, b_stride = self._plan(a, b)
        self._emit(em, a, b, out, (count, m, n, k, 0, 0, a_stride, b_stride))

    def vjp(self, em, node, g, input_grads):
        # Each gradient has the whole batch (a single matrix's too): the engine sums it back.
        a, b = node.saved
        count, m, n, k, a_stride, b_stride = self._plan(a, b)
        if input_grads[0] is not None:  # g (m, n) @ b.T (n, k)
            self._emit(em, g, b, input_grads[0], (count, m, k, n, 0, 1, m * n, b_stride))
        if input_grads[1] is not None:  # a.T (k, m) @ g (m, n)
            self._emit(em, a, g, input_grads[1], (count, k, n, m, 1, 0, a_stride, m * n))


# ---------------------------------------------------------------------------------------
# linear: x (N, in) @ weight (out, in).T + bias (out,)

# The kernels take flat, C-ordered arrays and the layout of the forward's product
# x @ weight.T as matmul_kernel takes it: (1, rows, cols, inner, whether x is stored
# transposed, whether weight is NOT: op(b) is weight.T, 0, 0).
# NOTE: the transposes passed to gemm are computed (`layout[0] < 0` is a False), never
# literal: each literal combination would compile gemm again.
@calling_unlinked
@_jit
def linear_kernel(x, weight, bias, out, layout, scalars):
    matmul(x, weight, out, layout, scalars)
    rows, cols = layout[1], layout[2]
    for i in range(rows):
        for j in range(cols):
            out[i * cols + j] += bias[j]


@calling_unlinked
@_jit
def linear_vjp_kernel(g, x, weight, grad_x, grad_weight, grad_bias, need_x, need_weight,
                      need_bias, layout, scalars):
    rows, cols, inner = layout[1], layout[2], layout[3]
    x_transposed, weight_transposed = layout[4] != 0, layout[5] == 0
    zero = 0 * rows
    if need_x:  # g (rows, cols) @ weight (cols, inner)
        gemm(rows, inner, cols, g, zero, cols, layout[0] < 0, weight, zero,
             cols if weight_transposed else inner, weight_transposed, grad_x, zero, inner,
             scalars, zero, zero + 1)
    if need_weight:  # g.T (cols, rows) @ x (rows, inner)
        gemm(cols, inner, rows, g, zero, cols, layout[0] > 0, x, zero,
             rows if x_transposed else inner, x_transposed, grad_weight, zero, inner, scalars,
             zero, zero + 1)
    if need_bias:
        for j in range(cols):
            grad_bias[j] = 0.0
        for i in range(rows):
            for j in range(cols):
                grad_bias[j] += g[i * cols + j]


def _linear_layout(x, weight, x_transposed, weight_transposed):
    return _matmul_layout(1, x.shape[0], weight.shape[0], x.shape[1], x_transposed,
                          1 - weight_transposed, 0, 0)


def _linear_operands(x, weight):
    """The kernels' x, weight and layout for eager arrays of any strides (see `_stored`)."""
    (x_flat, x_transposed), (weight_flat, weight_transposed) = _stored(x), _stored(weight)
    return x_flat, weight_flat, _linear_layout(x, weight, x_transposed, weight_transposed)


def _linear_differentiable_vjp(node, g, saved):
    x, weight = saved
    need_x, need_weight, need_bias = node.needs
    return (g @ weight if need_x else None, g.mT @ x if need_weight else None,
            g.sum(0) if need_bias else None)


def _linear_infer(x, weight, bias):
    if x.ndim != 2 or weight.ndim != 2 or bias.shape != weight.shape[:1]:
        raise RuntimeError(f"linear: expected a 2-D input, a 2-D weight and a matching bias; got "
                           f"shapes {tuple(x.shape)}, {tuple(weight.shape)}, {tuple(bias.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({x.shape[0]}x{x.shape[1]} "
                           f"and {weight.shape[1]}x{weight.shape[0]})")
    if x.dtype != weight.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{C_TYPE_NAMES[x.dtype.name]} != {C_TYPE_NAMES[weight.dtype.name]}")
    if bias.dtype != weight.dtype:
        raise RuntimeError(f"self and mat2 must have the same dtype, but got "
                           f"{TORCH_TYPE_NAMES[bias.dtype.name]} and {TORCH_TYPE_NAMES[weight.dtype.name]}")
    if x.dtype.kind == "b":
        raise NotImplementedError('"addmm_impl_cpu_" not implemented for \'Bool\'')
    if x.dtype.kind != "f":
        raise RuntimeError(f"linear is implemented for floating point tensors only, got {x.dtype}")
    return (x.shape[0], weight.shape[0]), x.dtype


# NOTE: gemm handles empty operands (an empty inner dimension gives zeros), so the kernels
# need no special case for in_features, out_features or the batch being 0.
def _linear_forward(x, weight, bias):
    shape, dtype = _linear_infer(x, weight, bias)
    out = np.empty(shape, dtype)
    x_flat, weight_flat, layout = _linear_operands(x, weight)
    linear_kernel(x_flat, weight_flat, bias, out.reshape(-1), layout, GEMM_SCALARS[dtype])
    return out


def _linear_vjp(node, g):
    x, weight = node.saved
    need_x, need_weight, need_bias = node.needs
    # Arrays not asked for are zero-size stand-ins, so the kernel keeps one signature.
    grad_x = np.empty(x.shape if need_x else 0, g.dtype)
    grad_weight = np.empty(weight.shape if need_weight else 0, g.dtype)
    grad_bias = np.empty(weight.shape[0] if need_bias else 0, g.dtype)
    x_flat, weight_flat, layout = _linear_operands(x, weight)
    linear_vjp_kernel(np.ascontiguousarray(g).reshape(-1), x_flat, weight_flat,
                      grad_x.reshape(-1), grad_weight.reshape(-1), grad_bias, need_x,
                      need_weight, need_bias, layout, GEMM_SCALARS[g.dtype])
    return (grad_x if need_x else None, grad_weight if need_weight else None,
            grad_bias if need_bias else None)


class _LinearFusion:
    """The eager kernels' product (matmul_kernel) and VJP kernel with the same arguments
    (their compilations are reused), the step's buffers being C-ordered."""

    @staticmethod
    def _operands(em, x, weight, dtype):
        return (f"{em.ref(x)}.reshape({x.size})", f"{em.ref(weight)}.reshape({weight.size})",
                em.constant(_linear_layout(x, weight, 0, 0)),
                em.constant(GEMM_SCALARS[np.dtype(dtype)]))

    def forward(self, em, arrays, params, out):
        """The product into the output buffer, then the bias as an elementwise loop: an
        activation that follows joins that loop, so bias and activation form one epilogue."""
        x, weight, bias = arrays
        x_flat, weight_flat, layout, scalars = self._operands(em, x, weight, out.dtype)
        result = em.out(out)
        em.blas()
        em.emit(f"{em.kernel(matmul_kernel)}({x_flat}, {weight_flat}, "
                f"{result}.reshape({out.size}), {layout}, {scalars})")
        em.elementwise("a + b", {"a": (result, out.shape), "b": (em.ref(bias), bias.shape)},
                       result, out.shape, result)

    def vjp(self, em, node, g, input_grads):
        x, weight = node.saved
        x_flat, weight_flat, layout, scalars = self._operands(em, x, weight, g.dtype)
        # Gradients not asked for: zero-size stand-ins, as in eager mode.
        grads = [f"{em.out(r)}.reshape({r.size})" if r is not None else em.empty(1, g.dtype)
                 for r in input_grads]
        needs = ", ".join(em.scalar(r is not None) for r in input_grads)
        em.blas()
        em.emit(f"{em.kernel(linear_vjp_kernel)}({em.ref(g)}.reshape({g.size}), {x_flat}, "
                f"{weight_flat}, {', '.join(grads)}, {needs}, {layout}, {scalars})")


PRIMS = {
    "matmul": register(Primitive("matmul", "MmBackward0", infer, forward, vjp, save=(0, 1),
                                 differentiable=(0, 1), fuse=_MatmulFusion(),
                                 differentiable_vjp=differentiable_vjp)),
    "linear": register(Primitive("linear", "AddmmBackward0", _linear_infer, _linear_forward,
                                 _linear_vjp, save=(0, 1), differentiable=(0, 1, 2),
                                 fuse=_LinearFusion(),
                                 differentiable_vjp=_linear_differentiable_vjp)),
}
