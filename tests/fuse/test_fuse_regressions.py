"""Regressions of the fused paths (nbgrad.compile and the deferred mode's fused graphs).

Each test is a reproducer from issue 10 (items 1, 4, 5 and 11) and compares with PyTorch.
"""
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import nbgrad
import nbgrad.nn.functional as F
from nbgrad.fuse import deferred, stages
from nbgrad.models.resnet import BasicBlock
from conftest import assert_close, rng_for

STEPS = deferred.FUSE_AFTER + 4  # the deferred loop runs its fused graph 4 times


@pytest.fixture(autouse=True)
def fresh_deferral(monkeypatch):
    """Deferral on (the default mode), the real FUSE_AFTER, no graph seen yet."""
    deferred.realize_all()
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    yield
    deferred.realize_all()


def both(array, requires_grad=False):
    """The same values as an nbgrad and a torch tensor."""
    array = np.array(array)
    return (nbgrad.tensor(array, requires_grad=requires_grad),
            torch.tensor(array, requires_grad=requires_grad))


def assert_grad(actual, expected, what):
    if expected.grad is None:
        assert actual.grad is None, f"{what}: .grad is {actual.grad!r}, torch's is None"
    else:
        assert actual.grad is not None, f"{what}: .grad is None, torch's is {expected.grad}"
        assert_close(actual.grad, expected.grad)


# --- item 1: arguments are inputs by position ---------------------------------------------

def test_compile_writes_grad_to_the_arguments_of_the_call():
    """The reproducer: the third call's argument gets the gradient, not the traced one."""
    w, tw = both([1., 2.], requires_grad=True)

    def body(lib_w):
        def step(x):
            out = (x * lib_w).sum()
            out.backward()
            return out
        return step

    step, torch_step = nbgrad.compile(body(w)), body(tw)
    a, ta = both([1., 1.], requires_grad=True)
    for _ in range(2):
        a.grad = w.grad = ta.grad = tw.grad = None
        assert_close(step(a), torch_step(ta))
    a.grad = w.grad = ta.grad = tw.grad = None
    b, tb = both([5., 5.], requires_grad=True)
    assert_close(step(b), torch_step(tb))
    assert_grad(b, tb, "b")
    assert_grad(a, ta, "a")
    assert_grad(w, tw, "w")
    assert step.stats["fused_calls"] == 2


def test_compile_argument_grad_accumulates_over_calls():
    """No .grad is reset: each call adds into the .grad of the tensors it is given, as the
    plain (eager) run of the same function and torch do."""
    rng = rng_for("accumulate")
    values = [rng.standard_normal(3).astype(np.float32) for _ in range(3)]
    w_values = rng.standard_normal(3).astype(np.float32)

    def make(lib, w):
        def step(x):
            out = (x * w).exp().sum()
            out.backward()
            return out
        return step

    runs = {}
    for mode in ("compiled", "eager", "torch"):
        lib = torch if mode == "torch" else nbgrad
        w = lib.tensor(w_values, requires_grad=True)
        xs = [lib.tensor(v, requires_grad=True) for v in values]
        step = make(lib, w)
        if mode == "compiled":
            step = nbgrad.compile(step)
        outs = [step(xs[i]).detach().numpy().copy() for i in (0, 0, 1, 0, 2, 1, 1)]
        runs[mode] = (outs, [x.grad for x in xs], w.grad, step)
    for mode in ("compiled", "eager"):
        outs, grads, w_grad, _ = runs[mode]
        t_outs, t_grads, t_w_grad, _ = runs["torch"]
        for out, t_out in zip(outs, t_outs):
            np.testing.assert_allclose(out, t_out, rtol=1e-5)
        for grad, t_grad in zip(grads, t_grads):
            assert_close(grad, t_grad)
        assert_close(w_grad, t_w_grad)
    assert runs["compiled"][3].stats["fused_calls"] > 0


