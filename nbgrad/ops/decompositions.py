"""torch.linalg's solvers and decompositions (inv, solve, det, slogdet, cholesky, eigh, svd,
qr, pinv): primitives because each is a LAPACK call (through Numba's np.linalg, one call per
matrix of a batch inside one njit kernel), and their VJPs are PyTorch's closed forms, which
no composite of other ops gives (or not finitely: pinv).

Every kernel takes C-contiguous (count, m, n) batches in float32 or float64 (`matrices`
flattens the batch). Numba's np.linalg raises its own LinAlgError for a singular (or not
positive-definite) matrix and for NaN or infinite entries; then the batch runs again here in
Python through SciPy's LAPACK (getrf, as PyTorch), or an unblocked Cholesky, which raise
PyTorch's LinAlgError with its message, naming the batch element and the pivot, or give
PyTorch's NaNs.
"""
import math

import numba
import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from .._core.dtype import is_half
from .primitive import TORCH_TYPE_NAMES, Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")  # (x / 0 is inf or NaN, as PyTorch)


class LinAlgError(RuntimeError):
    """PyTorch's torch.linalg.LinAlgError: a singular or not positive-definite matrix."""


LinAlgError.__module__ = "nbgrad.linalg"


# ---------------------------------------------------------------------------------------
# checks

def check_square(name, a):
    """PyTorch's checks of a batch of square float matrices `a` for op `name`."""
    if a.ndim < 2:
        raise RuntimeError(f"{name}: The input tensor A must have at least 2 dimensions.")
    if a.shape[-1] != a.shape[-2]:
        raise RuntimeError(f"{name}: A must be batches of square matrices, but they are "
                           f"{a.shape[-2]} by {a.shape[-1]} matrices")
    check_floating(name, a)


# The CPU kernels whose "not implemented" PyTorch raises, for the ops that check no dtype
# first: of float16/bfloat16 (the others: "Low precision dtypes not supported"), and of
# integers (the others: "Expected a floating point or complex tensor").
_HALF_KERNELS = {"linalg.eigh": "linalg_eigh_cpu", "linalg.svd": "linalg_svd_cpu",
                 "linalg.qr": "geqrf_cpu"}
_INTEGER_KERNELS = {"linalg.eigh": "linalg_eigh_cpu"}


def _not_implemented(kernel, dtype):
    return NotImplementedError(f'"{kernel}" not implemented for \'{TORCH_TYPE_NAMES[dtype.name]}\'')


def check_not_half(name, a):
    if is_half(a.dtype):
        if name in _HALF_KERNELS:
            raise _not_implemented(_HALF_KERNELS[name], a.dtype)
        raise RuntimeError(f"{name}: Low precision dtypes not supported. Got "
                           f"{TORCH_TYPE_NAMES[a.dtype.name]}")


def check_floating(name, a):
    check_not_half(name, a)
    if a.dtype.kind != "f":
        if name in _INTEGER_KERNELS:
            raise _not_implemented(_INTEGER_KERNELS[name], a.dtype)
        raise RuntimeError(f"{name}: Expected a floating point or complex tensor as input. "
                           f"Got {TORCH_TYPE_NAMES[a.dtype.name]}")


def matrices(a):
    """`a` (..., m, n) as a C-contiguous (count, m, n) batch."""
    return np.ascontiguousarray(a).reshape((math.prod(a.shape[:-2]),) + a.shape[-2:])


def _element(name, i, count):
    return f"{name}: (Batch element {i}): " if count > 1 else f"{name}: "


# ---------------------------------------------------------------------------------------
# LU-based: inv, solve, det, slogdet

@_jit
def inv_kernel(a, out):
    for i in range(a.shape[0]):
        out[i] = np.linalg.inv(a[i])


@_jit
def inv_vjp_kernel(x, g, grad):
    """grad = -X^T G X^T per matrix, X the inverse."""
    for i in range(x.shape[0]):
        xt = np.ascontiguousarray(x[i].T)
        grad[i] = -(xt @ np.ascontiguousarray(g[i]) @ xt)


@_jit
def solve_kernel(a, b, out):
    for i in range(a.shape[0]):
        out[i] = np.linalg.solve(a[i], b[i])


@_jit
def solve_vjp_kernel(a, x, g, grad_a, grad_b):
    """grad_b = A^-T G; grad_a = -grad_b X^T, per matrix."""
    for i in range(a.shape[0]):
        gb = np.linalg.solve(np.ascontiguousarray(a[i].T), g[i])
        grad_b[i] = gb
        grad_a[i] = -(gb @ np.ascontiguousarray(x[i].T))


def _run_per_matrix(kernel, inputs, outputs):
    """kernel(*inputs, *outputs), whose arrays all hold one matrix (or value) per element of
    their first axis. NOTE: Numba's np.linalg refuses NaN and infinite entries with an error
    of its own, where PyTorch's LAPACK gives NaN: an element with such an operand gets NaN
    outputs, element by element, and the others their values."""
    try:
        kernel(*inputs, *outputs)
    except np.linalg.LinAlgError:
        for i in range(outputs[0].shape[0]):
            slices = [array[i:i + 1] for array in (*inputs, *outputs)]
            try:
                kernel(*slices)
            except np.linalg.LinAlgError:
                if all(np.isfinite(array).all() for array in slices[:len(inputs)]):
                    raise
                for output in outputs:
                    output[i] = np.nan


def _lapack(dtype, *names):
    return scipy.linalg.lapack.get_lapack_funcs(names, dtype=dtype)


