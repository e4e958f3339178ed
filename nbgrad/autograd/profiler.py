"""The profiler (PyTorch's torch.autograd.profiler): `profile` records, while it is on, every
op that runs (named as PyTorch's `aten::` ops), every backward node (PyTorch's
`autograd::engine::evaluate_function: MulBackward0` around `MulBackward0`), every fused
kernel (one event named after its step) and every `record_function` range, each with its
start and end; `EventList` makes PyTorch's tables, averages and Chrome traces of them.

The hot paths read one flag (`state.enabled`): `dispatch` and deferred mode's run of a
pending op (`op_ran`), `Node.apply` (`vjp_ran`, `node_ran`) and the generated call function
of a fused kernel (`fused_ran`). An event is recorded when it ends, with the time it started:
nesting (and so self time) is worked out afterwards from the intervals, as PyTorch does, so
an op that raises leaves nothing half-recorded. A deferred op is recorded when it really
runs; a graph that runs as one fused kernel is that kernel's one event.
"""
import collections
import contextlib
import gzip
import itertools
import json
import os
import re
import threading
import time
import traceback

from .._core import mode

clock = time.perf_counter_ns

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _State:
    # NOTE: slots: `enabled` is the one flag the hot paths read, and a slot reads fastest.
    __slots__ = ("enabled", "record_shapes", "with_stack", "events")

    def __init__(self):
        self.enabled = False
        self.record_shapes = False
        self.with_stack = False
        # The active profile's raw events: (name, start ns, end ns, input shapes, thread,
        # stack, category, record_function args); a name is a string or (primitive, grad_fn
        # name) of an op.
        self.events = None


state = _State()


def _stack():
    """The user's frames (innermost first) as PyTorch's with_stack shows them."""
    return [f"{frame.filename}({frame.lineno}): {frame.name}"
            for frame in reversed(traceback.extract_stack())
            if not os.path.abspath(frame.filename).startswith(_PACKAGE)]


def _record(events, name, started, arrays=(), category="cpu_op", args=None):
    """Add the event `name` that ran from `started` (a `clock()`) until now, on `arrays`, to
    `events` (a profile's; nothing if None: the profile has ended)."""
    if events is not None:
        events.append((name, started, clock(),
                       [list(array.shape) for array in arrays] if state.record_shapes else None,
                       threading.get_native_id(), _stack() if state.with_stack else None,
                       category, args))


def op_ran(prim, grad_fn_name, arrays, started):
    """A call of primitive `prim` on `arrays` (whose node is `grad_fn_name`, None for the
    row's) ran from `started` until now."""
    _record(state.events, (prim, grad_fn_name), started, arrays)


# PyTorch's names of nodes whose class name is not their event's.
_NODE_EVENTS = {"AccumulateGrad": "torch::autograd::AccumulateGrad"}


def _node_event(node):
    name = type(node).__name__
    return _NODE_EVENTS.get(name, name)


def vjp_ran(node, grad, started):
    """`node`'s VJP of gradient `grad` ran from `started` until now (for an AccumulateGrad,
    its adding into `.grad`)."""
    _record(state.events, _node_event(node), started, (grad,))


def node_ran(node, started):
    """Backward evaluated `node` (its VJP and the fitting of its gradients) from `started`."""
    _record(state.events, f"autograd::engine::evaluate_function: {_node_event(node)}", started)


def function_ran(name, started):
    """A custom autograd.Function's forward (`name`, the Function's class name) ran from
    `started` until now."""
    _record(state.events, name, started)


def fused_ran(label, started):
    """A fused kernel (of the step `label` names) ran from `started` until now."""
    _record(state.events, label, started, category="fused")


# PyTorch's op names come from the grad_fn names (MmBackward0 is aten::mm's node,
# LinalgVectorNormBackward0 aten::linalg_vector_norm's); where the node does not name its op,
# the primitive's name.
_GRAD_FN = re.compile(r"(\w+?)Backward\d+")
_CAMEL_HUMP = re.compile(r"(?<=[a-z])(?=[A-Z])")
# Nodes whose name is not the op nbgrad runs under them: .to()/.float() are aten::_to_copy;
# AddmmBackward0 is F.linear's node, and its inputs are aten::linear's (input, weight, bias).
_NODE_OPS = {"ToCopyBackward0": "aten::_to_copy", "AddmmBackward0": "aten::linear"}
_op_names = {}  # (primitive, grad_fn name) -> its op's name


