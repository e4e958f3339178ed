"""Side-by-side timings: nbgrad eager and fused vs PyTorch eager (and torch.compile) vs JAX
jit, measured in one run.

Run from the repository root with ``python asv_benchmarks/compare.py`` (or ``make bench``).
Not a test: it prints tables of per-call times and ratios, and the goal for each row:

- eager ops and eager training steps (nbgrad eager / torch eager);
- fused training steps: ``nbgrad.compile(train_step)`` against torch eager, JAX jit and
  ``torch.compile`` (when it compiles on this machine within a minute), goals in absolute time;
- compile time of the digits MLP fused step in a fresh process, cold and warm cache;
- cold start of a whole ``python -m nbgrad.examples.tour`` process.

Every figure is measured in the same run, on the same machine. The frameworks take turns
(interleaved rounds), and each turn starts after a pause (``--settle``, 0.3 s) so that the
thread pools of the framework that ran before (OpenBLAS and OpenMP workers spin for a while
after each call; XLA's pool likewise) are idle: on a machine with few cores a spinning idle
pool otherwise takes cores from the framework being timed. ``--isolate`` goes further: each
cell runs in its own process that imports only its framework. That is also the only way to
see nbgrad's threaded large-array kernels next to torch: in a process where torch has loaded
its OpenMP runtime, nbgrad keeps them serial (see nbgrad/_threads.py).

nbgrad's eager column is eager mode as a user gets it: ops that need a gradient are deferred
and, once a graph has come up ``deferred.FUSE_AFTER`` times (during the warm-up and
calibration here), its forward and backward run as one fused kernel; the optimizer step
runs one kernel per parameter (see nbgrad/fuse/deferred.py).

Adding a workload: append a ``Workload`` to ``WORKLOADS`` with a builder per framework.
A builder receives the framework module and returns a zero-argument ``step`` callable; it
is called a few times to warm up (Numba compilation, JAX tracing) before it is timed.
Eager builders take the module as a parameter, so one function serves nbgrad and PyTorch.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, field
from typing import Callable

# Compare CPU against CPU even where a GPU build of JAX is installed.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import vision_models  # noqa: E402  (imports no framework)

# ---------------------------------------------------------------------------------------
# Goals: how nbgrad's time should compare with PyTorch's (ratio = nbgrad / torch).


@dataclass(frozen=True)
class Goal:
    text: str
    check: Callable[[float], bool]


TINY = Goal("nbgrad >= 2x faster than torch", lambda r: r <= 0.5)
LARGE = Goal("nbgrad within 1.2x of torch", lambda r: r <= 1.2)
TRAIN_LARGE = Goal("nbgrad within 1.3x of torch", lambda r: r <= 1.3)
VISION = Goal("nbgrad <= 1.0x torch", lambda r: r <= 1.0)
HALF = Goal("nbgrad <= 0.5x torch", lambda r: r <= 0.5)


@dataclass
class Workload:
    name: str
    goal: Goal
    # framework name ("nbgrad", "torch", "jax") -> builder(module) -> step()
    builders: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Workload builders


def eager_tiny_chain(T):
    """y = x + 2; z = (y * y * 2).mean(); z.backward() on 3 elements."""
    x = T.tensor([1.0, 2.0, 3.0], requires_grad=True)

    def step():
        x.grad = None
        y = x + 2
        z = (y * y * 2).mean()
        z.backward()

    return step


def jax_tiny_chain(jax):
    jnp = jax.numpy

    def f(x):
        y = x + 2
        return (y * y * 2).mean()

    g = jax.jit(jax.value_and_grad(f))
    x = jnp.array([1.0, 2.0, 3.0], dtype=jnp.float32)
    return lambda: jax.block_until_ready(g(x))


# name -> (number of inputs, shape, eager function of tensors, jax function of (jnp, *arrays))
LARGE_OPS = {
    "add": (2, (1_000_000,), lambda a, b: a + b, lambda jnp, a, b: a + b),
    "mul": (2, (1_000_000,), lambda a, b: a * b, lambda jnp, a, b: a * b),
    "exp": (1, (1_000_000,), lambda a: a.exp(), lambda jnp, a: jnp.exp(a)),
    "matmul": (2, (512, 512), lambda a, b: a @ b, lambda jnp, a, b: a @ b),
}


def _inputs(n, shape):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def eager_op_fwd_bwd(op):
    """Forward and backward of one op; the loss is the sum of its output."""
    n, shape, fn, _ = LARGE_OPS[op]

    def build(T):
        xs = [T.tensor(a, requires_grad=True) for a in _inputs(n, shape)]

        def step():
            for x in xs:
                x.grad = None
            fn(*xs).sum().backward()

        return step

    return build


def jax_op_fwd_bwd(op):
    n, shape, _, jfn = LARGE_OPS[op]

    def build(jax):
        jnp = jax.numpy
        loss = lambda *xs: jfn(jnp, *xs).sum()  # noqa: E731
        g = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(n))))
        xs = [jnp.asarray(a) for a in _inputs(n, shape)]
        return lambda: jax.block_until_ready(g(*xs))

    return build


# Training steps: zero_grad, forward, loss, backward, optimizer step. Eager builders take the
# framework module (T.nn, T.optim); the JAX builders jit one whole step (value_and_grad plus
# the optimizer update) over a pytree of parameters and return the new state.


def _step_of(model, loss_fn, opt):
    """The training step the fused table times, in PyTorch's words; returns the loss."""

    def train_step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return train_step


