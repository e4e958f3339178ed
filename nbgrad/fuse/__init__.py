"""`nbgrad.compile`: trace a static step once, generate one Numba function, run that.

A call with shapes, dtypes, requires_grad flags, grad mode, module train/eval modes and
`.grad` presence it has not seen runs the step eagerly under a tracer (so that call's
results are eager's own), generates the fused source, and compiles it; later matching calls
run the fused function. A step that cannot be traced runs eagerly, with one warning naming
the reason and the line (`fullgraph=True` raises instead).
"""
import dis
import functools
import sys
import time
import types
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


_ONE_TENSOR = ("tensor", 0)  # the template of a step that returns one tensor


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


# Values of these types are keyed by value (a traced step bakes them in as constants);
# any other object the step reads by identity.
_SCALAR_TYPES = (int, float, bool, str, type(None))
# What an empty closure cell or a global not (yet) defined reads as.
_ABSENT = object()


def _global_reads(code):
    """The names `code`, and the functions and comprehensions defined in it, load as globals
    (NOTE: not `co_names`, which also holds attribute names such as `.step`)."""
    names = {instruction.argval for instruction in dis.get_instructions(code)
             if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_reads(constant)
    return names


class _ClosureWatch:
    """The objects the step reads from its closure cells and its globals.

    They are part of the call key: Python scalars by value, since a traced step bakes them
    in as constants; any other object (a tensor, a model, an optimizer, a function) by
    identity, since the traced step is bound to that very object. Which cells and global
    names to read is worked out once; their contents on every call.
    """

    def __init__(self, fn):
        code = getattr(fn, "__code__", None)
        self.cells = list(fn.__closure__ or ()) if code is not None else []
        self.namespace = getattr(fn, "__globals__", {})
        self.names = sorted(_global_reads(code)) if code is not None else []
        self.seen_cells = self.seen_globals = ()

    def values(self, keep):
        """The watched objects' part of the call key. Objects keyed by identity are appended
        to `keep`: NOTE: kept alive, so that no other object gets their id while a
        specialization refers to it."""
        self.seen_cells = [_cell_contents(cell) for cell in self.cells]
        namespace = self.namespace
        self.seen_globals = [namespace.get(name, _ABSENT) for name in self.names]
        key = []
        for value in self.seen_cells + self.seen_globals:
            if isinstance(value, _SCALAR_TYPES):
                key.append((type(value), value))
            else:
                keep.append(value)
                key.append(id(value))
        return tuple(key)

    def unchanged(self):
        """Whether every cell and global still holds the very object it held when `values`
        last ran (then `values` would give the same key)."""
        try:
            for cell, seen in zip(self.cells, self.seen_cells):
                if cell.cell_contents is not seen:
                    return False
        except ValueError:  # an empty cell: let the caller build the key
            return False
        if self.names:
            namespace = self.namespace
            for name, seen in zip(self.names, self.seen_globals):
                if namespace.get(name, _ABSENT) is not seen:
                    return False
        return True


def _cell_contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a variable not yet assigned)
        return _ABSENT


# What a specialization returns for a call that does not fit it. NOTE: not None, which is
# what a step without a return statement gives.
MISMATCH = object()


class _Fallback:
    """A key whose step cannot be fused: every call runs eagerly."""

    def __init__(self, reason):
        self.reason = reason

    def __call__(self, fn, leaves, args, kwargs):
        return fn(*args, **kwargs)


def _fits(array, shape, dtype):
    return array.shape == shape and array.dtype == dtype and array.flags.c_contiguous