def _op_name(prim, grad_fn_name):
    key = (prim, grad_fn_name)
    name = _op_names.get(key)
    if name is None:
        node = grad_fn_name or prim.grad_fn or ""
        match = _GRAD_FN.fullmatch(node)
        name = _NODE_OPS.get(node) or \
            "aten::" + (_CAMEL_HUMP.sub("_", match.group(1)).lower() if match else prim.name)
        _op_names[key] = name
    return name


class record_function(contextlib.ContextDecorator):
    """A named range in the profile (PyTorch's torch.profiler.record_function): a context
    manager or a function decorator; nothing while no profiler records."""

    def __init__(self, name, args=None):
        self.name = name
        self.args = args
        self._events = None

    def _recreate_cm(self):
        # A decorated function's calls may nest (recursion): each call gets its own range.
        return record_function(self.name, self.args)

    def __enter__(self):
        self._events = state.events
        self._started = clock()
        return self

    def __exit__(self, *exc):
        _record(self._events, self.name, self._started, category="user_annotation",
                args=self.args)
        self._events = None
        return False


class Interval:
    def __init__(self, start, end):
        self.start = start
        self.end = end

    def elapsed_us(self):
        return self.end - self.start


def _format_time(time_us):
    if time_us >= 1e6:
        return f"{time_us / 1e6:.3f}s"
    if time_us >= 1e3:
        return f"{time_us / 1e3:.3f}ms"
    return f"{time_us:.3f}us"


def _format_time_share(time_us, total_us):
    return "NaN" if total_us == 0 else f"{time_us * 100.0 / total_us:.2f}%"


class _Times:
    """The time figures of an event or an average, and PyTorch's formatted forms."""

    # As PyTorch's on the CPU: no device time, and memory is not recorded.
    device_time_total = self_device_time_total = 0
    cpu_memory_usage = self_cpu_memory_usage = 0
    is_async = False
    node_id = -1

    @property
    def cpu_time(self):
        return 0.0 if self.count == 0 else self.cpu_time_total / self.count

    @property
    def device_time(self):
        return 0.0

    cpu_time_str = property(lambda self: _format_time(self.cpu_time))
    cpu_time_total_str = property(lambda self: _format_time(self.cpu_time_total))
    self_cpu_time_total_str = property(lambda self: _format_time(self.self_cpu_time_total))


class FunctionEvent(_Times):
    """One recorded range: an op, a backward node, a fused kernel or a record_function.
    Times in microseconds from the start of the profile."""

    count = 1

    def __init__(self, id, name, trace_name, start_us, end_us, thread, input_shapes, stack,
                 category, args):
        self.id = id
        self.name = name
        self.trace_name = trace_name
        self.time_range = Interval(start_us, end_us)
        self.thread = thread
        self.input_shapes = input_shapes
        self.stack = stack
        self.category = category
        self.args = args  # a record_function's
        self.cpu_children = []
        self.cpu_parent = None

    @property
    def key(self):
        return self.name

    @property
    def cpu_time_total(self):
        return self.time_range.elapsed_us()

    @property
    def self_cpu_time_total(self):
        return self.cpu_time_total - sum(child.cpu_time_total for child in self.cpu_children)

    def __repr__(self):
        return (f"<FunctionEvent id={self.id} name={self.name} cpu_time={self.cpu_time_str} "
                f"start_us={self.time_range.start} end_us={self.time_range.end} "
                f"cpu_children={[child.id for child in self.cpu_children]} "
                f"thread={self.thread} input_shapes={self.input_shapes}>")


