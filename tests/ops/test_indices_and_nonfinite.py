"""Issue 10, items 6-9: empty matmuls, indices that change after they were checked, NaN and
inf, and PyTorch's errors for inputs PyTorch refuses.

Values and gradients are compared with torch in nbgrad's three modes (`run_modes`): eager
with deferral off, the default deferred mode in a loop long enough to run the fused graph,
and `nbgrad.compile` called again. Cases that could crash the interpreter (indices out of
range reaching a kernel) run in a subprocess (`run_python`), so that a crash fails the test
instead of killing pytest.
"""
import os
import textwrap
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nbgrad
import nbgrad.nn.functional as NF
from nbgrad.fuse import deferred
from nbgrad.fuse.graph import FusedGraph
from conftest import TOL, assert_close, rng_for, run_python

FUSE = 3          # deferred.FUSE_AFTER in the deferred mode of these tests
STEPS = FUSE + 4  # iterations: FUSE - 1 eager, one traced, the rest fused
CALLS = 3         # calls of a compiled step: one traced, the rest fused
INF, NAN = np.inf, np.nan


def functional(lib):
    return NF if lib is nbgrad else TF


@contextmanager
def deferral(enabled):
    """Deferral on or off, a low FUSE_AFTER and no graph seen yet; restored after."""
    deferred.realize_all()
    saved = deferred.enabled, deferred.FUSE_AFTER, deferred._graphs
    deferred.enabled, deferred.FUSE_AFTER, deferred._graphs = enabled, FUSE, {}
    try:
        yield
    finally:
        deferred.realize_all()
        deferred.enabled, deferred.FUSE_AFTER, deferred._graphs = saved


def snap(t):
    return None if t is None else np.array(t.detach().numpy(), copy=True)


def step(lib, fn, tensors, weight):
    """fn's output; a float output is weighted (so every output element's gradient differs)
    and summed, and backward runs."""
    out = fn(lib, *tensors)
    if out.requires_grad:
        (out * weight).sum().backward()
    return out


def record(out, tensors):
    return [snap(out)] + [snap(t.grad) for t in tensors]


def run_modes(fn, arrays, requires_grad, modes=("eager", "deferred", "compile"), fused=False):
    """Run `fn(lib, *tensors)` (and backward) with torch and with nbgrad in `modes`; assert
    every run's output and leaf gradients equal torch's (NaN equals NaN). With `fused`, the
    deferred and compiled runs must have used a fused kernel."""
    tensors = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, requires_grad)]
    out = fn(torch, *tensors)
    weight = np.linspace(0.5, 1.5, out.numel()).reshape(tuple(out.shape))
    weight = weight.astype(out.detach().numpy().dtype)
    expected = record(step(torch, fn, tensors, torch.tensor(weight)), tensors)

    def make():
        return [nbgrad.tensor(a, requires_grad=r) for a, r in zip(arrays, requires_grad)]

    w = nbgrad.tensor(weight)
    for mode in modes:
        if mode == "eager":
            with deferral(False):
                leaves = make()
                runs, ran_fused = [record(step(nbgrad, fn, leaves, w), leaves)], None
        elif mode == "deferred":
            with deferral(True):
                runs = []
                for _ in range(STEPS):
                    leaves = make()
                    runs.append(record(step(nbgrad, fn, leaves, w), leaves))
                ran_fused = any(isinstance(g, FusedGraph) for g in deferred._graphs.values())
        else:
            leaves = make()
            compiled = nbgrad.compile(lambda *args: step(nbgrad, fn, args[:-1], args[-1]))
            runs = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an eager fallback says why
                for _ in range(CALLS):
                    for leaf in leaves:
                        if leaf.requires_grad:
                            leaf.grad = None
                    runs.append(record(compiled(*leaves, w), leaves))
            ran_fused = compiled.stats["fused_calls"] > 0
        for number, run in enumerate(runs):
            for name, got, want in zip(["output"] + [f"grad {i}" for i in range(len(arrays))],
                                       run, expected):
                where = f"{mode} mode, run {number}: {name}"
                if want is None:
                    assert got is None, where
                    continue
                assert got is not None, f"{where} is None"
                assert got.shape == want.shape and got.dtype == want.dtype, \
                    f"{where}: {got.shape} {got.dtype} != {want.shape} {want.dtype}"
                rtol, atol = TOL.get(want.dtype.name, (0, 0))
                np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                           err_msg=where)
        if fused and mode != "eager":
            assert ran_fused, f"{mode} mode never ran a fused kernel"


def assert_raises_as_torch(fn, same_message=True):
    """fn(lib, F) raises the same exception type (with the same message) in torch and nbgrad,
    in eager and deferred mode (for deferral, the inputs require grad where they can)."""
    with pytest.raises(Exception) as expected:
        fn(torch, TF)
    for enabled in (False, True):
        with deferral(enabled):
            with pytest.raises(Exception) as actual:
                fn(nbgrad, NF)
        assert type(actual.value) is type(expected.value), \
            f"deferral {enabled}: {actual.value!r}, torch: {expected.value!r}"
        if same_message:
            assert str(actual.value) == str(expected.value)


# ---------------------------------------------------------------------------------------------
# 6. Products with an empty dimension are zeros, and so are their gradients.
# ---------------------------------------------------------------------------------------------

EMPTY_PRODUCTS = [
    # empty contraction dim k, every rank combination
    ((2, 2, 0), (0, 1)), ((3, 2, 0), (3, 0, 4)), ((2, 3, 0), (0,)), ((1, 0), (2, 0, 3)),
    ((0,), (0,)), ((0,), (0, 3)), ((3, 0), (0,)), ((2, 0), (0, 3)), ((0,), (2, 0, 3)),
    ((2, 1, 0), (1, 0, 5)), ((2, 3, 2, 0), (0, 4)),
    # empty outer dims and empty batches
    ((0, 3), (3, 2)), ((2, 3), (3, 0)), ((0, 2, 3), (3, 4)), ((2, 0, 3), (3, 4)),
    ((0, 3), (3,)), ((3,), (3, 0)), ((0, 2, 3), (0, 3, 4)), ((2, 3), (0, 3, 4)),
]


