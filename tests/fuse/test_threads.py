"""Threads in compiled steps: which steps get threaded loops (`numba.prange`), and a process
forked after a threaded step. Every call of a step is compared with eager (`Pair` in
conftest.py).
"""
import numpy as np

import nbgrad
from nbgrad import nn, optim
from conftest import Pair, regression_batch, run_python, standard_step


# ---------------------------------------------------------------------------------------------
# Threaded loops, and fork.


def test_param_groups_and_a_parallel_sized_step():
    """Two param groups with their own lr/weight decay changed between calls, and a hidden
    layer of 256 x 512 elements: large enough for prange loops, which a step that calls
    BLAS does not use (see nbgrad._core.threads.PARALLEL_THRESHOLD)."""
    def build():
        model = nn.Sequential(nn.Linear(16, 512), nn.Tanh(), nn.Linear(512, 4))
        opt = optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                          {"params": model[2].parameters(), "lr": 1e-2, "weight_decay": 0.1}])
        return model, opt

    rng = np.random.default_rng(20)
    pair = Pair(build, lambda s: standard_step(s, nn.MSELoss()))
    for call in range(4):
        def hyper(s, call=call):
            s.opt.param_groups[1]["lr"] = 0.01 * (call + 1)
            s.opt.param_groups[0]["betas"] = (0.8, 0.99) if call >= 2 else (0.9, 0.999)
        pair(*regression_batch(rng, 256, 16, 4), before=hyper)
    assert pair.compiled.stats["specializations"] == 1
    assert pair.compiled.stats["fused_calls"] == 3
    assert "prange" not in pair.compiled.source


def test_a_large_step_without_blas_runs_its_loops_on_threads():
    def build():
        w = nbgrad.ones(1 << 17, requires_grad=True)
        return [w], optim.SGD([w], lr=0.01)

    def make_step(s):
        return standard_step(s, nn.MSELoss(), forward=lambda x: (s.params[0] * x).tanh())

    rng = np.random.default_rng(22)
    pair = Pair(build, make_step)
    for _ in range(3):
        x = nbgrad.tensor(rng.standard_normal(1 << 17).astype(np.float32))
        pair(x, 2 * x)
    assert "numba.prange" in pair.compiled.source
    assert pair.compiled.stats["fused_calls"] == 2


def test_a_process_forked_after_a_threaded_step_traces_it_again_serially():
    # GNU OpenMP terminates a forked child that uses its parent's thread pool: there the
    # threaded specialization must not fit, and the step runs from a new, serial one.
    script = """
import multiprocessing, nbgrad

w = nbgrad.ones(1 << 17, requires_grad=True)
opt = nbgrad.optim.SGD([w], lr=0.01)

def step(x):
    opt.zero_grad()
    loss = ((w * x).tanh() - x).pow(2).mean()
    loss.backward()
    opt.step()
    return loss

compiled = nbgrad.compile(step)
x = nbgrad.ones(1 << 17)

def work(_):
    return compiled(x).item(), compiled.stats["specializations"], "numba.prange" in compiled.source

if __name__ == "__main__":
    parent = [work(0) for _ in range(3)]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.map(work, range(1))[0]
    close = abs(child[0] - parent[-1][0]) < 1e-6
    print(parent[-1][1], parent[-1][2], child[1], child[2], close)
"""
    assert run_python(script) == ["1", "True", "2", "False", "True"]


def test_set_num_threads_sets_numbas_and_blas_threads_as_torch():
    """torch.set_num_threads/get_num_threads (in a process of its own: the counts are the
    process's): Numba's pool (at most its size) and every OpenBLAS threadpoolctl finds; the
    same values from threaded kernels (a large add, a sum, a matmul) at 1 thread and at 2;
    torch's errors."""
    script = """
import numba, numpy as np, threadpoolctl, nbgrad

def blas_threads():
    return sorted({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})

def run():
    x = nbgrad.tensor(np.linspace(-1, 1, 1 << 18, dtype=np.float32))
    m = nbgrad.tensor(np.linspace(-1, 1, 256 * 256, dtype=np.float32).reshape(256, 256))
    return [(x * 2 + 1).numpy(), x.sum().numpy(), (m @ m).numpy()]

print(nbgrad.get_num_threads() == numba.config.NUMBA_NUM_THREADS)
before = run()
nbgrad.set_num_threads(1)
print(nbgrad.get_num_threads(), numba.get_num_threads(), blas_threads())
after = run()
# (float32: OpenBLAS's one-thread kernel adds the 256 products in another order)
print(all(np.allclose(a, b, rtol=1e-5, atol=1e-3) for a, b in zip(before, after)))
nbgrad.set_num_threads(numba.config.NUMBA_NUM_THREADS + 3)
print(nbgrad.get_num_threads() - numba.config.NUMBA_NUM_THREADS,
      numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS,
      blas_threads() == [numba.config.NUMBA_NUM_THREADS + 3])
import torch  # (after nbgrad started its pool: see nbgrad._core.threads)
for bad in (0, -1, 2.0, "2", True):
    errors = []
    for lib in (nbgrad, torch):
        try:
            lib.set_num_threads(bad)
        except Exception as error:
            errors.append((type(error).__name__, str(error)))
    print(len(errors) == 2 and errors[0] == errors[1])
"""
    assert run_python(script) == ["True", "1", "1", "[1]", "True", "3", "True", "True"] + ["True"] * 5


def test_a_process_forked_after_a_step_with_threaded_winograd_traces_it_again_serially():
    # A step whose convolution takes Winograd with threaded transforms (forward and input
    # gradient, as eager mode runs them) is not a parallel kernel itself, but calls one: a
    # forked child must not reach it (the same rule as above).
    script = """
import multiprocessing, numpy as np, nbgrad

conv = nbgrad.nn.Conv2d(32, 32, 3, padding=1)
x = nbgrad.tensor(np.random.default_rng(0).standard_normal((2, 32, 64, 64)).astype(np.float32),
                  requires_grad=True)

def step(x):
    loss = conv(x).square().mean()
    loss.backward()
    return loss

compiled = nbgrad.compile(step)

def work(_):
    x.grad = None
    conv.zero_grad()
    loss = compiled(x).item()
    return loss, compiled.stats["specializations"], compiled.source.count(".size > 0)")

if __name__ == "__main__":
    parent = [work(0) for _ in range(3)]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.map(work, range(1))[0]
    close = abs(child[0] - parent[-1][0]) <= 1e-6 * abs(parent[-1][0])
    print(parent[-1][1], parent[-1][2], child[1], child[2], close)
"""
    assert run_python(script) == ["1", "2", "2", "0", "True"]