def _lu_or_raise(name, a, i, count, message):
    """getrf of matrix `a`, element `i` of `count`; raises PyTorch's LinAlgError at a zero
    pivot (`message` formatted with it)."""
    getrf, = _lapack(a.dtype, "getrf")
    lu, pivots, info = getrf(a)
    if info > 0:
        raise LinAlgError(_element(name, i, count) + message.format(info))
    return lu, pivots


def _solve_by_lapack(name, a, b, message):
    """X = A^-1 B for each matrix as PyTorch's getrf/getrs, raising its error."""
    getrs, = _lapack(a.dtype, "getrs")
    out = np.empty(b.shape, a.dtype)
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]).all():
            out[i] = np.nan  # (as PyTorch's LAPACK: no error, NaN)
            continue
        lu, pivots = _lu_or_raise(name, a[i], i, a.shape[0], message)
        out[i] = getrs(lu, pivots, b[i])[0]
    return out


_INV_SINGULAR = ("The diagonal element {} is zero, the inversion could not be completed "
                 "because the input matrix is singular.")
_SOLVE_SINGULAR = "The solver failed because the input matrix is singular."


def inv(a):
    check_square("linalg.inv", a)
    a3 = matrices(a)
    out = np.empty(a3.shape, a.dtype)
    if out.size:
        try:
            inv_kernel(a3, out)
        except np.linalg.LinAlgError:
            eye = np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a3.shape)
            out = _solve_by_lapack("linalg.inv", a3, eye, _INV_SINGULAR)
    return out.reshape(a.shape)


def _inv_infer(a):
    check_square("linalg.inv", a)
    return a.shape, a.dtype


def _inv_vjp(node, g):
    x, = node.saved
    grad = np.empty(matrices(x).shape, g.dtype)
    if grad.size:
        inv_vjp_kernel(matrices(x), matrices(g), grad)
    return (grad.reshape(x.shape),)


def _inv_differentiable_vjp(node, g, saved):
    x, = saved
    return (-(x.mT @ g @ x.mT),)


def is_vector(a_shape, b_shape):
    """Whether linalg.solve takes B as a vector or a batch of them: where it is 1-D, or has
    A's shape without its last dim."""
    return len(b_shape) == 1 or tuple(b_shape) == tuple(a_shape[:-1])


def solve_plan(a, b, left):
    """(batch shape, whether B is a (batch of) vector(s)) of linalg.solve(A, B, left=left),
    with PyTorch's checks."""
    check_square("linalg.solve", a)
    check_floating("linalg.solve", b)
    if a.dtype != b.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found "
                           f"A of type {TORCH_TYPE_NAMES[a.dtype.name]} and B of type "
                           f"{TORCH_TYPE_NAMES[b.dtype.name]} instead")
    vector = is_vector(a.shape, b.shape)
    n = a.shape[-1]
    b_rows, b_cols = (b.shape[-1], 1) if vector else b.shape[-2:]
    if (b_rows if left else b_cols) != n:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"{'AX' if left else 'XA'} = B ({n}x{n} and {b_rows}x{b_cols})")
    b_batch = b.shape[:-1] if vector else b.shape[:-2]
    return _broadcast_batch(b_batch, a.shape[:-2]), vector


def _broadcast_batch(first, second):
    """The broadcast of two batch shapes, with PyTorch's error (B's batch is its "a")."""
    ndim = max(len(first), len(second))
    first, second = (1,) * (ndim - len(first)) + first, (1,) * (ndim - len(second)) + second
    for d in reversed(range(ndim)):
        if first[d] != second[d] and 1 not in (first[d], second[d]):
            raise RuntimeError(f"The size of tensor a ({first[d]}) must match the size of tensor "
                               f"b ({second[d]}) at non-singleton dimension {d}")
    return tuple(max(m, n) if 0 not in (m, n) else 0 for m, n in zip(first, second))


def _solve_infer(a, b, left):
    batch, vector = solve_plan(a, b, left)
    return batch + (b.shape[-1:] if vector else b.shape[-2:]), a.dtype


def _in_frame(m, left):
    """X A = B is A^T X^T = B^T: the matrices of a solve from the right, transposed."""
    return m if left else np.swapaxes(m, -1, -2)


def _solve_operands(a, b, left):
    """A and B (vectors as columns) broadcast to their common batch as (count, n, n) and
    (count, n, k), in the frame of a solve from the left; the result's shape."""
    batch, vector = solve_plan(a, b, left)
    b_matrix = b[..., None] if vector else b
    a3, b3 = (np.ascontiguousarray(_in_frame(np.broadcast_to(m, batch + m.shape[-2:]), left))
              for m in (a, b_matrix))
    return matrices(a3), matrices(b3), \
        batch + b.shape[-1:] if vector else batch + b.shape[-2:]


def solve(a, b, left):
    a3, b3, shape = _solve_operands(a, b, left)
    out = np.empty(b3.shape, a.dtype)
    if out.size:
        try:
            solve_kernel(a3, b3, out)
        except np.linalg.LinAlgError:
            out = _solve_by_lapack("torch.linalg.solve", a3, b3, _SOLVE_SINGULAR)
    return _from_frame(out, shape, left)


def _from_frame(m3, shape, left):
    """(count, rows, cols) matrices of the left-solve frame back as an array of `shape`."""
    return np.ascontiguousarray(_in_frame(m3, left)).reshape(shape)


def _solve_vjp(node, g):
    """The gradients in the broadcast batch shape (the engine sums them back)."""
    a, b, x = node.saved
    left = node.params["left"]
    a3, b3, shape = _solve_operands(a, b, left)
    batch, vector = solve_plan(a, b, left)
    grad_a, grad_b = np.zeros(a3.shape, g.dtype), np.zeros(b3.shape, g.dtype)
    if grad_b.size:
        _run_per_matrix(solve_vjp_kernel, (a3, _as_b_frame(x, b3.shape, vector, left),
                                           _as_b_frame(g, b3.shape, vector, left)),
                        (grad_a, grad_b))
    return (_from_frame(grad_a, batch + a.shape[-2:], left) if node.needs[0] else None,
            _from_frame(grad_b, shape, left) if node.needs[1] else None)


