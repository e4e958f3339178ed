"""matmul: a primitive because it is a BLAS call (through SciPy, as Numba's np.dot is).

Every case (dot, mv, vm, mm, batched with broadcasting) is reduced in Python to one 2-D
or one batched 3-D product, so there are two kernels per dtype family.
"""
import math

import numba
import numpy as np

from .primitive import Primitive, Unfusable, register


@numba.njit(cache=True)
def mm_kernel(a, b, out):
    np.dot(a, b, out)


@numba.njit(cache=True)
def bmm_kernel(a, b, out):
    for i in range(a.shape[0]):
        np.dot(a[i], b[i], out[i])


@numba.njit(cache=True)
def bmm_integer_kernel(a, b, out):
    # NOTE: Numba's np.dot is BLAS-only (floats); integer products need explicit loops.
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
    elif a.ndim == 2:
        mm_kernel(blas_ready(a), blas_ready(b), out)
    else:
        bmm_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def blas_ready(x):
    # BLAS takes C- or F-ordered matrices (a transposed weight needs no copy); others are copied.
    return x if x.flags.c_contiguous or x.flags.f_contiguous else np.ascontiguousarray(x)


def _shape_str(shape):
    return "x".join(str(s) for s in shape)


def _plan(a_shape, b_shape, a_dtype, b_dtype):
    """Check operands; return (output shape, batch shape) in PyTorch's terms."""
    if not a_shape or not b_shape:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{len(a_shape)}D and {len(b_shape)}D")
    if a_dtype != b_dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a_dtype} != {b_dtype}")
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


PRIMS = {"matmul": register(Primitive("matmul", "MmBackward0", infer, forward, vjp,
                                      save=(0, 1), differentiable=(0, 1)))}


class _MatmulFusion:
    """1-D and 2-D products as np.dot into preallocated buffers; batched ones stay eager."""

    @staticmethod
    def _matrices(a, b):
        if a.ndim > 2 or b.ndim > 2 or a.dtype.kind != "f":
            raise Unfusable("batched or integer matmul")
        return (a.shape if a.ndim == 2 else (1, a.shape[0]),
                b.shape if b.ndim == 2 else (b.shape[0], 1))

    def forward(self, em, arrays, params, out):
        a, b = arrays
        a_shape, b_shape = self._matrices(a, b)
        em.blas()
        em.emit(f"np.dot({em.ref(a)}.reshape({a_shape!r}), {em.ref(b)}.reshape({b_shape!r}), "
                f"{em.out(out)}.reshape({(a_shape[0], b_shape[1])!r}))")

    def vjp(self, em, node, g, raw):
        a, b = node.saved
        a_shape, b_shape = self._matrices(a, b)
        a_m, b_m = f"{em.ref(a)}.reshape({a_shape!r})", f"{em.ref(b)}.reshape({b_shape!r})"
        g_m = f"{em.ref(g)}.reshape({(a_shape[0], b_shape[1])!r})"
        em.blas()
        if raw[0] is not None:
            em.emit(f"np.dot({g_m}, {b_m}.T, {em.out(raw[0])}.reshape({a_shape!r}))")
        if raw[1] is not None:
            em.emit(f"np.dot({a_m}.T, {g_m}, {em.out(raw[1])}.reshape({b_shape!r}))")


PRIMS["matmul"].fuse = _MatmulFusion()
