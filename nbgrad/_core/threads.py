"""Starting Numba's thread pool, for the kernels that run over threads.

NOTE: libgomp's workers spin after each parallel region, waiting for the next one (by
default 300000 rounds, milliseconds). When there are as many threads as cores, that spinning
takes the cores OpenBLAS's threads need: on 2 cores a 784-512-512-10 MLP step at batch 512
went from 8 ms to 40 ms. A short spin keeps back-to-back regions cheap and gives the core
up soon after. Measured on 2 cores, four 1e6-element adds in a row / three matmuls each
followed by a 1e6-element add (serial: 400 us / 5.7 ms):
    GOMP_SPINCOUNT     100     1000     10000    default
    adds              408 us   237 us   225 us   226 us
    matmul + add      5.6 ms   5.8 ms   7.0 ms   25 ms
libgomp reads the variable once, when it is loaded, so it is set only while Numba loads it
and then put back: an OpenMP runtime loaded later (torch ships its own libgomp) keeps the
user's setting. A user who sets GOMP_SPINCOUNT or OMP_WAIT_POLICY keeps theirs.
NOTE: where the spin cannot be set, eager kernels and fused loops stay serial: when something
else started Numba's pool first (a user's own parallel function, `numba.get_num_threads()`),
or when a libgomp is already loaded. torch loads its own libgomp with RTLD_GLOBAL, so Numba's
OpenMP layer then runs on that one, with torch's default spin: a 512x512 matmul with a
threaded sum took 13 ms a step instead of 4. A program that imports torch too can call
`start()` first (the tests do); torch then runs on this libgomp, and its small ops, which
want a long spin, get slower (a digits MLP step: 135 -> 170-230 us). The pool is started
lazily, not at import, because GNU OpenMP is not fork-safe once its threads run: a process
forked after that keeps its kernels serial.
"""
import functools
import os

import numba
import threadpoolctl
from numba.np.ufunc import parallel as _numba_parallel

SPINCOUNT = "1000"
# Loops over at least this many elements run on all cores: eager flat elementwise kernels
# and contiguous sums, and the loops and sums of a fused step (numba.prange; the step is
# then compiled with parallel=True). Below it, waking the workers eats the gain. Measured
# on 2 cores, float32, serial vs threaded in us, best of 80 interleaved runs of 20 calls
# (the kernels called directly; the fused step through nbgrad.compile):
#                                           2**16        2**17        2**18
#     eager a + b                          8.1 vs 8.4  17.6 vs 12.8  34.1 vs 23.5
#     eager copy (the cheapest row)        5.2 vs 7.2  12.0 vs 10.5  23.0 vs 18.0
#     eager sum of one row                 4.8 vs 6.2   9.3 vs  8.7  18.4 vs 13.5
#     fused (a*2+1).sum() + backward      25.2 vs 29.4 40.6 vs 39.6  90.5 vs 64.4
# Eager kernels and fused loops cross over at the same size, so one threshold serves both.
# (Earlier: eager add 2**20 169 vs 86; the fused step 2**20 448 vs 229, with exp 2**17
# 289 vs 171.)
# NOTE: a fused step that calls BLAS keeps every loop serial. Numba's OpenMP workers spin
# after a parallel region and take a core from OpenBLAS's threads (see above): on 2 cores a
# fused 784-512-512-10 MLP step at batch 512 took 40.8 ms with parallel loops, 8.7 without
# (measured with libgomp's default spin).
PARALLEL_THRESHOLD = 1 << 17


@functools.cache
def start():
    """Start Numba's thread pool (once); returns whether parallel kernels may use it."""
    # Started already: elsewhere, or in the parent of this forked process, where GNU OpenMP
    # must not be used again (it terminates the process). NOTE: a private flag of Numba's;
    # without it, assume so.
    if getattr(_numba_parallel, "_is_initialized", True):
        return False
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        numba.get_num_threads()
        return numba.threading_layer() != "workqueue"
    if _libgomp_loaded():
        return False
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        numba.get_num_threads()  # loads the threading layer (and so libgomp)
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    # The workqueue layer (no OpenMP or TBB installed) starts threads too slowly to help.
    return numba.threading_layer() != "workqueue"


# A forked child asks again: it finds its parent's pool started, and stays serial (a fused
# step with threaded loops checks this on every call, and is traced again, serial).
os.register_at_fork(after_in_child=start.cache_clear)


def _libgomp_loaded():
    """Whether a GNU OpenMP runtime is already mapped into this process (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


# torch.set_num_threads's count, or None (the default: every core).
_requested_threads = None


def set_num_threads(count):
    """torch.set_num_threads: the threads of nbgrad's threaded kernels (Numba's pool, at most
    its size, NUMBA_NUM_THREADS) and of BLAS (the OpenBLAS that the matrix kernels call, SciPy's,
    and NumPy's, through threadpoolctl).
    NOTE: Numba's count is per calling thread: kernels that other Python threads run use all
    of its threads (PyTorch's count is the process's)."""
    global _requested_threads
    if type(count) is not int:
        raise RuntimeError(f"set_num_threads expects an int, but got {type(count).__name__}")
    if count <= 0:
        raise RuntimeError("set_num_threads expects a positive integer")
    threadpoolctl.threadpool_limits(count, user_api="blas")
    # (A pool that `start` did not start is not started here: the kernels stay serial.)
    if start() or getattr(_numba_parallel, "_is_initialized", False):
        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    _requested_threads = count


def get_num_threads():
    """torch.get_num_threads: the count set_num_threads was given, else the cores'."""
    return numba.config.NUMBA_NUM_THREADS if _requested_threads is None else _requested_threads
