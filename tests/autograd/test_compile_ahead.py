"""The compile helper (nbgrad._core.compile_ahead): on an empty kernel cache, a forward that
compiled asks a second process to compile its backward; that process's kernels reach this
one through the shared Numba cache. Each test runs in a new process with empty caches."""
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import time

import numpy as np
import torch

from conftest import child_env

# A convolution's forward, then (after the helper has finished) its backward: the VJP kernel's
# compile statistics, and the gradients.
CONV_SCRIPT = """
import json, sys
import numpy as np
import nbgrad
from nbgrad._core import compile_ahead
from nbgrad.ops import conv
x = nbgrad.tensor(np.array(json.loads(sys.argv[1]), np.float32), requires_grad=True)
w = nbgrad.tensor(np.array(json.loads(sys.argv[2]), np.float32), requires_grad=True)
y = nbgrad.nn.functional.conv2d(x, w, padding=1).detach()  # the forward runs (and compiles)
started = compile_ahead._process is not None
{before_backward}
compile_ahead.wait()
nbgrad.nn.functional.conv2d(x, w, padding=1).square().sum().backward()
stats = conv.conv_backward_kernel.stats
print(json.dumps(dict(started=started, hits=sum(stats.cache_hits.values()),
                      misses=sum(stats.cache_misses.values()), gx=x.grad.tolist(),
                      gw=w.grad.tolist())))
"""