@pytest.mark.parametrize("a_shape, b_shape", EMPTY_PRODUCTS)
def test_matmul_with_an_empty_dim(a_shape, b_shape):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(a_shape).astype(np.float32),
              rng.standard_normal(b_shape).astype(np.float32)]
    # 1-D and 2-D products have a fused rule; batched ones run eagerly inside fused steps.
    fused = len(a_shape) <= 2 and len(b_shape) <= 2
    run_modes(lambda L, a, b: a @ b, arrays, (True, True), fused=fused)


@pytest.mark.parametrize("batch, in_features, out_features",
                         [(3, 0, 4), (0, 3, 4), (3, 4, 0), (0, 0, 4), (0, 0, 0), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_with_an_empty_dim(batch, in_features, out_features, bias):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32)
              for s in [(batch, in_features), (out_features, in_features), (out_features,)]]

    def fn(L, x, w, b):
        return functional(L).linear(x, w, b if bias else None)

    # Without a bias, F.linear is matmul(x, weight.t()); the deferred mode runs the view
    # weight.t() at once, and a graph with an op that ran is not fused.
    run_modes(fn, arrays, (True, True, True), fused=bias)


def test_linear_of_a_3d_input_with_in_features_0():
    arrays = [np.ones((2, 3, 0), np.float32), np.ones((4, 0), np.float32),
              np.arange(4, dtype=np.float32)]
    run_modes(lambda L, x, w, b: functional(L).linear(x, w, b), arrays, (True, True, True))


def test_nn_linear_with_in_features_0():
    with pytest.warns(UserWarning, match="zero-element"):
        torch_layer = torch.nn.Linear(0, 4)
    with pytest.warns(UserWarning, match="zero-element"):
        layer = nbgrad.nn.Linear(0, 4)
    # in_features 0: the weight is empty and the bias is uniform(-0, 0), so zeros.
    np.testing.assert_array_equal(layer.bias.detach().numpy(), torch_layer.bias.detach().numpy())
    x, torch_x = nbgrad.ones(3, 0, requires_grad=True), torch.ones(3, 0, requires_grad=True)
    out, torch_out = layer(x), torch_layer(torch_x)
    out.sum().backward()
    torch_out.sum().backward()
    for got, want in [(out, torch_out), (layer.weight.grad, torch_layer.weight.grad),
                      (layer.bias.grad, torch_layer.bias.grad), (x.grad, torch_x.grad)]:
        np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
        assert got.shape == tuple(want.shape)


# ---------------------------------------------------------------------------------------------
# 7. No kernel reads an index that was not checked after the last moment it could change.
# ---------------------------------------------------------------------------------------------

def run_script(body, deferral=(False, True)):
    """Run `body` in a new process with nbgrad, torch and F (nbgrad's) imported, once with
    each `deferral` setting; its printed words. A crash (a kernel reading wild memory) fails
    the check=True run."""
    prelude = textwrap.dedent("""
        import numpy as np, torch
        import nbgrad
        import nbgrad.nn.functional as F
        from nbgrad.fuse import deferred

        def outcome(fn):
            try:
                fn()
                return "ok"
            except Exception as error:
                return type(error).__name__ + ":" + str(error).replace(" ", "_")
    """)
    loop = f"for deferred.enabled in {deferral!r}:\n"
    return run_python(prelude + loop + textwrap.indent(textwrap.dedent(body), "    "))


CROSS_ENTROPY_OPTIONS = ["", "reduction='sum'", "reduction='none'",
                         "weight=nbgrad.tensor([0.5, 2.0, 1.0])", "ignore_index=1",
                         "label_smoothing=0.1"]


def test_target_changed_out_of_range_after_forward():
    """The item's reproducer, with every option of cross entropy: the target array changes
    (behind nbgrad's back, through from_numpy) between forward and backward. PyTorch's
    backward reads the target again and raises its IndexError (and crashes for
    reduction='none'); nbgrad raises the same IndexError, and a correct call works after."""
    words = run_script(f"""
        for options in {CROSS_ENTROPY_OPTIONS!r}:
            for bad in (3, -1, -5, 10**11):
                x = nbgrad.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]], requires_grad=True)
                t_np = np.array([0, 2])
                t = nbgrad.from_numpy(t_np)
                loss = eval(f"F.cross_entropy(x, t, {{options}})")
                t_np[1] = bad
                expected = f"IndexError:Target_{{bad}}_is_out_of_bounds."
                print(outcome(lambda: loss.sum().backward()) == expected)
                t_np[1] = 2
                x.grad = None
                eval(f"F.cross_entropy(x, t, {{options}})").sum().backward()
                print(np.isfinite(x.grad.numpy()).all())
    """)
    assert words == ["True"] * (2 * 2 * 4 * len(CROSS_ENTROPY_OPTIONS))


def test_target_changed_within_range_after_forward():
    """A target changed to another valid class between forward and backward: the gradient
    is PyTorch's, which reads the target as it is at backward. (Not with 'mean' and class
    weights or ignore_index: there PyTorch divides by the forward's total weight, nbgrad by
    that of the targets at backward.)"""
    options = ["", "reduction='sum'", "weight=lib.tensor([0.5, 2.0, 1.0]), reduction='sum'",
               "ignore_index=1, reduction='sum'"]
    words = run_script(f"""
        import torch.nn.functional as TF

        def gradient(lib, F, options):
            x = lib.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]], requires_grad=True)
            t_np = np.array([0, 2])
            loss = eval(f"F.nll_loss(lib.log_softmax(x, 1), lib.from_numpy(t_np), {{options}})")
            t_np[1] = 1
            loss.backward()
            return x.grad.numpy()

        for options in {options!r}:
            print(np.allclose(gradient(nbgrad, F, options), gradient(torch, TF, options),
                              atol=1e-6))
    """)
    assert words == ["True"] * (2 * len(options))


