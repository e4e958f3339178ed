"""nbgrad.profiler: PyTorch's torch.profiler namespace over the autograd profiler
(nbgrad.autograd.profiler), which records the ops, backward nodes and fused kernels.

`profile` takes the activities to record (the CPU only), a `schedule` of steps to skip, warm
up and record (advanced by `step()`), and `on_trace_ready`, called with the profiler when a
recorded cycle ends.
"""
import enum
import os
import socket
import time
import warnings

from ..autograd import profiler as _autograd_profiler
from ..autograd.profiler import EventList, record_function

__all__ = ["profile", "record_function", "ProfilerActivity", "ProfilerAction", "schedule",
           "tensorboard_trace_handler", "EventList"]


class ProfilerActivity(enum.Enum):
    CPU = 0
    XPU = 1
    MTIA = 2
    CUDA = 3
    HPU = 4
    PrivateUse1 = 5


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


_RECORDING = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)


def schedule(*, wait, warmup, active, repeat=0, skip_first=0, skip_first_wait=0):
    """PyTorch's schedule: after `skip_first` steps, cycles of `wait` steps doing nothing,
    `warmup` steps warming up and `active` steps recording (the last one saves), `repeat`
    times (0: without end). With `skip_first_wait`, the first cycle has no wait."""
    if wait < 0 or warmup < 0 or active <= 0 or repeat < 0 or skip_first < 0:
        raise AssertionError(
            f"Invalid profiler schedule arguments. Got wait={wait} (need >= 0), warmup={warmup} "
            f"(need >= 0), active={active} (need > 0), repeat={repeat} (need >= 0), "
            f"skip_first={skip_first} (need >= 0).")
    if warmup == 0:
        warnings.warn("Profiler won't be using warmup, this can skew profiler results",
                      stacklevel=2)

    def schedule_fn(step):
        if step < 0:
            raise AssertionError(f"Step must be non-negative. Got {step}.")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if skip_first_wait:
            step += wait
        cycle = wait + warmup + active
        if repeat > 0 and step // cycle >= repeat:
            return ProfilerAction.NONE
        within = step % cycle
        if within < wait:
            return ProfilerAction.NONE
        if within < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if within < cycle - 1 else ProfilerAction.RECORD_AND_SAVE

    return schedule_fn


def tensorboard_trace_handler(dir_name, worker_name=None, use_gzip=False):
    """An `on_trace_ready` that writes each trace into directory `dir_name` as PyTorch names
    it (`<worker>.<time ns>.pt.trace.json`, `.gz` with `use_gzip`)."""
    def handler_fn(prof):
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        file_name = f"{worker}.{time.time_ns()}.pt.trace.json" + (".gz" if use_gzip else "")
        prof.export_chrome_trace(os.path.join(dir_name, file_name))
    return handler_fn


def _always_record(step):
    return ProfilerAction.RECORD


class profile:
    """PyTorch's torch.profiler.profile (CPU activity): a context manager (or `start()` and
    `stop()`) recording what runs, as nbgrad.autograd.profiler.profile records it; with a
    `schedule`, only in its recording steps, each a `ProfilerStep#<n>` range."""

    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None,
                 record_shapes=False, profile_memory=False, with_stack=False, with_flops=False,
                 with_modules=False, use_cuda=None):
        for activity in activities if activities is not None else [ProfilerActivity.CPU]:
            if activity is not ProfilerActivity.CPU:
                raise NotImplementedError(f"nbgrad's profiler records CPU time only: {activity} "
                                          "is not supported (use ProfilerActivity.CPU)")
        if use_cuda:
            raise NotImplementedError("nbgrad's profiler records CPU time only: use_cuda=True "
                                      "is not supported")
        self._options = dict(record_shapes=record_shapes, profile_memory=profile_memory,
                             with_stack=with_stack, with_flops=with_flops,
                             with_modules=with_modules)
        # Refused options are refused now, not at the first recording step.
        _autograd_profiler.profile(**self._options)
        self.schedule = schedule if schedule is not None else _always_record
        self.record_steps = schedule is not None
        self.on_trace_ready = on_trace_ready
        self.step_num = 0
        self.current_action = None
        self.profiler = None     # the autograd profiler of the latest recording
        self._step_range = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.current_action = self.schedule(self.step_num)
        self._enter(None, self.current_action)

    def stop(self):
        self._enter(self.current_action, None)
        self.current_action = None

    def step(self):
        """The end of one step and the start of the next (as the schedule says)."""
        previous = self.current_action
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        self._enter(previous, self.current_action)

    def _enter(self, previous, action):
        """Leave `previous` action for `action` (None: not started, or stopped)."""
        if self._step_range is not None:
            self._step_range.__exit__(None, None, None)
            self._step_range = None
        was_recording, recording = previous in _RECORDING, action in _RECORDING
        saved = was_recording and (not recording or previous is ProfilerAction.RECORD_AND_SAVE)
        if saved:
            self.profiler.__exit__(None, None, None)
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)
        if recording and (saved or not was_recording):
            self.profiler = _autograd_profiler.profile(**self._options)
            self.profiler.__enter__()
        if recording and self.record_steps:
            self._step_range = record_function(f"ProfilerStep#{self.step_num}")
            self._step_range.__enter__()

    def _finished(self):
        if self.profiler is None:
            raise RuntimeError("Profiler didn't finish running")
        return self.profiler

    def events(self):
        profiler = self._finished()
        profiler._check_finish()
        return profiler.function_events

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        return self._finished().key_averages(group_by_input_shape, group_by_stack_n)

    def export_chrome_trace(self, path):
        self._finished().export_chrome_trace(path)

    def export_stacks(self, path, metric="self_cpu_time_total"):
        self._finished().export_stacks(path, metric)
