"""Kernel-level tests: nbgrad's own exp against PyTorch's over its whole range and at the
edges, its float32 tanh, large arrays (which run on threads), the parallel elementwise kernels against the serial
ones, and sum/mean gradients as broadcast views.
"""

import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, run_python
from nbgrad._core import threads as _threads
from nbgrad.ops import elementwise

# Both implementations are within about 1 ulp of the exact result, so they may differ by 2
# to 3 ulp; in the subnormal range each rounds to the nearest subnormal, one step apart at most.
EXP_TOL = {"float32": 5e-7, "float64": 1e-15}
EDGES = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 0.34657359, -0.34657359, 20.0, -20.0,
         88.7, 88.72, 89.0, 100.0, -87.3, -100.0, -103.0, -103.9, -104.0, -105.0,
         709.7, 709.79, 710.0, 1000.0, -708.0, -740.0, -745.0, -745.1, -745.2, -746.0,
         -1000.0, np.inf, -np.inf, np.nan]


def _assert_exp_matches_torch(x):
    finfo = np.finfo(x.dtype)
    actual = nbgrad.tensor(x).exp().numpy()
    expected = torch.from_numpy(x).exp().numpy()
    np.testing.assert_allclose(actual, expected, rtol=EXP_TOL[x.dtype.name],
                               atol=finfo.smallest_subnormal, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_edges_match_torch(dtype):
    # inf -> inf, -inf -> 0, NaN -> NaN, overflow -> inf, underflow -> 0, subnormal results
    # (exp(-100) in float32, exp(-740) in float64), and both ends of the reduced range.
    _assert_exp_matches_torch(np.array(EDGES, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_matches_torch_over_its_whole_range(dtype):
    low, high = (-110.0, 90.0) if dtype == "float32" else (-750.0, 712.0)
    rng = np.random.default_rng(0)
    _assert_exp_matches_torch(np.concatenate([
        rng.uniform(low, high, 100_000), rng.uniform(-1.0, 1.0, 100_000),
        np.linspace(low, high, 100_001)]).astype(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sigmoid", "softmax", "log_softmax", "logsumexp"])
def test_exp_based_ops_at_edges_match_torch(dtype, name):
    # A NaN or +inf would make every element of a softmax NaN; -inf is a masked entry.
    x = np.array(EDGES if name == "sigmoid" else [e for e in EDGES if e < np.inf], dtype)
    args = () if name == "sigmoid" else (0,)
    actual = getattr(nbgrad.tensor(x), name)(*args).numpy()
    expected = getattr(torch.from_numpy(x), name)(*args).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-30, equal_nan=True)


TANH_EDGES = [0.0, -0.0, 1e-30, -1e-30, 1.4e-45, 2.0 ** -12, -(2.0 ** -12), 2.0 ** -12 * 1.0001,
              0.3, -0.5, 1.0, 9.0, -9.01, 20.0, 1e30, -1e30, np.inf, -np.inf, np.nan]


def test_tanh_float32_is_correctly_rounded():
    # kernel_support.tanh for float32 (elementwise tanh, GELU's tanh form, mish, the RNN
    # kernels): float64 arithmetic rounded once, so it equals float64 tanh rounded to float32;
    # every 9973rd float32 bit pattern (all exponents, both signs), and the edges: -0.0 and
    # NaN kept, tiny values as themselves, +-1 from 9 on.
    bits = np.arange(0, 2 ** 32, 9973, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), np.array(TANH_EDGES, np.float32)])
    actual = nbgrad.tensor(x).tanh().numpy()
    with np.errstate(invalid="ignore"):
        expected = np.tanh(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(actual, expected)
    numbers = ~np.isnan(x)  # (-0.0 stays -0.0; a NaN's sign is not compared)
    assert np.array_equal(np.signbit(actual[numbers]), np.signbit(expected[numbers]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_matches_torch(dtype):
    x = np.concatenate([np.array(TANH_EDGES), np.linspace(-12, 12, 20_001)]).astype(dtype)
    x_nb, x_torch = nbgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    x_nb.tanh().sum().backward()
    x_torch.tanh().sum().backward()
    tol = 2e-7 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(x_nb.detach().numpy(), x_torch.detach().numpy(), rtol=tol,
                               atol=0, equal_nan=True)
    np.testing.assert_allclose(x_nb.grad.numpy(), x_torch.grad.numpy(), rtol=tol * 4,
                               atol=tol, equal_nan=True)


LARGE = _threads.PARALLEL_THRESHOLD + 3  # odd, so threads get unequal shares


@pytest.mark.parametrize("name, fn, count", [
    ("add", lambda L, a, b: a + b, 2),
    ("mul", lambda L, a, b: a * b, 2),
    ("div", lambda L, a, b: a / b, 2),
    ("maximum", lambda L, a, b: L.maximum(a, b), 2),
    ("exp", lambda L, a: a.exp(), 1),
    ("sigmoid", lambda L, a: a.sigmoid(), 1),
    ("mean", lambda L, a: a.mean(), 1),
    ("sum_rows", lambda L, a: a.reshape(3, -1).sum(1), 1),
], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_arrays_match_torch(name, fn, count, dtype):
    rng = np.random.default_rng(1)
    size = LARGE - LARGE % 3 if name == "sum_rows" else LARGE
    arrays = [rng.uniform(0.5, 2.0, size).astype(dtype) for _ in range(count)]
    results = {}
    for lib in (nbgrad, torch):
        leaves = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = fn(lib, *leaves)
        out.backward(lib.ones_like(out) * 0.5)
        results[lib] = [out] + [leaf.grad for leaf in leaves]
    # Sums of 1e5 terms, added in a different order by each library.
    rtol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    for actual, expected in zip(results[nbgrad], results[torch]):
        assert_close(actual, expected, rtol=rtol, atol=0)


@pytest.mark.parametrize("reduce", ["sum", "mean", "sum_dim"])
def test_reduction_gradients_are_broadcast_views_in_eager_mode_and_stay_fused(reduce):
    # Eager: the gradient of a sum is a read-only view of one value (PyTorch's expand), and
    # a leaf's .grad made from it is a writable array of its own. Fused: the step compiles
    # (no fallback to eager) and gives the same gradients.
    def step(w, x):
        y = (w * x).exp()
        loss = y.sum(1).sum() if reduce == "sum_dim" else getattr(y, reduce)()
        loss.backward()
        return loss

    x = nbgrad.tensor(np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4))
    grads = []
    for run in (step, nbgrad.compile(step, fullgraph=True)):
        w = nbgrad.tensor(np.full((3, 4), 0.5, np.float32), requires_grad=True)
        for _ in range(2):
            w.grad = None
            run(w, x)
        assert w.grad.numpy().flags.writeable
        grads.append(w.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)

    leaf = nbgrad.tensor(np.ones(5, np.float32), requires_grad=True)
    getattr(leaf, "sum" if reduce == "sum_dim" else reduce)().backward()
    assert leaf.grad.numpy().flags.writeable and leaf.grad.numpy().base is None
    leaf.grad.numpy()[0] = 7.0  # its own memory: the other elements keep their value
    assert leaf.grad.numpy()[1] != 7.0


def _every_kernel():
    """(kernel name, argument names, result dtype, input dtype) for every expression of the
    table; rows without a float kernel (bitwise ops) run on int64."""
    for row in elementwise.TABLE:
        data = np.float32 if "f" in row.kinds else np.int64
        result = np.bool_ if row.result == "bool" else data
        yield row.name, row.inputs + row.params, result, data
        for wrt, grad in row.grads.items():
            if grad != "g":
                yield f"{row.name}_d{wrt}", elementwise._vjp_args(row, grad), np.float32, np.float32


@pytest.mark.parametrize("name, args, result_dtype, data_dtype", list(_every_kernel()),
                         ids=[case[0] for case in _every_kernel()])
def test_every_parallel_kernel_compiles_and_matches_the_serial_one(name, args, result_dtype, data_dtype):
    # The parallel variants compile on the first large array a user passes: a kernel that
    # Numba cannot parallelize must fail here, not there.
    rng = np.random.default_rng(2)
    boolean = name.startswith("logical")
    values = []
    for arg in args:
        if arg == "condition" or boolean:
            values.append(rng.random(LARGE) > 0.5)
        elif arg in ("lo", "hi"):
            values.append(np.float32(0.9 if arg == "lo" else 1.5))
        else:
            values.append(rng.uniform(0.5, 2.0, LARGE).astype(np.float32) if data_dtype == np.float32
                          else rng.integers(-50, 50, LARGE))
    kernels = elementwise.KernelPair(name, args)
    parallel, serial = np.empty(LARGE, result_dtype), np.empty(LARGE, result_dtype)
    kernels.flat_parallel(*values, parallel)
    kernels.flat(*values, serial)
    np.testing.assert_array_equal(parallel, serial)


def test_starting_the_thread_pool_leaves_the_environment_as_it_was():
    # GOMP_SPINCOUNT is set only while Numba loads libgomp; an OpenMP runtime loaded later
    # (torch's) must see the user's environment.
    threaded, layer, leaked = run_python(
        "import os, nbgrad._core.threads as t, numba; usable = t.start(); "
        "print(usable, numba.threading_layer(), 'GOMP_SPINCOUNT' in os.environ)")
    assert threaded == str(layer != "workqueue") and leaked == "False"


def test_a_thread_pool_started_elsewhere_keeps_large_kernels_serial_and_correct():
    # Its workers' spin is unknown (libgomp's default starves OpenBLAS), so nbgrad does not
    # use it; results are the same either way.
    threaded, correct = run_python(
        "import numba, numpy as np; numba.get_num_threads(); import nbgrad; "
        "from nbgrad._core import threads as _threads; x = np.ones(1 << 19, dtype=np.float32); "
        "y = (nbgrad.tensor(x) * 2).sum().item(); "
        "print(_threads.start(), y == float((x.astype(np.float64) * 2).sum()))")
    assert threaded == "False" and correct == "True"


def test_a_process_forked_after_threaded_kernels_runs_them_serially():
    # GNU OpenMP terminates a forked child that uses the parent's started pool; the child
    # must fall back to the serial kernels instead.
    script = """
import multiprocessing, numpy as np, nbgrad
from nbgrad._core import threads as _threads

def work(_):
    x = nbgrad.tensor(np.ones(1 << 19, dtype=np.float32))
    return (x * 2).sum().item(), _threads.start()

if __name__ == "__main__":
    parent = work(0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(work, range(2))
    print(parent[1], all(c == (parent[0], False) for c in children))
"""
    threaded_parent, children_ok = run_python(script)
    assert threaded_parent == "True" and children_ok == "True"


def _transposed(rng, *shape):
    """A float64 array of `shape` whose last two dimensions are swapped views (F-ordered)."""
    return np.swapaxes(rng.standard_normal(shape[:-2] + shape[:-3:-1]), -1, -2)


# Operands as matmul's gemm kernel reads them in place: C-ordered, transposed (F-ordered)
# matrices, batches of transposed matrices, one matrix broadcast over a batch; and others
# it copies (a column slice).
MATMUL_OPERANDS = {
    "C @ C": lambda rng: (rng.standard_normal((5, 7)), rng.standard_normal((7, 3))),
    "F @ F": lambda rng: (_transposed(rng, 5, 7), _transposed(rng, 7, 3)),
    "C @ F": lambda rng: (rng.standard_normal((5, 7)), _transposed(rng, 7, 3)),
    "batch F @ batch C": lambda rng: (_transposed(rng, 4, 5, 7), rng.standard_normal((4, 7, 3))),
    "broadcast @ batch": lambda rng: (rng.standard_normal((5, 7)), _transposed(rng, 4, 7, 3)),
    "batch @ broadcast batch": lambda rng: (rng.standard_normal((2, 4, 5, 7)),
                                            rng.standard_normal((1, 4, 7, 3))),
    "strided": lambda rng: (rng.standard_normal((5, 14))[:, ::2], rng.standard_normal((7, 3))),
    "vector @ batch F": lambda rng: (rng.standard_normal(7), _transposed(rng, 4, 7, 3)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(MATMUL_OPERANDS))
def test_matmul_of_transposed_and_broadcast_operands_matches_torch(case, dtype):
    a, b = (x.astype(dtype) for x in MATMUL_OPERANDS[case](np.random.default_rng(7)))
    results = {}
    for lib in (nbgrad, torch):
        leaves = [lib.from_numpy(x.copy() if lib is torch else x).requires_grad_() for x in (a, b)]
        out = lib.matmul(*leaves)
        out.backward(lib.from_numpy(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape))
                                    .astype(dtype)))
        results[lib] = [out] + [leaf.grad for leaf in leaves]
    tol = {"float32": 1e-5, "float64": 1e-12}[dtype]
    for got, want in zip(results[nbgrad], results[torch]):
        assert_close(got, want, rtol=tol, atol=tol)


def test_matmul_reads_transposed_and_broadcast_batches_in_place():
    from nbgrad.ops.linalg import _stored_batch
    rng = np.random.default_rng(0)
    swapped = _transposed(rng, 4, 5, 7)
    flat, transposed, stride = _stored_batch(swapped)
    assert transposed == 1 and stride == 35 and np.shares_memory(flat, swapped)
    broadcast = np.broadcast_to(rng.standard_normal((5, 7)), (4, 5, 7))
    flat, transposed, stride = _stored_batch(broadcast)
    assert transposed == 0 and stride == 0 and flat.size == 35