def test_target_changed_before_a_fused_graph_runs():
    """In the default mode, a loop whose graph is fused: the target changes out of range
    after the (deferred) forward and before backward, which runs the fused kernel."""
    words = run_script("""
        deferred.FUSE_AFTER = 3
        x = nbgrad.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]], requires_grad=True)
        t_np = np.array([0, 2])
        t = nbgrad.from_numpy(t_np)
        for i in range(6):
            x.grad = None
            loss = F.cross_entropy(x, t)
            if i == 5:
                t_np[1] = 10**11
            print(outcome(lambda: loss.backward()))
        fused = [g for g in deferred._graphs.values() if type(g).__name__ == "FusedGraph"]
        print(len(fused))
        t_np[1] = 2
        x.grad = None
        F.cross_entropy(x, t).backward()
        print(np.isfinite(x.grad.numpy()).all())
    """, deferral=(True,))
    assert words == ["ok"] * 5 + ["IndexError:Target_100000000000_is_out_of_bounds.", "1",
                                  "True"]


def test_target_changed_before_a_compiled_step():
    words = run_script("""
        x = nbgrad.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]], requires_grad=True)
        t_np = np.array([0, 2])
        t = nbgrad.from_numpy(t_np)

        @nbgrad.compile
        def step(t):
            loss = F.cross_entropy(x, t)
            loss.backward()
            return loss

        for i in range(4):
            x.grad = None
            if i == 3:
                t_np[1] = -7
            print(outcome(lambda: step(t)))
        print(step.stats["fused_calls"])
        t_np[1] = 2
        x.grad = None
        step(t)
        print(np.isfinite(x.grad.numpy()).all())
    """, deferral=(True,))
    assert words == ["ok"] * 3 + ["IndexError:Target_-7_is_out_of_bounds.", "2", "True"]


def test_embedding_indices_changed_after_forward():
    """PyTorch's backward silently skips an index that went out of range since forward;
    nbgrad raises forward's IndexError instead (never reads it), and a correct call works
    after."""
    words = run_script("""
        for padding in (None, 1):
            for bad in (4, -1, 10**11):
                w = nbgrad.ones(4, 2, requires_grad=True)
                i_np = np.array([0, 1, 1])
                out = F.embedding(nbgrad.from_numpy(i_np), w, padding_idx=padding)
                i_np[1] = bad
                print(outcome(lambda: out.sum().backward()))
                i_np[1] = 2
                w.grad = None
                F.embedding(nbgrad.from_numpy(i_np), w, padding_idx=padding).sum().backward()
                print(w.grad.numpy().sum())
    """)
    assert words == (["IndexError:index_out_of_range_in_self", "6.0"] * 3 +
                     ["IndexError:index_out_of_range_in_self", "4.0"] * 3) * 2


def test_indexing_with_an_index_changed_after_forward():
    """`x[idx]`, `max(dim)` and `x[idx] = v` keep positions they computed (and NumPy
    checked) at the call: a later change of the index array reaches no kernel. The
    gradient is that of the value forward computed."""
    words = run_script("""
        x = nbgrad.tensor([1.0, 5.0, 3.0], requires_grad=True)
        i_np = np.array([0, 2])
        y = x[nbgrad.from_numpy(i_np)]
        i_np[1] = 10**11
        y.sum().backward()
        print(x.grad.numpy().tolist())
        x.grad = None
        values, indices = (x * 1.0).reshape(1, 3).max(1)
        indices.numpy()[0] = 10**11
        values.sum().backward()
        print(x.grad.numpy().tolist())
        x.grad = None
        v = nbgrad.tensor([7.0, 8.0], requires_grad=True)
        z = x * 1.0
        i_np = np.array([0, 1])
        z[nbgrad.from_numpy(i_np)] = v
        i_np[0] = -10**11
        z.sum().backward()
        print(x.grad.numpy().tolist(), v.grad.numpy().tolist())
    """)
    assert words == ["[1.0,", "0.0,", "1.0]", "[0.0,", "1.0,", "0.0]",
                     "[0.0,", "0.0,", "1.0]", "[1.0,", "1.0]"] * 2


BAD_INDICES = {
    "cross_entropy target 3": lambda L, F: F.cross_entropy(
        L.ones(2, 3, requires_grad=True), L.tensor([0, 3])),
    "cross_entropy target -1": lambda L, F: F.cross_entropy(
        L.ones(2, 3, requires_grad=True), L.tensor([0, -1])),
    "cross_entropy target 1e11 none": lambda L, F: F.cross_entropy(
        L.ones(2, 3, requires_grad=True), L.tensor([0, 10**11]), reduction="none"),
    "cross_entropy target -5 weight": lambda L, F: F.cross_entropy(
        L.ones(2, 3, requires_grad=True), L.tensor([0, -5]), weight=L.ones(3)),
    "cross_entropy 3-d target 4": lambda L, F: F.cross_entropy(
        L.ones(2, 3, 2, requires_grad=True), L.tensor([[0, 4], [1, 1]])),
    "cross_entropy 1-d input target 3": lambda L, F: F.cross_entropy(
        L.ones(3, requires_grad=True), L.tensor(3)),
    "nll_loss target 3 ignore 2": lambda L, F: F.nll_loss(
        L.ones(2, 3, requires_grad=True), L.tensor([2, 3]), ignore_index=2),
    "embedding 4": lambda L, F: F.embedding(L.tensor([0, 4]), L.ones(4, 2, requires_grad=True)),
    "embedding -1": lambda L, F: F.embedding(L.tensor([[0], [-1]]),
                                             L.ones(4, 2, requires_grad=True)),
    "embedding of an empty table": lambda L, F: F.embedding(L.tensor([0]), L.ones(0, 2)),
    "embedding padding_idx 4": lambda L, F: F.embedding(L.tensor([0]), L.ones(4, 2),
                                                        padding_idx=4),
    "embedding padding_idx -5": lambda L, F: F.embedding(L.tensor([0]), L.ones(4, 2),
                                                         padding_idx=-5),
    "index 5": lambda L, F: L.ones(3, requires_grad=True)[L.tensor([0, 5])],
    "index -4": lambda L, F: L.ones(3, requires_grad=True)[L.tensor([0, -4])],
    "index 2-d": lambda L, F: L.ones(3, 2, requires_grad=True)[L.tensor([0, 1]),
                                                               L.tensor([0, 2])],
}


