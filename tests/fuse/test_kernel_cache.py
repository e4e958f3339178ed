"""The disk cache of compiled kernels: a second process skips compilation, a corrupted cache
is reported and bypassed, two processes fill one cache at once. (How a generated module is
named: test_cache.py.)

The tests run small scripts in subprocesses with NBGRAD_CACHE_DIR and NUMBA_CACHE_DIR pointing
into a temporary directory.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nbgrad
from conftest import ATOL, RTOL


# ---------------------------------------------------------------------------------------------
# The disk cache, in subprocesses.


CACHE_SCRIPT = r'''
import json, warnings
import numpy as np
import nbgrad
from nbgrad import nn

def build():
    nbgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return model, nbgrad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

def make_step(model, opt):
    loss_fn = nn.CrossEntropyLoss()
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step

rng = np.random.default_rng(0)
x = nbgrad.tensor(rng.standard_normal((64, 64)).astype(np.float32))
y = nbgrad.tensor(rng.integers(0, 10, 64))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    compiled = nbgrad.compile(make_step(*build()))
    fused = [compiled(x, y).item() for _ in range(2)]
eager_step = make_step(*build())
eager = [eager_step(x, y).item() for _ in range(2)]
print(json.dumps({"stats": compiled.stats, "fused": fused, "eager": eager,
                  "warnings": [str(w.message) for w in caught]}))
'''


def cache_env(root):
    """The environment of a subprocess using the cache under `root` and this nbgrad."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(nbgrad.__file__)))
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, NBGRAD_CACHE_DIR=str(root / "nbgrad"),
                NUMBA_CACHE_DIR=str(root / "numba"), PYTHONPATH=path)