def _as_b_frame(m, b3_shape, vector, left):
    """The result (or its gradient) as (count, n, k) matrices of the left-solve frame."""
    return matrices(_in_frame(m[..., None] if vector else m, left)).reshape(b3_shape)


def _solve_differentiable_vjp(node, g, saved):
    a, b, x = saved
    left = node.params["left"]
    (a_shape, _), (b_shape, _) = node.input_meta
    vector = is_vector(a_shape, b_shape)
    g, x = (g[..., None], x[..., None]) if vector else (g, x)
    if not left:
        a, g, x = a.mT, g.mT, x.mT
    grad_b = a.mT._primitive("linalg_solve", g, left=True)
    grad_a = -(grad_b @ x.mT)
    if not left:
        grad_a, grad_b = grad_a.mT, grad_b.mT
    return (grad_a if node.needs[0] else None,
            (grad_b[..., 0] if vector else grad_b) if node.needs[1] else None)


@_jit
def det_kernel(a, out):
    for i in range(a.shape[0]):
        out[i] = np.linalg.det(a[i])


@_jit
def slogdet_kernel(a, sign, logabsdet):
    for i in range(a.shape[0]):
        sign[i], logabsdet[i] = np.linalg.slogdet(a[i])


@_jit
def cofactor_kernel(a, det, g, grad):
    """grad = g det A^-T, the cofactor matrix times g, per matrix: through the SVD where A is
    singular, as PyTorch (A = U S V^T: the cofactors are det(U) det(V) U diag(prod of the
    other singular values) V^T), NaN where det is."""
    n = a.shape[1]
    for i in range(a.shape[0]):
        if det[i] != det[i] or np.isinf(det[i]):
            grad[i] = np.nan
        elif det[i] != 0:
            grad[i] = (g[i] * det[i]) * np.ascontiguousarray(np.linalg.inv(a[i]).T)
        else:
            u, s, vh = np.linalg.svd(a[i])
            scale = g[i] * np.linalg.det(u) * np.linalg.det(vh)
            others = np.empty(n, a.dtype)
            for j in range(n):
                product = scale
                for k in range(n):
                    if k != j:
                        product *= s[k]
                others[j] = product
            grad[i] = (u * others.reshape(1, n)) @ vh


@_jit
def inverse_transpose_kernel(a, g, grad):
    """grad = g A^-T per matrix (slogdet's gradient); NaN where A is singular."""
    for i in range(a.shape[0]):
        sign, _ = np.linalg.slogdet(a[i])
        if sign == 0:
            grad[i] = np.nan
        else:
            grad[i] = g[i] * np.ascontiguousarray(np.linalg.inv(a[i]).T)


def _det_by_lapack(a3):
    """(sign, log|det|) of each matrix as getrf gives them (NaN entries)."""
    sign, logabsdet = np.empty(a3.shape[0], a3.dtype), np.empty(a3.shape[0], a3.dtype)
    getrf, = _lapack(a3.dtype, "getrf")
    for i in range(a3.shape[0]):
        lu, pivots, _ = getrf(a3[i])
        diagonal = np.diagonal(lu)
        swaps = np.count_nonzero(pivots != np.arange(len(pivots)))
        # (PyTorch's sign of NaN is 0)
        sign[i] = np.prod(np.sign(np.nan_to_num(diagonal, nan=0.0))) * (-1) ** swaps
        with np.errstate(divide="ignore"):
            logabsdet[i] = np.sum(np.log(np.abs(diagonal)))
    return sign, logabsdet


def _batch_infer(name):
    def infer(a):
        check_square(name, a)
        return a.shape[:-2], a.dtype
    return infer


def det(a):
    check_square("linalg.det", a)
    a3 = matrices(a)
    out = np.ones(a3.shape[0], a.dtype)
    if a3.size:
        try:
            det_kernel(a3, out)
        except np.linalg.LinAlgError:
            sign, logabsdet = _det_by_lapack(a3)
            out = (sign * np.exp(logabsdet)).astype(a.dtype)
    return out.reshape(a.shape[:-2])


def _slogdet(a):
    check_square("linalg.slogdet", a)
    a3 = matrices(a)
    sign, logabsdet = np.ones(a3.shape[0], a.dtype), np.zeros(a3.shape[0], a.dtype)
    if a3.size:
        try:
            slogdet_kernel(a3, sign, logabsdet)
        except np.linalg.LinAlgError:
            sign, logabsdet = _det_by_lapack(a3)
    return sign.reshape(a.shape[:-2]), logabsdet.reshape(a.shape[:-2])


def _det_vjp(node, g):
    a, d = node.saved
    grad = np.empty(matrices(a).shape, g.dtype)
    if grad.size:
        cofactor_kernel(matrices(a), np.ascontiguousarray(d).reshape(-1),
                        np.ascontiguousarray(g).reshape(-1), grad)
    return (grad.reshape(a.shape),)


def _det_differentiable_vjp(node, g, saved):
    # NOTE: through the inverse: at a singular matrix this raises LinAlgError (PyTorch goes
    # through the SVD when create_graph is set).
    a, d = saved
    return ((g * d)[..., None, None] * a._primitive("linalg_inv").mT,)


def _slogdet_vjp(node, g):
    a, = node.saved
    grad = np.empty(matrices(a).shape, g.dtype)
    if grad.size:
        _run_per_matrix(inverse_transpose_kernel,
                        (matrices(a), np.ascontiguousarray(g).reshape(-1)), (grad,))
    return (grad.reshape(a.shape),)


