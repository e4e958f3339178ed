"""The one fused-kernel pipeline: a traced run made into a Numba kernel and the generated
Python function that calls it.

`Kernel` runs the stages in order:
  traced run     the step runs eagerly under a `Tracer` (`traced_run`), so that call's
                 results are eager's own, and the tracer records every array operation;
  generate       the fused source from the tracer's events (`codegen.generate`);
  arenas         one array per dtype holding all the kernel's buffers (`Arenas`);
  guards         the call function's checks that a call fits: whether threads are usable
                 if the kernel has threaded loops, then the front end's;
  fetches        lines fetching each kernel argument: constants here, the rest as the
                 front end names them;
  preconditions  checks of argument values (class indices in range) before each call;
  compile        the kernel, for the traced arguments' types (`compile_kernel`);
  call           the kernel call, between the front end's lines before and after it.

Two front ends use it, each supplying only what differs (`FrontEnd`): `nbgrad.compile`
(`compile.py`: tensors by their position among the call's arguments, anything else by
identity; it returns the step's result) and deferred graphs (`graph.py`: the tape's
external tensors by position; it returns the leaves' first gradients).
"""
import inspect
import math
import time
import warnings

import numba
import numpy as np

from .._core import compile_ahead as _compile_ahead
from .._core import modules as _modules
from .._core import threads as _threads
from .._core import unlinked as _unlinked
from .call import CallWriter
from .codegen import generate
from .tracer import Tracer, tracing

# Failures kept in a `FailureLog`: the latest ones say why code runs eagerly now.
MAX_FAILURES = 20


class KernelStats(dict):
    """What a front end's kernels cost and how its calls ran. A dict (printable, JSON).

    compile_time_s, cache_hits, cache_misses: compilations (a hit loads the kernel from
    Numba's cache); specializations: kernels made. fused_calls and eager_calls are counted
    by the front end that counts its calls (`nbgrad.compile`).
    """

    def __init__(self):
        super().__init__(compile_time_s=0.0, cache_hits=0, cache_misses=0, specializations=0,
                         fused_calls=0, eager_calls=0)


class FailureLog(list):
    """Why the latest traced runs could not be fused: `append` keeps the latest
    MAX_FAILURES."""

    def append(self, reason):
        super().append(reason)
        del self[:-MAX_FAILURES]


def traced_run(run, tensors, fullgraph=False):
    """(tracer, result) of `run()` run eagerly under a tracer; `tensors`: the call's
    tensors, named by position in the events."""
    tracer = Tracer(tensors, fullgraph)
    with tracing(tracer):
        result = run()
    return tracer, result


def compile_kernel(source, sample_arguments, stats):
    """The `fused_step` of generated `source`, compiled for arguments like the samples
    (loaded from Numba's cache when it has it); `stats` counts the time and cache use."""
    started = time.perf_counter()
    signature = tuple(numba.typeof(value) for value in sample_arguments)
    try:
        module = _modules.load_module("fused", source)
        kernel = module.fused_step
        cached = _compile_ahead.in_cache(kernel)
        known = _unlinked.load_callees(module)
        if not known:
            kernel._cache.flush()  # (see _core.unlinked: never load a step of unknown callees)
        kernel.disable_compile(False)  # (another version of the same step may be loaded)
        with _unlinked.recording() as callees:
            if not cached:
                _compile_stages_apart(module, source, signature)
            kernel.compile(signature)
        if not known or callees:
            _unlinked.save_callees(module, callees)
        # NOTE: no version compiled at a call, outside `recording()`: Numba would compile one
        # for an argument read-only where the trace's was writeable, and its callees, which
        # no record names, would be missing when the next process loads it from the cache
        # (a segfault). Such a call does not fit (`call.py`), and is traced again.
        kernel.disable_compile()
    except Exception as error:  # a corrupted or unusable cache must never be fatal
        warnings.warn(f"nbgrad.compile: the kernel cache failed ({error!r}); compiling "
                      "in memory instead", RuntimeWarning, stacklevel=2)
        source = source.replace("cache=True", "cache=False")
        kernel = _modules.load_module("fused_nocache", source).fused_step
        kernel.compile(signature)
    stats["compile_time_s"] += time.perf_counter() - started
    hits = sum(kernel.stats.cache_hits.values())
    stats["cache_hits" if hits else "cache_misses"] += 1
    return kernel


# Of a staged step's lines, about this share goes to the compile helper (it starts later).
HELPER_SHARE = 0.45
COMPILE_STAGE = "nbgrad.fuse.kernel:compile_stage"