def _run(tmp_path, helper, before_backward="", deferred="1"):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    env = dict(child_env(), NBGRAD_COMPILE_HELPER=helper, NBGRAD_DEFERRED=deferred,
               NUMBA_CACHE_DIR=str(tmp_path / "numba"), NBGRAD_CACHE_DIR=str(tmp_path / "nbgrad"))
    script = CONV_SCRIPT.format(before_backward=before_backward)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(x.tolist()),
                           json.dumps(w.tolist())], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, padding=1).square().sum().backward()
    np.testing.assert_allclose(report["gx"], tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(report["gw"], tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    return report


def test_the_helper_compiles_the_backward_that_this_process_then_loads(tmp_path):
    report = _run(tmp_path, "1")
    assert report["started"]
    assert (report["hits"], report["misses"]) == (1, 0)


def test_deferred_and_immediate_calls_both_ask(tmp_path):
    report = _run(tmp_path, "1", deferred="0")
    assert (report["hits"], report["misses"]) == (1, 0)


def test_without_the_helper_this_process_compiles_it(tmp_path):
    report = _run(tmp_path, "0")
    assert not report["started"]
    assert (report["hits"], report["misses"]) == (0, 1)


def test_a_helper_that_died_changes_nothing_but_the_compile(tmp_path):
    # Killed before it could compile anything: the backward compiles here, and later forwards
    # that compile do not fail on the broken pipe.
    report = _run(tmp_path, "1", before_backward=(
        "compile_ahead._process.kill(); compile_ahead._process.wait()\n"
        "z = nbgrad.tensor([1.0, 2.0], requires_grad=True)\n"
        "(z.cumsum(0) * 3).sum().backward()"))
    assert report["started"]
    assert report["misses"] == 1


def test_a_forked_child_starts_its_own_helper(tmp_path):
    # The child asks a helper of its own, and its exit (atexit) ends that one, not the
    # parent's, which then still compiles the parent's backward.
    if not hasattr(os, "fork"):
        return
    report = _run(tmp_path, "1", before_backward=(
        "import os\n"
        "parent = compile_ahead._process\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    z = nbgrad.tensor([1.0, 2.0], requires_grad=True)\n"
        "    z.cumsum(0).detach()\n"
        "    sys.exit(0 if compile_ahead._process not in (None, parent) else 1)\n"
        "assert os.waitpid(pid, 0)[1] == 0\n"
        "assert parent.poll() is None"))
    assert report["started"]
    assert (report["hits"], report["misses"]) == (1, 0)


def _stream(*requests):
    data = b""
    for number, (priority, function, arguments) in enumerate(requests):
        message = pickle.dumps((priority, function, arguments))
        data += struct.pack("<II", len(message), number) + message
    return io.BytesIO(data)


def test_the_helper_does_first_things_first_and_survives_a_failure(capsys):
    from nbgrad._core import compile_ahead
    now, first, last = compile_ahead.NOW, compile_ahead.FIRST, compile_ahead.LAST
    stream = _stream((last, "builtins:print", ("update",)),
                     (first, "builtins:print", ("backward 1",)),
                     (first, "math:sqrt", ("not a number",)),
                     (first, "no.such.module:f", ()),
                     (first, "builtins:print", ("backward 2",)),
                     (now, "builtins:print", ("stage",)))
    reports = io.BytesIO()
    # NOTE: the reader thread may still be pushing when the first request is taken, so only
    # the order within a priority is certain.
    compile_ahead.serve(stream, idle_exit_s=5, reports=reports)
    printed = capsys.readouterr().out.split("\n")
    assert sorted(printed[:-1]) == ["backward 1", "backward 2", "stage", "update"]
    assert printed.index("backward 1") < printed.index("backward 2")
    # Each request done, the failed ones too, is reported by its number, in the order done.
    done = [int(line) for line in reports.getvalue().decode().splitlines()]
    assert sorted(done) == list(range(6))
    assert done.index(1) < done.index(2) < done.index(3) < done.index(4)


# The helper sleeps in place of compiling: wait_for waits until the helper has done the
# request (sent once however often asked), or has gone.
WAIT_SCRIPT = """
import json, sys, time
from nbgrad._core import compile_ahead
class Waiter:
    pass
first, same = Waiter(), Waiter()
start = time.perf_counter()
compile_ahead.ask("time:sleep", 1.0, waiter=first)
compile_ahead.ask("time:sleep", 1.0, waiter=same)
if sys.argv[1] == "kill":
    compile_ahead._process.kill()
compile_ahead.wait_for(first)
waited = time.perf_counter() - start
done = 0 in compile_ahead._done
start = time.perf_counter()
compile_ahead.wait_for(same)
print(json.dumps(dict(waited=waited, done=done, again=time.perf_counter() - start,
                      requests=len(compile_ahead._numbers))))
"""


def _wait_report(tmp_path, mode):
    env = dict(child_env(), NBGRAD_COMPILE_HELPER="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               NBGRAD_CACHE_DIR=str(tmp_path / "nbgrad"))
    proc = subprocess.run([sys.executable, "-c", WAIT_SCRIPT, mode], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_this_process_waits_until_the_helper_has_done_a_request(tmp_path):
    report = _wait_report(tmp_path, "wait")
    assert report["requests"] == 1
    assert report["done"] and report["waited"] > 0.9
    assert report["again"] < 0.5


def test_a_helper_that_died_is_not_waited_for(tmp_path):
    report = _wait_report(tmp_path, "kill")
    assert not report["done"] and report["waited"] < 5


def test_the_helper_ends_when_idle():
    from nbgrad._core import compile_ahead
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    compile_ahead.serve(os.fdopen(read_end, "rb"), idle_exit_s=0.2)  # nothing ever comes
    assert time.perf_counter() - started < 30
    # NOTE: the reader thread still blocks on the pipe: closing the write end ends it (it
    # owns the read end's stream from here on).
    os.close(write_end)


OPTIMIZER_SCRIPT = """
import json
import nbgrad
from nbgrad._core import compile_ahead
w = nbgrad.zeros(3, requires_grad=True)
optimizer = nbgrad.optim.Adam([w], lr=0.1, amsgrad=True)
started = compile_ahead._process is not None  # a cold cache: the helper starts at once
compile_ahead.wait()
(w * nbgrad.tensor([1.0, -2.0, 3.0])).sum().backward()
optimizer.step()
stats = optimizer.rule.kernel.stats
print(json.dumps(dict(started=started, hits=sum(stats.cache_hits.values()),
                      misses=sum(stats.cache_misses.values()), w=w.tolist())))
"""


def test_an_optimizer_made_on_a_cold_cache_has_its_update_compiled_by_the_helper(tmp_path):
    env = dict(child_env(), NBGRAD_COMPILE_HELPER="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               NBGRAD_CACHE_DIR=str(tmp_path / "nbgrad"))
    proc = subprocess.run([sys.executable, "-c", OPTIMIZER_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["started"]
    assert (report["hits"], report["misses"]) == (1, 0)
    w = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=0.1, amsgrad=True)
    (w * torch.tensor([1.0, -2.0, 3.0])).sum().backward()
    optimizer.step()
    np.testing.assert_allclose(report["w"], w.detach().numpy(), rtol=1e-6)