def one_parameter_parts(T):
    """The tutorial loop (w * x, MSELoss, SGD(lr=0.01), 5 elements): (train_step, x, y)."""
    w = T.tensor([0.0], requires_grad=True)
    x = T.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    step = _step_of(lambda inputs: w * inputs, T.nn.MSELoss(), T.optim.SGD([w], lr=0.01))
    return step, x, 2 * x


def mlp_parts(sizes, batch, opt_name, lr):
    """ReLU MLP, CrossEntropyLoss, random data: a builder of (train_step, x, y)."""

    def parts(T):
        T.manual_seed(0)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [T.nn.Linear(n_in, n_out), T.nn.ReLU()]
        model = T.nn.Sequential(*layers[:-1])
        xa, ya = _classification_data(batch, sizes[0], sizes[-1])
        opt = getattr(T.optim, opt_name)(model.parameters(), lr=lr)
        return _step_of(model, T.nn.CrossEntropyLoss(), opt), T.tensor(xa), T.tensor(ya)

    return parts


def lstm_parts(T):
    """nn.LSTM(32, 64), one layer, on (T=48, B=8) sequences: MSE of the output, SGD."""
    T.manual_seed(0)
    lstm = T.nn.LSTM(32, 64)
    rng = np.random.default_rng(0)
    x = T.tensor(rng.standard_normal((48, 8, 32)).astype(np.float32))
    y = T.tensor(rng.standard_normal((48, 8, 64)).astype(np.float32))
    opt = T.optim.SGD(lstm.parameters(), lr=0.01)
    return _step_of(lambda inputs: lstm(inputs)[0], T.nn.MSELoss(), opt), x, y


def plain(parts):
    """Eager: call the step as written."""

    def build(T):
        train_step, x, y = parts(T)
        return lambda: train_step(x, y)

    return build


def eager_one_parameter(T):
    """The tutorial loop: w (1 element) * x (5 elements), MSELoss against y, SGD(lr=0.01)."""
    return plain(one_parameter_parts)(T)


def jax_one_parameter(jax):
    jnp = jax.numpy
    x = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=jnp.float32)
    y = 2 * x

    def loss(w):
        return ((w * x - y) ** 2).mean()

    @jax.jit
    def train_step(w):
        value, g = jax.value_and_grad(loss)(w)
        return w - 0.01 * g, value

    state = [jnp.zeros((1,), dtype=jnp.float32)]

    def step():
        state[0], value = jax.block_until_ready(train_step(state[0]))

    return step


def _classification_data(batch, features, classes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, features)).astype(np.float32)
    return x, rng.integers(0, classes, batch).astype(np.int64)


def eager_mlp_train(sizes, batch, opt_name, lr):
    """ReLU MLP of layer `sizes`, CrossEntropyLoss, random data, SGD or Adam."""
    return plain(mlp_parts(sizes, batch, opt_name, lr))


def jax_train(jax, loss, params, opt_name, lr):
    """A step of SGD or Adam (PyTorch's defaults) on `loss(params)`, jitted whole."""
    jnp = jax.numpy
    tmap = jax.tree_util.tree_map
    if opt_name == "SGD":
        @jax.jit
        def train_step(state):
            params = state
            value, g = jax.value_and_grad(loss)(params)
            return tmap(lambda p, gp: p - lr * gp, params, g), value

        state = [params]
    else:  # Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8
        b1, b2, eps = 0.9, 0.999, 1e-8

        @jax.jit
        def train_step(state):
            params, m, v, t = state
            value, g = jax.value_and_grad(loss)(params)
            t = t + 1
            m = tmap(lambda mi, gi: b1 * mi + (1 - b1) * gi, m, g)
            v = tmap(lambda vi, gi: b2 * vi + (1 - b2) * gi * gi, v, g)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            params = tmap(lambda p, mi, vi: p - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps),
                          params, m, v)
            return (params, m, v, t), value

        zeros = tmap(jnp.zeros_like, params)
        state = [(params, zeros, zeros, jnp.zeros((), dtype=jnp.float32))]

    def step():
        state[0], value = jax.block_until_ready(train_step(state[0]))

    return step


def _jax_uniform(jax, rng, shape, fan_in):
    """PyTorch's default init range for Linear and Conv2d weights and biases."""
    bound = 1.0 / np.sqrt(fan_in)
    return jax.numpy.asarray(rng.uniform(-bound, bound, shape).astype(np.float32))


def _jax_cross_entropy(jax, logits, y):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jax.numpy.take_along_axis(logp, y[:, None], axis=-1).mean()