def _compile_stages_apart(module, source, signature):
    """With the compile helper at work (a cold cache), of the stages of a staged step that
    can be compiled apart (the module's APART: see fuse/stages.py), the helper compiles the
    last ones, about HELPER_SHARE of the step's lines, while this process compiles the
    others; then this process waits for the helper's, which the step's compile loads from
    the cache (or compiles, if the helper could not).
    Measured on 2 cores, the first call of nbgrad.compile on ResNet-18's training step
    (8x3x64x64, SGD with momentum), cold, two runs each: 28.9-30.0 s (stages' compile
    20.8-22.1 s) -> 19.1-20.8 s (11.8-12.6 s); with the helper off 30.0-30.8 -> 28.2-29.1 s
    (the stages have no CPython wrapper now)."""
    apart = getattr(module, "APART", {})
    if len(apart) < 2 or not _compile_ahead.running():
        return
    types = dict(zip(inspect.signature(module.fused_step.py_func).parameters, signature))

    def types_of(stage):
        return tuple(types[name] for name in inspect.signature(stage.py_func).parameters)

    helpers, share = [], 0
    for name in reversed(list(apart)[1:]):  # (the first stage is this process's first)
        if share + apart[name] > HELPER_SHARE * module.LINES:
            break
        stage = getattr(module, name)
        _compile_ahead.ask(COMPILE_STAGE, source, name, types_of(stage),
                           priority=_compile_ahead.NOW, waiter=stage)
        helpers.append(stage)
        share += apart[name]
    for name in apart:
        stage = getattr(module, name)
        if stage not in helpers:
            stage.compile(types_of(stage))
    for stage in helpers:
        _compile_ahead.wait_for(stage)


def compile_stage(source, name, argument_types):
    """(In the compile helper.) Stage `name` of the generated step `source`, compiled for
    `argument_types` into the shared cache."""
    getattr(_modules.load_module("fused", source), name).compile(tuple(argument_types))


class Arenas:
    """The arrays, one per dtype, that hold a fused kernel's buffers end to end (see
    `codegen._arenas`), and views of single buffers in them."""

    def __init__(self, layout, sizes):
        self.layout = layout
        self.arrays = {key: np.empty(size, key) for key, size in sizes.items()}

    def view(self, name, shape):
        key, offset = self.layout[name]
        return self.arrays[key][offset:offset + math.prod(shape)].reshape(shape)

    def arguments(self):
        """The kernel's arena arguments, by parameter name, in its parameters' order."""
        return {f"arena_{np.dtype(key).name}": array for key, array in self.arrays.items()}


class FrontEnd:
    """What a user of the pipeline supplies: how the call function's tensors are named and
    checked, how the kernel's arguments are fetched, and what the call does around the
    kernel. Each method writes into `writer`, the `CallWriter` of the call function."""

    leaves = 0  # how many tensors a call passes to the call function (`leaf_0`, ...)

    def guard(self, writer, tracer, emitter):
        """Checks (and fetches) before the kernel's arguments are fetched."""

    def fetch(self, writer, argument):
        """Lines fetching `argument` (a `codegen.KernelArgument`, not a constant); the
        sample value the kernel is compiled for."""
        raise NotImplementedError

    def before_call(self, writer, tracer, emitter, arenas, samples):
        """Lines between the fetches and the kernel call; `samples`: the kernel's arguments
        by name, as it was compiled for them."""

    def after_call(self, writer, tracer, outputs):
        """Lines after the kernel call, ending with the return statement; `outputs`: views
        of the returned arrays' buffers."""
        raise NotImplementedError


class Kernel:
    """The fused kernel of one traced run (`kernel`, its `source`), views of the buffers its
    returned arrays are in (`outputs`), and the call function (`call`, `call_source`).

    NOTE: it keeps neither the tracer nor the emitter: they hold every array of the traced
    run.
    """

    def __init__(self, tracer, outputs, front_end, stats, fresh=()):
        """`outputs`: the traced arrays the call returns, copied out of their buffers;
        `fresh`: arrays the call function passes in new on each call (`codegen.generate`).
        Raises `Unfusable` if the run cannot be one kernel."""
        self.source, emitter, (layout, sizes), returned = generate(tracer, outputs, fresh)
        arenas = Arenas(layout, sizes)
        writer = CallWriter(front_end.leaves)
        if emitter.parallel or emitter.threaded_helpers:
            # A process forked from this one must not run threaded loops (nbgrad._core.threads):
            # there the call does not fit, and the front end traces again, serial, or runs
            # eagerly.
            writer.check(f"not {writer.bind(_threads.start, name='threads_usable')}()")
        front_end.guard(writer, tracer, emitter)
        samples = {}
        for argument in emitter.arguments:
            if argument.kind == "const":
                writer.namespace[argument.name] = argument.source
                samples[argument.name] = argument.traced
            else:
                samples[argument.name] = front_end.fetch(writer, argument)
        for function, expression in emitter.preconditions:
            writer.lines.append(f"{writer.bind(function, 'precondition')}({expression})")
        # The kernel's fixed arguments, under the names of its parameters.
        fixed = arenas.arguments()
        if emitter.hyper:
            fixed["hyper"] = np.array(emitter.hyper, np.float64)
        writer.namespace.update(fixed)
        samples.update(fixed)
        self.kernel = compile_kernel(self.source, list(samples.values()), stats)
        self.outputs = [arenas.view(name, array.shape) for name, array in zip(returned, outputs)]
        front_end.before_call(writer, tracer, emitter, arenas, samples)
        writer.lines.append(writer.call(writer.bind(self.kernel, name="fused_step"), samples))
        front_end.after_call(writer, tracer, self.outputs)
        self.call, self.call_source = writer.function()
        stats["specializations"] += 1
