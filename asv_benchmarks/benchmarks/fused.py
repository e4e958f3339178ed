"""Fused training steps: `step = nbgrad.compile(train_step)`, one generated Numba function.

Workloads (each step: zero_grad, forward, loss, backward, optimizer update; returns the loss):

- one_parameter: the tutorial loop w * x, MSELoss, SGD(lr=0.01) on 5 elements;
- digits_mlp_sgd: the demo's 64-128-10 ReLU MLP, CrossEntropyLoss, SGD, batch 64;
- digits_mlp_adam: the same with Adam (the update loop nest carries more state);
- mlp_784_sgd: a 784-512-512-10 ReLU MLP, CrossEntropyLoss, SGD, batch 128.

- `FusedStep.time_step`: one fused call. setup() calls the compiled step a few times, so
  tracing and compiling (or loading from the cache) is never part of the timing.
- `FusedSpeedup.track_speedup`: eager time per step / fused time per step, both measured in
  the same process on identical copies of the workload ("ratio", > 1: fused is faster).
- Compile time of the digits MLP step. Numba's cache directory is fixed when a process
  starts, so these run a fresh Python process with its own NUMBA_CACHE_DIR and
  NBGRAD_CACHE_DIR: "cold" is the first process on empty cache directories, "warm" a second
  process on the same directories.
  - `CompileDigitsStep.track_compile_cold_s` / `track_compile_warm_s`: seconds of the first
    fused call in that process (trace, generate, compile or load: the step a user waits for);
  - `ColdProcess.time_cold_process` / `WarmProcess.time_warm_process`: the whole process (Python
    start, `import nbgrad`, building the model, the first fused call).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import timeit

import nbgrad
from nbgrad import nn, optim

from .common import classification, mlp, train_step


def _one_parameter():
    w = nbgrad.tensor([0.0], requires_grad=True)
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    return train_step(lambda inputs: w * inputs, nn.MSELoss(), optim.SGD([w], lr=0.01)), x, 2 * x


def _mlp(sizes, batch, make_optimizer=optim.SGD):
    def build():
        model = mlp(sizes)
        x, y = classification(batch, sizes[0], sizes[-1])
        optimizer = make_optimizer(model.parameters(), lr=0.01)
        return train_step(model, nn.CrossEntropyLoss(), optimizer), x, y

    return build


WORKLOADS = {
    "one_parameter": _one_parameter,
    "digits_mlp_sgd": _mlp((64, 128, 10), 64),
    "digits_mlp_adam": _mlp((64, 128, 10), 64, optim.Adam),
    "mlp_784_sgd": _mlp((784, 512, 512, 10), 128),
}


def _compiled(workload):
    """A warmed-up fused step of `workload` and its inputs; NotImplementedError (asv: skip)
    if the step does not fuse."""
    nbgrad.manual_seed(0)
    eager_step, x, y = WORKLOADS[workload]()
    step = nbgrad.compile(eager_step)
    for _ in range(5):  # the first call traces and compiles (or loads); the rest warm up
        step(x, y)
    if step.stats["fused_calls"] == 0:
        raise NotImplementedError(f"{workload} did not fuse:\n{step.explain()}")
    return step, x, y


class FusedStep:
    params = [list(WORKLOADS)]
    param_names = ["workload"]

    def setup(self, workload):
        self.step, self.x, self.y = _compiled(workload)

    def time_step(self, workload):
        self.step(self.x, self.y)


def _seconds_per_call(fn, repeat=5, min_time=0.02):
    """Best of `repeat` timings of enough calls to last >= min_time, per call."""
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < min_time:
        number *= 4
    return min(timer.repeat(repeat, number)) / number


class FusedSpeedup:
    params = [list(WORKLOADS)]
    param_names = ["workload"]

    def setup(self, workload):
        self.fused, self.x, self.y = _compiled(workload)
        nbgrad.manual_seed(0)
        self.eager, self.ex, self.ey = WORKLOADS[workload]()  # its own copy of the workload
        self.eager(self.ex, self.ey)
        self.eager(self.ex, self.ey)

    def track_speedup(self, workload):
        eager = _seconds_per_call(lambda: self.eager(self.ex, self.ey))
        fused = _seconds_per_call(lambda: self.fused(self.x, self.y))
        return eager / fused

    track_speedup.unit = "ratio"


# The process a user starts: import nbgrad, build the digits MLP step, and run it until it
# compiles: mode "compile" calls `nbgrad.compile(train_step)` once; mode "eager" calls the
# plain step until eager mode fuses its graph (the FUSE_AFTER-th call traces and compiles,
# nbgrad.fuse.deferred). It prints one JSON line with the seconds of each part (the
# compiling call is `first_step_s`) and the compile statistics.
FIRST_STEP_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
import numpy as np
import nbgrad
from nbgrad import nn, optim
imported = time.perf_counter()
nbgrad.manual_seed(0)
rng = np.random.default_rng(0)
if sys.argv[2] == "mlp":
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    x = nbgrad.tensor(rng.standard_normal((64, 64)).astype(np.float32))
else:  # the digits CNN of benchmarks/vision_models.py (found in sys.argv[3]), with Adam
    sys.path.insert(0, sys.argv[3])
    from benchmarks.vision_models import digits_cnn
    model = digits_cnn(nbgrad)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    x = nbgrad.tensor(rng.standard_normal((64, 1, 8, 8)).astype(np.float32))
y = nbgrad.tensor(rng.integers(0, 10, 64))
loss_fn = nn.CrossEntropyLoss()

def train_step(x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

if sys.argv[1] == "compile":
    step = nbgrad.compile(train_step)
    stats = step.stats
else:
    from nbgrad.fuse import deferred
    from nbgrad.fuse import graph
    step, stats = train_step, graph.stats
    for _ in range(deferred.FUSE_AFTER - 1):
        step(x, y)
before = time.perf_counter()
step(x, y)
first = time.perf_counter()
step(x, y)
second = time.perf_counter()
print(json.dumps(dict(import_s=imported - started, first_step_s=first - before,
                      second_step_s=second - first, to_first_step_s=first - started,
                      **stats)))
"""