def run_cache_script(root):
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=cache_env(root), cwd=str(root),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(report["fused"], report["eager"], rtol=RTOL, atol=ATOL)
    return report


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache directory after one process compiled the digits-sized step, and its reports."""
    root = tmp_path_factory.mktemp("fuse_cache")
    first = run_cache_script(root)
    second = run_cache_script(root)
    return root, first, second


def test_disk_cache_second_process_skips_compilation(warm_cache):
    root, first, second = warm_cache
    assert first["stats"]["cache_misses"] >= 1
    assert second["stats"]["cache_hits"] >= 1
    assert second["stats"]["cache_misses"] == 0
    assert second["fused"] == first["fused"]
    assert [w for w in first["warnings"] + second["warnings"] if "nbgrad" in w] == []
    generated = list((root / "nbgrad" / "generated").glob("*.py"))
    assert any("def fused_step" in p.read_text() for p in generated)


GARBAGE = b"\xff\xfe\x00 not a cache file \x80\x81\x82" * 8


def _is_fused_file(path):
    if path.suffix == ".py":
        return "def fused_step" in path.read_text(errors="replace")
    return "fused_step" in path.name


CORRUPTIONS = {
    # The files of the fused step only: its generated module and Numba's index/data for it.
    "fused_step_files": lambda p: (p.suffix in (".nbi", ".nbc") or p.parent.name == "generated")
    and _is_fused_file(p),
    # Everything the brief names: every .nbi/.nbc and every generated .py.
    "every_nbi_nbc_and_generated_py": lambda p: p.suffix in (".nbi", ".nbc")
    or (p.suffix == ".py" and p.parent.name == "generated"),
    # The two halves of that, to tell the two failures apart.
    "every_generated_py": lambda p: p.suffix == ".py" and p.parent.name == "generated",
    "every_nbi_nbc": lambda p: p.suffix in (".nbi", ".nbc"),
}


@pytest.mark.parametrize("target", [
    "fused_step_files",
    "every_nbi_nbc_and_generated_py",
    "every_generated_py",
    "every_nbi_nbc",
])
def test_corrupted_cache_is_reported_and_bypassed(warm_cache, tmp_path, target):
    root, first, _ = warm_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    corrupted = [p for p in copy.rglob("*") if p.is_file() and CORRUPTIONS[target](p)]
    assert corrupted
    if target == "fused_step_files":
        assert {p.suffix for p in corrupted} == {".py", ".nbi", ".nbc"}
    for path in corrupted:
        path.write_bytes(GARBAGE)
    report = run_cache_script(copy)  # exits 0 and fused == eager
    np.testing.assert_allclose(report["fused"], first["fused"], rtol=RTOL, atol=ATOL)
    assert report["stats"]["fused_calls"] == 1
    assert any("nbgrad" in w and "cache" in w for w in report["warnings"]), report["warnings"]


def test_two_processes_compiling_at_once(tmp_path):
    """Two processes filling the same cold cache at the same time both succeed; a third reads it."""
    processes = [subprocess.Popen([sys.executable, "-c", CACHE_SCRIPT], env=cache_env(tmp_path),
                                  cwd=str(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        np.testing.assert_allclose(report["fused"], report["eager"], rtol=RTOL, atol=ATOL)
    third = run_cache_script(tmp_path)
    assert third["stats"]["cache_misses"] == 0 and third["stats"]["cache_hits"] >= 1


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_step_whose_record_of_callees_is_lost_is_compiled_again(warm_cache, tmp_path, damage):
    # A cached step calls nbgrad's kernels by their symbols (nbgrad._core.unlinked): loaded
    # from Numba's cache without its record of them, its first call could jump to nothing.
    root, first, _ = warm_cache
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    records = list(copy.rglob("*.callees"))
    assert records
    for path in records:
        if damage == "missing":
            path.unlink()
        else:
            path.write_bytes(GARBAGE)
    report = run_cache_script(copy)  # exits 0 and fused == eager
    assert report["fused"] == first["fused"]
    assert (report["stats"]["cache_hits"], report["stats"]["cache_misses"]) == (0, 1)
    assert all(path.read_bytes() != GARBAGE for path in records)  # written again
    assert run_cache_script(copy)["stats"]["cache_hits"] == 1


RECORD_SCRIPT = r'''
import json, pickle, pathlib, sys
import numpy as np
import nbgrad
from nbgrad import nn

for hidden in (32, 48):  # two steps making the same kernel calls (same argument types)
    model = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 4))
    opt = nbgrad.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    nbgrad.compile(step)(nbgrad.randn(8, 16), nbgrad.tensor(np.arange(8) % 4))
records = sorted(pathlib.Path(sys.argv[1]).rglob("*.callees"))
print(json.dumps([sorted(name for name, _, _ in pickle.loads(path.read_bytes()))
                  for path in records]))
'''


def test_every_step_records_the_kernels_it_calls(tmp_path):
    # Numba types a call once per process and argument types: the second step's record
    # must still name the kernels it shares with the first.
    done = subprocess.run([sys.executable, "-c", RECORD_SCRIPT, str(tmp_path / "nbgrad")],
                          env=cache_env(tmp_path), cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(records) == 2 and records[0] == records[1]
    assert "_linear_vjp_kernel" in records[0] and "_sgd_update" in records[0]


def _reports_of_two_processes(script, tmp_path):
    """The JSON that `script` prints last, from two processes in turn on one cache."""
    reports = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], env=cache_env(tmp_path),
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return reports


def test_a_step_cut_into_stages_loads_from_the_cache(tmp_path):
    # A cached step's stages, and the kernels they call, are loaded before the step.
    script = "import nbgrad.fuse.stages\nnbgrad.fuse.stages.STAGE_LINES = 10\n" + CACHE_SCRIPT
    reports = _reports_of_two_processes(script, tmp_path)
    generated = list((tmp_path / "nbgrad" / "generated").glob("*fused*.py"))
    assert sum(path.read_text().count("def stage_") for path in generated) >= 3
    first, second = reports
    assert (first["stats"]["cache_misses"], second["stats"]["cache_hits"]) == (1, 1)
    np.testing.assert_allclose(first["fused"], first["eager"], rtol=RTOL, atol=ATOL)
    assert second["fused"] == first["fused"]


HELPER_SCRIPT = """
import json, sys
import nbgrad.fuse.stages
nbgrad.fuse.stages.STAGE_LINES = 10
""" + CACHE_SCRIPT + """
module = next(m for name, m in sys.modules.items() if "_nbgrad_gen_fused" in name)
report = {"apart": len(module.APART), "stages": [
    (sum(value.stats.cache_hits.values()), sum(value.stats.cache_misses.values()))
    for name, value in sorted(vars(module).items()) if name.startswith("stage_")]}