def run_sequence(lib, calls, compile_it):
    """Run a step that reads global-like `w` and its argument on each `calls` entry (an
    index into [w, a, b] per argument), with .grad reset every third call; the results."""
    w = lib.tensor([1., 2., 3.], requires_grad=True)
    a = lib.tensor([0.5, -1., 2.], requires_grad=True)
    b = lib.tensor([4., 0., -2.], requires_grad=True)
    tensors = [w, a, b]

    def step(*xs):
        out = sum(((x * w) ** 2).sum() for x in xs) + (w * 3.0).sum()
        out.backward()
        return out

    if compile_it:
        step = nbgrad.compile(step)
    record = []
    for number, picks in enumerate(calls):
        if number % 3 == 0:
            for t in tensors:
                t.grad = None
        out = step(*[tensors[i] for i in picks])
        record.append([out.detach().numpy().copy()] +
                      [None if t.grad is None else t.grad.detach().numpy().copy()
                       for t in tensors])
    return record, step


def assert_same_record(actual, expected):
    for call, (got, want) in enumerate(zip(actual, expected)):
        for what, (g, e) in enumerate(zip(got, want)):
            if e is None:
                assert g is None, f"call {call}, item {what}: {g!r}, torch: None"
            else:
                assert g is not None, f"call {call}, item {what}: None, torch: {e}"
                np.testing.assert_allclose(g, e, rtol=1e-5, err_msg=f"call {call}, item {what}")


@pytest.mark.parametrize("calls", [
    # The argument is also the global the step reads, then another tensor, and back.
    [(0,), (0,), (1,), (1,), (0,), (2,), (0,), (1,)],
    # Traced with another tensor first, then called with the global.
    [(1,), (1,), (0,), (2,), (0,), (1,)],
    # One tensor as two arguments, then two tensors, then the global twice.
    [(1, 1), (1, 1), (1, 2), (2, 1), (2, 2), (0, 0), (0, 1), (1, 0)],
], ids=["global_first", "global_later", "repeated_arguments"])
def test_compile_arguments_aliasing_each_other_or_a_global(calls):
    expected, _ = run_sequence(torch, calls, compile_it=False)
    actual, step = run_sequence(nbgrad, calls, compile_it=True)
    assert_same_record(actual, expected)
    assert step.stats["fused_calls"] > 0


def test_compile_argument_sharing_an_array_with_another():
    """x and x.detach() are one array: a later call with two arrays is two inputs."""
    def step(x, y):
        out = (x * y).sum()
        out.backward()
        return out

    compiled = nbgrad.compile(step)
    for first, second in ([1., 2.], None), ([3., 4.], None), ([1., 2.], [5., 6.]), \
            ([1., 1.], [2., 3.]):
        x, tx = both(first, requires_grad=True)
        y, ty = (x.detach(), tx.detach()) if second is None else both(second)
        assert_close(compiled(x, y), step(tx, ty))
        assert_grad(x, tx, "x")


# --- item 4: every parameter value is valid code in fused code -------------------------------

CLAMPS = {
    "min": lambda x: x.clamp(min=0.25),
    "max": lambda x: x.clamp(max=0.25),
    "both": lambda x: x.clamp(min=-0.5, max=0.25),
    "min_negative_zero": lambda x: x.clamp(min=-0.0),
    "max_inf": lambda x: x.clamp(max=math.inf),
    "min_minus_inf": lambda x: x.clamp(min=-math.inf),
}


def clamp_step(lib, clamp, x, w, index):
    """A step with a float clamp of a parameter and int64 clamps (whose open side is bound
    by int64's extremes) feeding the loss."""
    k = index.clamp(min=1) + index.clamp(max=2) + index.clamp(min=-(2 ** 62), max=2 ** 62)
    out = (clamp(w) * x * k.to(x.dtype)).sum()
    out.backward()
    return out