def jax_mlp_train(sizes, batch, opt_name, lr):
    def build(jax):
        jnp = jax.numpy
        rng = np.random.default_rng(0)
        params = [(_jax_uniform(jax, rng, (n_in, n_out), n_in), _jax_uniform(jax, rng, (n_out,), n_in))
                  for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        xa, ya = _classification_data(batch, sizes[0], sizes[-1])
        x, y = jnp.asarray(xa), jnp.asarray(ya.astype(np.int32))

        def loss(params):
            h = x
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            return _jax_cross_entropy(jax, h, y)

        return jax_train(jax, loss, params, opt_name, lr)

    return build


# Vision: the models of benchmarks/vision_models.py, built by the same code for both.


def cnn_parts(opt_name, lr):
    """The digits CNN (batch 64 of 1x8x8 images), CrossEntropyLoss: (train_step, x, y)."""

    def parts(T):
        T.manual_seed(0)
        model = vision_models.digits_cnn(T)
        xa, ya = vision_models.images(64, 1, 8, 10)
        opt = getattr(T.optim, opt_name)(model.parameters(), lr=lr)
        return _step_of(model, T.nn.CrossEntropyLoss(), opt), T.tensor(xa), T.tensor(ya)

    return parts


def jax_cnn_train(opt_name, lr):
    def build(jax):
        jnp, lax = jax.numpy, jax.lax
        rng = np.random.default_rng(0)
        params = []
        for shape in ((16, 1, 3, 3), (32, 16, 3, 3)):
            fan_in = int(np.prod(shape[1:]))
            params.append((_jax_uniform(jax, rng, shape, fan_in),
                           _jax_uniform(jax, rng, shape[:1], fan_in)))
        params.append((_jax_uniform(jax, rng, (128, 10), 128), _jax_uniform(jax, rng, (10,), 128)))
        xa, ya = vision_models.images(64, 1, 8, 10)
        x, y = jnp.asarray(xa), jnp.asarray(ya.astype(np.int32))

        def conv_relu_pool(h, w, b):
            h = lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = jax.nn.relu(h + b[None, :, None, None])
            return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

        def loss(params):
            (w1, b1), (w2, b2), (w3, b3) = params
            h = conv_relu_pool(conv_relu_pool(x, w1, b1), w2, b2)
            return _jax_cross_entropy(jax, h.reshape(h.shape[0], -1) @ w3 + b3, y)

        return jax_train(jax, loss, params, opt_name, lr)

    return build


def resnet_train_parts(T):
    """ResNet-18 (10 classes), 8x3x64x64, CrossEntropyLoss, SGD with momentum."""
    T.manual_seed(0)
    model = vision_models.resnet18(T, num_classes=10)
    xa, ya = vision_models.images(8, 3, 64, 10)
    opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _step_of(model, T.nn.CrossEntropyLoss(), opt), T.tensor(xa), T.tensor(ya)


def resnet_fwd_bwd(T):
    """ResNet-18 forward and backward of the summed logits, 8x3x64x64, training mode."""
    T.manual_seed(0)
    model = vision_models.resnet18(T)
    x = T.tensor(vision_models.images(8, 3, 64, 1000)[0])

    def step():
        model.zero_grad()
        model(x).sum().backward()

    return step


def resnet_inference(T):
    """ResNet-18 forward under no_grad, eval mode, one 3x224x224 image."""
    T.manual_seed(0)
    model = vision_models.resnet18(T).eval()
    x = T.tensor(vision_models.images(1, 3, 224, 1000)[0])

    def step():
        with T.no_grad():
            model(x)

    return step


TRAINING = [
    ("train: one-parameter w*x, MSELoss, SGD, 5 elem", TINY,
     eager_one_parameter, jax_one_parameter),
    ("train: digits MLP 64-128-10, CE, SGD, batch 64", TINY,
     eager_mlp_train((64, 128, 10), 64, "SGD", 0.01),
     jax_mlp_train((64, 128, 10), 64, "SGD", 0.01)),
    ("train: digits MLP 64-128-10, CE, Adam, batch 64", TINY,
     eager_mlp_train((64, 128, 10), 64, "Adam", 1e-3),
     jax_mlp_train((64, 128, 10), 64, "Adam", 1e-3)),
    ("train: MLP 784-512-512-10, CE, SGD, batch 128", TRAIN_LARGE,
     eager_mlp_train((784, 512, 512, 10), 128, "SGD", 0.01),
     jax_mlp_train((784, 512, 512, 10), 128, "SGD", 0.01)),
    ("train: digits CNN, CE, Adam, batch 64", HALF,
     plain(cnn_parts("Adam", 1e-3)), jax_cnn_train("Adam", 1e-3)),
]

WORKLOADS = [
    Workload(
        "tiny: (x+2)^2*2 mean, fwd+bwd, 3 elem",
        TINY,
        {"nbgrad": eager_tiny_chain, "torch": eager_tiny_chain, "jax": jax_tiny_chain},
    ),
]
for _op, (_n, _shape, _fn, _jfn) in LARGE_OPS.items():
    _size = "x".join(map(str, _shape)) if len(_shape) > 1 else f"{_shape[0]:.0e}".replace("+0", "")
    WORKLOADS.append(
        Workload(
            f"large: {_op} fwd+bwd, {_size} f32",
            LARGE,
            {"nbgrad": eager_op_fwd_bwd(_op), "torch": eager_op_fwd_bwd(_op),
             "jax": jax_op_fwd_bwd(_op)},
        )
    )
for _name, _goal, _eager, _jax in TRAINING:
    WORKLOADS.append(Workload(_name, _goal, {"nbgrad": _eager, "torch": _eager, "jax": _jax}))
WORKLOADS.append(Workload("train: LSTM 32-64, T=48 B=8, MSE, SGD", TRAIN_LARGE,
                          {"nbgrad": plain(lstm_parts), "torch": plain(lstm_parts)}))
for _name, _build in (("vision: ResNet-18 fwd+bwd, 8x3x64x64 f32", resnet_fwd_bwd),
                      ("vision: ResNet-18 no_grad fwd, 1x3x224x224 f32", resnet_inference)):
    WORKLOADS.append(Workload(_name, VISION, {"nbgrad": _build, "torch": _build}))

# ---------------------------------------------------------------------------------------
# Timing


def calibrate(step, min_time):
    """Warm `step` up, then return a timeit.Timer for it and a call count lasting >= min_time.

    The garbage collector stays enabled while timing (as in real use), unlike timeit's default.
    """
    for _ in range(3):  # warm-up: compile, trace, fill caches
        step()
    timer = timeit.Timer(step, setup="gc.enable()", globals={"gc": gc})
    number = 1
    while True:
        t = timer.timeit(number)
        if t >= min_time:
            return timer, number
        number *= 2 if t <= 0 else max(2, min(10, int(min_time / t * 1.2) + 1))


SETTLE_S = 0.3  # pause before each framework's turn (see the module docstring)


def measure_interleaved(steps, repeat, min_time, settle=None):
    """Median per-call time in microseconds for each step in `steps` (a dict).

    The frameworks take turns within each of the `repeat` rounds, so drift in machine load
    affects them alike. Each turn starts `settle` seconds after the previous one ended, so
    the worker threads the previous framework left spinning have gone to sleep.
    """
    settle = SETTLE_S if settle is None else settle
    timers = {}
    for k, step in steps.items():
        time.sleep(settle)
        timers[k] = calibrate(step, min_time)
    runs = {k: [] for k in steps}
    for _ in range(repeat):
        for k, (timer, number) in timers.items():
            time.sleep(settle)
            runs[k].append(timer.timeit(number) / number)
    return {k: statistics.median(v) * 1e6 for k, v in runs.items()}


def load_frameworks():
    mods = {}
    # NOTE: nbgrad's thread pool is not started here before torch loads. torch would then
    # share nbgrad's libgomp, with its short spin, and run slower than it does on its own
    # (digits step 135 -> 170-230 us). In this process nbgrad's large kernels therefore stay
    # serial (see nbgrad._core.threads); --isolate times each framework in a process of its own.
    import nbgrad

    mods["nbgrad"] = nbgrad
    try:
        import torch

        mods["torch"] = torch
    except ImportError:
        print("torch not installed: its column is left empty")
    try:
        import jax

        mods["jax"] = jax
    except ImportError:
        print("jax not installed: its column is left empty")
    return mods


def describe(mods):
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"os.cpu_count() = {os.cpu_count()}")
    import numba

    nb = mods["nbgrad"]
    # NOTE: the config value, not numba.get_num_threads(): that starts Numba's thread pool,
    # and a pool nbgrad did not start itself keeps its kernels serial (see nbgrad._core.threads).
    print(f"nbgrad {getattr(nb, '__version__', '?')}, numba {numba.__version__} "
          f"(numba threads: {numba.config.NUMBA_NUM_THREADS}, "
          f"NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', '<unset>')})")
    from nbgrad._core import threads as _threads

    # Starts nothing where another OpenMP runtime is already loaded (then it says no).
    print("nbgrad threaded large-array kernels: " + (
        "on" if _threads.start() else
        "off in this process (an OpenMP runtime was loaded before nbgrad's; --isolate shows "
        "them on)"))
    if "torch" in mods:
        t = mods["torch"]
        # Left at PyTorch's defaults on purpose: we compare against torch as users get it.
        print(f"torch {t.__version__} (default threads: intra-op {t.get_num_threads()}, "
              f"inter-op {t.get_num_interop_threads()})")
    if "jax" in mods:
        j = mods["jax"]
        print(f"jax {j.__version__} on {j.devices()[0].platform} "
              f"(XLA CPU thread pool: default, all cores)")
    try:
        import threadpoolctl

        for pool in threadpoolctl.threadpool_info():
            print(f"{pool['internal_api']} {pool.get('architecture', '')} "
                  f"({pool['num_threads']} threads) in {os.path.basename(pool['filepath'])}")
    except ImportError:
        pass
    print("OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: "
          + ("unset for this run" if not any(n in os.environ for n in _OPENBLAS_OVERRIDES)
             else "set"))


