"""`nbgrad.compile`: trace a static step once, generate one Numba function, run that.

A call with shapes, dtypes, requires_grad flags, grad mode, module train/eval modes and
`.grad` presence it has not seen runs the step eagerly under a tracer (so that call's
results are eager's own), generates the fused source, and compiles it; later matching calls
run the fused function. A step that cannot be traced runs eagerly, with one warning naming
the reason and the line (`fullgraph=True` raises instead).
"""
import functools
import sys
import time
import warnings

import numba
import numpy as np

from .. import _codegen
from ..autograd.grad_mode import state as _grad_state
from ..tensor import Tensor
from .codegen import Unfusable, generate
from .tracer import GraphBreak, Tracer, tracing

__all__ = ["compile", "Compiled", "GraphBreak"]


def compile(fn=None, *, fullgraph=False, dynamic=False, max_specializations=8):
    """Fuse a training (or inference) step into one Numba kernel. Also a decorator.

    `fn` may be a function or an `nn.Module` (compiled inference: `compile(model)(x)`).
    Every new shape gets its own specialization (up to `max_specializations`, then eager
    with a warning); `dynamic=True` (one kernel for all shapes) is not supported.
    """
    if dynamic:
        raise NotImplementedError("nbgrad.compile(dynamic=True): fused kernels are generated "
                                  "for static shapes; leave dynamic=False (each new shape "
                                  "compiles its own specialization)")
    if fn is None:
        return lambda f: compile(f, fullgraph=fullgraph, dynamic=dynamic,
                                 max_specializations=max_specializations)
    return Compiled(fn, fullgraph=fullgraph, max_specializations=max_specializations)


def _flatten(result, tensors):
    """The returned structure with each Tensor replaced by its index in `tensors`."""
    if isinstance(result, Tensor):
        tensors.append(result)
        return ("tensor", len(tensors) - 1)
    if isinstance(result, (tuple, list)):
        return (type(result), [_flatten(item, tensors) for item in result])
    return ("value", result)


def _rebuild(template, arrays):
    """The step's return value from the fused function's (already copied) output arrays."""
    kind, content = template
    if kind == "tensor":
        return Tensor._wrap(arrays[content])
    if kind == "value":
        return content
    return kind(_rebuild(item, arrays) for item in content)


def _describe(value, leaves, keep):
    """A hashable description of an argument for the call key; tensors (also inside lists,
    tuples and dicts) are appended to `leaves` in a fixed order, opaque objects to `keep`."""
    if isinstance(value, Tensor):
        leaves.append(value)
        data = value._data
        return (data.shape, data.dtype, value._requires_grad)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple([_describe(item, leaves, keep) for item in value]))
    if isinstance(value, dict):
        return (dict, tuple((k, _describe(value[k], leaves, keep)) for k in sorted(value)))
    try:
        hash(value)
    except TypeError:
        # NOTE: an opaque object is keyed by identity and kept alive, so its id is never
        # reused by another object while a specialization refers to it.
        keep.append(value)
        return ("object", id(value))
    # The type too: 2, 2.0 and True are equal but promote differently.
    return (type(value), value)


_WATCHED_TYPES = (Tensor, int, float, bool, str, type(None))


class _ClosureWatch:
    """Python scalars and tensors the step reads from its closure or globals.

    They are part of the call key: a traced step bakes scalars in as constants and binds
    tensors by identity, so a new value (or a rebound tensor) needs a new specialization.
    Which cells and global names to read is worked out once; their values on every call.
    """

    def __init__(self, fn):
        code = getattr(fn, "__code__", None)
        self.cells = list(fn.__closure__ or ()) if code is not None else []
        namespace = getattr(fn, "__globals__", {})
        self.namespace = namespace
        self.names = [name for name in code.co_names if name in namespace] if code else []

    def values(self):
        found = []
        for cell in self.cells:
            try:
                found.append(cell.cell_contents)
            except ValueError:  # an empty cell (a variable not yet assigned)
                found.append(None)
        namespace = self.namespace
        found += [namespace.get(name) for name in self.names]
        return tuple([id(value) if isinstance(value, Tensor) else (type(value), value)
                      for value in found if isinstance(value, _WATCHED_TYPES)])


class _Fallback:
    """A key whose step cannot be fused: every call runs eagerly."""

    def __init__(self, reason):
        self.reason = reason

    def matches(self):
        return True

    def __call__(self, fn, leaves, args, kwargs):
        return fn(*args, **kwargs)