def first_step_process(cache_root, mode="compile", model="mlp"):
    """Run FIRST_STEP_SCRIPT (`mode` "compile" or "eager"; `model` "mlp" (SGD) or "cnn"
    (Adam)) in a new process caching under `cache_root`; return its JSON report with
    `process_s`, the process's wall time, added."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = os.path.join(cache_root, "numba")
    env["NBGRAD_CACHE_DIR"] = os.path.join(cache_root, "nbgrad")
    started = timeit.default_timer()
    suite = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", FIRST_STEP_SCRIPT, mode, model, suite], env=env,
                          capture_output=True, text=True)
    wall = timeit.default_timer() - started
    if proc.returncode != 0:
        raise RuntimeError(f"first-step process failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_s"] = wall
    return report


class CompileDigitsStep:
    """Compile time of the digits MLP (SGD) and CNN (Adam) steps, cold and warm cache (see
    the module doc): fused by `nbgrad.compile` ("compile"), or its graph fused by eager mode
    ("eager")."""

    timeout = 900
    params = [["compile", "eager"], ["mlp", "cnn"]]
    param_names = ["mode", "model"]

    def setup_cache(self):
        reports = {}
        for mode in self.params[0]:
            for model in self.params[1]:
                with tempfile.TemporaryDirectory(prefix="nbgrad-asv-compile-") as root:
                    cold = first_step_process(root, mode, model)
                    warm = first_step_process(root, mode, model)
                reports[mode, model] = {"cold": cold, "warm": warm}
        return reports

    def track_compile_cold_s(self, reports, mode, model):
        return reports[mode, model]["cold"]["first_step_s"]

    track_compile_cold_s.unit = "seconds"

    def track_compile_warm_s(self, reports, mode, model):
        return reports[mode, model]["warm"]["first_step_s"]

    track_compile_warm_s.unit = "seconds"


class ColdProcess:
    """Wall time of a whole process up to its first fused step, on empty cache directories."""

    timeout = 600
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self):
        self.root = tempfile.mkdtemp(prefix="nbgrad-asv-cold-")

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_cold_process(self):
        first_step_process(tempfile.mkdtemp(dir=self.root))  # new, empty cache directories


class WarmProcess:
    """Wall time of a whole process up to its first fused step, on a warm cache."""

    timeout = 600
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self):
        self.root = tempfile.mkdtemp(prefix="nbgrad-asv-warm-")
        first_step_process(self.root)  # fills the cache

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_warm_process(self):
        first_step_process(self.root)
