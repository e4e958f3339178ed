"""BLAS's gemm for njit kernels: the one matrix product that the convolution, matmul and
linear kernels call, compiled once per dtype.

NOTE: numba's own BLAS entry (its helper library's wrapper of SciPy's cython_blas gemm,
which np.dot calls): it takes leading dimensions (a block of a larger matrix needs no copy)
and beta (gradients accumulate in place), and a call compiles to a few instructions where
each np.dot layout compiles its own checks (Numba's np.dot on 2-D operands: 0.1-0.25 s of a
cold compile per calling kernel and orientation). Pointers go as integers (x86-64 passes both
alike); the C function is: (kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb,
*beta, *c, ldc), column-major.
"""
import numba
from numba import types

from .._core.kernel_support import typed
from .._core.unlinked import unlinked_helper

_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp))
# (Character codes as ints: `ord` in a kernel compiles Numba's unicode support.)
_NO, _TRANSPOSED, _SINGLE, _DOUBLE = ord("n"), ord("t"), ord("s"), ord("d")

_helper = numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)


@unlinked_helper
@_helper
def gemm(m, n, k, a, a_at, lda, transpose_a, b, b_at, ldb, transpose_b, c, c_at, ldc, scalars,
         alpha_at, beta_at):
    """c = op(a) @ op(b) + beta * c for row-major (m, n) c, (m, k) op(a), (k, n) op(b) at
    offsets of flat arrays, with leading dimensions (op transposes where asked), through
    BLAS; alpha (1) and beta at offsets of `scalars`. NOTE: callers pass the transposes as
    values computed at run time, not as literal False/True: each literal combination would
    compile gemm again (three orientations: 0.3 s more of a cold compile)."""
    if m == 0 or n == 0:
        return
    if k == 0:
        zero = typed(0.0, c)
        for r in range(m * (scalars[beta_at] == 0)):
            for t in range(n):
                c[c_at + r * ldc + t] = zero
        return
    item = c.itemsize
    # Row-major c = op(a) op(b) is column-major c.T = op(b).T op(a).T: b first.
    status = _xxgemm(_SINGLE if item == 4 else _DOUBLE, _TRANSPOSED if transpose_b else _NO,
                     _TRANSPOSED if transpose_a else _NO, n, m, k,
                     scalars.ctypes.data + alpha_at * item, b.ctypes.data + b_at * item, ldb,
                     a.ctypes.data + a_at * item, lda, scalars.ctypes.data + beta_at * item,
                     c.ctypes.data + c_at * item, ldc)
    if status != 0:
        raise RuntimeError("no BLAS gemm: numba could not load SciPy's cython_blas")