def _slogdet_differentiable_vjp(node, g, saved):
    a, = saved
    return (g[..., None, None] * a._primitive("linalg_inv").mT,)


# ---------------------------------------------------------------------------------------
# cholesky

@_jit
def cholesky_kernel(a, out):
    for i in range(a.shape[0]):
        out[i] = np.linalg.cholesky(a[i])


@_jit
def cholesky_vjp_kernel(lower, g, grad):
    """PyTorch's (Murray, 2016): phi = tril(L^T G) with its diagonal halved, then
    L^-T phi L^-1, symmetrized."""
    n = lower.shape[1]
    for i in range(lower.shape[0]):
        inverse = np.linalg.inv(lower[i])
        phi = np.ascontiguousarray(lower[i].T) @ g[i]
        for r in range(n):
            phi[r, r] *= 0.5
            for c in range(r + 1, n):
                phi[r, c] = 0
        half = np.ascontiguousarray(inverse.T) @ phi @ inverse
        grad[i] = (half + half.T) * 0.5


_NOT_POSITIVE_DEFINITE = ("The factorization could not be completed because the input is not "
                          "positive-definite (the leading minor of order {} is not "
                          "positive-definite).")


def _cholesky_infer(a, upper, errors):
    check_square("linalg.cholesky", a)
    return a.shape, a.dtype


@_jit
def unblocked_cholesky_kernel(a, out, info):
    """Reference LAPACK's potf2 (lower) per matrix, which stops at a pivot that is not
    positive (or NaN) as PyTorch's potrf does: that pivot holds its value, the entries after
    it A's, and `info` its order (1-based); 0 where the factor is complete."""
    n = a.shape[1]
    for i in range(a.shape[0]):
        info[i] = 0
        for r in range(n):
            for c in range(n):
                out[i, r, c] = a[i, r, c] if r >= c else 0
        for j in range(n):
            pivot = out[i, j, j]
            for k in range(j):
                pivot -= out[i, j, k] * out[i, j, k]
            if not pivot > 0:
                out[i, j, j] = pivot
                info[i] = j + 1
                break
            root = np.sqrt(pivot)
            out[i, j, j] = root
            for r in range(j + 1, n):
                value = out[i, r, j]
                for k in range(j):
                    value -= out[i, r, k] * out[i, j, k]
                out[i, r, j] = value / root


def _cholesky_with_info(a3):
    """(The lower factors, each failed one as potrf leaves it; the orders of the failed
    pivots (zeros where none failed)). NOTE: Numba's cholesky (OpenBLAS's potrf) goes on past
    a NaN pivot: a NaN on the diagonal is a failure too."""
    out, info = np.empty(a3.shape, a3.dtype), np.zeros(a3.shape[0], np.int32)
    if out.size:
        try:
            cholesky_kernel(a3, out)
            failed = np.isnan(np.diagonal(out, 0, 1, 2)).any()
        except np.linalg.LinAlgError:
            failed = True
        if failed:
            unblocked_cholesky_kernel(a3, out, info)
    return out, info


def cholesky(a, upper, errors):
    """The Cholesky factors; `errors`: the op's name in PyTorch's error for a matrix that is
    not positive-definite, or None to return potrf's partial factor (cholesky_ex)."""
    check_square("linalg.cholesky", a)
    a3 = matrices(a)
    out, info = _cholesky_with_info(a3)
    failed = np.flatnonzero(info)
    if errors is not None and len(failed):
        raise LinAlgError(_element(errors, failed[0], a3.shape[0])
                          + _NOT_POSITIVE_DEFINITE.format(info[failed[0]]))
    if upper:
        out = np.ascontiguousarray(out.transpose(0, 2, 1))
    return out.reshape(a.shape)


def _cholesky_info_infer(a):
    check_square("linalg.cholesky", a)
    return a.shape[:-2], np.dtype(np.int32)


def _cholesky_info(a):
    _cholesky_info_infer(a)
    return _cholesky_with_info(matrices(a))[1].reshape(a.shape[:-2])


def _cholesky_vjp(node, g):
    factor, = node.saved
    upper = node.params["upper"]
    lower = matrices(np.swapaxes(factor, -1, -2) if upper else factor)
    g3 = matrices(np.swapaxes(g, -1, -2) if upper else g)
    grad = np.empty(lower.shape, g.dtype)
    if grad.size:
        _run_per_matrix(cholesky_vjp_kernel, (lower, g3), (grad,))
    return (grad.reshape(factor.shape),)


def _cholesky_differentiable_vjp(node, g, saved):
    factor, = saved
    lower, g = (factor.mT, g.mT) if node.params["upper"] else (factor, g)
    n = lower.shape[-1]
    lower_ones = g.new_ones((n, n)).tril()
    phi = (lower.mT @ g) * (lower_ones - lower_ones.triu() * 0.5)  # diagonal halved
    inverse = lower._primitive("linalg_inv")
    half = inverse.mT @ phi @ inverse
    return ((half + half.mT) * 0.5,)




# ---------------------------------------------------------------------------------------
# Decompositions with several results (eigh, svd, qr): one primitive whose result packs
# each matrix's parts, flattened, side by side along its last dim (`packed_size`); the API
# takes the parts out under the primitive's grad_fn name (nbgrad's nodes have one result).
# A part's gradient comes back as zeros where the caller did not use that part: a VJP skips
# the terms of a part whose gradient is all zeros, as PyTorch's skips an undefined one (the
# eigenvalues of a matrix with repeated ones have a gradient; its eigenvectors' is NaN).

def packed_size(shapes):
    return sum(math.prod(shape) for shape in shapes)