def load():
    """The 1-minute load average: on a small machine, other processes skew every timing."""
    try:
        return f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)"
    except OSError:
        return ""


def fmt_us(v):
    return "-" if v is None else f"{v:,.1f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def run_workloads(mods, workloads, repeat, min_time, isolate=False, rounds=1):
    cols = ["workload", "nbgrad us", "torch us", "jax us", "nb/torch", "nb/jax", "goal", "met"]
    rows = []
    for w in workloads:
        steps = {}
        times = dict.fromkeys(("nbgrad", "torch", "jax"))
        if isolate:
            columns = [fw for fw in times if fw in mods and fw in w.builders]
            times.update(isolated_cells(w.name, columns, repeat, min_time, rounds))
        for fw in ("nbgrad", "torch", "jax"):
            if isolate or fw not in mods or fw not in w.builders:
                continue
            try:
                steps[fw] = w.builders[fw](mods[fw])
                steps[fw]()
            except Exception as exc:  # keep going: one broken cell must not hide the rest
                print(f"  {w.name} [{fw}] failed: {type(exc).__name__}: {exc}")
                steps.pop(fw, None)
        if steps:
            times.update(measure_interleaved(steps, repeat, min_time))
        nb, th = times["nbgrad"], times["torch"]
        met = "-" if nb is None or th is None else ("yes" if w.goal.check(nb / th) else "NO")
        row = [w.name, fmt_us(nb), fmt_us(th), fmt_us(times["jax"]),
               fmt_ratio(nb, th), fmt_ratio(nb, times["jax"]), w.goal.text, met]
        rows.append(row)
        print("  done:", w.name, load(), flush=True)
    print_table(cols, rows)


