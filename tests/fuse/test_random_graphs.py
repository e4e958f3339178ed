"""Random small graphs in nbgrad's three modes against PyTorch (values and every .grad).

A graph is 1-3 leaves of small random shapes (size-1 dims, broadcasting) and 3-8 ops drawn
from the elementwise, reduction, matmul, shape, normalization and loss ops below, each op applied to
earlier results; the loss is (out * upstream).sum() of the last result. It runs (a) eagerly
with deferral off, (b) deferred in a loop past FUSE_AFTER (fresh leaf values each iteration,
so the fused graph kernel runs), and (c) as an `nbgrad.compile` step called three times
with fresh argument tensors; every run is compared with torch.

`test_random_graphs_match_torch` is a seeded, bounded Hypothesis test. As a script,
`python tests/fuse/test_random_graphs.py --graphs N [--seed S]` runs N graphs in batches, each
batch in a child process (a crash is counted and the batch goes on after it), and prints how
many graphs, mismatches and crashes, over which ops and modes.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import warnings

import numpy as np

MODES = ("immediate", "deferred", "compile")
COMPILE_CALLS = 3
TOLERANCE = {"float32": (2e-4, 2e-5), "float64": (1e-9, 1e-11)}


# ---------------------------------------------------------------------------------------------
# The ops: name -> (arity, applies(shapes) -> bool, fn(L, params, *tensors), params(draw, shapes))
# ---------------------------------------------------------------------------------------------

def _any(*shapes):
    return True


def _broadcast(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _dim(draw, shape):
    return draw.integer(-len(shape), len(shape) - 1)


def _no_params(draw, *shapes):
    return {}


def _dim_keepdim(draw, shape):
    return {"dim": _dim(draw, shape), "keepdim": draw.integer(0, 1) == 1}


def _matmul_ok(a, b):
    if not a or not b:
        return False
    k_a = a[-1]
    k_b = b[0] if len(b) == 1 else b[-2]
    if k_a != k_b:
        return False
    return _broadcast(a[:-2], b[:-2]) if len(a) > 1 and len(b) > 1 else True


def _clamp_params(draw, shape):
    side = draw.integer(0, 2)
    low = draw.choice([-0.5, 0.0, -1.0])
    return {"min": None if side == 1 else low, "max": None if side == 0 else low + 1.0}


def _reshape_params(draw, shape):
    return {"flat": draw.integer(0, 1) == 1}


def _reshape(L, p, a):
    # flat: reshape(-1); otherwise split the last dimension into (1, n) (a size-1 dim)
    return a.reshape(-1) if p["flat"] else a.reshape(*a.shape[:-1], 1, a.shape[-1])


def _transpose_params(draw, shape):
    return {"dims": (_dim(draw, shape), _dim(draw, shape))}


def _slice(L, p, a):
    return a[..., ::2] if p["step"] else a[..., 1:]


OPS = {
    # elementwise unary (domains kept safe: log/sqrt/div of positive values)
    "exp": (1, _any, lambda L, p, a: a.clamp(-4.0, 4.0).exp(), _no_params),
    "log": (1, _any, lambda L, p, a: (a.abs() + 0.5).log(), _no_params),
    "sqrt": (1, _any, lambda L, p, a: (a * a + 0.25).sqrt(), _no_params),
    "tanh": (1, _any, lambda L, p, a: a.tanh(), _no_params),
    "sigmoid": (1, _any, lambda L, p, a: a.sigmoid(), _no_params),
    "relu": (1, _any, lambda L, p, a: a.relu(), _no_params),
    "sin": (1, _any, lambda L, p, a: a.sin(), _no_params),
    "cos": (1, _any, lambda L, p, a: a.cos(), _no_params),
    "neg": (1, _any, lambda L, p, a: -a, _no_params),
    "pow": (1, _any, lambda L, p, a: a ** p["exponent"],
            lambda d, s: {"exponent": d.choice([2, 3, 2.0])}),
    "scalar": (1, _any, lambda L, p, a: (a * p["scale"] + p["shift"]) / 2.0,
               lambda d, s: {"scale": d.choice([0.5, -2.0, 3]), "shift": d.choice([1, -0.25, 0.0])}),
    "clamp": (1, _any, lambda L, p, a: a.clamp(min=p["min"], max=p["max"]), _clamp_params),
    # elementwise binary, with broadcasting
    "add": (2, _broadcast, lambda L, p, a, b: a + b, _no_params),
    "sub": (2, _broadcast, lambda L, p, a, b: a - b, _no_params),
    "mul": (2, _broadcast, lambda L, p, a, b: a * b, _no_params),
    "div": (2, _broadcast, lambda L, p, a, b: a / (b * b + 1.0), _no_params),
    "maximum": (2, _broadcast, lambda L, p, a, b: L.maximum(a, b), _no_params),
    "minimum": (2, _broadcast, lambda L, p, a, b: L.minimum(a, b), _no_params),
    "where": (2, _broadcast, lambda L, p, a, b: L.where(a > b, a, b * 0.5), _no_params),
    # reductions
    "sum": (1, _any, lambda L, p, a: a.sum(), _no_params),
    "sum_dim": (1, lambda s: len(s) > 0, lambda L, p, a: a.sum(p["dim"], keepdim=p["keepdim"]), _dim_keepdim),
    "mean_dim": (1, lambda s: len(s) > 0 and 0 not in s,
                 lambda L, p, a: a.mean(p["dim"], keepdim=p["keepdim"]), _dim_keepdim),
    "amax_dim": (1, lambda s: len(s) > 0 and 0 not in s,
                 lambda L, p, a: a.amax(p["dim"], keepdim=p["keepdim"]), _dim_keepdim),
    "softmax": (1, lambda s: len(s) > 0, lambda L, p, a: a.softmax(p["dim"]), _dim_keepdim),
    "log_softmax": (1, lambda s: len(s) > 0, lambda L, p, a: a.log_softmax(p["dim"]), _dim_keepdim),
    # matmul
    "matmul": (2, _matmul_ok, lambda L, p, a, b: a @ b, _no_params),
    "matmul_self_T": (1, lambda s: len(s) >= 2, lambda L, p, a: a @ a.transpose(-1, -2), _no_params),
    # shape ops
    "reshape": (1, lambda s: len(s) > 0, _reshape, _reshape_params),
    "transpose": (1, lambda s: len(s) >= 2,
                  lambda L, p, a: a.transpose(*p["dims"]), _transpose_params),
    "unsqueeze": (1, lambda s: len(s) < 4, lambda L, p, a: a.unsqueeze(0), _no_params),
    "squeeze": (1, _any, lambda L, p, a: a.squeeze(), _no_params),
    "slice": (1, lambda s: len(s) > 0, _slice, lambda d, s: {"step": d.integer(0, 1) == 1}),
    "expand": (1, lambda s: len(s) < 3, lambda L, p, a: a.expand(2, *a.shape), _no_params),
    # more of what models use (session 25: 300 graphs of the whole table matched torch)
    "abs": (1, _any, lambda L, p, a: a.abs(), _no_params),
    "gelu": (1, _any, lambda L, p, a: L.nn.functional.gelu(a), _no_params),
    "silu": (1, _any, lambda L, p, a: L.nn.functional.silu(a), _no_params),
    "softplus": (1, _any, lambda L, p, a: L.nn.functional.softplus(a), _no_params),
    "cumsum": (1, lambda s: len(s) > 0, lambda L, p, a: a.cumsum(p["dim"]), _dim_keepdim),
    "var_dim": (1, lambda s: len(s) > 0 and 0 not in s,
                lambda L, p, a: a.var(p["dim"], keepdim=p["keepdim"], correction=0), _dim_keepdim),
    "logsumexp": (1, lambda s: len(s) > 0 and 0 not in s,
                  lambda L, p, a: a.logsumexp(p["dim"], keepdim=p["keepdim"]), _dim_keepdim),
    "flip": (1, lambda s: len(s) > 0, lambda L, p, a: a.flip(p["dim"]), _dim_keepdim),
    "permute": (1, lambda s: len(s) >= 2,
                lambda L, p, a: a.permute(*reversed(range(a.ndim))), _no_params),
    "cat": (2, lambda a, b: len(a) > 0 and len(a) == len(b) and a[1:] == b[1:],
            lambda L, p, a, b: L.cat([a, b], 0), _no_params),
    "stack": (2, lambda a, b: a == b, lambda L, p, a, b: L.stack([a, b], -1), _no_params),
    "max_dim": (1, lambda s: len(s) > 0 and 0 not in s,
                lambda L, p, a: a.max(p["dim"], keepdim=p["keepdim"]).values, _dim_keepdim),
    "norm_dim": (1, lambda s: len(s) > 0,
                 lambda L, p, a: (a + 0.5).norm(dim=p["dim"], keepdim=p["keepdim"]), _dim_keepdim),
    "mean": (1, _any, lambda L, p, a: a.mean(), _no_params),
    "mse": (2, lambda a, b: a == b, lambda L, p, a, b: L.nn.functional.mse_loss(a, b), _no_params),
    "layer_norm": (1, lambda s: len(s) > 0 and s[-1] > 1,
                   lambda L, p, a: L.nn.functional.layer_norm(a, a.shape[-1:]), _no_params),
}
OP_NAMES = sorted(OPS)


class RandomDraw:
    """Draws from a NumPy generator (script mode)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def integer(self, low, high):
        return int(self.rng.integers(low, high + 1))

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]