@_jit
def _put(row, offset, matrix):
    """Write `matrix` into `row` from `offset` on, C-ordered; return the offset after it."""
    for r in range(matrix.shape[0]):
        for c in range(matrix.shape[1]):
            row[offset] = matrix[r, c]
            offset += 1
    return offset


def check_matrices(name, a):
    if a.ndim < 2:
        raise RuntimeError(f"{name}: The input tensor A must have at least 2 dimensions.")
    check_floating(name, a)


def unpacked(packed, shapes):
    """The parts of a packed result (or of its gradient), each (count, *shape), as views."""
    rows = packed.reshape(-1, packed.shape[-1])
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(rows[:, offset:offset + size].reshape((rows.shape[0],) + shape))
        offset += size
    return parts


def _tensor_parts(packed, shapes):
    """`unpacked` on Tensors (for differentiable VJPs): (*batch, *shape) each."""
    batch, parts, offset = packed.shape[:-1], [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(packed[..., offset:offset + size].reshape(batch + shape))
        offset += size
    return parts


# eigh: the eigenvalues (n,) in ascending order, then the eigenvectors (n, n) as columns.

def eigh_shapes(rows, cols):
    return ((rows,), (rows, cols))


@_jit
def eigh_kernel(a, out):
    for i in range(a.shape[0]):
        values, vectors = np.linalg.eigh(a[i])
        _put(out[i], _put(out[i], 0, values.reshape(1, -1)), vectors)


@_jit
def eigh_vjp_kernel(values, vectors, g_values, g_vectors, grad):
    """PyTorch's: gA = V (diag(gL) + skew(V^T gV) / (L_j - L_i)) V^T, skew(X) = (X - X^T)/2."""
    n = values.shape[1]
    for i in range(values.shape[0]):
        v = np.ascontiguousarray(vectors[i])
        inner = np.ascontiguousarray(v.T) @ np.ascontiguousarray(g_vectors[i])
        used = (g_vectors[i] != 0).any()
        middle = np.zeros((n, n), values.dtype)
        for r in range(n):
            for c in range(n):
                if r == c:
                    middle[r, c] = g_values[i, r]
                elif used:
                    middle[r, c] = 0.5 * (inner[r, c] - inner[c, r]) / (values[i, c] - values[i, r])
        grad[i] = v @ middle @ np.ascontiguousarray(v.T)


def _eigh_operand(a, UPLO):
    # Numba's eigh reads the lower triangle: the upper one is the transpose's lower one.
    return matrices(a if UPLO == "L" else np.swapaxes(a, -1, -2))


def _eigh_infer(a, UPLO):
    check_square("linalg.eigh", a)
    return a.shape[:-2] + (packed_size(eigh_shapes(*a.shape[-2:])),), a.dtype


def eigh(a, UPLO):
    shape, _ = _eigh_infer(a, UPLO)
    a3 = _eigh_operand(a, UPLO)
    out = np.empty((a3.shape[0], shape[-1]), a.dtype)
    if out.size:
        try:
            eigh_kernel(a3, out)
        except np.linalg.LinAlgError:
            # NOTE: Numba checks the whole matrix for NaN and inf, but eigh reads the lower
            # triangle only (PyTorch's ignores the other): mirror it, then NaN where it is not
            # finite either, as PyTorch's.
            mirrored = np.tril(a3) + np.swapaxes(np.tril(a3, -1), -1, -2)
            _run_per_matrix(eigh_kernel, (mirrored,), (out,))
    return out.reshape(shape)


def _eigh_vjp(node, g):
    (shape, _), = node.input_meta
    values, vectors = unpacked(node.saved[0], eigh_shapes(*shape[-2:]))
    g_values, g_vectors = unpacked(np.ascontiguousarray(g), eigh_shapes(*shape[-2:]))
    grad = np.empty(vectors.shape, g.dtype)
    if grad.size:
        eigh_vjp_kernel(values, vectors, g_values, g_vectors, grad)
    return (grad.reshape(shape),)


def _used(g):
    """Whether each matrix's gradient `g` (..., r, c) has a nonzero entry, as (..., 1, 1)."""
    return (g != 0).any(-1, keepdim=True).any(-2, keepdim=True)


def _gaps(values, g):
    """values[c] - values[r], with ones on the diagonal and where `g` is all zeros (whose
    terms are zero then: see above)."""
    n = values.shape[-1]
    gaps = values.unsqueeze(-2) - values.unsqueeze(-1) + values.new_ones(n).diag_embed()
    return gaps.where(_used(g), 1)


def _eigh_differentiable_vjp(node, g, saved):
    (shape, _), = node.input_meta
    shapes = eigh_shapes(*shape[-2:])
    (values, vectors), (g_values, g_vectors) = _tensor_parts(saved[0], shapes), \
        _tensor_parts(g, shapes)
    inner = vectors.mT @ g_vectors
    skew = (inner - inner.mT) * 0.5
    middle = skew / _gaps(values, g_vectors) + g_values.diag_embed()
    return (vectors @ middle @ vectors.mT,)


# svd: U (m, m or k), S (k,), Vh (n or k, n), k = min(m, n).

def svd_shapes(rows, cols, full_matrices):
    k = min(rows, cols)
    return ((rows, rows if full_matrices else k), (k,), (cols if full_matrices else k, cols))


@_jit
def svd_kernel(a, full_matrices, out):
    for i in range(a.shape[0]):
        u, s, vh = np.linalg.svd(a[i], full_matrices=full_matrices)
        _put(out[i], _put(out[i], _put(out[i], 0, u), s.reshape(1, -1)), vh)


@_jit
def svd_vjp_kernel(u_all, s_all, vh_all, gu_all, gs_all, gvh_all, grad):
    """PyTorch's: with E_jk = S_k^2 - S_j^2 and skew(X) = X - X^T,
    gA = U [(skew(U^T gU) S + S skew(V^T gV)) / E + diag(gS)] V^T, plus
    (I - U U^T) gU S^-1 V^T where m > k, or U S^-1 gV^T (I - V V^T) where n > k; of full
    matrices, the first k columns of U and rows of Vh."""
    m, n, k = grad.shape[1], grad.shape[2], s_all.shape[1]
    for i in range(grad.shape[0]):
        u = np.ascontiguousarray(u_all[i][:, :k])
        vh = np.ascontiguousarray(vh_all[i][:k])
        gu = np.ascontiguousarray(gu_all[i][:, :k])
        gv = np.ascontiguousarray(gvh_all[i][:k].T)
        s = s_all[i]
        uhgu = np.ascontiguousarray(u.T) @ gu
        vhgv = vh @ gv
        use_u, use_v = (gu != 0).any(), (gv != 0).any()
        middle = np.zeros((k, k), grad.dtype)
        for r in range(k):
            for c in range(k):
                if r == c:
                    middle[r, c] = gs_all[i, r]
                    continue
                gap = s[c] * s[c] - s[r] * s[r]
                if use_u:
                    middle[r, c] += (uhgu[r, c] - uhgu[c, r]) * s[c] / gap
                if use_v:
                    middle[r, c] += s[r] * (vhgv[r, c] - vhgv[c, r]) / gap
        if m > k and use_u:
            gu_scaled = np.empty((m, k), grad.dtype)
            for r in range(m):
                for c in range(k):
                    gu_scaled[r, c] = gu[r, c] / s[c]
            left = u @ middle + gu_scaled - u @ (np.ascontiguousarray(u.T) @ gu_scaled)
            grad[i] = left @ vh
        elif n > k and use_v:
            gvh_scaled = np.empty((k, n), grad.dtype)
            for r in range(k):
                for c in range(n):
                    gvh_scaled[r, c] = gv[c, r] / s[r]
            right = middle @ vh + gvh_scaled - (gvh_scaled @ np.ascontiguousarray(vh.T)) @ vh
            grad[i] = u @ right
        else:
            grad[i] = u @ middle @ vh


def _raise_not_finite(name, a3):
    """PyTorch's error for the first matrix with NaN or infinite entries, which Numba's SVD
    refused."""
    i = int(np.flatnonzero(~np.isfinite(a3).all(axis=(1, 2)))[0])
    raise LinAlgError(_element(name, i, a3.shape[0]) + "The algorithm failed to converge "
                      "because the input matrix contained non-finite values.")


def _svd_infer(a, full_matrices):
    check_matrices("linalg.svd", a)
    return a.shape[:-2] + (packed_size(svd_shapes(*a.shape[-2:], full_matrices)),), a.dtype


def svd(a, full_matrices):
    shape, _ = _svd_infer(a, full_matrices)
    a3 = matrices(a)
    out = np.empty((a3.shape[0], shape[-1]), a.dtype)
    if out.size and a3.size:
        try:
            svd_kernel(a3, full_matrices, out)
        except np.linalg.LinAlgError:
            _raise_not_finite("linalg.svd", a3)
    elif out.size:  # the SVD of an empty matrix: identities
        for part, part_shape in zip(unpacked(out, svd_shapes(*a.shape[-2:], full_matrices)),
                                    svd_shapes(*a.shape[-2:], full_matrices)):
            part[...] = np.eye(*part_shape[-2:], dtype=a.dtype) if len(part_shape) == 2 else 0
    return out.reshape(shape)


def _svd_vjp(node, g):
    (shape, _), = node.input_meta
    shapes = svd_shapes(*shape[-2:], node.params["full_matrices"])
    grad = np.zeros(matrices(np.empty(shape, g.dtype)).shape, g.dtype)
    if grad.size:
        svd_vjp_kernel(*unpacked(node.saved[0], shapes),
                       *unpacked(np.ascontiguousarray(g), shapes), grad)
    return (grad.reshape(shape),)


def _svd_differentiable_vjp(node, g, saved):
    (shape, _), = node.input_meta
    m, n = shape[-2:]
    k = min(m, n)
    shapes = svd_shapes(m, n, node.params["full_matrices"])
    (u, s, vh), (gu, gs, gvh) = _tensor_parts(saved[0], shapes), _tensor_parts(g, shapes)
    u, vh, gu, gv = u[..., :k], vh[..., :k, :], gu[..., :k], gvh[..., :k, :].mT
    uhgu, vhgv = u.mT @ gu, vh @ gv
    squares = s * s
    middle = ((uhgu - uhgu.mT) * s.unsqueeze(-2) / _gaps(squares, gu)
              + s.unsqueeze(-1) * (vhgv - vhgv.mT) / _gaps(squares, gv) + gs.diag_embed())
    if m > k:
        gu_scaled = gu / s.unsqueeze(-2).expand_as(gu).where(_used(gu), 1)
        return ((u @ middle + gu_scaled - u @ (u.mT @ gu_scaled)) @ vh,)
    if n > k:
        gvh_scaled = gv.mT / s.unsqueeze(-1).expand_as(gv.mT).where(_used(gv), 1)
        return (u @ (middle @ vh + gvh_scaled - (gvh_scaled @ vh.mT) @ vh),)
    return (u @ middle @ vh,)


# qr: Q (m, k; m, m where complete; none for mode "r"), R (k, n; m, n where complete).

QR_MODES = ("reduced", "complete", "r")


def qr_shapes(rows, cols, mode):
    k = rows if mode == "complete" else min(rows, cols)
    return ((0,) if mode == "r" else (rows, k), (k, cols))


@_jit
def qr_kernel(a, complete, with_q, out):
    """Numba's qr is the reduced one: the complete Q of a tall A is that of [A | I], whose
    first columns are A's Householder reflections, and its R the first columns of that R."""
    m, n = a.shape[1], a.shape[2]
    for i in range(a.shape[0]):
        if complete and m > n:
            extended = np.zeros((m, n + m), a.dtype)
            extended[:, :n] = a[i]
            for r in range(m):
                extended[r, n + r] = 1
            q, r = np.linalg.qr(extended)
            _put(out[i], _put(out[i], 0, q), np.ascontiguousarray(r[:, :n]))
        else:
            q, r = np.linalg.qr(a[i])
            _put(out[i], _put(out[i], 0, q) if with_q else 0, r)


@_jit
def _copyltu(x):
    """The symmetric matrix with x's lower triangle."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[r, c] = x[r, c] if r >= c else x[c, r]
    return out


@_jit
def qr_vjp_kernel(q_all, r_all, gq_all, gr_all, grad):
    """With A = [X | Y], R = [U | V] (X, U square, k columns): gQ' = gQ + Y gV^T,
    M = U gU^T - gQ'^T Q, gX = (gQ' + Q copyltu(M)) U^-T, gY = Q gV."""
    k = r_all.shape[1]
    for i in range(grad.shape[0]):
        q, r = np.ascontiguousarray(q_all[i]), np.ascontiguousarray(r_all[i])
        gq, gr = np.ascontiguousarray(gq_all[i]), np.ascontiguousarray(gr_all[i])
        u, gu = np.ascontiguousarray(r[:, :k]), np.ascontiguousarray(gr[:, :k])
        gv = np.ascontiguousarray(gr[:, k:])
        gq_total = gq + (q @ np.ascontiguousarray(r[:, k:])) @ np.ascontiguousarray(gv.T)
        inner = u @ np.ascontiguousarray(gu.T) - np.ascontiguousarray(gq_total.T) @ q
        left = gq_total + q @ _copyltu(inner)
        grad[i, :, :k] = np.linalg.solve(u, np.ascontiguousarray(left.T)).T
        grad[i, :, k:] = q @ gv


def _qr_infer(a, mode):
    check_matrices("linalg.qr", a)
    return a.shape[:-2] + (packed_size(qr_shapes(*a.shape[-2:], mode)),), a.dtype


def qr(a, mode):
    shape, _ = _qr_infer(a, mode)
    a3 = matrices(a)
    out = np.zeros((a3.shape[0], shape[-1]), a.dtype)
    if a3.size:
        try:
            qr_kernel(a3, mode == "complete", mode != "r", out)
        except np.linalg.LinAlgError:  # NaN or infinite entries: SciPy's LAPACK, as PyTorch's
            for row, matrix in zip(out, a3):
                parts = scipy.linalg.qr(matrix, mode="full" if mode == "complete" else "economic",
                                        check_finite=False)
                offset = 0
                for part in parts[mode == "r":]:
                    row[offset:offset + part.size] = part.reshape(-1)
                    offset += part.size
    elif out.size:  # Q of an empty matrix: the identity's columns
        unpacked(out, qr_shapes(*a.shape[-2:], mode))[0][...] = np.eye(
            *qr_shapes(*a.shape[-2:], mode)[0], dtype=a.dtype)
    return out.reshape(shape)


def _qr_check_differentiable(node):
    (shape, _), = node.input_meta
    mode = node.params["mode"]
    if mode == "r":
        raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when "
                           "mode='r'. Please use linalg.qr(A, mode='reduced') if you are going "
                           "to differentiate through linalg.qr.")
    if mode == "complete" and shape[-2] > shape[-1]:
        raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and "
                           "nrows > ncols.")
    return shape, qr_shapes(*shape[-2:], mode)


def _qr_vjp(node, g):
    shape, shapes = _qr_check_differentiable(node)
    grad = np.zeros(matrices(np.empty(shape, g.dtype)).shape, g.dtype)
    if grad.size:
        _run_per_matrix(qr_vjp_kernel, (*unpacked(node.saved[0], shapes),
                                        *unpacked(np.ascontiguousarray(g), shapes)), (grad,))
    return (grad.reshape(shape),)


def _qr_differentiable_vjp(node, g, saved):
    shape, shapes = _qr_check_differentiable(node)
    k = min(shape[-2:])
    (q, r), (gq, gr) = _tensor_parts(saved[0], shapes), _tensor_parts(g, shapes)
    u, gu, gv = r[..., :k], gr[..., :k], gr[..., k:]
    gq_total = gq + (q @ r[..., k:]) @ gv.mT
    inner = u @ gu.mT - gq_total.mT @ q
    left = gq_total + q @ (inner.tril() + inner.tril(-1).mT)
    grad_x = u._primitive("linalg_solve", left.mT, left=True).mT
    return (grad_x._primitive("concat", q @ gv, dim=len(shape) - 1, stack=False),)


# ---------------------------------------------------------------------------------------
# pinv: a primitive for PyTorch's closed-form VJP, which (unlike one through the SVD's) is
# finite where singular values repeat (an orthogonal matrix).

@_jit
def pinv_kernel(a, atol, rtol, hermitian, out):
    """Per matrix: the pseudo-inverse from the singular values (the eigenvalues where
    hermitian) above max(atol, rtol * the largest)."""
    for i in range(a.shape[0]):
        if hermitian:
            values, vectors = np.linalg.eigh(a[i])
            threshold = max(atol, rtol * np.abs(values).max()) if values.size else atol
            inverted = np.where(np.abs(values) > threshold, 1 / values, 0).astype(a.dtype)
            out[i] = (vectors * inverted.reshape(1, -1)) @ np.ascontiguousarray(vectors.T)
        else:
            u, s, vh = np.linalg.svd(a[i], full_matrices=False)
            threshold = max(atol, rtol * s[0]) if s.size else atol
            inverted = np.where(s > threshold, 1 / s, 0).astype(a.dtype)
            out[i] = np.ascontiguousarray(vh.T) @ (inverted.reshape(-1, 1)
                                                   * np.ascontiguousarray(u.T))


def pinv_tolerances(dtype, rows, cols, atol, rtol):
    """PyTorch's defaults: atol 0; rtol eps * max(m, n), or 0 where atol > 0 is given."""
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else float(np.finfo(dtype).eps) * max(rows, cols)
    return float(atol or 0.0), float(rtol)