def print_table(cols, rows, left=(0, 6)):
    """Columns whose index is in `left` are left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(c.ljust(w) if i in left else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cols, widths))))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
    print(line)


# ---------------------------------------------------------------------------------------
# Fused training steps: nbgrad.compile(train_step) against torch eager, JAX jit and
# torch.compile. The goals (issue 4) are absolute times per step for the nbgrad fused column.


def nbgrad_fused(parts):
    def build(nb):
        train_step, x, y = parts(nb)
        step = nb.compile(train_step)
        for _ in range(3):  # trace and compile (or load from the cache), then fused calls
            step(x, y)
        if step.stats["fused_calls"] == 0:
            raise RuntimeError("the step did not fuse: " + step.explain().replace("\n", "; "))
        return lambda: step(x, y)

    return build


TORCH_COMPILE_LIMIT_S = 60.0


class Unavailable(Exception):
    pass


def torch_compiled(parts):
    def build(torch):
        train_step, x, y = parts(torch)
        step = torch.compile(train_step)
        started = time.perf_counter()
        step(x, y)
        took = time.perf_counter() - started
        if took > TORCH_COMPILE_LIMIT_S:
            raise Unavailable(f"its first call took {took:.0f} s "
                              f"(> {TORCH_COMPILE_LIMIT_S:g} s)")
        print(f"    torch.compile: first call (compiling) took {took:.1f} s", flush=True)
        return lambda: step(x, y)

    return build


@dataclass(frozen=True)
class AbsoluteGoal:
    text: str
    check: Callable[[dict], bool]  # {column: us or None} -> met


FUSED_COLUMNS = ("nbgrad fused", "torch", "jax", "torch.compile")
FUSED_MODULE = {"nbgrad fused": "nbgrad", "torch": "torch", "jax": "jax",
                "torch.compile": "torch"}

# (row name, goal, builder of (train_step, x, y) given nbgrad or torch, JAX builder)
FUSED = [
    ("fused: one-parameter w*x, MSELoss, SGD, 5 elem",
     AbsoluteGoal("<= 3 us", lambda t: t["nbgrad fused"] <= 3.0),
     one_parameter_parts, jax_one_parameter),
    ("fused: digits MLP 64-128-10, CE, SGD, batch 64",
     AbsoluteGoal("<= 50 us", lambda t: t["nbgrad fused"] <= 50.0),
     mlp_parts((64, 128, 10), 64, "SGD", 0.01),
     jax_mlp_train((64, 128, 10), 64, "SGD", 0.01)),
    ("fused: MLP 784-512-512-10, CE, SGD, batch 128",
     AbsoluteGoal("<= 2.4 ms", lambda t: t["nbgrad fused"] <= 2400.0),
     mlp_parts((784, 512, 512, 10), 128, "SGD", 0.01),
     jax_mlp_train((784, 512, 512, 10), 128, "SGD", 0.01)),
    ("fused: digits CNN, CE, Adam, batch 64",
     AbsoluteGoal("faster than JAX jit",
                  lambda t: t["jax"] is not None and t["nbgrad fused"] < t["jax"]),
     cnn_parts("Adam", 1e-3), jax_cnn_train("Adam", 1e-3)),
    ("fused: ResNet-18, CE, SGD momentum, 8x3x64x64",
     AbsoluteGoal("<= 0.8x torch eager",
                  lambda t: t["torch"] is not None and t["nbgrad fused"] <= 0.8 * t["torch"]),
     resnet_train_parts, None),
]


def fused_builders(parts, jax_builder):
    """The builder of each column (no JAX column where `jax_builder` is None)."""
    builders = {"nbgrad fused": nbgrad_fused(parts), "torch": plain(parts), "jax": jax_builder,
                "torch.compile": torch_compiled(parts)}
    return {column: build for column, build in builders.items() if build is not None}


def cell_main(name, column, repeat, min_time):
    """--cell: time one cell of a table in this process (which imports only that framework)
    and print the median per-call time as one JSON line."""
    import importlib

    try:
        eager = next((w for w in WORKLOADS if w.name == name), None)
        if eager is not None:
            step = eager.builders[column](importlib.import_module(column))
        else:
            _, _, parts, jax_builder = next(row for row in FUSED if row[0] == name)
            step = fused_builders(parts, jax_builder)[column](
                importlib.import_module(FUSED_MODULE[column]))
        step()
        us = measure_interleaved({column: step}, repeat, min_time, settle=0.0)[column]
        print(json.dumps({"us": us}))
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))


def isolated_cells(name, columns, repeat, min_time, rounds):
    """{column: median time} of `rounds` isolated cells per column, the columns taking turns
    process by process (the machine's slow spells, which last a process or longer, then fall
    on each column alike); prints each round's ratio of the first column to the second."""
    found = {column: [] for column in columns}
    for _ in range(rounds):
        for column in columns:
            kind, value = isolated_cell(name, column, repeat, min_time)
            if kind == "us":
                found[column].append(value)
            else:
                print(f"  {name} [{column}] failed: {value}", flush=True)
    if rounds > 1 and len(columns) > 1 and len(found[columns[0]]) == len(found[columns[1]]):
        ratios = [a / b for a, b in zip(found[columns[0]], found[columns[1]])]
        print(f"  {name}: {columns[0]}/{columns[1]} per round: "
              + " ".join(f"{r:.2f}" for r in ratios), flush=True)
    return {column: statistics.median(values) for column, values in found.items() if values}