print(json.dumps(report))
"""


def test_the_compile_helper_compiles_stages_that_this_process_loads(tmp_path):
    """On a cold cache, the compile helper compiles some of a staged step's stages (those
    that take only the step's arguments) while this process compiles the others: this
    process loads the helper's from the cache, with the kernels they call under the
    helper's names. The step's results are eager's, and a second process loads it all."""
    env = dict(cache_env(tmp_path), NBGRAD_COMPILE_HELPER="1")
    reports = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", HELPER_SCRIPT], env=env,
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.strip().splitlines()
        reports.append((json.loads(lines[-2]), json.loads(lines[-1])))
    (first, first_stages), (second, second_stages) = reports
    assert first_stages["apart"] >= 2
    loaded = [hits for hits, _ in first_stages["stages"]]
    assert 0 < sum(loaded) < len(loaded)  # the helper's stages, and this process's
    assert all(hits == 1 for hits, _ in second_stages["stages"])
    np.testing.assert_allclose(first["fused"], first["eager"], rtol=RTOL, atol=ATOL)
    assert second["fused"] == first["fused"]


READ_ONLY_SCRIPT = r'''
import json
import numpy as np
import nbgrad
import nbgrad.fuse.stages
nbgrad.fuse.stages.STAGE_LINES = 10

def step(a, b, k):
    out = ((a * b + k) * 0.1 + b * b + (k > 1) * a).exp().sum()
    out.backward()
    return out

rng = np.random.default_rng(0)
compiled = nbgrad.compile(step)
results = []
for call in range(3):
    a = nbgrad.tensor(rng.random(3), requires_grad=True)
    b = nbgrad.tensor(rng.random((2, 3)).astype(np.float32), requires_grad=True)
    results.append([compiled(a, b, nbgrad.tensor(np.arange(3) + call)).item()] + a.grad.tolist())
print(json.dumps({"stats": compiled.stats, "results": results}))
'''


def test_a_staged_step_called_with_other_read_only_flags_loads_from_the_cache(tmp_path):
    """The step is traced with writeable 0-d constants and called with read-only ones, which
    Numba compiles a second time, at the call. Before, that version's stages had symbols of
    their own that no record named, and the next process segfaulted on the cached step."""
    first, second = _reports_of_two_processes(READ_ONLY_SCRIPT, tmp_path)
    assert first["stats"]["fused_calls"] == 2 and second["stats"]["cache_hits"] == 1
    assert second["results"] == first["results"]


READ_ONLY_INPUT_SCRIPT = r'''
import json, warnings
import numpy as np
import nbgrad
warnings.simplefilter("ignore")  # (from_numpy of a read-only array warns, as torch does)

nbgrad.manual_seed(0)
conv = nbgrad.nn.Conv2d(2, 3, 3, padding=1)

def step(x):
    out = conv(x).sum()
    out.backward()
    return out

compiled = nbgrad.compile(step)
results = []
for call in range(3):
    x = np.random.default_rng(call).standard_normal((2, 2, 5, 5)).astype(np.float32)
    x.flags.writeable = call == 0
    conv.zero_grad()
    results.append([compiled(nbgrad.from_numpy(x)).item()] + conv.weight.grad.reshape(-1).tolist())
print(json.dumps({"stats": compiled.stats, "results": results}))
'''


def test_a_read_only_input_after_a_writeable_one_is_traced_again_and_loads_from_the_cache(
        tmp_path):
    """A step traced with a writeable input and called with a read-only one: Numba would
    compile the kernel again at the call, outside the record of its callees (the convolution
    kernels, for read-only input), and the next process segfaulted loading that version.
    Now the call does not fit, the step is traced again, and both versions are recorded."""
    first, second = _reports_of_two_processes(READ_ONLY_INPUT_SCRIPT, tmp_path)
    assert first["stats"]["specializations"] == 2 and first["stats"]["fused_calls"] == 1
    assert second["stats"]["cache_hits"] == 2
    assert second["results"] == first["results"]


def test_a_steps_record_names_only_the_steps_own_callees(tmp_path):
    """A kernel compiled for the first time while a step compiles records the helpers it
    calls unlinked into the step's recording too; the step's record leaves them out (its
    code does not call them; the kernel's own cache registers them) instead of failing to
    name them."""
    import pickle
    import types

    import numba

    from nbgrad._core import unlinked

    step = types.ModuleType("generated_step")
    step.__file__ = str(tmp_path / "generated_step.py")
    step.kernel = numba.njit(lambda x: x)
    helper = numba.njit(lambda x: x)
    unlinked.save_callees(step, {"kernel_symbol": (step.kernel, ("float64",)),
                                 "helper_symbol": (helper, ("float64",))})
    with open(tmp_path / "generated_step.callees", "rb") as handle:
        assert pickle.load(handle) == [("kernel", ("float64",), "kernel_symbol")]
