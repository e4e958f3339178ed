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


# ---------------------------------------------------------------------------------------------
# Convolutions split over threads (nbgrad.ops.conv.conv_split_kernel).

def _small_cnn():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, 4))
    return model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def test_a_step_with_convolutions_split_over_threads(monkeypatch):
    """Every convolution of two or more images split over threads: the compiled step calls
    the split kernel and matches eager (deferred, fused after FUSE_AFTER calls) call by call;
    and the split kernel matches the serial ones."""
    from nbgrad.ops import conv as conv_ops
    monkeypatch.setattr(conv_ops, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(conv_ops, "PARALLEL_MIN_COLUMNS", 1)
    rng = np.random.default_rng(23)
    batches = [(nbgrad.tensor(rng.standard_normal((6, 3, 16, 16)).astype(np.float32)),
                nbgrad.tensor(rng.standard_normal((6, 4)).astype(np.float32))) for _ in range(5)]
    pair = Pair(_small_cnn, lambda s: standard_step(s, nn.MSELoss()))
    for x, y in batches:
        pair(x, y)
    assert "conv_split_kernel" in pair.compiled.source
    assert pair.compiled.stats["fused_calls"] == 4
    monkeypatch.setattr(conv_ops, "PARALLEL_MIN_WORK", 1 << 62)
    serial = Pair(_small_cnn, lambda s: standard_step(s, nn.MSELoss()))
    for x, y in batches:
        serial(x, y)
    assert "conv_split_kernel" not in serial.compiled.source
    for (split_loss, _), (serial_loss, _) in zip(pair.outputs, serial.outputs):
        np.testing.assert_allclose(split_loss.item(), serial_loss.item(), rtol=1e-5)


def test_a_process_forked_after_a_split_convolution_runs_it_serially():
    # As for threaded loops: the child must not run the parent's split kernels (GNU OpenMP
    # would terminate it), so its compiled step is traced again with the serial ones.
    script = """
import multiprocessing, numpy as np, nbgrad
from nbgrad.ops import conv as conv_ops

conv_ops.PARALLEL_MIN_WORK, conv_ops.PARALLEL_MIN_COLUMNS = 0, 1
conv = nbgrad.nn.Conv2d(3, 8, 3)
opt = nbgrad.optim.SGD(conv.parameters(), lr=0.01)
x = nbgrad.tensor(np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))

def step(x):
    opt.zero_grad()
    loss = conv(x).square().mean()
    loss.backward()
    opt.step()
    return loss

compiled = nbgrad.compile(step)

def work(_):
    return compiled(x).item(), compiled.stats["specializations"], "conv_split_kernel" in compiled.source

if __name__ == "__main__":
    parent = [work(0) for _ in range(3)]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.map(work, range(1))[0]
    eager = step(x).item()
    print(parent[-1][1], parent[-1][2], child[1], child[2], abs(child[0] - eager) < 1e-5)
"""
    assert run_python(script) == ["1", "True", "2", "False", "True"]