def isolated_cell(name, column, repeat, min_time):
    """Run cell_main in a new process; return ("us", value) or (kind of failure, text)."""

    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--cell", name,
                           "--column", column, "--repeat", str(repeat),
                           "--min-time", str(min_time)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("    torch.compile"):
            print(line, flush=True)
    try:
        ((kind, value),) = json.loads(proc.stdout.strip().splitlines()[-1]).items()
        return kind, value
    except (IndexError, ValueError):
        return "error", f"exit status {proc.returncode}: {proc.stderr[-1000:]}"


def run_fused(mods, repeat, min_time, only=None, isolate=False, rounds=1):
    cols = ["workload", "nb fused us", "torch us", "jax us", "t.compile us", "fused/torch",
            "fused/jax", "fused/t.compile", "goal", "met"]
    rows = []
    torch_compile_ok = True
    for name, goal, parts, jax_builder in FUSED:
        if only is not None and only not in name:
            continue
        builders = fused_builders(parts, jax_builder)
        times = dict.fromkeys(FUSED_COLUMNS)
        steps = {}
        usable = [column for column in FUSED_COLUMNS if column in builders
                  and FUSED_MODULE[column] in mods
                  and (column != "torch.compile" or torch_compile_ok)]
        failed = []
        if isolate:
            times.update(isolated_cells(name, usable, repeat, min_time, rounds))
            failed = [column for column in usable if times[column] is None]
        for column in [] if isolate else usable:
            try:
                steps[column] = builders[column](mods[FUSED_MODULE[column]])
                steps[column]()
                continue
            except Unavailable as exc:
                value = str(exc)
            except Exception as exc:  # one broken cell must not hide the rest
                value = f"{type(exc).__name__}: {exc}"
            steps.pop(column, None)
            failed.append(column)
            print(f"  {name} [{column}] failed: {value}", flush=True)
        if "torch.compile" in failed:
            print("    torch.compile is unavailable on this machine: its column is "
                  "skipped from here on", flush=True)
            torch_compile_ok = False
        if steps:
            times.update(measure_interleaved(steps, repeat, min_time))
        fused, th, jx, tc = (times[c] for c in FUSED_COLUMNS)
        met = "-" if fused is None else ("yes" if goal.check(times) else "NO")
        rows.append([name, fmt_us(fused), fmt_us(th), fmt_us(jx), fmt_us(tc),
                     fmt_ratio(fused, th), fmt_ratio(fused, jx), fmt_ratio(fused, tc),
                     goal.text, met])
        print("  done:", name, load(), flush=True)
    if rows:
        print_table(cols, rows, left=(0, 8))


# ---------------------------------------------------------------------------------------
# Compile time of the digits MLP fused step: a new process (Python start, import nbgrad,
# build the model, call the compiled step) with its own NUMBA_CACHE_DIR and NBGRAD_CACHE_DIR,
# first on empty directories (cold), then again on the same ones (warm). The process is
# benchmarks/fused.py's FIRST_STEP_SCRIPT, which asv tracks too.

COMPILE_COLD_GOAL_S = 5.0
COMPILE_WARM_GOAL_S = 0.5


def run_compile_time(warm_runs=3, cold_runs=3):
    """Cold: the median of `cold_runs` processes, each on empty caches (this machine's speed
    swings by 1.6x within minutes, so one cold process is a coin flip); warm: the best of
    `warm_runs` processes on the last cold run's caches."""
    from benchmarks.fused import first_step_process

    rows = []
    for model, mode, what in (
            ("mlp", "compile", "MLP: nbgrad.compile(train_step), first call"),
            ("mlp", "eager", "MLP: eager step, the call that fuses its graph"),
            ("cnn", "compile", "CNN: nbgrad.compile(train_step), first call"),
            ("cnn", "eager", "CNN: eager step, the call that fuses its graph")):
        colds = []
        try:
            for _ in range(cold_runs):
                with tempfile.TemporaryDirectory(prefix="nbgrad-compile-") as cache_root:
                    colds.append(first_step_process(cache_root, mode, model))
                    warms = [first_step_process(cache_root, mode, model)
                             for _ in range(warm_runs)] if len(colds) == cold_runs else []
        except Exception as exc:
            print(f"compile-time measurement ({model}, {mode}) failed: {exc}")
            continue
        colds.sort(key=lambda r: r["first_step_s"])
        cold = colds[len(colds) // 2]
        warm = min(warms, key=lambda r: r["first_step_s"])
        print(f"  {what}, cold: " + " ".join(f"{r['first_step_s']:.2f}" for r in colds) + " s")
        rows += [_compile_row(f"{what}: cold (median of {cold_runs})", cold, COMPILE_COLD_GOAL_S),
                 _compile_row(f"{what}: warm (best of {warm_runs})", warm, COMPILE_WARM_GOAL_S)]
    cols = ["digits MLP (SGD) / CNN (Adam) step, batch 64, new process", "step s", "compile s",
            "cache hit/miss", "import s", "process s", "goal (step)", "met"]
    print_table(cols, rows, left=(0, 6))
    print("step s: the call that compiles (trace, generate, compile or load the kernels): the "
          "first call of\nthe compiled step, or the eager step's call number "
          "deferred.FUSE_AFTER; compile s: that call's\ncompile_time_s; cold: empty "
          "NUMBA_CACHE_DIR and NBGRAD_CACHE_DIR; warm: a later process, same dirs;\n"
          "import s: import nbgrad; process s: the whole process")


def _compile_row(label, r, goal):
    return [label, f"{r['first_step_s']:.2f}", f"{r['compile_time_s']:.2f}",
            f"{r['cache_hits']}/{r['cache_misses']}", f"{r['import_s']:.2f}",
            f"{r['process_s']:.2f}", f"<= {goal:g} s", "yes" if r["first_step_s"] <= goal else "NO"]


# ---------------------------------------------------------------------------------------
# Vision, in processes of their own (one framework each): peak memory of a ResNet-18
# forward+backward, and the convolution layers of ResNet-18 one by one with their achieved
# GFLOP/s next to the BLAS's sgemm.

SUITE_DIR = os.path.dirname(os.path.abspath(__file__))

PEAK_SCRIPT = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[2])
T = importlib.import_module(sys.argv[1])
from benchmarks import vision_models

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