class FunctionEventAvg(_Times):
    """The sums over events with one key (and input shapes, or stack): `key_averages`."""

    def __init__(self):
        self.key = None
        self.count = 0
        self.cpu_time_total = 0
        self.self_cpu_time_total = 0
        self.input_shapes = None
        self.stack = None
        self.cpu_parent = None
        self.cpu_children = None

    def add(self, other):
        if self.key is None:
            self.key = other.key
            self.input_shapes = other.input_shapes
            self.stack = other.stack
            self.cpu_parent = other.cpu_parent
            self.cpu_children = other.cpu_children
        self.cpu_time_total += other.cpu_time_total
        self.self_cpu_time_total += other.self_cpu_time_total
        self.count += other.count
        return self

    __iadd__ = add

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} self_cpu_time={self.self_cpu_time_total_str} "
                f"cpu_time={self.cpu_time_str} input_shapes={self.input_shapes}>")


class EventList(list):
    """Events (or their averages), with PyTorch's table, averages and Chrome trace."""

    def __str__(self):
        return self.table()

    @property
    def self_cpu_time_total(self):
        return sum(event.self_cpu_time_total for event in self)

    def key_averages(self, group_by_input_shapes=False, group_by_stack_n=0):
        """One FunctionEventAvg per name (and input shapes, or first stack entries)."""
        stats = collections.defaultdict(FunctionEventAvg)
        for event in self:
            key = (event.key, str(event.input_shapes) if group_by_input_shapes else None,
                   tuple(event.stack[:group_by_stack_n]) if group_by_stack_n else None)
            stats[key].add(event)
        averages = EventList(stats.values())
        for average in averages:
            average.stack = average.stack[:group_by_stack_n]
            if not group_by_input_shapes:
                average.input_shapes = ""
        return averages

    def total_average(self):
        total = FunctionEventAvg()
        for event in self:
            total.add(event)
            total.key = None
        total.key = "Total"
        return total

    def table(self, sort_by=None, row_limit=100, max_src_column_width=75,
              max_name_column_width=55, max_shapes_column_width=80, header=None,
              top_level_events_only=False, time_unit=None):
        """PyTorch's table of these events (its CPU columns)."""
        return _table(self, sort_by, row_limit, max_src_column_width, max_name_column_width,
                      max_shapes_column_width, header, top_level_events_only, time_unit)

    def export_stacks(self, path, metric="self_cpu_time_total"):
        """Write each event's stack (with_stack) and its `metric` in microseconds, one line
        each, as flame-graph tools read them (PyTorch's format)."""
        if metric not in _STACK_METRICS:
            raise ValueError("metric should be one of: " + str(list(_STACK_METRICS)))
        blanks = str.maketrans(" ;\t\n", "____")
        with open(path, "w") as file:
            for event in self:
                value = getattr(event, _device_named(metric))
                if event.stack and int(value) > 0:
                    frames = ";".join(entry.translate(blanks) for entry in reversed(event.stack))
                    file.write(f"{frames} {int(value)}\n")

    def export_chrome_trace(self, path):
        """Write the events in the Chrome trace-event format (chrome://tracing, Perfetto);
        gzipped if `path` ends with .gz (as torch.profiler writes it)."""
        pid = os.getpid()
        trace = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                  "args": {"name": "python"}}]
        trace += [{"ph": "M", "name": "thread_name", "pid": pid, "tid": thread,
                   "args": {"name": f"thread {thread} (python)"}}
                  for thread in sorted({event.thread for event in self})]
        for index, event in enumerate(self):
            args = {"External id": index}
            if event.input_shapes:
                args["Input Dims"] = event.input_shapes
            if event.stack:
                args["Call stack"] = ";".join(event.stack)
            if event.args is not None:
                args["Record function args"] = event.args
            trace.append({"ph": "X", "cat": event.category, "name": event.trace_name,
                          "pid": pid, "tid": event.thread, "ts": event.time_range.start,
                          "dur": event.time_range.elapsed_us(), "args": args})
        with (gzip.open if str(path).endswith(".gz") else open)(path, "wt") as file:
            json.dump({"schemaVersion": 1, "displayTimeUnit": "ms", "traceEvents": trace,
                       "traceName": str(path)}, file)


def _device_named(attribute):
    """An event's attribute named for a device (cuda_time_total) by PyTorch's generic name."""
    for device in ("cuda", "xpu", "privateuse1"):
        attribute = attribute.replace(device, "device")
    return attribute