@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_clamp_in_a_deferred_loop_past_fuse_after(name, fused_runs):
    rng = rng_for(f"clamp-deferred-{name}")
    w, tw = both(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    index, t_index = both(np.array([-3, 0, 2, 5]))
    for step in range(STEPS):
        x, tx = both(rng.standard_normal(4).astype(np.float32), requires_grad=True)
        w.grad = tw.grad = None
        out = clamp_step(nbgrad, CLAMPS[name], x, w, index)
        expected = clamp_step(torch, CLAMPS[name], tx, tw, t_index)
        assert_close(out, expected)
        assert_grad(x, tx, f"x, step {step}")
        assert_grad(w, tw, f"w, step {step}")
    assert fused_runs["runs"] == STEPS - deferred.FUSE_AFTER


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_clamp_in_compile_called_with_fresh_tensors(name, dtype):
    rng = rng_for(f"clamp-compile-{name}-{dtype}")
    w, tw = both(rng.standard_normal(4).astype(dtype), requires_grad=True)
    compiled = nbgrad.compile(lambda x, index: clamp_step(nbgrad, CLAMPS[name], x, w, index))
    for call in range(3):
        x, tx = both(rng.standard_normal(4).astype(dtype), requires_grad=True)
        index, t_index = both(np.array([-3, 0, 2, 5]) + call)
        w.grad = tw.grad = None
        assert_close(compiled(x, index), clamp_step(torch, CLAMPS[name], tx, tw, t_index))
        assert_grad(x, tx, f"x, call {call}")
        assert_grad(w, tw, f"w, call {call}")
    assert compiled.stats["fused_calls"] == 2, compiled.breaks


# A sum's gradient reads the incoming gradient in the sum's keepdim shape. Where that
# gradient is a reshape made inside the fused code (unsqueeze's backward) of another rank,
# the generated loop indexed it at the declared rank: a TypingError, the step not run (random
# graphs, seeds 777004 and 777025 of tests/fuse/test_random_graphs.py).
SUMS_OF_RESHAPED_GRADIENTS = {
    "0d_read_as_1": ((2,), lambda x: x.sum(0, keepdim=True).sum(-1).unsqueeze(0)),
    "1_element": ((1,), lambda x: x.sum(-1).unsqueeze(0)),
    "to_a_view": ((2, 1), lambda x: x.sum(0).sum(0).view(1, 1)),
    "1d_read_as_2d": ((2, 1), lambda x: (x + x.sum(0).clamp(min=-0.5)).sum(1).unsqueeze(0)),
}


@pytest.mark.parametrize("mode", ["compile", "deferred"])
@pytest.mark.parametrize("name", sorted(SUMS_OF_RESHAPED_GRADIENTS))
def test_sum_of_a_gradient_reshaped_to_another_rank_fuses(name, mode, fused_runs):
    shape, fn = SUMS_OF_RESHAPED_GRADIENTS[name]
    rng = rng_for(f"sum-reshaped-{name}")

    def step(lib, x):
        out = fn(x)
        (out * lib.arange(1.0, out.numel() + 1).reshape(out.shape)).sum().backward()
        return out

    run = nbgrad.compile(lambda x: step(nbgrad, x)) if mode == "compile" else \
        (lambda x: step(nbgrad, x))
    for call in range(STEPS):
        x, tx = both(rng.standard_normal(shape), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (the failed compile warned and ran eagerly)
            assert_close(run(x), step(torch, tx))
        assert_grad(x, tx, f"x, call {call}")
    if mode == "compile":
        assert run.stats["fused_calls"] == STEPS - 1, run.breaks
    else:
        assert fused_runs["runs"] == STEPS - deferred.FUSE_AFTER


def test_emitted_numbers_read_back_as_the_same_values():
    """Every literal the code generator writes evaluates (as Numba code) to the value."""
    import numba
    from nbgrad.fuse.codegen import Emitter

    cases = [(math.inf, "float32"), (-math.inf, "float64"), (math.nan, "float32"),
             (-0.0, "float64"), (0.1, "float32"), (1e-300, "float64"),
             (np.iinfo(np.int64).min, "int64"), (np.iinfo(np.int64).max, "int64"),
             (np.float64(2.5), "float64"), (np.int64(-7), "int64"), (True, "bool"),
             (np.bool_(False), "bool"), (np.float64("-inf"), "float32")]
    source = "def values():\n    return (" + ", ".join(
        Emitter.literal(value, dtype) for value, dtype in cases) + ", " + ", ".join(
        Emitter.scalar(value) for value in (True, -100, 2 ** 63 - 1, math.nan, -0.0)) + ",)\n"
    namespace = {"np": np}
    exec(source, namespace)
    kernel = numba.njit(namespace["values"])
    got = kernel()
    want = [np.dtype(dtype).type(value) for value, dtype in cases] + \
        [np.bool_(True), np.int64(-100), np.int64(2 ** 63 - 1), np.float64(math.nan),
         np.float64(-0.0)]
    types = kernel.nopython_signatures[0].return_type
    for g, w, numba_type in zip(got, want, types):
        assert numba_type == numba.from_dtype(w.dtype), (g, w, numba_type)
        np.testing.assert_array_equal(np.array(g, w.dtype), w)
        if w.dtype.kind == "f":
            assert math.copysign(1, g) == math.copysign(1, w), (g, w)


# --- item 5: a precondition on a view -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_of_one_sample_in_compile(dtype):
    """A 1-D input and a 0-d target: the target is range-checked through a view of it."""
    rng = rng_for(f"cross-entropy-1d-{dtype}")

    def step(x, target):
        loss = F.cross_entropy(x, target)
        loss.backward()
        return loss

    compiled = nbgrad.compile(step)
    for call in range(3):
        x, tx = both(rng.standard_normal(5).astype(dtype), requires_grad=True)
        target, t_target = both(np.int64(call + 1))
        expected = torch.nn.functional.cross_entropy(tx, t_target)
        expected.backward()
        assert_close(compiled(x, target), expected)
        assert_grad(x, tx, f"x, call {call}")
    assert compiled.stats["fused_calls"] == 2, compiled.breaks
    with pytest.raises(IndexError):  # the view of a fresh target is still range-checked
        compiled(nbgrad.randn(5, dtype=getattr(nbgrad, dtype), requires_grad=True),
                 nbgrad.tensor(5))


# --- item 11: caches ------------------------------------------------------------------------

CACHE_SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    warnings.simplefilter("always")
    caught = warnings.catch_warnings(record=True)
    caught_list = caught.__enter__()
    warnings.simplefilter("always")
    import nbgrad

    def two(x, y):
        out = (x * y + x).sum()
        out.backward()
        return out

    def five(a, b, c, d, e):
        out = (a * b - c * d + e.exp()).sum()
        out.backward()
        return out

    results = {}
    for name, step, count in (("two", two, 2), ("five", five, 5)):
        compiled = nbgrad.compile(step)
        values = []
        for call in range(2):
            args = [nbgrad.tensor(np.arange(3.0) + i + call, requires_grad=True)
                    for i in range(count)]
            out = compiled(*args)
            values.append([out.item()] + [a.grad.numpy().tolist() for a in args])
        results[name] = {"values": values, "stats": compiled.stats}
    results["warnings"] = [str(w.message) for w in caught_list]
    print(json.dumps(results))
""")


def run_cache_script(root, extra_env=None):
    env = {key: value for key, value in os.environ.items()
           if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(NBGRAD_CACHE_DIR=str(root / "nbgrad"), NUMBA_CACHE_DIR=str(root / "numba"))
    env.update(extra_env or {})
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def fused_data_files(root):
    """The Numba data files of the two fused steps, the one of fewer arguments first."""
    files = sorted((root / "numba").rglob("*fused_step*.nbc"))
    assert len(files) == 2, files
    sources = {path.stem: path for path in (root / "nbgrad" / "generated").glob("*fused*.py")}
    return sorted(files, key=lambda f: sources[f.name.split(".")[0]].read_text().count("arg"))


def test_swapped_cached_kernels_are_detected_and_rebuilt(tmp_path):
    first = run_cache_script(tmp_path)
    assert first["two"]["stats"]["cache_misses"] == 1
    two, five = fused_data_files(tmp_path)
    two_bytes, five_bytes = two.read_bytes(), five.read_bytes()
    two.write_bytes(five_bytes)
    five.write_bytes(two_bytes)
    second = run_cache_script(tmp_path)
    for name in ("two", "five"):
        np.testing.assert_allclose(np.concatenate([np.ravel(v) for v in sum(
            second[name]["values"], [])]), np.concatenate([np.ravel(v) for v in sum(
                first[name]["values"], [])]))
        assert second[name]["stats"]["fused_calls"] == 1
    assert sum("foreign Numba cache entry" in w for w in second["warnings"]) >= 2, \
        second["warnings"]
    # The rebuilt entries are written back: a third process loads them without warnings.
    third = run_cache_script(tmp_path)
    assert not [w for w in third["warnings"] if "nbgrad" in w], third["warnings"]
    assert third["two"]["stats"]["cache_hits"] == 1


def test_unusable_cache_directory_leaves_no_temporary_directories(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    report = run_cache_script(tmp_path, {"NBGRAD_CACHE_DIR": str(blocked / "nbgrad"),
                                         "TMPDIR": str(scratch)})
    assert report["two"]["stats"]["fused_calls"] == 1
    unusable = [w for w in report["warnings"] if "is not usable" in w]
    assert len(unusable) == 1, report["warnings"]
    assert not list(scratch.glob("nbgrad-*"))
    # Nor Numba cache entries filed under that directory's path, which no process reuses.
    assert not list((tmp_path / "numba").glob("nbgrad-*"))


# --- fused elementwise ops on inputs of mixed dtypes --------------------------------------

def mixed_step(lib, a, b, k):
    """float64 and float32 leaves and an int64 tensor, promoted as PyTorch promotes them."""
    out = ((a * b + k) * 0.1 + b * b + (k > 1) * a).exp().sum()
    out.backward()
    return out


def mixed_inputs(rng, call):
    a, ta = both(rng.random(3), requires_grad=True)
    b, tb = both(rng.random((2, 3)).astype(np.float32), requires_grad=True)
    k, tk = both(np.array([0, 1, 2]) + call)
    return (a, b, k), (ta, tb, tk)


def test_mixed_dtypes_fuse_in_compile():
    """A float32 input of a float64 op is converted as it is read, as eager converts it;
    before, the step ran eagerly ("mul mixes dtypes float32 and float64")."""
    rng = rng_for("mixed-compile")
    compiled = nbgrad.compile(lambda a, b, k: mixed_step(nbgrad, a, b, k))
    for call in range(3):
        ours, theirs = mixed_inputs(rng, call)
        assert_close(compiled(*ours), mixed_step(torch, *theirs))
        for mine, torch_tensor, name in zip(ours[:2], theirs[:2], "ab"):
            assert_grad(mine, torch_tensor, f"{name}, call {call}")
    assert compiled.stats["fused_calls"] == 2, compiled.breaks


def test_mixed_dtypes_in_a_deferred_loop_past_fuse_after(fused_runs):
    rng = rng_for("mixed-deferred")
    for step in range(STEPS):
        ours, theirs = mixed_inputs(rng, step % 2)
        assert_close(mixed_step(nbgrad, *ours), mixed_step(torch, *theirs))
        for mine, torch_tensor, name in zip(ours[:2], theirs[:2], "ab"):
            assert_grad(mine, torch_tensor, f"{name}, step {step}")
    assert fused_runs["runs"] == STEPS - deferred.FUSE_AFTER


def test_compile_argument_on_the_array_of_a_global():
    """w.detach() as the argument shares w's array: traced so, a later call with another
    array must not read w's values for it (nor the other way round)."""
    w, tw = both([1., 2., 3.], requires_grad=True)

    def body(lib_w):
        def step(x):
            out = (x * lib_w * lib_w).sum()
            out.backward()
            return out
        return step

    step, torch_step = nbgrad.compile(body(w)), body(tw)
    for values in (None, [4., 5., 6.], None, [0.5, 0.25, 2.], None):
        w.grad = tw.grad = None
        x, tx = (w.detach(), tw.detach()) if values is None else both(values)
        assert_close(step(x), torch_step(tx))
        assert_grad(w, tw, "w")
    assert step.stats["fused_calls"] >= 2, step.breaks


def _manual_sgd_step(lib, x, w):
    """The tutorial's step without an optimizer: in-place writes to the argument and its .grad
    (sub_, mul_, zero_), and an in-place op on an intermediate (clamp_)."""
    h = x @ w
    h.clamp_(min=0)
    loss = (h * h).sum()
    loss.backward()
    with lib.no_grad():
        w.grad.mul_(0.5)
        w.sub_(0.1 * w.grad)
        w.grad.zero_()
    return loss


def test_in_place_writes_to_arguments_in_compile_match_torch():
    # Before: the write-back of an in-place op was not traced, so from the second fused call
    # on, `w.sub_(...)` was silently dropped.
    rng = rng_for("manual_sgd")
    x_values, w_values = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    x, x_ref = both(x_values)
    w, w_ref = both(w_values, requires_grad=True)
    step = nbgrad.compile(_manual_sgd_step, fullgraph=True)
    for _ in range(4):
        loss = step(nbgrad, x, w)
        loss_ref = _manual_sgd_step(torch, x_ref, w_ref)
        assert_close(loss, loss_ref.detach())
        assert_close(w, w_ref.detach())
        assert_close(w.grad, w_ref.grad)
    # The first call starts without a .grad and traces; the second starts with one (a new
    # specialization) and traces again; the last two run fused.
    assert step.stats["fused_calls"] == 2


def test_a_float16_array_in_a_compiled_step_runs_eagerly_with_a_warning():
    half, half_ref = both(np.array([1.0, 2.0, 3.0], np.float16))
    step = nbgrad.compile(lambda x: (x * half).sum().backward())
    with pytest.warns(RuntimeWarning, match="a float16 array of shape") as caught:
        for _ in range(3):
            x, x_ref = both([0.5, -1.0, 2.0], requires_grad=True)
            step(x)
            (x_ref * half_ref).sum().backward()
            assert_close(x.grad, x_ref.grad)
    assert len(caught) == 1 and step.stats["fused_calls"] == 0


def test_an_indexed_write_outside_autograd_runs_eagerly():
    """`g[x < 0] = 0` under no_grad writes into g's array, which a trace does not see: the
    step runs eagerly (it once fused without the write, and later calls were wrong)."""
    def step(w, shift):
        with nbgrad.no_grad():
            x = w * 2 - 1 + shift
            g = x.clone()
            g[x < 0] = 0
            w -= 0.1 * g
        return x.sum()

    results = []
    for compiled in (False, True):
        w = nbgrad.tensor([0.2, 0.7, -0.4])
        run = nbgrad.compile(step) if compiled else step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            results.append([run(w, nbgrad.tensor(0.4 * i)).item() for i in range(4)] + w.tolist())
    assert results[0] == results[1]
    with pytest.raises(nbgrad.fuse.GraphBreak, match="indexed write"):
        nbgrad.compile(step, fullgraph=True)(nbgrad.tensor([0.2, 0.7]), nbgrad.tensor(0.0))


class _TorchBasicBlock(torch.nn.Module):
    """nbgrad.models.resnet.BasicBlock (torchvision's) in torch, under the same names."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = None if stride == 1 else torch.nn.Sequential(
            torch.nn.Conv2d(inplanes, planes, 1, stride, bias=False), torch.nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def test_compiled_residual_blocks_match_torch_in_the_fused_calls(monkeypatch):
    """ResNet's blocks (conv, batch norm, in-place ReLU, `out += identity` whose gradient goes
    two ways, a strided 1x1 downsample) in a compiled SGD-with-momentum step: every call's
    prediction, gradients, parameters and running statistics are torch's. The compiled
    ResNet-18 tutorial step (tests/models/test_resnet.py) in small, in float64 as it is: a
    float32 second step of it is ill-conditioned (a ReLU input within float32's rounding of
    zero). The step is cut into stages (`nbgrad.fuse.stages`) as ResNet-18's is."""
    monkeypatch.setattr(stages, "STAGE_LINES", 60)
    reference = torch.nn.Sequential(
        _TorchBasicBlock(4, 8, 2), _TorchBasicBlock(8, 8, 1), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():  # batch-norm state that is not the identity
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    downsample = nbgrad.nn.Sequential(nbgrad.nn.Conv2d(4, 8, 1, 2, bias=False),
                                      nbgrad.nn.BatchNorm2d(8))
    model = nbgrad.nn.Sequential(
        BasicBlock(4, 8, 2, downsample), BasicBlock(8, 8), nbgrad.nn.AdaptiveAvgPool2d(1),
        nbgrad.nn.Flatten(), nbgrad.nn.Linear(8, 3)).double()
    model.load_state_dict({key: nbgrad.tensor(value.numpy()) for key, value in
                           reference.state_dict().items()})
    optimizers = [library.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
                  for library, net in ((nbgrad, model), (torch, reference))]

    def step(net, optimizer, data, labels):
        optimizer.zero_grad()
        prediction = net(data)
        (prediction - labels).sum().backward()
        optimizer.step()
        return prediction.detach()

    compiled = nbgrad.compile(lambda data, labels: step(model, optimizers[0], data, labels))
    rng = rng_for("residual blocks")
    for _ in range(3):  # traced, then the fused kernel twice
        data, data_ref = both(rng.standard_normal((2, 4, 8, 8)))
        labels, labels_ref = both(rng.standard_normal((2, 3)))
        assert_close(compiled(data, labels), step(reference, optimizers[1], data_ref, labels_ref))
        for (name, param), expected in zip(model.named_parameters(), reference.parameters()):
            assert_grad(param, expected, name)
        state = model.state_dict()
        for key, expected in reference.state_dict().items():
            assert_close(state[key], expected)
    assert compiled.stats["fused_calls"] == 2, compiled.explain()
    assert compiled.source.count("def stage_") >= 3