T.manual_seed(0)
model = vision_models.resnet18(T)
x = T.tensor(vision_models.images(8, 3, 64, 1000)[0])
model(x).sum().backward()  # warm-up: kernels compiled, pools and caches filled
model.zero_grad()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size
model(x).sum().backward()
print(json.dumps({"peak_mb": (status("VmHWM") - before) / 2**20}))
"""

PEAK_GOAL = 1.2  # nbgrad's peak over torch's


def run_peak_memory():
    peaks = {}
    for fw in ("nbgrad", "torch"):
        proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, fw, SUITE_DIR],
                              capture_output=True, text=True)
        try:
            peaks[fw] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]
        except (IndexError, ValueError):
            print(f"peak memory [{fw}] failed: {proc.stderr[-1000:]}")
    if len(peaks) < 2:
        return
    ratio = peaks["nbgrad"] / peaks["torch"]
    print_table(["ResNet-18 fwd+bwd, 8x3x64x64: peak RSS above the start", "nbgrad MB",
                 "torch MB", "nb/torch", "goal", "met"],
                [["one forward and backward after a warm-up", f"{peaks['nbgrad']:.0f}",
                  f"{peaks['torch']:.0f}", f"{ratio:.2f}", f"<= {PEAK_GOAL:g}x",
                  "yes" if ratio <= PEAK_GOAL else "NO"]])


# ResNet-18's convolutions at batch 8 on 64x64 images: (name, in, out, kernel, stride,
# padding, input size).
RESNET_CONVS = [
    ("conv1 7x7/2", 3, 64, 7, 2, 3, 64),
    ("layer1 3x3", 64, 64, 3, 1, 1, 16),
    ("layer2 3x3/2", 64, 128, 3, 2, 1, 16),
    ("layer2 1x1/2 down", 64, 128, 1, 2, 0, 16),
    ("layer2 3x3", 128, 128, 3, 1, 1, 8),
    ("layer3 3x3", 256, 256, 3, 1, 1, 4),
    ("layer4 3x3", 512, 512, 3, 1, 1, 2),
]

CONV_SCRIPT = r"""
import importlib, json, sys, timeit
import numpy as np
T = importlib.import_module(sys.argv[1])
layers = json.loads(sys.argv[2])

def seconds(fn):
    fn(); fn()
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < 0.05:
        number *= 2
    return min(timer.repeat(5, number)) / number

rng = np.random.default_rng(0)
result = {}
if sys.argv[1] == "nbgrad":
    # (nbgrad's matmul of 1024x1024 float32: one call of the GEMM its kernels call)
    a = T.tensor(rng.standard_normal((1024, 1024)).astype(np.float32))
    result["sgemm_gflops"] = 2 * 1024 ** 3 / seconds(lambda: a @ a) / 1e9
for name, cin, cout, k, stride, pad, size in layers:
    x = T.tensor(rng.standard_normal((8, cin, size, size)).astype(np.float32), requires_grad=True)
    w = T.tensor(rng.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.1,
                 requires_grad=True)
    conv = lambda: T.nn.functional.conv2d(x, w, stride=stride, padding=pad)
    with T.no_grad():
        out = conv()
        forward = seconds(conv)
    g = T.tensor(rng.standard_normal(tuple(out.shape)).astype(np.float32))

    def both():
        x.grad = w.grad = None
        conv().backward(g)

    result[name] = {"forward": forward, "both": seconds(both),
                    "flops": 2.0 * 8 * cout * out.shape[2] * out.shape[3] * cin * k * k}