_STACK_METRICS = ("self_cpu_time_total", "self_cuda_time_total", "self_xpu_time_total",
                  "self_privateuse1_time_total")
# "ProfilerStep#3" is one of the steps of torch.profiler.profile: averaged as "ProfilerStep*".
_STEP = re.compile(r"ProfilerStep#\d+")


def _events(raw, origin):
    """EventList of raw events (`state.events`), each linked to its enclosing event on its
    thread (PyTorch's rule: a range inside another is its child)."""
    ordered = sorted(raw, key=lambda event: (event[1], -event[2]))
    events = EventList()
    for index, (name, start, end, shapes, thread, stack, category, args) in enumerate(ordered):
        trace_name = name if type(name) is str else _op_name(*name)
        events.append(FunctionEvent(index, _STEP.sub("ProfilerStep*", trace_name), trace_name,
                                    (start - origin) / 1e3, (end - origin) / 1e3, thread,
                                    shapes or [], stack or [], category, args))
    for _, thread_events in itertools.groupby(sorted(events, key=lambda e: e.thread),
                                              key=lambda e: e.thread):
        open_events = []
        for event in thread_events:
            while open_events:
                parent = open_events[-1]
                if event.time_range.start >= parent.time_range.end or \
                        event.time_range.end > parent.time_range.end:
                    open_events.pop()
                else:
                    parent.cpu_children.append(event)
                    event.cpu_parent = parent
                    break
            open_events.append(event)
    return events


_COLUMN = 12
_SPACING = 2


def _table(events, sort_by, row_limit, max_src_column_width, max_name_column_width,
           max_shapes_column_width, header, top_level_events_only, time_unit):
    """PyTorch's `_build_table` for CPU events (no device time, memory or flops)."""
    if not events:
        return ""
    if sort_by is not None:
        events = sorted(events, key=lambda event: getattr(event, _device_named(sort_by)),
                        reverse=True)
    has_shapes = any(event.input_shapes for event in events)
    stacks = [event.stack for event in events if event.stack]
    name_width = max(len(event.key) for event in events) + 4
    if max_name_column_width is not None:
        name_width = min(name_width, max_name_column_width)
    headers = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg",
               "# of Calls"]
    widths = [name_width] + [_COLUMN] * 6
    directions = [">"] * 7
    if has_shapes:
        shapes_width = max(len(str(event.input_shapes)) for event in events) + 4
        if max_shapes_column_width is not None:
            shapes_width = min(shapes_width, max_shapes_column_width)
        headers.append("Input Shapes")
        widths.append(shapes_width)
        directions.append(">")
    if stacks:
        src_width = max(len(entry) for stack in stacks for entry in stack) + 4
        if max_src_column_width is not None:
            src_width = min(src_width, max_src_column_width)
        headers.append("Source Location")
        widths.append(src_width)
        directions.append("<")
    row_format = "".join(f"{{: {direction}{width}}}" + " " * _SPACING
                         for direction, width in zip(directions, widths))
    separator = "".join("-" * width + " " * _SPACING for width in widths)
    line_length = sum(widths) + _SPACING * (len(widths) - 1)

    def time_text(time_us):
        scale = {"s": 1e6, "ms": 1e3, "us": 1.0}.get(time_unit)
        return _format_time(time_us) if scale is None else f"{time_us / scale:.3f}{time_unit}"

    def trim_path(path):
        if len(path) > src_width:
            path = path[len(path) - src_width:]
            if len(path) > 3:
                path = "..." + path[3:]
        return path

    total = sum(event.self_cpu_time_total for event in events)
    lines = []
    if header is not None:
        lines += ["=" * line_length, header]
    if top_level_events_only:
        lines += ["=" * line_length, "This report only display top-level ops statistics"]
    lines += [separator, row_format.format(*headers), separator]
    shown = 0
    for event in events:
        if shown == row_limit:
            break
        if top_level_events_only and event.cpu_parent is not None:
            continue
        shown += 1
        name = event.key
        if max_name_column_width is not None and len(name) >= max_name_column_width - 3:
            name = name[:max_name_column_width - 3] + "..."
        row = [name, _format_time_share(event.self_cpu_time_total, total),
               time_text(event.self_cpu_time_total),
               _format_time_share(event.cpu_time_total, total), time_text(event.cpu_time_total),
               time_text(event.cpu_time), event.count]
        if has_shapes:
            row.append(str(event.input_shapes)[:shapes_width])
        if stacks:
            row.append(trim_path(event.stack[0]) if event.stack else "")
        lines.append(row_format.format(*row))
        if stacks:
            blank = [""] * (len(headers) - 1)
            lines += [row_format.format(*blank, trim_path(entry)) for entry in event.stack[1:]]
            lines.append(row_format.format(*blank, ""))
    lines += [separator, f"Self CPU time total: {time_text(total)}"]
    return "".join(line + "\n" for line in lines)


