"""The profiler (nbgrad.autograd.profiler, nbgrad.profiler) against torch's: event names,
counts and nesting of an MLP's forward and backward, the table's columns, the Chrome trace's
fields, record_function ranges, schedules; fused kernels as one event each; deferred ops
recorded once, when they run; nothing recorded while no profiler is on. Times are not
compared."""
import gzip
import json
import re
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torch.autograd.profiler
import torch.profiler

import nbgrad
import nbgrad.autograd.profiler
import nbgrad.profiler
from nbgrad.fuse import deferred


@pytest.fixture(params=["deferred", "immediate"])
def lib_mode(request, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", request.param == "deferred")
    return request.param


def _mlp_step(lib):
    """A small classifier's forward and backward (torch's event names per op: aten::linear,
    aten::relu, aten::log_softmax, aten::nll_loss and their backward nodes)."""
    lib.manual_seed(0)
    model = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))
    x = lib.tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
    y = lib.tensor([0, 2, 1, 1, 0])

    def step():
        with lib.profiler.record_function("step"):
            loss = lib.nn.functional.cross_entropy(model(x), y)
            loss.backward()
    return step


def _profile_step(lib, **options):
    step = _mlp_step(lib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's profiler warns about its own set-up
        with lib.profiler.profile(activities=[lib.profiler.ProfilerActivity.CPU], **options) as prof:
            step()
    return prof


def _parent(event):
    return event.cpu_parent.name if event.cpu_parent is not None else None


def test_custom_function_events_as_torch():
    """A custom Function's forward range, its backward node, and the leaves' AccumulateGrad,
    named and counted as torch's profiler names and counts them."""
    counts = []
    for lib in (torch, nbgrad):
        class MyReLU(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.clamp(min=0)

            @staticmethod
            def backward(ctx, grad):
                x, = ctx.saved_tensors
                return grad * (x > 0)

        w = lib.tensor([0.5, -1.0, 2.0], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with lib.autograd.profiler.profile() as prof:
                MyReLU.apply(w * 2).sum().backward()
        counts.append(Counter(e.name for e in prof.function_events))
    # (torch's backward nodes run aten:: ops of their own, which nbgrad's kernels do not, and
    # it records its saved tensor's detach)
    ours, theirs = ({name: n for name, n in c.items()
                     if not name.startswith("aten::") and name != "detach"}
                    for c in (counts[1], counts[0]))
    assert ours == theirs
    assert {"MyReLU", "MyReLUBackward", "torch::autograd::AccumulateGrad",
            "autograd::engine::evaluate_function: MyReLUBackward"} <= set(ours)


def test_mlp_step_events_are_named_counted_and_nested_as_torch(lib_mode):
    ours = _profile_step(nbgrad, record_shapes=True).events()
    theirs = _profile_step(torch, record_shapes=True).events()
    counts, expected_counts = Counter(e.name for e in ours), Counter(e.name for e in theirs)
    # Every event nbgrad records is one torch records, as many times: torch also records the
    # ops inside its ops (aten::addmm in aten::linear, aten::t, ...).
    assert counts == {name: expected_counts[name] for name in counts}
    assert set(counts) == {
        "step", "aten::linear", "aten::relu", "aten::log_softmax", "aten::nll_loss",
        *(f"{prefix}{node}" for node in ("NllLossBackward0", "LogSoftmaxBackward0",
                                         "AddmmBackward0", "ReluBackward0",
                                         "torch::autograd::AccumulateGrad")
          for prefix in ("", "autograd::engine::evaluate_function: "))}
    # A backward node is inside its engine evaluation, which is inside the step (torch's
    # cross_entropy is an op of its own, around log_softmax and nll_loss; nbgrad's is made of them).
    parents = {(e.name, _parent(e)) for e in ours if e.name not in ("aten::log_softmax", "aten::nll_loss")}
    expected_parents = {(e.name, _parent(e)) for e in theirs if e.name in counts}
    assert parents <= expected_parents
    # The input shapes of the ops torch records under the same name with the same inputs.
    shapes = {(e.name, str(e.input_shapes)) for e in ours if not e.name.startswith("aten::")}
    expected_shapes = {(e.name, str(e.input_shapes)) for e in theirs}
    assert shapes <= expected_shapes
    linear_shapes = [e.input_shapes for e in ours if e.name == "aten::linear"]
    assert linear_shapes == [e.input_shapes for e in theirs if e.name == "aten::linear"]


def _table_layout(table):
    """The table's header titles, its lines' kinds and the widths of its columns but the
    name's (which follow the names)."""
    lines = table.splitlines()
    separator = lines[0]
    widths = [len(column) for column in separator.split("  ") if column][1:]
    titles = re.split(r"\s{2,}", lines[1].strip())
    kinds = ["separator" if line == separator else "footer" if line.startswith("Self CPU time total: ")
             else "row" for line in lines]
    return titles, widths, kinds


@pytest.mark.parametrize("grouped", [False, True])
def test_table_has_torchs_columns_and_structure(grouped):
    tables = []
    for lib in (nbgrad, torch):
        prof = _profile_step(lib, record_shapes=True)
        averages = prof.key_averages(group_by_input_shape=grouped)
        tables.append(averages.table(sort_by="self_cpu_time_total", row_limit=5))
    (titles, widths, kinds), expected = [_table_layout(table) for table in tables]
    assert titles == expected[0]
    assert titles[:7] == ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total",
                          "CPU time avg", "# of Calls"]
    assert ("Input Shapes" in titles) == grouped
    assert widths[:6] == expected[1][:6]  # the time and count columns
    assert kinds == expected[2] == ["separator", "row", "separator"] + ["row"] * 5 + \
        ["separator", "footer"]
    # Sorted by self time, as asked.
    self_times = [event.self_cpu_time_total for event in
                  sorted(_profile_step(nbgrad).key_averages(),
                         key=lambda event: event.self_cpu_time_total, reverse=True)]
    assert self_times == sorted(self_times, reverse=True)


def test_averages_and_totals():
    prof = _profile_step(nbgrad, record_shapes=True)
    events = prof.events()
    averages = prof.key_averages()
    backward = [a for a in averages if a.key == "AddmmBackward0"][0]
    assert backward.count == 2 and backward.input_shapes == ""
    assert backward.cpu_time == pytest.approx(backward.cpu_time_total / 2)
    total = events.total_average()
    assert total.key == "Total" and total.count == len(events)
    assert total.self_cpu_time_total == pytest.approx(events.self_cpu_time_total)
    # Self times add up to the outermost range's time (every event is inside "step").
    step = [e for e in events if e.name == "step"][0]
    assert events.self_cpu_time_total == pytest.approx(step.cpu_time_total)
    # Sorting by a device's time (tutorials written for a GPU) sorts by zeros, as torch's on a CPU.
    for lib_prof in (prof, _profile_step(torch)):
        assert lib_prof.key_averages().table(sort_by="cuda_time_total").count("\n") > 5
    by_shape = prof.key_averages(group_by_input_shape=True)
    assert sorted(str(a.input_shapes) for a in by_shape if a.key == "aten::linear") == \
        ["[[5, 4], [8, 4], [8]]", "[[5, 8], [3, 8], [3]]"]


def test_chrome_trace_has_the_fields_perfetto_reads(tmp_path):
    traces = []
    for lib in (nbgrad, torch):
        path = tmp_path / f"{lib.__name__}.json"
        _profile_step(lib, record_shapes=True).export_chrome_trace(str(path))
        traces.append(json.loads(path.read_text()))
    ours, theirs = traces
    complete = [event for event in ours["traceEvents"] if event["ph"] == "X"]
    expected = [event for event in theirs["traceEvents"] if event["ph"] == "X"]
    assert {key for event in complete for key in event} == \
        {key for event in expected for key in event} == \
        {"ph", "cat", "name", "pid", "tid", "ts", "dur", "args"}
    assert len(complete) == len(_profile_step(nbgrad).events())
    for event in complete:
        assert isinstance(event["ts"], float) and isinstance(event["dur"], float)
        assert event["dur"] >= 0 and event["ts"] >= 0
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
    step = [event for event in complete if event["name"] == "step"][0]
    assert all(step["ts"] <= event["ts"] and event["ts"] + event["dur"] <= step["ts"] + step["dur"]
               for event in complete)
    linear = [event for event in complete if event["name"] == "aten::linear"][0]
    assert linear["args"]["Input Dims"] == [[5, 4], [8, 4], [8]]
    assert {event["name"] for event in ours["traceEvents"] if event["ph"] == "M"} == \
        {"process_name", "thread_name"}


def _nested_ranges(lib):
    x = lib.ones(3)
    with lib.autograd.profiler.profile() as prof:
        with lib.autograd.profiler.record_function("outer", "some args"):
            with lib.profiler.record_function("inner"):
                x.exp()
            x.sin()

    @lib.profiler.record_function("decorated")
    def decorated():
        return x.cos()

    with lib.profiler.profile() as decorated_prof:
        decorated()
    return [[(e.name, _parent(e)) for e in events]
            for events in (prof.function_events, decorated_prof.events())]


def test_record_function_ranges_nest_as_torchs():
    ours, theirs = _nested_ranges(nbgrad)
    expected = _nested_ranges(torch)
    assert ours == expected[0] == [("outer", None), ("inner", "outer"), ("aten::exp", "inner"),
                                   ("aten::sin", "outer")]
    assert theirs == expected[1] == [("decorated", None), ("aten::cos", "decorated")]


def test_record_function_args_are_in_the_trace(tmp_path):
    with nbgrad.autograd.profiler.profile() as prof:
        with nbgrad.profiler.record_function("range", "lr=0.1"):
            pass
    prof.export_chrome_trace(str(tmp_path / "trace.json"))
    event, = [e for e in json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
              if e["ph"] == "X"]
    assert event["name"] == "range" and event["args"]["Record function args"] == "lr=0.1"


def test_nothing_is_recorded_when_not_enabled():
    x = nbgrad.ones(3, requires_grad=True)
    with nbgrad.autograd.profiler.profile(enabled=False) as prof:
        with nbgrad.profiler.record_function("range"):
            x.exp().sum().backward()
    with pytest.raises(RuntimeError, match="Profiler didn't finish running"):
        prof.key_averages()
    with nbgrad.profiler.record_function("outside"):
        x.exp().sum().backward()
    with nbgrad.autograd.profiler.profile() as prof:
        pass
    x.exp().sum().backward()  # after the profile: not in it
    assert len(prof.function_events) == 0 and prof.key_averages().table() == ""
    assert not nbgrad.autograd.profiler.state.enabled and nbgrad.autograd.profiler.state.events is None


def test_deferred_ops_are_recorded_once_when_they_run(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)
    w = nbgrad.ones(4, requires_grad=True)
    before = w * 3  # pending when the profile starts: runs before it
    with nbgrad.autograd.profiler.profile() as prof:
        y = (w * 2).exp()
        z = w.sin()  # pending when the profile ends: runs inside it
        y.sum().backward()
    assert z._pending is None and before._pending is None
    counts = Counter(e.name for e in prof.function_events)
    assert counts["aten::mul"] == 1 and counts["aten::exp"] == 1 and counts["aten::sin"] == 1
    assert counts["aten::sum"] == 1 and counts["MulBackward0"] == 1


def _fused_rows(step, calls):
    with nbgrad.profiler.profile() as prof:
        for _ in range(calls):
            step()
    return {(a.key, a.count) for a in prof.key_averages()}


def test_a_fused_kernel_is_one_event_named_after_its_step(monkeypatch):
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", 2)
    w = nbgrad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = nbgrad.tensor([1.0, 2.0, 3.0])

    def train_step():
        loss = (x * w).tanh().sum()
        loss.backward()
        return loss

    compiled = nbgrad.compile(train_step)
    compiled()
    compiled()  # traced and compiled again: w.grad is not None now
    assert _fused_rows(compiled, 3) == {("fused: train_step", 3)}
    train_step()
    train_step()  # the deferred graph is fused
    rows = _fused_rows(train_step, 3)
    assert len(rows) == 1
    (name, count), = rows
    assert re.fullmatch(r"fused: deferred graph \d+", name) and count == 3


def test_schedule_and_steps_as_torchs():
    for args in [dict(wait=1, warmup=1, active=2), dict(wait=0, warmup=2, active=1, repeat=2, skip_first=1),
                 dict(wait=2, warmup=1, active=1, skip_first=3, skip_first_wait=1)]:
        ours, theirs = nbgrad.profiler.schedule(**args), torch.profiler.schedule(**args)
        assert [ours(i).name for i in range(14)] == [theirs(i).name for i in range(14)]
    with pytest.warns(UserWarning, match="Profiler won't be using warmup"):
        nbgrad.profiler.schedule(wait=1, warmup=0, active=1)

    def traces(lib):
        x = lib.ones(2)
        saved = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with lib.profiler.profile(schedule=lib.profiler.schedule(wait=1, warmup=1, active=2, repeat=2),
                                      on_trace_ready=lambda p: saved.append(
                                          sorted(Counter(e.name for e in p.events()).items()))) as prof:
                for _ in range(10):
                    x.exp()
                    prof.step()
        return saved

    assert traces(nbgrad) == traces(torch) == \
        [[("ProfilerStep*", 2), ("aten::exp", 2)]] * 2


def _stacks(path):
    x = nbgrad.ones(2)
    with nbgrad.profiler.profile(with_stack=True) as prof:
        x.exp()
    prof.export_stacks(str(path))
    return prof.key_averages(group_by_stack_n=2).table().splitlines()[1], path.read_text()


def test_with_stack_and_refused_options(tmp_path):
    # NOTE: not against torch 2.13, whose with_stack records Python calls as events of their
    # own and leaves the ops' stacks empty; nbgrad's events keep the user's stack, as the
    # table's "Source Location" column and export_stacks' lines (torch's formats) show it.
    header, stacks = _stacks(tmp_path / "stacks.txt")
    assert re.split(r"\s{2,}", header.strip())[-1] == "Source Location"
    # One line: the frames (outermost first, ';'-separated) and the self time in us.
    frames, self_us = stacks.strip().rsplit(" ", 1)
    assert int(self_us) >= 0 and stacks.count("\n") == 1
    assert frames.split(";")[-1].startswith(f"{__file__}(") and frames.endswith("_stacks")
    with pytest.raises(NotImplementedError, match="profile_memory=True"):
        nbgrad.profiler.profile(profile_memory=True)
    with pytest.raises(NotImplementedError, match="CUDA"):
        nbgrad.profiler.profile(activities=[nbgrad.profiler.ProfilerActivity.CUDA])
    with nbgrad.autograd.profiler.profile():
        with pytest.raises(RuntimeError, match="do not nest"):
            with nbgrad.autograd.profiler.profile():
                pass
    # An error inside a profile is the one the user sees, and the profile ends.
    with pytest.raises(RuntimeError, match="shape"):
        with nbgrad.autograd.profiler.profile() as prof:
            nbgrad.ones(2, requires_grad=True) + nbgrad.ones(3)
    assert not nbgrad.autograd.profiler.state.enabled and prof.function_events == []


def _recursive_ranges(lib, directory):
    x = lib.ones(2)

    @lib.profiler.record_function("recurse")
    def recurse(depth):
        x.exp()
        if depth:
            recurse(depth - 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with lib.profiler.profile(on_trace_ready=lib.profiler.tensorboard_trace_handler(
                str(directory), use_gzip=True)) as prof:
            recurse(2)
    return [(e.name, _parent(e)) for e in prof.events()]


def test_trace_handler_writes_gzipped_traces_and_decorated_ranges_nest(tmp_path):
    ours = _recursive_ranges(nbgrad, tmp_path / "nbgrad")
    theirs = _recursive_ranges(torch, tmp_path / "torch")
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    # NOTE: torch's decorator reuses one range object per function, so that its recursive
    # calls' ranges end early and do not nest; nbgrad's each get their own.
    assert ours == [("recurse", None), ("aten::exp", "recurse"), ("recurse", "recurse"),
                    ("aten::exp", "recurse"), ("recurse", "recurse"), ("aten::exp", "recurse")]
    assert (tmp_path / "torch").is_dir()
    written, = (tmp_path / "nbgrad").iterdir()
    assert written.name.endswith(".pt.trace.json.gz")
    with gzip.open(written, "rt") as file:
        names = [event["name"] for event in json.load(file)["traceEvents"] if event["ph"] == "X"]
    assert names == [name for name, _ in ours]
