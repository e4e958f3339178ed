"""Side-by-side timings: nbgrad eager vs PyTorch eager vs JAX jit, measured in one run.

Run from the repository root with ``python asv_benchmarks/compare.py`` (or ``make bench``).
Not a test: it prints a table of per-call times and ratios, and the goal for each row.
Every figure is a ratio against a peer measured in the same process, on the same machine.

Adding a workload: append a ``Workload`` to ``WORKLOADS`` with a builder per framework.
A builder receives the framework module and returns a zero-argument ``step`` callable; it
is called a few times to warm up (Numba compilation, JAX tracing) before it is timed.
Eager builders take the module as a parameter, so one function serves nbgrad and PyTorch.
"""

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, field
from typing import Callable, Optional

# Compare CPU against CPU even where a GPU build of JAX is installed.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

# ---------------------------------------------------------------------------------------
# Goals: how nbgrad's time should compare with PyTorch's (ratio = nbgrad / torch).


@dataclass(frozen=True)
class Goal:
    text: str
    check: Callable[[float], bool]


TINY = Goal("nbgrad >= 2x faster than torch", lambda r: r <= 0.5)
LARGE = Goal("nbgrad within 1.2x of torch", lambda r: r <= 1.2)
TRAIN_LARGE = Goal("nbgrad within 1.3x of torch", lambda r: r <= 1.3)


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


def eager_one_parameter(T):
    """The tutorial loop: w (1 element) * x (5 elements), MSELoss against y, SGD(lr=0.01)."""
    w = T.tensor([0.0], requires_grad=True)
    x = T.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = 2 * x
    loss_fn = T.nn.MSELoss()
    opt = T.optim.SGD([w], lr=0.01)

    def step():
        opt.zero_grad()
        loss = loss_fn(w * x, y)
        loss.backward()
        opt.step()

    return step


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

    def build(T):
        T.manual_seed(0)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [T.nn.Linear(n_in, n_out), T.nn.ReLU()]
        model = T.nn.Sequential(*layers[:-1])
        xa, ya = _classification_data(batch, sizes[0], sizes[-1])
        x, y = T.tensor(xa), T.tensor(ya)
        loss_fn = T.nn.CrossEntropyLoss()
        opt = getattr(T.optim, opt_name)(model.parameters(), lr=lr)

        def step():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

        return step

    return build


def jax_mlp_train(sizes, batch, opt_name, lr):
    def build(jax):
        jnp = jax.numpy
        rng = np.random.default_rng(0)
        params = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / np.sqrt(n_in)  # nn.Linear's default init range
            params.append((
                jnp.asarray(rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)),
                jnp.asarray(rng.uniform(-bound, bound, (n_out,)).astype(np.float32)),
            ))
        xa, ya = _classification_data(batch, sizes[0], sizes[-1])
        x, y = jnp.asarray(xa), jnp.asarray(ya.astype(np.int32))

        def loss(params):
            h = x
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            logp = jax.nn.log_softmax(h, axis=-1)
            return -jnp.take_along_axis(logp, y[:, None], axis=-1).mean()

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

    return build


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


def measure_interleaved(steps, repeat, min_time):
    """Median per-call time in microseconds for each step in `steps` (a dict).

    The frameworks take turns within each of the `repeat` rounds, so drift in machine load
    affects them alike.
    """
    timers = {k: calibrate(step, min_time) for k, step in steps.items()}
    runs = {k: [] for k in steps}
    for _ in range(repeat):
        for k, (timer, number) in timers.items():
            runs[k].append(timer.timeit(number) / number)
    return {k: statistics.median(v) * 1e6 for k, v in runs.items()}


def load_frameworks():
    mods = {}
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
    print(f"nbgrad {getattr(nb, '__version__', '?')}, numba {numba.__version__} "
          f"(numba threads: {numba.get_num_threads()}, "
          f"NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', '<unset>')})")
    if "torch" in mods:
        t = mods["torch"]
        # Left at PyTorch's defaults on purpose: we compare against torch as users get it.
        print(f"torch {t.__version__} (default threads: intra-op {t.get_num_threads()}, "
              f"inter-op {t.get_num_interop_threads()})")
    if "jax" in mods:
        j = mods["jax"]
        print(f"jax {j.__version__} on {j.devices()[0].platform} "
              f"(XLA CPU thread pool: default, all cores)")


def fmt_us(v):
    return "-" if v is None else f"{v:,.1f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def run_workloads(mods, workloads, repeat, min_time):
    cols = ["workload", "nbgrad us", "torch us", "jax us", "nb/torch", "nb/jax", "goal", "met"]
    rows = []
    for w in workloads:
        steps = {}
        for fw in ("nbgrad", "torch", "jax"):
            if fw not in mods or fw not in w.builders:
                continue
            try:
                steps[fw] = w.builders[fw](mods[fw])
                steps[fw]()
            except Exception as exc:  # keep going: one broken cell must not hide the rest
                print(f"  {w.name} [{fw}] failed: {type(exc).__name__}: {exc}")
                steps.pop(fw, None)
        times = dict.fromkeys(("nbgrad", "torch", "jax"))
        times.update(measure_interleaved(steps, repeat, min_time))
        nb, th = times["nbgrad"], times["torch"]
        met = "-" if nb is None or th is None else ("yes" if w.goal.check(nb / th) else "NO")
        row = [w.name, fmt_us(nb), fmt_us(th), fmt_us(times["jax"]),
               fmt_ratio(nb, th), fmt_ratio(nb, times["jax"]), w.goal.text, met]
        rows.append(row)
        print("  done:", w.name, flush=True)
    print_table(cols, rows)


def print_table(cols, rows):
    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cols, widths))))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) if i in (0, 6) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
    print(line)


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument("--only", default=None, help="run workloads whose name contains this")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start rows")
    args = p.parse_args(argv)
    repeat, min_time = (3, 0.05) if args.quick else (7, 0.2)

    mods = load_frameworks()
    describe(mods)
    workloads = [w for w in WORKLOADS if args.only is None or args.only in w.name]
    print(f"\nPer-call time, median of {repeat} interleaved runs of >= {min_time:g} s each "
          f"(ratio < 1: nbgrad is faster)")
    run_workloads(mods, workloads, repeat, min_time)
    if not args.no_cold:
        print("\nCold start: whole process wall time")
        run_cold_start()


if __name__ == "__main__":
    main()