def _refuse(name, value, supported):
    if value != supported:
        raise NotImplementedError(f"nbgrad's profiler records CPU time only: {name}={value!r} "
                                  f"is not supported (use {name}={supported!r})")


class profile:
    """PyTorch's torch.autograd.profiler.profile: a context manager that records every op,
    backward node, fused kernel and record_function range run inside it (on CPU time).

    Deferred ops pending when it starts run first, outside it; those pending when it ends
    run inside it, so that it holds what the code inside it did.
    """

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False,
                 with_flops=False, profile_memory=False, with_stack=False, with_modules=False,
                 use_kineto=False, use_cpu=True):
        for name, value, supported in [("use_cuda", use_cuda, False), ("use_device", use_device, None),
                                       ("with_flops", with_flops, False),
                                       ("profile_memory", profile_memory, False),
                                       ("with_modules", with_modules, False),
                                       ("use_cpu", use_cpu, True)]:
            _refuse(name, value, supported)
        self.enabled = enabled
        self.record_shapes = record_shapes
        self.with_stack = with_stack
        # NOTE: use_kineto picks PyTorch's recording back end; the results are the same.
        self.use_kineto = use_kineto
        self.entered = False
        self.function_events = None

    def __enter__(self):
        if not self.enabled:
            return self
        if self.entered:
            raise RuntimeError("Profiler context manager is not reentrant")
        if state.enabled:
            raise RuntimeError("nbgrad's profiler is already recording: profiles do not nest")
        self.entered = True
        mode.run_pending()
        state.record_shapes = self.record_shapes
        state.with_stack = self.with_stack
        state.events = []
        self._origin = clock()
        state.enabled = True
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        if not self.enabled:
            return False
        try:
            if exc_type is None:
                # NOTE: not after an error: a pending op that raised would raise again here,
                # in place of the error the user should see.
                mode.run_pending()
        finally:
            raw = state.events
            state.enabled = False
            state.events = None
            self.function_events = _events(raw, self._origin)
        return False

    def _check_finish(self):
        if self.function_events is None:
            raise RuntimeError("Profiler didn't finish running")

    def table(self, sort_by=None, row_limit=100, max_src_column_width=75,
              max_name_column_width=55, max_shapes_column_width=80, header=None,
              top_level_events_only=False):
        self._check_finish()
        return self.function_events.table(
            sort_by=sort_by, row_limit=row_limit, max_src_column_width=max_src_column_width,
            max_name_column_width=max_name_column_width,
            max_shapes_column_width=max_shapes_column_width, header=header,
            top_level_events_only=top_level_events_only)

    def export_chrome_trace(self, path):
        self._check_finish()
        self.function_events.export_chrome_trace(path)

    def export_stacks(self, path, metric="self_cpu_time_total"):
        self._check_finish()
        self.function_events.export_stacks(path, metric)

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        self._check_finish()
        return self.function_events.key_averages(group_by_input_shape, group_by_stack_n)

    def total_average(self):
        self._check_finish()
        return self.function_events.total_average()

    @property
    def self_cpu_time_total(self):
        self._check_finish()
        return self.function_events.self_cpu_time_total

    def __repr__(self):
        if self.function_events is None:
            return "<unfinished torch.autograd.profile>"
        return repr(self.function_events)

    def __str__(self):
        if self.function_events is None:
            return "<unfinished torch.autograd.profile>"
        return str(self.function_events)