def _setitem(L, index):
    x = L.ones(3, requires_grad=True) * 1.0
    x[index] = L.tensor(2.0, requires_grad=True)


BAD_INDICES["setitem 5"] = lambda L, F: _setitem(L, L.tensor([0, 5]))
BAD_INDICES["setitem -4"] = lambda L, F: _setitem(L, L.tensor([-4]))


def _along(op, index, *args):
    """`op` (gather, scatter, ...) along dim 1 of a (2, 3) tensor that requires grad."""
    return lambda L, F: getattr(L.ones(2, 3, requires_grad=True) * 1.0, op)(1, L.tensor(index), *args)


# PyTorch refuses negative indices here (index_fill accepts them, as indexing does).
BAD_INDICES.update({
    "gather 3": _along("gather", [[0, 3]]),
    "gather -1": _along("gather", [[0], [-1]]),
    "gather huge": _along("gather", [[10**11]]),
    "scatter 3": _along("scatter", [[3]], 1.0),
    "scatter -1 src": lambda L, F: _along("scatter", [[-1]], L.ones(1, 1, requires_grad=True))(L, F),
    "scatter_add 3": lambda L, F: _along("scatter_add", [[0, 3]], L.ones(1, 2, requires_grad=True))(L, F),
    "index_select 3": _along("index_select", [0, 3]),
    "index_select -1": _along("index_select", [-1]),
    "index_fill 3": _along("index_fill", [3], 2.0),
    "index_fill -4": _along("index_fill", [-4], 2.0),
})


def test_out_of_range_indices_raise_torchs_errors_in_every_mode():
    """Out-of-range and negative indices at the call: PyTorch's exception and message, in
    eager and deferred mode and in a compiled step (traced first, then fused), and a correct
    call afterwards still works. In a subprocess: a kernel reading one would crash."""
    words = run_script(f"""
        import sys, warnings
        import torch.nn.functional as TF
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(__file__))!r}]
        from test_indices_and_nonfinite import BAD_INDICES
        warnings.simplefilter("ignore")
        for name, fn in BAD_INDICES.items():
            expected = outcome(lambda: fn(torch, TF))
            results = []
            for on in (False, True):
                deferred.enabled = on
                results.append(outcome(lambda: fn(nbgrad, F).sum().backward()))
            deferred.enabled = True
            step = nbgrad.compile(lambda: fn(nbgrad, F).sum().backward())
            results += [outcome(step) for _ in range(2)]
            deferred.realize_all()
            print(all(r == expected for r in results) or (name, expected, results))
        x = nbgrad.ones(2, 3, requires_grad=True)
        F.cross_entropy(x, nbgrad.tensor([0, 2])).backward()
        print(np.isfinite(x.grad.numpy()).all())
    """, deferral=(True,))
    assert words == ["True"] * (len(BAD_INDICES) + 1)


# ---------------------------------------------------------------------------------------------
# 8. NaN and inf as PyTorch gives them, forward and gradient, eager and fused.
# ---------------------------------------------------------------------------------------------

BASE = np.array([[1.0, 2.0, 0.5], [-1.0, 3.0, 0.0]])


def _with(**where):
    """BASE with the given {"r_c": value} elements replaced, or whole rows ("r": value)."""
    x = BASE.copy()
    for key, value in where.items():
        x[tuple(int(i) for i in key[1:].split("_"))] = value
    return x


NONFINITE = {
    "nan": _with(e0_1=NAN), "nan_row": _with(e0=NAN), "two_nans": _with(e0_1=NAN, e0_2=NAN),
    "inf": _with(e1_2=INF), "inf_row": _with(e1=INF), "minus_inf": _with(e0_0=-INF),
    "minus_inf_row": _with(e1=-INF), "inf_and_minus_inf": _with(e0_0=INF, e0_1=-INF),
    "inf_and_nan": _with(e0_0=INF, e0_1=NAN), "ties": _with(e0=1.0),
}

REDUCTIONS = {
    "sum": lambda L, x: x.sum(), "sum_dim": lambda L, x: x.sum(1),
    "mean": lambda L, x: x.mean(), "mean_dim": lambda L, x: x.mean(0),
    "amax": lambda L, x: x.amax(), "amax_dim": lambda L, x: x.amax(1),
    "amin": lambda L, x: x.amin(), "amin_dim": lambda L, x: x.amin(0),
    "max": lambda L, x: x.max(), "min": lambda L, x: x.min(),
    "max_dim": lambda L, x: x.max(1)[0], "min_dim": lambda L, x: x.min(0)[0],
    "max_dim_indices": lambda L, x: x.max(1)[1], "min_dim_indices": lambda L, x: x.min(1)[1],
    "argmax": lambda L, x: x.argmax(), "argmin": lambda L, x: x.argmin(),
    "argmax_dim": lambda L, x: x.argmax(1), "argmin_dim": lambda L, x: x.argmin(0),
    "var": lambda L, x: x.var(), "var_dim": lambda L, x: x.var(1),
    "std": lambda L, x: x.std(), "std_dim": lambda L, x: x.std(1),
    "logsumexp": lambda L, x: x.logsumexp(1), "logsumexp_dim0": lambda L, x: x.logsumexp(0),
    "softmax": lambda L, x: L.softmax(x, 1), "softmax_dim0": lambda L, x: L.softmax(x, 0),
    "log_softmax": lambda L, x: L.log_softmax(x, 1),
    "log_softmax_dim0": lambda L, x: L.log_softmax(x, 0),
    "cross_entropy": lambda L, x: functional(L).cross_entropy(x, L.tensor([0, 2])),
    "cross_entropy_sum": lambda L, x: functional(L).cross_entropy(x, L.tensor([1, 0]),
                                                                  reduction="sum"),
    "cross_entropy_none": lambda L, x: functional(L).cross_entropy(x, L.tensor([1, 2]),
                                                                   reduction="none"),
    "nll_loss": lambda L, x: functional(L).nll_loss(x, L.tensor([0, 2])),
    "nll_loss_none": lambda L, x: functional(L).nll_loss(x, L.tensor([1, 2]), reduction="none"),
}
# The ops with a fused rule (the others run eagerly in every mode).
FUSED = ("sum", "sum_dim", "mean", "mean_dim", "softmax", "softmax_dim0", "log_softmax",
         "log_softmax_dim0", "cross_entropy", "cross_entropy_sum", "nll_loss")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("values", NONFINITE)