def _pinv_infer(a, atol, rtol, hermitian):
    (check_square if hermitian else check_matrices)("linalg.pinv", a)
    return a.shape[:-2] + a.shape[-2:][::-1], a.dtype


def pinv(a, atol, rtol, hermitian):
    shape, _ = _pinv_infer(a, atol, rtol, hermitian)
    a3 = matrices(a)
    out = np.zeros((a3.shape[0],) + shape[-2:], a.dtype)
    if a3.size:
        try:
            pinv_kernel(a3, *pinv_tolerances(a.dtype, *a.shape[-2:], atol, rtol), hermitian, out)
        except np.linalg.LinAlgError:
            if not hermitian:
                _raise_not_finite("linalg.svd", a3)
            out[...] = np.nan  # (as eigh's)
    return out.reshape(shape)


@_jit
def pinv_vjp_kernel(a, p, g, grad):
    """PyTorch's (pinv_backward), per matrix, in its order for m <= n and m > n."""
    m, n = a.shape[1], a.shape[2]
    for i in range(a.shape[0]):
        x, pi = np.ascontiguousarray(a[i]), np.ascontiguousarray(p[i])
        pih, gh = np.ascontiguousarray(pi.T), np.ascontiguousarray(g[i].T)
        if m <= n:
            k = gh @ pi
            k_pih = k @ pih
            grad[i] = (-np.ascontiguousarray((pi @ k).T) + k_pih - (x @ pi) @ k_pih
                       + (pih @ pi) @ (gh - k @ x))
        else:
            k = pi @ gh
            pih_k = pih @ k
            grad[i] = (-np.ascontiguousarray((k @ pi).T) + ((gh - x @ k) @ pi) @ pih + pih_k
                       - (pih_k @ pi) @ x)