class Specialization:
    """The fused function for one traced run, its buffers, and the Python around the call."""

    def __init__(self, tracer, result_template, outputs, stats):
        try:
            self.source, emitter, (layout, sizes) = generate(tracer, outputs)
        except Unfusable as error:
            raise GraphBreak(str(error)) from None
        self.template = result_template
        self.guard_grads = [(t, was_none) for t, was_none in tracer.touched.items()
                            if was_none is not None]
        self.guard_modes = list(tracer.modules.items())
        # requires_grad of every tensor the step reads or updates decides what it computes.
        watched = {id(t): t for t in tracer.touched}
        for handle in tracer.handles.values():
            if handle[0] in ("data", "grad"):
                watched[id(handle[1])] = handle[1]
        self.guard_flags = [(t, t._requires_grad) for t in watched.values()]
        arenas = {key: np.empty(size, key) for key, size in sizes.items()}
        self.hyper = np.zeros(len(emitter.hyper))
        # Argument values: fixed ones are set here; `fetches` says where the others come from
        # on each call: (position, kind, what, traced shape, traced dtype).
        self.values = []
        self.fetches = []
        extra_positions = {}
        for position, (name, source) in enumerate(emitter.arguments):
            self.values.append(None)
            if source[0] == "handle":
                (kind, what), array = source[1], source[2]
                if kind == "const":
                    self.values[position] = what
                else:
                    self.fetches.append((position, kind, what, array.shape, array.dtype))
            else:
                extra_positions[name] = position
        self.values += list(arenas.values())
        if emitter.hyper:
            self.values.append(self.hyper)
        self.extras = [(kind, extra_positions[where] if kind == "array" else where)
                       for kind, where in emitter.extras]
        self.updates = [(event[1], event[2], event[3]) for event in tracer.events
                        if event[0] == "update"]
        traced_extras = [value for event in tracer.events if event[0] == "update"
                         for value in event[6]]
        names = [name for name, _ in emitter.arguments]
        self.preconditions = [(function, names.index(name))
                              for function, name in emitter.preconditions]

        def buffer_view(name, array):
            key, offset = layout[name]
            return arenas[key][offset:offset + array.size].reshape(array.shape)

        buffers = {id(array): buffer_view(name, array) for name, array in emitter.buffers}
        # After a call, each touched tensor's .grad is what the traced run left there: None,
        # a buffer of this specialization (wrapped once), or its own array updated in place.
        self.final_grads = []
        for tensor in tracer.touched:
            grad = tensor.grad
            if grad is None:
                self.final_grads.append((tensor, None))
            elif id(grad._data) in buffers:
                self.final_grads.append((tensor, Tensor._wrap(buffers[id(grad._data)])))
        self._compile(stats, self._sample_arguments(traced_extras))

    def _compile(self, stats, sample_arguments):
        started = time.perf_counter()
        signature = tuple(numba.typeof(value) for value in sample_arguments)
        try:
            module = _codegen.load_module("fused", self.source)
            self.kernel = module.fused_step
            self.kernel.compile(signature)
        except Exception as error:  # a corrupted or unusable cache must never be fatal
            warnings.warn(f"nbgrad.compile: the kernel cache failed ({error!r}); compiling "
                          "in memory instead", RuntimeWarning)
            source = self.source.replace("cache=True", "cache=False")
            self.kernel = _codegen.load_module("fused_nocache", source).fused_step
            self.kernel.compile(signature)
        stats["compile_time_s"] += time.perf_counter() - started
        hits = sum(self.kernel.stats.cache_hits.values())
        stats["cache_hits" if hits else "cache_misses"] += 1

    def _release_kept_grads(self):
        """Copy-on-write for gradients a caller kept: this call overwrites the buffers that
        back the .grad tensors of the last call, and eager would have made new ones."""
        for index, (tensor, wrapper) in enumerate(self.final_grads):
            if wrapper is None:
                continue
            # References: the list's tuple, this loop's name, getrefcount's argument, and
            # tensor.grad if it still is this wrapper. Any more belong to the caller.
            expected = 3 + (tensor._grad is wrapper)
            if sys.getrefcount(wrapper) > expected:
                buffer = wrapper._data
                wrapper._data = buffer.copy()
                self.final_grads[index] = (tensor, Tensor._wrap(buffer))

    def _sample_arguments(self, traced_extras):
        """Values of the argument types, for compiling before the first fused call."""
        values = list(self.values)
        for position, _, _, shape, dtype in self.fetches:
            values[position] = np.empty(shape, dtype)
        for (kind, where), traced in zip(self.extras, traced_extras):
            if kind == "array":
                values[where] = traced
        return values

    def matches(self):
        for tensor, was_none in self.guard_grads:
            if (tensor.grad is None) != was_none:
                return False
        for module, training in self.guard_modes:
            if module.training != training:
                return False
        for tensor, requires_grad in self.guard_flags:
            if tensor._requires_grad != requires_grad:
                return False
        return True

    def __call__(self, fn, leaves, args, kwargs):
        values = list(self.values)
        for position, kind, what, shape, dtype in self.fetches:
            if kind == "arg":
                array = leaves[what]._data
            elif kind == "data":
                array = what._data
            else:
                array = what.grad._data
            if array.shape != shape or array.dtype != dtype or not array.flags.c_contiguous:
                return None
            values[position] = array
        if self.updates:
            extras = self.extras
            index = 0
            hyper = self.hyper
            for optimizer, group, param in self.updates:
                for value in optimizer.kernel_arguments(param, group)[1]:
                    kind, where = extras[index]
                    if kind == "array":
                        values[where] = value
                    else:
                        hyper[where] = value
                    index += 1
        for function, position in self.preconditions:
            function(values[position])
        self._release_kept_grads()
        outputs = self.kernel(*values)
        for tensor, grad in self.final_grads:
            tensor.grad = grad
        for _, _, param in self.updates:
            param._version_counter[0] += 1
        return _rebuild(self.template, outputs)