class Specialization:
    """The fused function for one traced run, its buffers, and the Python around the call.

    Everything a call needs is worked out here once: where each argument comes from, which
    guards to check, which arena views to copy the results from.
    """

    def __init__(self, tracer, result_template, outputs, stats, key, plain_arguments):
        try:
            self.source, emitter, (layout, sizes), returned = generate(tracer, outputs)
        except Unfusable as error:
            raise GraphBreak(str(error)) from None
        self.template = result_template
        self.returns_one_tensor = result_template == _ONE_TENSOR
        self.guard_modes = list(tracer.modules.items())
        # requires_grad of every tensor the step reads or updates decides what it computes,
        # and so does whether a .grad the step adds to was None (None: the step drops it).
        watched = {id(t): t for t in tracer.touched}
        for handle in tracer.handles.values():
            if handle[0] in ("data", "grad"):
                watched[id(handle[1])] = handle[1]
        self.guard_tensors = [(t, t._requires_grad, tracer.touched.get(t))
                              for t in watched.values()]
        arenas = {key: np.empty(size, key) for key, size in sizes.items()}

        def buffer_view(name, array):
            key, offset = layout[name]
            return arenas[key][offset:offset + array.size].reshape(array.shape)

        traced_buffers = dict(emitter.buffers)
        self.outputs = [buffer_view(name, traced_buffers[name]) for name in returned]
        # Argument values. Fixed ones are set here; the others are fetched on each call, from
        # a tensor argument, a tensor's data or .grad, or the optimizer's state. The list
        # keeps the last call's arrays: an array seen last time needs no checks.
        self.values = []
        samples = []
        self.arg_fetches, self.data_fetches, self.grad_fetches = [], [], []
        fetches = {"arg": self.arg_fetches, "data": self.data_fetches, "grad": self.grad_fetches}
        state_positions = {}
        for position, (_, (kind, what, traced)) in enumerate(emitter.arguments):
            value = sample = None
            if kind == "state":
                state_positions[what] = position
                sample = traced
            elif what[0] == "const":
                value = sample = what[1]
            else:
                fetches[what[0]].append((position, what[1], traced.shape, traced.dtype))
                sample = np.empty(traced.shape, traced.dtype)
            self.values.append(value)
            samples.append(sample)
        self.values += list(arenas.values())
        samples += list(arenas.values())
        self.updates = self._updates(tracer, state_positions)
        if emitter.hyper:
            self.hyper = np.array(emitter.hyper, np.float64)
            self.values.append(self.hyper)
            samples.append(self.hyper)
        self.seen_state = [None] * len(self.values)
        names = [name for name, _ in emitter.arguments]
        self.preconditions = [(function, names.index(name))
                              for function, name in emitter.preconditions]
        buffers = {id(array): buffer_view(name, array) for name, array in emitter.buffers}
        # After a call, each touched tensor's .grad is what the traced run left there: None,
        # a buffer of this specialization (wrapped once), or its own array updated in place.
        self.cleared_grads = [tensor for tensor in tracer.touched if tensor.grad is None]
        self.buffer_grads = [(tensor, Tensor._wrap(buffers[id(tensor.grad._data)]))
                             for tensor in tracer.touched
                             if tensor.grad is not None and id(tensor.grad._data) in buffers]
        # The scalars in `hyper` for each update: only changed ones are written again.
        self.written = [tuple(event[6]) for event in tracer.events if event[0] == "update"]
        self.updated = [update[1] for update in self.updates]
        # For calls whose arguments are all tensors: (shape, dtype, requires_grad, position
        # of its array among the arguments or None) per argument, from the call key.
        self.grad_mode = key[2]
        self.alike = None
        if plain_arguments:
            positions = {index: position for position, index, _, _ in self.arg_fetches}
            self.alike = [(shape, dtype, requires_grad, positions.get(index))
                          for index, (shape, dtype, requires_grad) in enumerate(key[0][1])]
        self._compile(stats, samples)

    @staticmethod
    def _updates(tracer, state_positions):
        """Per parameter update, in the order of the generated code: (the optimizer's
        update_arguments, parameter, group, first hyper slot, where each state array goes:
        (position, traced shape, dtype, an empty stand-in for absent state or None for a
        counter, which is passed unflattened))."""
        updates = []
        slot = 0
        for event in [event for event in tracer.events if event[0] == "update"]:
            _, optimizer, group, param, _, tensors, scalars = event
            number = len(updates)
            shape, dtype = param._data.shape, param._data.dtype
            arrays = []
            for index, name in enumerate(optimizer.rule.arrays):
                position = state_positions[(number, index)]
                if name in optimizer.rule.state:
                    arrays.append((position, shape, dtype, np.empty(0, dtype)))
                else:
                    counter = tensors[index]._data
                    arrays.append((position, counter.shape, counter.dtype, None))
            updates.append((optimizer.update_arguments, param, group, slot, arrays))
            slot += len(scalars)
        return updates

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
        for index, (tensor, wrapper) in enumerate(self.buffer_grads):
            # References: the list's tuple, this loop's name, getrefcount's argument, and
            # tensor.grad if it still is this wrapper. Any more belong to the caller.
            expected = 3 + (tensor._grad is wrapper)
            if sys.getrefcount(wrapper) > expected:
                buffer = wrapper._data
                wrapper._data = buffer.copy()
                self.buffer_grads[index] = (tensor, Tensor._wrap(buffer))

    def _fetch_updates(self):
        """The optimizers' state arrays and scalars for this call (learning rates may have
        changed, load_state_dict may have replaced the state); False if a state array does
        not fit."""
        values, seen, written = self.values, self.seen_state, self.written
        for index, (update_arguments, param, group, slot, arrays) in enumerate(self.updates):
            tensors, scalars = update_arguments(param, group)
            for tensor, (position, shape, dtype, empty) in zip(tensors, arrays):
                if tensor is None:
                    values[position] = empty
                    continue
                array = tensor._data
                if array is not seen[position]:
                    if not _fits(array, shape, dtype):
                        return False
                    seen[position] = array
                    values[position] = array if empty is None else array.reshape(-1)
            if scalars != written[index]:
                self.hyper[slot:slot + len(scalars)] = scalars
                written[index] = scalars
        return True

    def __call__(self, fn, leaves, args, kwargs):
        """Run the fused function for a call whose key is this specialization's; MISMATCH
        if a guard or an array does not fit it."""
        values = self.values
        for position, index, shape, dtype in self.arg_fetches:
            array = leaves[index]._data
            if array is not values[position]:
                if not _fits(array, shape, dtype):
                    return MISMATCH
                values[position] = array
        return self._run()

    def call_alike(self, args):
        """Run for a call whose grad mode and closure are those of this specialization's key,
        checking the arguments against the key without building it; MISMATCH if anything
        differs."""
        alike = self.alike
        if alike is None or len(args) != len(alike):
            return MISMATCH
        values = self.values
        # NOTE: `is` for dtypes and flags (NumPy has one object per dtype): anything else
        # only sends the call down the path that builds the key. An argument's array seen
        # by the last call has not changed shape or dtype.
        for arg, (shape, dtype, requires_grad, position) in zip(args, alike):
            if not isinstance(arg, Tensor) or arg._requires_grad is not requires_grad:
                return MISMATCH
            array = arg._data
            if position is None or array is not values[position]:
                if array.shape != shape or array.dtype is not dtype:
                    return MISMATCH
                if position is not None:
                    if not array.flags.c_contiguous:
                        return MISMATCH
                    values[position] = array
        return self._run()

    def _run(self):
        """Check the guards, fetch the arrays of the tensors the step reads, run the kernel,
        and leave .grad, version counters and the result as the eager step would."""
        for tensor, requires_grad, grad_was_none in self.guard_tensors:
            if tensor._requires_grad != requires_grad or \
                    grad_was_none is not None and (tensor._grad is None) != grad_was_none:
                return MISMATCH
        for module, training in self.guard_modes:
            if module.training != training:
                return MISMATCH
        values = self.values
        for position, tensor, shape, dtype in self.data_fetches:
            array = tensor._data
            if array is not values[position]:
                if not _fits(array, shape, dtype):
                    return MISMATCH
                values[position] = array
        for position, tensor, shape, dtype in self.grad_fetches:
            grad = tensor._grad
            if grad is None:
                return MISMATCH
            array = grad._data
            if array is not values[position]:
                if not _fits(array, shape, dtype):
                    return MISMATCH
                values[position] = array
        for function, position in self.preconditions:
            function(values[position])
        if self.updates and not self._fetch_updates():
            return MISMATCH
        if self.buffer_grads:
            self._release_kept_grads()
        self.kernel(*values)
        for tensor in self.cleared_grads:
            tensor._grad = None
        for tensor, grad in self.buffer_grads:
            tensor._grad = grad
        for param in self.updated:
            param._version_counter[0] += 1
        if self.returns_one_tensor:
            return Tensor._wrap(self.outputs[0].copy())
        return _rebuild(self.template, [output.copy() for output in self.outputs])


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
        # The specialization whose key the closure and grad mode had at the last call that
        # built a key; the next calls try it first, without building a key.
        self._last = None
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
        last = self._last
        if last is not None and not kwargs and _grad_state.enabled is last.grad_mode and \
                self._closure.unchanged():
            result = last.call_alike(args)
            if result is not MISMATCH:
                self.stats["fused_calls"] += 1
                return result
        self._last = None
        leaves, keep = [], []
        key = (_describe(args, leaves, keep), _describe(kwargs, leaves, keep) if kwargs else None,
               _grad_state.enabled, self._closure.values(keep))
        for specialization in self._specializations.get(key, ()):
            result = specialization(self.fn, leaves, args, kwargs)
            if result is not MISMATCH:
                if isinstance(specialization, Specialization):
                    self.stats["fused_calls"] += 1
                    self._last = specialization
                else:
                    self.stats["eager_calls"] += 1
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
                plain = not kwargs and all(isinstance(arg, Tensor) for arg in args)
                specialization = Specialization(tracer, template, [t._data for t in outputs],
                                                self.stats, key, plain)
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
            self._latest = self._last = specialization
        specialization.keep_alive = keep
        self._specializations.setdefault(key, []).append(specialization)
        return result
