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