@pytest.mark.parametrize("op", REDUCTIONS)
def test_nan_and_inf_eager_and_deferred(op, values, dtype):
    # The deferred mode runs the ops without a fused rule at once, as eager mode does.
    fused = op in FUSED
    run_modes(REDUCTIONS[op], [NONFINITE[values].astype(dtype)], (True,),
              modes=("eager", "deferred") if fused else ("eager",), fused=fused)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("values", ["nan", "inf", "inf_and_minus_inf", "minus_inf_row"])
@pytest.mark.parametrize("op", FUSED)
def test_nan_and_inf_compiled(op, values, dtype):
    run_modes(REDUCTIONS[op], [NONFINITE[values].astype(dtype)], (True,), modes=("compile",),
              fused=True)


def test_issue_examples_of_nan_and_inf():
    """The issue's three examples, spelled out."""
    assert np.isnan(nbgrad.softmax(nbgrad.tensor([INF, 1.0]), 0).numpy()).all()
    x = nbgrad.tensor([1.0, NAN, 3.0], requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]
    x = nbgrad.tensor([[INF, 1.0, 0.0]], requires_grad=True)
    loss = NF.cross_entropy(x, nbgrad.tensor([1]))
    loss.backward()
    assert np.isnan(loss.item()) and np.isnan(x.grad.numpy()).all()


# NaN, inf and signed zeros through elementwise ops, as PyTorch (found by a random search):
# (op, inputs, whether the deferred and compiled runs fuse).
SPECIAL = np.array([NAN, -1.0, 2.0, 0.0, -0.0, INF])
SPECIAL_VALUES = {
    "relu_passes_nan": (lambda L, x: L.relu(x), [SPECIAL], True),
    "clamp_nan_min": (lambda L, x: x.clamp(NAN, 1.0), [SPECIAL], True),
    "clamp_nan_max": (lambda L, x: x.clamp(max=NAN), [SPECIAL], True),
    "maximum_with_nan": (lambda L, a, b: L.maximum(a, b), [SPECIAL, SPECIAL[::-1].copy()], True),
    "minimum_with_nan": (lambda L, a, b: L.minimum(a, b), [SPECIAL, SPECIAL[::-1].copy()], True),
    "atan2_of_zeros": (lambda L, a, b: L.atan2(a, b), [np.array([0.0, -0.0, 0.0, 1.0]),
                                                        np.array([0.0, -0.0, -0.0, 2.0])], True),
    "cumprod_along_one": (lambda L, x: x.cumprod(0), [np.array([[INF, NAN, 2.0]])], True),
    "nan_to_num_none": (lambda L, x: L.nan_to_num(x, nan=None, neginf=-1000.0), [SPECIAL], True),
    "divide_by_minus_zero": (lambda L, x: x / -0.0 + x * -0.0, [SPECIAL], True),
    "argmax_keepdim_all": (lambda L, x: x.reshape(2, 3).argmax(dim=None, keepdim=True),
                           [SPECIAL], False),
    # (found by tests/ops/test_special_values.py's sweep, and the torch.sign of NaN, 0, that
    # l1_loss's gradient takes)
    "l1_loss_of_nan": (lambda L, x, y: functional(L).l1_loss(x, y, reduction="sum"),
                       [SPECIAL, SPECIAL[::-1].copy()], True),
    "logit_at_signed_zeros_and_nan": (lambda L, x: x.logit() + L.logit(x, eps=0.25),
                                      [np.array([0.0, -0.0, 1.0, NAN, 0.5, 0.1])], True),
    "cdist_by_matrix_product_keeps_nan": (
        lambda L, a, b: L.cdist(a, b, compute_mode="use_mm_for_euclid_dist"),
        [np.array([[1.0, NAN], [0.5, 2.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [INF, 1.0]])],
        False),
    "multi_margin_squared_of_nan_and_minus_inf": (
        lambda L, x: functional(L).multi_margin_loss(x, L.tensor([1, 0]), p=2,
                                                     reduction="none"),
        [np.array([[0.1, NAN, 0.3], [0.5, -INF, 0.2]])], False),
    # NaN in the triangle eigh does not read, and NaN gradients of LAPACK-backed ops, one
    # matrix of the batch at a time
    "eigvalsh_ignores_the_other_triangle": (lambda L, a: L.linalg.eigvalsh(a),
                                            [np.array([[1.0, NAN], [0.5, 2.0]])], False),
    "linalg_gradients_of_nan": (
        lambda L, a: L.linalg.solve(a, a[..., :1]).sum() + L.linalg.slogdet(a)[1].sum()
        + L.linalg.cholesky_ex(a @ a.mT)[0].sum() + L.linalg.qr(a)[1].sum(),
        [np.array([[[1.0, NAN], [0.5, 2.0]], [[1.0, 0.2], [0.3, 2.0]]])], False),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SPECIAL_VALUES)
def test_special_values_as_torch_in_every_mode(case, dtype):
    fn, arrays, fused = SPECIAL_VALUES[case]
    run_modes(fn, [a.astype(dtype) for a in arrays], (True,) * len(arrays), fused=fused)


# ---------------------------------------------------------------------------------------------
# 9. PyTorch's exception (and message) where PyTorch refuses an input.
# ---------------------------------------------------------------------------------------------

REFUSED = {}
for _a, _b in [((2, 2), (2, 2)), ((2,), (2,)), ((2, 2), (2,)), ((2,), (2, 2)), ((3, 2, 2), (2, 2)),
               ((3, 2, 2), (3, 2, 2)), ((2,), (3, 2, 4)), ((3, 2, 2), (2,)), ((0,), (0,))]:
    REFUSED[f"bool matmul {_a} @ {_b}"] = (
        lambda a, b: lambda L, F: L.ones(*a, dtype=L.bool) @ L.ones(*b, dtype=L.bool))(_a, _b)
REFUSED["bool mm"] = lambda L, F: L.mm(L.ones(2, 2, dtype=L.bool), L.ones(2, 2, dtype=L.bool))
REFUSED["bool linear"] = lambda L, F: F.linear(L.ones(2, 2, dtype=L.bool),
                                               L.ones(2, 2, dtype=L.bool),
                                               L.ones(2, dtype=L.bool))
for _name in ("max", "min", "amax", "amin"):
    for _shape in [(0,), (2, 0), (0, 3)]:
        REFUSED[f"{_name}() of {_shape}"] = (
            lambda name, shape: lambda L, F: getattr(L.ones(*shape, requires_grad=True), name)()
        )(_name, _shape)
for _name in ("amax", "amin", "argmax", "argmin"):
    REFUSED[f"{_name}(1) of (2, 0)"] = (
        lambda name: lambda L, F: getattr(L.ones(2, 0, requires_grad=True), name)(1))(_name)
    REFUSED[f"{_name}(0) of (0, 3)"] = (
        lambda name: lambda L, F: getattr(L.ones(0, 3, requires_grad=True), name)(0))(_name)
REFUSED["argmax() of (2, 0)"] = lambda L, F: L.ones(2, 0).argmax()
for _name in ("softmax", "log_softmax"):
    for _dtype in ("int64", "bool"):
        for _dim in (0, 1):
            REFUSED[f"{_name} of {_dtype}, dim {_dim}"] = (
                lambda name, dtype, dim: lambda L, F: getattr(L, name)(
                    L.ones(2, 3, dtype=getattr(L, dtype)), dim))(_name, _dtype, _dim)
REFUSED["cross_entropy of an int64 input"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, dtype=L.int64), L.tensor([0, 1]))
REFUSED["cross_entropy, 2-D target (2, 1)"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, requires_grad=True), L.zeros(2, 1, dtype=L.int64))
REFUSED["cross_entropy, 2-D int target of the input's shape"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, requires_grad=True), L.zeros(2, 3, dtype=L.int64))
REFUSED["cross_entropy, 1-D input, 2-D target"] = lambda L, F: F.cross_entropy(
    L.ones(3, requires_grad=True), L.zeros(2, 1, dtype=L.int64))
