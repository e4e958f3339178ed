"""BLAS's gemm for njit kernels: the one matrix product that the convolution, matmul and
linear kernels call, compiled once per dtype.

The library is OpenBLAS from the `scipy-openblas32` package (the build NumPy and SciPy ship,
as a package of its own), called through its CBLAS functions, which this module registers
with LLVM under symbols of its own (`nbgrad_cblas_sgemm`, `nbgrad_cblas_dgemm`): machine code
names them, so cached kernels link to them in every process, as to Numba's own helpers.
Why not SciPy's copy (Numba's `numba_xxgemm` wraps it): SciPy 1.17 pins OpenBLAS 0.3.30, and
0.3.31's SkylakeX kernels run the GEMMs of convolutions faster on AVX-512 (2 threads, float32,
the same CBLAS call on each library, ms, 0.3.30 -> 0.3.34: 64x576x3136 1.34 -> 1.26,
128x1152x784 1.25 -> 1.20, 256x2304x196 1.27 -> 1.26, 64x147x12544 1.55 -> 1.45; one shape
slower, 64x576x2048 0.92 -> 0.92-0.98).
NOTE: one call takes a block of a larger matrix by its leading dimension (no copy) and beta
(gradients accumulate in place), and compiles to a few instructions where each np.dot layout
compiles its own checks (Numba's np.dot on 2-D operands: 0.1-0.25 s of a cold compile per
calling kernel and orientation). Pointers go as integers.
"""
import ctypes
import importlib.util
import os

import llvmlite.binding as llvm
import numba
from numba import types

from .._core.kernel_support import typed
from .._core.unlinked import unlinked_helper

_ROW_MAJOR, _NO, _TRANSPOSED = 101, 111, 112  # CBLAS's enums

# How long OpenBLAS's idle threads wait for the next GEMM before they sleep: 2**16 cycles
# (~20 us) instead of its default 2**28 (~0.1 s). NOTE: waiting, a thread spins on
# sched_yield, and takes one of the two cores from the serial work between GEMMs (im2col,
# Winograd's transforms, batch norm, Python). ResNet-18 forward+backward at 8x3x64x64 ran
# in one of two modes per process, 62-66 ms or 90-96 ms (both threads busy all the time
# either way); with the short wait, 10 processes in a row all ran at 62-64 ms, and inference
# at 1x3x224x224 26.6-28.0 ms against 27.4-43.9. Shorter waits cost wake-ups between
# back-to-back GEMMs: Winograd's 16 (2**4: a 64-channel 56x56 convolution 1.40 -> 1.70 ms).
THREAD_TIMEOUT = "16"


def _load_library():
    """Load the library, its idle threads sleeping after THREAD_TIMEOUT (read once, at load;
    a user's OPENBLAS_THREAD_TIMEOUT or GOTO_THREAD_TIMEOUT stays theirs)."""
    # NOTE: not `import scipy_openblas32`: that loads the library (before the timeout is
    # set) with RTLD_GLOBAL, and SciPy's modules imported later would bind to its symbols.
    package = importlib.util.find_spec("scipy_openblas32").submodule_search_locations[0]
    lib_dir = os.path.join(package, "lib")
    path = os.path.join(lib_dir, next(name for name in sorted(os.listdir(lib_dir))
                                      if name.startswith("libscipy_openblas")))
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or "GOTO_THREAD_TIMEOUT" in os.environ:
        return ctypes.CDLL(path)
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    try:
        return ctypes.CDLL(path)
    finally:
        del os.environ["OPENBLAS_THREAD_TIMEOUT"]


def _load_gemms():
    """Register the library's sgemm and dgemm, and their strided batches, under nbgrad's
    symbols; their Numba types."""
    library = _load_library()
    gemms = []
    integer, pointer = types.intc, types.intp
    for name, scalar in (("sgemm", types.float32), ("dgemm", types.float64),
                         ("sgemm_batch_strided", types.float32),
                         ("dgemm_batch_strided", types.float64)):
        symbol = f"nbgrad_cblas_{name}"
        llvm.add_symbol(symbol, ctypes.cast(getattr(library, f"scipy_cblas_{name}"),
                                            ctypes.c_void_p).value)
        if name.endswith("batch_strided"):
            # (order, transa, transb, m, n, k, alpha, *a, lda, stride_a, *b, ldb, stride_b,
            #  beta, *c, ldc, stride_c, count)
            operands = (pointer, integer, integer) * 2 + (scalar, pointer, integer, integer,
                                                          integer)
        else:
            # (order, transa, transb, m, n, k, alpha, *a, lda, *b, ldb, beta, *c, ldc)
            operands = (pointer, integer) * 2 + (scalar, pointer, integer)
        gemms.append(types.ExternalFunction(symbol, types.void(
            integer, integer, integer, integer, integer, integer, scalar, *operands)))
    return gemms


_sgemm, _dgemm, _sgemm_batch, _dgemm_batch = _load_gemms()

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
    transa, transb = _TRANSPOSED if transpose_a else _NO, _TRANSPOSED if transpose_b else _NO
    a_address, b_address = a.ctypes.data + a_at * item, b.ctypes.data + b_at * item
    c_address = c.ctypes.data + c_at * item
    if item == 4:
        _sgemm(_ROW_MAJOR, transa, transb, m, n, k, scalars[alpha_at], a_address, lda,
               b_address, ldb, scalars[beta_at], c_address, ldc)
    else:
        _dgemm(_ROW_MAJOR, transa, transb, m, n, k, scalars[alpha_at], a_address, lda,
               b_address, ldb, scalars[beta_at], c_address, ldc)


@unlinked_helper
@_helper
def gemm_batch(count, m, n, k, a, a_at, a_stride, b, b_at, b_stride, c, c_at, c_stride, scalars,
               alpha_at, beta_at):
    """c[i] = a[i] @ b[i] + beta * c[i] for i < count: row-major, untransposed (m, k), (k, n)
    and (m, n) matrices, each stored whole (leading dimensions k, n, n), `*_stride` elements
    apart from offset `*_at`; alpha (1) and beta at offsets of `scalars`. One BLAS call:
    OpenBLAS gives each thread whole products, where one call per product splits each
    small product between the threads (measured, float32, 2 threads, ms: Winograd's 16
    products 64 x 64 by 64 x 784 0.84 -> 0.63, 128 x 128 by 128 x 196 0.87 -> 0.57)."""
    if count == 0 or m == 0 or n == 0:
        return
    if k == 0:  # (as gemm's: BLAS may not be asked for no products)
        keep = count < 0  # (False, not a literal: see gemm)
        for i in range(count):
            gemm(m, n, k, a, a_at, k, keep, b, b_at, n, keep, c, c_at + i * c_stride, n,
                 scalars, alpha_at, beta_at)
        return
    item = c.itemsize
    a_address, b_address = a.ctypes.data + a_at * item, b.ctypes.data + b_at * item
    c_address = c.ctypes.data + c_at * item
    if item == 4:
        _sgemm_batch(_ROW_MAJOR, _NO, _NO, m, n, k, scalars[alpha_at], a_address, k, a_stride,
                     b_address, n, b_stride, scalars[beta_at], c_address, n, c_stride, count)
    else:
        _dgemm_batch(_ROW_MAJOR, _NO, _NO, m, n, k, scalars[alpha_at], a_address, k, a_stride,
                     b_address, n, b_stride, scalars[beta_at], c_address, n, c_stride, count)