print(json.dumps(result))
"""


def run_conv_layers():
    results = {}
    for fw in ("nbgrad", "torch"):
        proc = subprocess.run([sys.executable, "-c", CONV_SCRIPT, fw, json.dumps(RESNET_CONVS)],
                              capture_output=True, text=True)
        try:
            results[fw] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"conv layers [{fw}] failed: {proc.stderr[-1000:]}")
    if len(results) < 2:
        return
    nb, th = results["nbgrad"], results["torch"]
    rows = []
    for name, *_ in RESNET_CONVS:
        flops = nb[name]["flops"]
        rows.append([name, f"{nb[name]['forward'] * 1e3:.2f}", f"{th[name]['forward'] * 1e3:.2f}",
                     f"{flops / nb[name]['forward'] / 1e9:.1f}",
                     f"{flops / th[name]['forward'] / 1e9:.1f}",
                     f"{nb[name]['both'] * 1e3:.2f}", f"{th[name]['both'] * 1e3:.2f}",
                     f"{3 * flops / nb[name]['both'] / 1e9:.1f}",
                     fmt_ratio(nb[name]["both"], th[name]["both"])])
    print_table(["conv2d, batch 8", "fwd ms nb", "fwd ms torch", "fwd GF/s nb", "fwd GF/s torch",
                 "f+b ms nb", "f+b ms torch", "f+b GF/s nb", "f+b nb/torch"], rows, left=(0,))
    print(f"sgemm 1024^3 through nbgrad's GEMM (scipy-openblas32): {nb['sgemm_gflops']:.1f} GFLOP/s; "
          "f+b counts 3x the forward's flops (input and weight gradients)")


# ---------------------------------------------------------------------------------------
# Cold start: a whole `python -m nbgrad.examples.tour` process, with an empty and then a
# warm Numba cache.

COLD_GOAL_S = 10.0
WARM_GOAL_S = 1.5


def time_tour(cache_root):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = os.path.join(cache_root, "numba")
    env["NBGRAD_CACHE_DIR"] = os.path.join(cache_root, "nbgrad")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nbgrad.examples.tour"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-2000:])
        print(proc.stderr[-4000:])
        raise RuntimeError(f"tour exited with status {proc.returncode}")
    return wall


def run_cold_start(warm_runs=3):
    cols = ["process: python -m nbgrad.examples.tour", "wall s", "goal", "met"]
    with tempfile.TemporaryDirectory(prefix="nbgrad-cold-") as cache_root:
        try:
            cold = time_tour(cache_root)
            warm = min(time_tour(cache_root) for _ in range(warm_runs))
        except Exception as exc:
            print(f"cold-start measurement failed: {exc}")
            return
    rows = [
        ["cold: empty NUMBA_CACHE_DIR (compiles everything)", f"{cold:.2f}",
         f"< {COLD_GOAL_S:g} s", "yes" if cold < COLD_GOAL_S else "NO"],
        [f"warm: same cache dir again (best of {warm_runs})", f"{warm:.2f}",
         f"< {WARM_GOAL_S:g} s", "yes" if warm < WARM_GOAL_S else "NO"],
    ]
    print_table(cols, rows)


def main(argv=None):
    global SETTLE_S
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument("--only", default=None,
                   help="run the table rows whose name contains this (e.g. 'fused', 'train')")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start rows")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the fused compile-time rows")
    p.add_argument("--no-vision-extra", action="store_true",
                   help="skip the ResNet-18 peak memory and conv-layer GFLOP/s tables")
    p.add_argument("--settle", type=float, default=SETTLE_S,
                   help="seconds of pause before each framework's turn (default %(default)s)")
    p.add_argument("--isolate", action="store_true",
                   help="time each cell in its own process importing only its framework (no "
                        "other thread pools or OpenMP runtime at all; not interleaved)")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --isolate: time each cell in this many processes, the columns "
                        "taking turns, and report the medians (default %(default)s)")
    # Internal: one cell of a table, run by --isolate in a new process.
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)
    p.add_argument("--column", default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--min-time", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    repeat, min_time = (3, 0.05) if args.quick else (7, 0.2)
    if args.cell is not None:
        cell_main(args.cell, args.column, args.repeat or repeat, args.min_time or min_time)
        return
    SETTLE_S = args.settle

    mods = load_frameworks()
    describe(mods)
    print(f"frameworks take turns; each turn starts after a {SETTLE_S:g} s pause so that the "
          "others' thread pools are idle")
    workloads = [w for w in WORKLOADS if args.only is None or args.only in w.name]
    if workloads:
        how = (f"each cell in its own process (median of {args.rounds})" if args.isolate else
               f"median of {repeat} interleaved runs of >= {min_time:g} s each")
        print(f"\nPer-call time, {how} (ratio < 1: nbgrad is faster)")
        run_workloads(mods, workloads, repeat, min_time, args.isolate, args.rounds)
    if any(args.only is None or args.only in row[0] for row in FUSED):
        how = (f"each cell in its own process (median of {args.rounds})" if args.isolate else
               f"median of {repeat} interleaved runs of >= {min_time:g} s each")
        print(f"\nFused training steps: nbgrad.compile(train_step) per call, {how} "
              f"(ratio < 1: nbgrad fused is faster)")
        run_fused(mods, repeat, min_time, args.only, args.isolate, args.rounds)
    if not args.no_vision_extra and (args.only is None or args.only in "vision"):
        print("\nVision, each framework in a process of its own")
        run_peak_memory()
        run_conv_layers()
    if not args.no_compile:
        print("\nCompile time of the digits MLP and CNN fused steps, in a new process")
        run_compile_time()
    if not args.no_cold:
        print("\nCold start: whole process wall time")
        run_cold_start()


# NOTE: some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE to work around old OpenBLAS
# builds; they force a slower kernel on the current one that NumPy/SciPy (and so Numba's
# np.dot) use. PyTorch (its own BLAS) and JAX (XLA) ignore them, so comparing fairly means
# removing both for this process, as the machine's notes advise for benchmarking (never in
# tests or CI). The BLAS kernel actually in use is printed in the header.
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _without_openblas_overrides():
    if any(name in os.environ for name in _OPENBLAS_OVERRIDES):
        env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_OVERRIDES}
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    _without_openblas_overrides()
    main()