REFUSED["cross_entropy, 1-D input, target of 2"] = lambda L, F: F.cross_entropy(
    L.ones(3, requires_grad=True), L.zeros(2, dtype=L.int64))
REFUSED["cross_entropy, float target of another shape"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, requires_grad=True), L.zeros(2))
REFUSED["cross_entropy, probabilities with ignore_index"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, requires_grad=True), L.zeros(2, 3), ignore_index=0)
REFUSED["cross_entropy, 0-d target of a 2-D input"] = lambda L, F: F.cross_entropy(
    L.ones(2, 3, requires_grad=True), L.tensor(1))
REFUSED["nll_loss, 2-D target"] = lambda L, F: F.nll_loss(
    L.ones(2, 3, requires_grad=True), L.zeros(2, 3, dtype=L.int64))
REFUSED["nll_loss, bool target"] = lambda L, F: F.nll_loss(
    L.ones(2, 3, requires_grad=True), L.zeros(2, dtype=L.bool))
REFUSED["nll_loss, batch mismatch"] = lambda L, F: F.nll_loss(
    L.ones(2, 3, requires_grad=True), L.zeros(3, 1))
REFUSED["embedding, float indices"] = lambda L, F: F.embedding(L.tensor([0.0]), L.ones(3, 2))


def _x34(L):
    return L.ones(3, 4, requires_grad=True) * 1.0


def _int(L, *values):
    return L.tensor(list(values))


def _setitem_value(L, value):
    x = L.zeros(2, 3)
    x[0] = value