class HypothesisDraw:
    """Draws from Hypothesis' `data` (the test)."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def integer(self, low, high):
        return self.data.draw(self.st.integers(low, high))

    def choice(self, options):
        return self.data.draw(self.st.sampled_from(options))


def make_graph(draw):
    """A random program: dtype, leaf shapes, and a list of (op, input indices, params); value
    i of the program is leaf i, then the result of op i - len(leaves)."""
    dtype = draw.choice(["float32", "float64"])
    base = tuple(draw.integer(1, 3) for _ in range(draw.integer(0, 3)))
    leaves = []
    for _ in range(draw.integer(1, 3)):
        # a suffix of the base shape, some dims set to 1: broadcasts against the others
        shape = base[draw.integer(0, len(base)):]
        shape = tuple(1 if draw.integer(0, 3) == 0 else side for side in shape)
        leaves.append(shape)
    shapes = list(leaves)
    ops = []
    target = draw.integer(3, 8)
    for _ in range(4 * target):  # an op that does not apply to the latest value is drawn again
        if len(ops) == target:
            break
        name = draw.choice(OP_NAMES)
        arity, applies, _, params = OPS[name]
        # inputs: the latest value and, for binary ops, one that fits it (else a unary op)
        first = len(shapes) - 1
        if arity == 2:
            fits = [i for i in range(len(shapes)) if applies(shapes[first], shapes[i])]
            if not fits:
                continue
            inputs = (first, draw.choice(fits))
        else:
            if not applies(shapes[first]):
                continue
            inputs = (first,)
        op_params = params(draw, *[shapes[i] for i in inputs])
        shapes.append(_shape_of(name, op_params, [shapes[i] for i in inputs]))
        ops.append((name, inputs, op_params))
    return {"dtype": dtype, "leaves": leaves, "ops": ops}


def _shape_of(name, params, shapes):
    """The result shape, from torch."""
    import torch
    return tuple(OPS[name][2](torch, params, *[torch.zeros(s) for s in shapes]).shape)


def run_graph(L, graph, arrays, upstream):
    """Run `graph` with library `L` on leaves made from `arrays`: (out, leaves)."""
    leaves = [L.from_numpy(a.copy()).requires_grad_() for a in arrays]
    values = list(leaves)
    for name, inputs, params in graph["ops"]:
        values.append(OPS[name][2](L, params, *[values[i] for i in inputs]))
    out = values[-1]
    (out * L.from_numpy(upstream.copy())).sum().backward()
    return out, leaves


def graph_inputs(graph, iteration, seed):
    rng = np.random.default_rng([seed, iteration])
    arrays = [rng.standard_normal(s).astype(graph["dtype"]) for s in graph["leaves"]]
    return arrays, rng


def describe(graph):
    return f"{graph['dtype']} leaves {graph['leaves']} ops " + \
        " -> ".join(f"{name}{list(inputs)}{params or ''}" for name, inputs, params in graph["ops"])


def _check(graph, out, leaves, expected, where):
    t_out, t_leaves = expected
    rtol, atol = TOLERANCE[graph["dtype"]]
    a = np.asarray(out.detach().numpy())
    e = t_out.detach().numpy()
    assert a.shape == e.shape and a.dtype == e.dtype, \
        f"{where}: out {a.shape} {a.dtype}, torch {e.shape} {e.dtype}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{where}: value")
    for i, (leaf, t_leaf) in enumerate(zip(leaves, t_leaves)):
        if t_leaf.grad is None:
            assert leaf.grad is None, f"{where}: leaf {i} has a gradient, torch's has none"
            continue
        assert leaf.grad is not None, f"{where}: leaf {i} has no gradient"
        np.testing.assert_allclose(np.asarray(leaf.grad.numpy()), t_leaf.grad.numpy(), rtol=rtol,
                                   atol=atol, equal_nan=True, err_msg=f"{where}: grad of leaf {i}")


def check_graph(graph, seed, modes=MODES):
    """Run `graph` in each mode against torch; raises AssertionError naming the mode on a
    mismatch. Returns {mode: fused kernel runs} (how often the fused path ran)."""
    import torch

    import nbgrad
    from nbgrad.fuse import deferred
    from nbgrad.fuse import graph as fused_graph

    def torch_run(arrays, upstream):
        return run_graph(torch, graph, arrays, upstream)

    def upstream_for(arrays, rng):
        with torch.no_grad():
            shape = tuple(torch_run_forward(arrays).shape)
        return rng.standard_normal(shape).astype(graph["dtype"])

    def torch_run_forward(arrays):
        values = [torch.from_numpy(a.copy()) for a in arrays]
        for name, inputs, params in graph["ops"]:
            values.append(OPS[name][2](torch, params, *[values[i] for i in inputs]))
        return values[-1]

    fused = {}
    enabled, graphs, run = deferred.enabled, deferred._graphs, fused_graph.FusedGraph.run
    runs = []

    def counted(self, nodes, externals):
        ran = run(self, nodes, externals)
        runs.append(ran)
        return ran
    try:
        for mode in modes:
            deferred.enabled = mode != "immediate"
            if mode == "immediate":
                arrays, rng = graph_inputs(graph, 0, seed)
                upstream = upstream_for(arrays, rng)
                out, leaves = run_graph(nbgrad, graph, arrays, upstream)
                _check(graph, out, leaves, torch_run(arrays, upstream), "immediate")
            elif mode == "deferred":
                deferred._graphs = {}
                fused_graph.FusedGraph.run = counted
                for i in range(deferred.FUSE_AFTER + 2):
                    arrays, rng = graph_inputs(graph, i, seed)
                    upstream = upstream_for(arrays, rng)
                    out, leaves = run_graph(nbgrad, graph, arrays, upstream)
                    _check(graph, out, leaves, torch_run(arrays, upstream), f"deferred, iteration {i}")
                fused_graph.FusedGraph.run = run
                fused[mode] = sum(runs)
            else:
                def step(*args):
                    *leaves, upstream = args
                    values = list(leaves)
                    for name, inputs, params in graph["ops"]:
                        values.append(OPS[name][2](nbgrad, params, *[values[i] for i in inputs]))
                    out = values[-1]
                    (out * upstream).sum().backward()
                    return out
                compiled = nbgrad.compile(step)
                for i in range(COMPILE_CALLS):
                    arrays, rng = graph_inputs(graph, i, seed)
                    upstream = upstream_for(arrays, rng)
                    leaves = [nbgrad.from_numpy(a.copy()).requires_grad_() for a in arrays]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        out = compiled(*leaves, nbgrad.from_numpy(upstream.copy()))
                    _check(graph, out, leaves, torch_run(arrays, upstream), f"compile, call {i}")
                fused[mode] = compiled.stats["fused_calls"]
    finally:
        deferred.enabled, deferred._graphs, fused_graph.FusedGraph.run = enabled, graphs, run
    return fused


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # script mode does not need it
    given = None

if given is not None:
    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), seed=st.integers(0, 2**16))
    def test_random_graphs_match_torch(data, seed):
        graph = make_graph(HypothesisDraw(data))
        try:
            check_graph(graph, seed)
        except AssertionError as error:
            raise AssertionError(f"{describe(graph)}\n{error}") from None


# ---------------------------------------------------------------------------------------------
# Script mode
# ---------------------------------------------------------------------------------------------

def _child(first, count):
    """Run graphs with seeds first .. first + count - 1, a line before and after each."""
    for seed in range(first, first + count):
        graph = make_graph(RandomDraw(seed))
        print(json.dumps(["begin", seed]), flush=True)
        try:
            fused = check_graph(graph, seed)
            result = ["ok", fused]
        except AssertionError as error:
            result = ["mismatch", str(error)[:400]]
        except Exception as error:  # noqa: BLE001 (an exception is a crash of the run)
            result = ["error", f"{type(error).__name__}: {error}"[:400]]
        print(json.dumps(["end", seed, result]), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first graph")
    parser.add_argument("--batch", type=int, default=50, help="graphs per child process")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(*args.child)
    # The parent only (a child imports neither); run as a script, conftest is one level up.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from conftest import child_env, read_case_records

    results = {}
    seeds = list(range(args.seed, args.seed + args.graphs))
    while len(results) < len(seeds):
        first = seeds[len(results)]
        count = min(args.batch, seeds[-1] + 1 - first)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(first),
                               str(count)], env=child_env(), capture_output=True, text=True)
        records, started = read_case_records(proc.stdout)
        results.update((case, result[0]) for case, result in records.items())
        if started is not None or len(results) < first + count - args.seed:
            crashed = started if started is not None else first + count - 1
            results[crashed] = ["crash", f"exit {proc.returncode}: {proc.stderr[-400:]}"]
    op_counts = collections.Counter()
    fused_runs = collections.Counter()
    failures = []
    for seed in seeds:
        graph = make_graph(RandomDraw(seed))
        op_counts.update(name for name, _, _ in graph["ops"])
        status = results[seed]
        if status[0] == "ok":
            fused_runs.update({mode: 1 for mode, runs in status[1].items() if runs})
        else:
            failures.append((seed, status, describe(graph)))
    kinds = collections.Counter(status[0] for status in results.values())
    print(f"graphs: {len(seeds)} (seeds {seeds[0]}..{seeds[-1]}), modes: {', '.join(MODES)}")
    print(f"mismatches: {kinds['mismatch']}, crashes: {kinds['crash']}, other errors: {kinds['error']}")
    print(f"graphs that reached the fused kernel: deferred {fused_runs['deferred']}, "
          f"compile {fused_runs['compile']}")
    print(f"ops ({sum(op_counts.values())} uses): "
          + ", ".join(f"{name} {op_counts[name]}" for name in OP_NAMES))
    for seed, status, text in failures:
        print(f"seed {seed}: {status[0]}: {status[1]}\n    {text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