class Compiled:
    """A compiled step: call it like the original function."""

    def __init__(self, fn, fullgraph=False, max_specializations=8):
        self.fn = fn
        self.fullgraph = fullgraph
        self.max_specializations = max_specializations
        self._specializations = {}
        self._closure = _ClosureWatch(fn)
        self._warned = set()
        self._latest = None
        self.breaks = []
        self.stats = {"compile_time_s": 0.0, "cache_hits": 0, "cache_misses": 0,
                      "specializations": 0, "fused_calls": 0, "eager_calls": 0}
        functools.update_wrapper(self, fn if not hasattr(fn, "forward") else fn.forward)

    @property
    def source(self):
        """The generated source of the most recent specialization (None before one exists)."""
        return self._latest.source if self._latest is not None else None

    def explain(self):
        """Why calls ran eagerly, and what was compiled."""
        lines = [f"{self.stats['specializations']} specialization(s), "
                 f"{self.stats['fused_calls']} fused call(s), {self.stats['eager_calls']} eager"]
        lines += [f"graph break: {reason}" for reason in self.breaks]
        return "\n".join(lines)

    def _warn_once(self, message, stacklevel=3):
        # stacklevel points the warning at the user's call of the compiled step.
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)

    def __call__(self, *args, **kwargs):
        leaves, keep = [], []
        key = (_describe(args, leaves, keep), _describe(kwargs, leaves, keep) if kwargs else None,
               _grad_state.enabled, self._closure.values())
        for specialization in self._specializations.get(key, ()):
            if specialization.matches():
                result = specialization(self.fn, leaves, args, kwargs)
                if result is not None:
                    self.stats["fused_calls" if isinstance(specialization, Specialization)
                               else "eager_calls"] += 1
                    return result
        if self.stats["specializations"] >= self.max_specializations:
            self._warn_once(f"nbgrad.compile: more than {self.max_specializations} "
                            "specializations; running eagerly from now on")
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        return self._trace(key, leaves, keep, args, kwargs)

    def _trace(self, key, leaves, keep, args, kwargs):
        tracer = Tracer(leaves, self.fullgraph)
        with tracing(tracer):
            result = self.fn(*args, **kwargs)
        self.stats["eager_calls"] += 1
        outputs = []
        template = _flatten(result, outputs)
        reason = tracer.break_reason
        if reason is None and any(t.grad_fn is not None for t in outputs) and \
                not any(event[0] == "vjp" for event in tracer.events):
            reason = ("the step returns a tensor that still needs its autograd graph (no "
                      "backward ran inside it); compile the step with its backward, or call "
                      "it under no_grad for inference")
        specialization = None
        if reason is None:
            try:
                specialization = Specialization(tracer, template, [t._data for t in outputs],
                                                self.stats)
            except GraphBreak as error:
                reason = str(error)
        if reason is not None:
            self.breaks.append(reason)
            if self.fullgraph:
                raise GraphBreak(f"nbgrad.compile(fullgraph=True): cannot fuse the step: {reason}")
            self._warn_once(f"nbgrad.compile: running the step eagerly: {reason}", stacklevel=4)
            specialization = _Fallback(reason)
        else:
            self.stats["specializations"] += 1
            self._latest = specialization
        specialization.keep_alive = keep
        self._specializations.setdefault(key, []).append(specialization)
        return result