# gather, scatter, index_select, index_fill, one_hot; splitting, rearranging, einsum
REFUSED.update({
    "gather, float index": lambda L, F: _x34(L).gather(1, L.zeros(3, 1)),
    "gather, index of another rank": lambda L, F: _x34(L).gather(1, _int(L, 0, 1)),
    "gather, index larger than the input": lambda L, F: _x34(L).gather(1, L.zeros(4, 1, dtype=L.int64)),
    "gather, dim 2": lambda L, F: _x34(L).gather(2, L.zeros(3, 1, dtype=L.int64)),
    "scatter, src of another dtype": lambda L, F: _x34(L).scatter(
        1, L.zeros(3, 1, dtype=L.int64), L.ones(3, 1, dtype=L.float64)),
    "scatter, src smaller than the index": lambda L, F: _x34(L).scatter(
        1, L.zeros(2, 2, dtype=L.int64), L.ones(1, 1)),
    "scatter, index larger than self": lambda L, F: _x34(L).scatter(1, L.zeros(4, 1, dtype=L.int64), 1.0),
    "scatter, index of another rank": lambda L, F: _x34(L).scatter(1, _int(L, 0), 1.0),
    "scatter, 0-d src": lambda L, F: _x34(L).scatter(1, L.zeros(3, 1, dtype=L.int64), L.tensor(2.0)),
    "scatter, float index": lambda L, F: _x34(L).scatter(1, L.zeros(3, 1), 1.0),
    "scatter, reduce='max'": lambda L, F: _x34(L).scatter(1, L.zeros(3, 1, dtype=L.int64), 1.0, reduce="max"),
    "scatter_add, src smaller than the index": lambda L, F: _x34(L).scatter_add(
        1, L.zeros(2, 2, dtype=L.int64), L.ones(2, 1)),
    "index_select, 2-D index": lambda L, F: _x34(L).index_select(1, L.zeros(1, 1, dtype=L.int64)),
    "index_select, float index": lambda L, F: _x34(L).index_select(1, L.zeros(1)),
    "index_fill, float index": lambda L, F: _x34(L).index_fill(1, L.zeros(1), 2.0),
    "index_fill, 2-D index": lambda L, F: _x34(L).index_fill(1, L.zeros(1, 1, dtype=L.int64), 2.0),
    "index_fill, 1-D value": lambda L, F: _x34(L).index_fill(1, _int(L, 0), L.ones(1)),
    "one_hot, negative class": lambda L, F: F.one_hot(_int(L, 0, -1), 3),
    "one_hot, class too large": lambda L, F: F.one_hot(_int(L, 0, 3), 3),
    "one_hot, negative class and no num_classes": lambda L, F: F.one_hot(_int(L, 0, -1)),
    "one_hot, empty and no num_classes": lambda L, F: F.one_hot(L.zeros(0, dtype=L.int64)),
    "one_hot, float": lambda L, F: F.one_hot(L.zeros(2), 3),
    "split, sizes that do not sum": lambda L, F: _x34(L).split([1, 1]),
    "split, negative size": lambda L, F: _x34(L).split([4, -1], 1),
    "split, size 0": lambda L, F: _x34(L).split(0),
    "split, size -1": lambda L, F: _x34(L).split(-1),
    "chunk, 0 chunks": lambda L, F: _x34(L).chunk(0),
    "tril of 1-D": lambda L, F: L.ones(3, requires_grad=True).tril(),
    "repeat, fewer sizes than dims": lambda L, F: _x34(L).repeat(2),
    "repeat, negative": lambda L, F: _x34(L).repeat(-1, 2),
    "flip, a dim twice": lambda L, F: _x34(L).flip(0, -2),
    "roll, shifts and dims of two lengths": lambda L, F: _x34(L).roll((1, 2), 0),
    "outer of 2-D": lambda L, F: L.outer(L.ones(3), _x34(L)),
    "einsum, too few operands": lambda L, F: L.einsum("ij,jk->ik", _x34(L)),
    "einsum, subscripts of another rank": lambda L, F: L.einsum("ijk->i", _x34(L)),
    "einsum, sizes that do not broadcast": lambda L, F: L.einsum("ij,jk", _x34(L), L.ones(3, 2)),
    "einsum, repeated output": lambda L, F: L.einsum("ij->ii", _x34(L)),
    "einsum, unknown output": lambda L, F: L.einsum("ij->k", _x34(L)),
    "einsum, digit subscript": lambda L, F: L.einsum("i1->i", _x34(L)),
    "einsum, a dot outside an ellipsis": lambda L, F: L.einsum("i.j->i", _x34(L)),
    "einsum, ellipsis and too many subscripts": lambda L, F: L.einsum("...ijk->i", _x34(L)),
    "einsum, diagonal of unequal sizes": lambda L, F: L.einsum("ii->i", _x34(L)),
    "einsum, two dtypes": lambda L, F: L.einsum("ij,jk", _x34(L), L.ones(4, 2, dtype=L.float64)),
    "setitem, value of higher rank": lambda L, F: _setitem_value(L, L.ones(2, 3)),
})


# NOTE: max() and min() run the amax/amin primitive, whose check cannot know it was called
# as max(): the message names amax (nbgrad._tensor.reductions would have to pass the name).
OTHER_MESSAGE = {f"{name}() of {shape}" for name in ("max", "min")
                 for shape in [(0,), (2, 0), (0, 3)]} | {"argmax() of (2, 0)"}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_inputs_raise_torchs_error(case):
    assert_raises_as_torch(REFUSED[case], same_message=case not in OTHER_MESSAGE)


def test_empty_bool_products_are_zeros():
    """PyTorch's product kernels (all but dot) return zeros for an empty product before
    they find they have no bool version."""
    for a, b in [((2, 0), (0, 2)), ((3, 2, 0), (0,)), ((2, 0), (3, 0, 4)), ((0, 2), (2, 3))]:
        got = nbgrad.ones(*a, dtype=nbgrad.bool) @ nbgrad.ones(*b, dtype=nbgrad.bool)
        want = torch.ones(a, dtype=torch.bool) @ torch.ones(b, dtype=torch.bool)
        assert got.dtype == nbgrad.bool and got.shape == tuple(want.shape)
        assert not got.numpy().any()


def test_softmax_of_an_empty_integer_tensor_is_returned_as_is():
    for name in ("softmax", "log_softmax"):
        got = getattr(nbgrad, name)(nbgrad.ones(2, 0, dtype=nbgrad.int64), 1)
        want = getattr(torch, name)(torch.ones(2, 0, dtype=torch.int64), 1)
        assert got.dtype == nbgrad.int64 and got.shape == tuple(want.shape)


@pytest.mark.parametrize("op", ["sum", "sum_dim", "mean", "mean_dim"])
@pytest.mark.parametrize("shape", [(2, 0), (0, 3)])
def test_sum_and_mean_of_nothing(op, shape):
    """The mean of no elements is NaN (0 / 0), in the eager kernels and the fused rule."""
    fn = {"sum": lambda L, x: x.sum(), "sum_dim": lambda L, x: x.sum(1),
          "mean": lambda L, x: x.mean(), "mean_dim": lambda L, x: x.mean(1)}[op]
    run_modes(fn, [np.ones(shape, np.float32)], (True,), fused=True)


# ---------------------------------------------------------------------------------------------
# Issue 14: writes through an index broadcast as PyTorch's; one_hot; split and chunk sizes
# ---------------------------------------------------------------------------------------------

def _written(dtype, *writes):
    """A function of the library that makes zeros((2, 3), dtype) and runs `writes`, each
    `write(L, x)`."""
    def fn(L):
        x = L.zeros((2, 3), dtype=getattr(L, dtype))
        for write in writes:
            write(L, x)
        return x
    return fn


def _put(index, value):
    def write(L, x):
        x[index(L) if callable(index) else index] = value(L) if callable(value) else value
    return write