def _pinv_vjp(node, g):
    a, p = node.saved
    grad = np.zeros(matrices(a).shape, g.dtype)
    if grad.size:
        pinv_vjp_kernel(matrices(a), matrices(p), matrices(g), grad)
    return (grad.reshape(a.shape),)


def _pinv_differentiable_vjp(node, g, saved):
    a, p = saved
    pih, gh = p.mT, g.mT
    if a.shape[-2] <= a.shape[-1]:
        k = gh @ p
        k_pih = k @ pih
        return (-(p @ k).mT + k_pih - (a @ p) @ k_pih + (pih @ p) @ (gh - k @ a),)
    k = p @ gh
    pih_k = pih @ k
    return (-(k @ p).mT + ((gh - a @ k) @ p) @ pih + pih_k - (pih_k @ p) @ a,)


PRIMS = {prim.name: register(prim) for prim in (
    Primitive("linalg_eigh", "LinalgEighBackward0", _eigh_infer, eigh, _eigh_vjp,
              save=("out",), differentiable_vjp=_eigh_differentiable_vjp),
    Primitive("linalg_qr", "LinalgQrBackward0", _qr_infer, qr, _qr_vjp, save=("out",),
              differentiable_vjp=_qr_differentiable_vjp),
    Primitive("linalg_pinv", "LinalgPinvBackward0", _pinv_infer, pinv, _pinv_vjp,
              save=(0, "out"), differentiable_vjp=_pinv_differentiable_vjp),
    Primitive("linalg_svd", "LinalgSvdBackward0", _svd_infer, svd, _svd_vjp, save=("out",),
              differentiable_vjp=_svd_differentiable_vjp),
    Primitive("linalg_inv", "LinalgInvExBackward0", _inv_infer, inv, _inv_vjp, save=("out",),
              differentiable_vjp=_inv_differentiable_vjp),
    Primitive("linalg_solve", "LinalgSolveExBackward0", _solve_infer, solve, _solve_vjp,
              save=(0, 1, "out"), differentiable=(0, 1),
              differentiable_vjp=_solve_differentiable_vjp),
    Primitive("linalg_det", "LinalgDetBackward0", _batch_infer("linalg.det"), det, _det_vjp,
              save=(0, "out"), differentiable_vjp=_det_differentiable_vjp),
    Primitive("linalg_slogdet", "LinalgSlogdetBackward0", _batch_infer("linalg.slogdet"),
              lambda a: _slogdet(a)[1], _slogdet_vjp, save=(0,),
              differentiable_vjp=_slogdet_differentiable_vjp),
    # cholesky_ex's info: no gradient
    Primitive("linalg_cholesky_info", None, _cholesky_info_infer, _cholesky_info),
    # The sign of slogdet: no gradient (PyTorch's is that of a real constant).
    Primitive("linalg_slogdet_sign", None, _batch_infer("linalg.slogdet"),
              lambda a: _slogdet(a)[0]),
    Primitive("linalg_cholesky", "LinalgCholeskyExBackward0", _cholesky_infer, cholesky,
              _cholesky_vjp, save=("out",), differentiable_vjp=_cholesky_differentiable_vjp),
)}