def _count(L, N):
    # The bigram-count loop of the language-model lecture: int indices, then 0-d tensors.
    for i, j in [(1, 2), (1, 2), (0, 0)]:
        N[i, j] += 1
        N[L.tensor(i), L.tensor(j)] += 1


SETITEM = {
    "row from [1, 3]": _written("float32", _put(0, lambda L: L.ones(1, 3))),
    "row from [1, 1, 3]": _written("float32", _put(1, lambda L: L.full((1, 1, 3), 2.0))),
    "element from [[4.0]]": _written("float32", _put((0, 1), lambda L: L.tensor([[4.0]]))),
    "all from [1, 2, 3]": _written("float64", _put(slice(None), lambda L: L.ones(1, 2, 3, dtype=L.float64))),
    "rows by index from [1, 1, 3]": _written("float32", _put(lambda L: L.tensor([[0], [1]]),
                                                          lambda L: L.ones(1, 1, 3))),
    "mask from a 0-d tensor": _written("float32", _put(lambda L: L.tensor([True, False]),
                                                    lambda L: L.tensor(5.0))),
    "0-d index tensor, slice, scalars": _written("float32", _put(lambda L: L.tensor(1), 3.0),
                                                 _put((0, slice(0, 2)), lambda L: L.tensor([1.0, 2.0]))),
    "float into int64": _written("int64", _put(0, 2.7)),
    "int32 counts": _written("int32", _count),
    "int64 counts": _written("int64", _count),
    "int32 row, bool element": _written("int32", _put(0, lambda L: L.tensor([1, 2, 3])), _put((1, 1), True)),
}


def test_setitem_broadcasts_the_value_as_torch():
    for name, fn in SETITEM.items():
        got, want = fn(nbgrad), fn(torch)
        assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1], name
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=name)


def _logits_by_row(L, x, w):
    # The lecture's `logits[i] = model(x[[i]])`: a [1, 3] value into a row of 3.
    logits = L.zeros(2, 3)
    for i in range(2):
        logits[i] = (x[[i]] @ w).tanh()
    return logits


def test_setitem_of_a_leading_one_value_has_torchs_gradient():
    rng = np.random.default_rng(14)
    run_modes(_logits_by_row, [rng.standard_normal((2, 4)), rng.standard_normal((4, 3))],
              (True, True))


def test_gather_and_scatter_add_of_0d_tensors_match_torch():
    # PyTorch counts a 0-d tensor as one of shape [1] in gather and scatter.
    got, want = [], []
    for lib, out in ((nbgrad, got), (torch, want)):
        s = lib.tensor(3.0, requires_grad=True)
        y = lib.gather(s, 0, lib.tensor([0, 0]))
        y.sum().backward()
        out += [y.tolist(), s.grad.tolist(), s.scatter_add(0, lib.tensor(0), lib.tensor(2.0)).tolist(),
                tuple(lib.ones(3).gather(0, lib.tensor(2)).shape)]
    assert got == want


def test_one_hot_matches_torch():
    for labels, num_classes in [([0, 2, 1], -1), ([[0, 2], [1, 1]], 4), ([], 3), (2, 3)]:
        got = NF.one_hot(nbgrad.tensor(labels, dtype=nbgrad.int64), num_classes)
        want = TF.one_hot(torch.tensor(labels, dtype=torch.int64), num_classes)
        assert got.dtype == nbgrad.int64 and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_split_and_chunk_sizes_match_torch():
    cases = [("split", 2), ("split", [2, 3]), ("split", [5, 0]), ("split", 10), ("chunk", 3),
             ("chunk", 2), ("chunk", 10)]
    for op, arg in cases:
        for size in (5, 6, 0):
            if op == "split" and not isinstance(arg, int) and sum(arg) != size:
                continue
            got = [p.shape[0] for p in getattr(nbgrad.ones(size, 2), op)(arg)]
            want = [p.shape[0] for p in getattr(torch.ones(size, 2), op)(arg)]
            assert got == want, (op, arg, size)


# An integer (or x[True]) beside an array index: NumPy counts it as an advanced index, and
# puts the advanced dimensions first when they are not side by side (x[1, :, t] is (2, 4)
# there); PyTorch selects the integer's dimension first (4, 2). nbgrad read NumPy's way:
# another shape, or where the shapes agreed the elements transposed (a random search of
# indices against torch, seeds 147, 193, 207 and 429).
INTEGER_BESIDE_ARRAY = [
    "[1, :, L.tensor([0, 2])]",
    "[1, 0::1, L.tensor([-2, 1, -3, -1])]",
    "[None, L.tensor([1, 0]), 1:, 1]",
    "[1, 1:, None, L.tensor([0, 2])]",
    "[L.tensor(2), ..., L.tensor([True, False, True])]",
    "[True, 1, :, L.tensor([0, 1])]",
    "[np.array(3), 1:, L.tensor([0, 2])]",
]


@pytest.mark.parametrize("deferred_mode", [False, True], ids=["immediate", "deferred"])
@pytest.mark.parametrize("write", [False, True], ids=["getitem", "setitem"])
@pytest.mark.parametrize("index", INTEGER_BESIDE_ARRAY)
def test_an_integer_beside_an_array_index_reads_as_torch(index, write, deferred_mode,
                                                          monkeypatch):
    monkeypatch.setattr(deferred, "enabled", deferred_mode)
    rng = rng_for(f"integer-beside-array-{index}")
    x0, up0 = rng.standard_normal((4, 4, 3)), rng.standard_normal((4, 4, 3))
    results = []
    for L in (nbgrad, torch):
        x = L.tensor(x0, requires_grad=True)
        y = x * 1
        scope = {"L": L, "np": np, "y": y}
        if write:
            exec(f"y{index} = (y{index} * 2).exp()", scope)
            out = y
        else:
            out = eval(f"y{index}", scope)
        up = L.tensor(np.resize(up0, tuple(out.shape)))
        (out * up).sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy()))
    (out, grad), (torch_out, torch_grad) = results
    assert out.shape == torch_out.shape
    assert_close(out, torch_out)
    assert_close(grad, torch_grad)
