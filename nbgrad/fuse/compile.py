"""`nbgrad.compile`: trace a static step once, generate one Numba function, run that.

A call with shapes, dtypes, requires_grad flags, grad mode, module train/eval modes,
`.grad` presence or closure/global objects it has not seen runs the step eagerly under a
tracer (so that call's results are eager's own) and makes a fused kernel of it (the pipeline
of `kernel.py`); later matching calls run the fused function through a generated Python call
function (`call.py`) that checks the call fits. A step that cannot be traced runs eagerly,
with one warning naming the reason and the line (`fullgraph=True` raises instead).

This module is the pipeline's front end for a step's calls: the call key, the call
function's checks of arguments (tensors by position), of closure and globals (by identity),
of grad mode, modules and flags, the optimizers' state and scalars, and the result.
"""
import functools
import warnings
from typing import NamedTuple

import numpy as np

from .._core import mode
from .._core.dtype import get_default_dtype
from ..autograd.grad_mode import state as _grad_state
from ..ops.primitive import Unfusable
from .._tensor.tensor import Tensor
from .call import MISMATCH, ClosureWatch, scalar_key, tuple_target
from .kernel import FailureLog, FrontEnd, Kernel, KernelStats, traced_run
from .tracer import GraphBreak, UpdateEvent, VjpEvent

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


def _describe(value, leaves, keep):
    """A hashable description of an argument for the call key; tensors (also inside lists,
    tuples and dicts) are appended to `leaves` in a fixed order, opaque objects to `keep`."""
    if isinstance(value, Tensor):
        leaves.append(value)
        data = value._data
        return (type(value), data.shape, data.dtype, value._requires_grad)
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
    return scalar_key(value)


class _Leaf(NamedTuple):
    """A tensor argument as the call was keyed (the step may change its flags as it runs)."""
    type: type
    shape: tuple
    dtype: np.dtype
    requires_grad: bool
    tensor: Tensor


class _Fallback:
    """The entry of a key whose step cannot be fused: every call runs eagerly."""

    def __init__(self, reason):
        self.reason = reason


class _StepCall(FrontEnd):
    """The pipeline's front end for one specialization of a step: a call's tensor arguments
    are the call function's leaves, by position; any other tensor the step reads or updates
    is named by identity; the call also checks the closure's and globals' objects, grad
    mode, modules' train/eval modes and requires_grad and .grad flags, fetches the
    optimizers' state and scalars, and returns what the step returned."""

    def __init__(self, leaves, grad_mode, watch, template):
        """`leaves`: a `_Leaf` for each tensor argument; `watch`: the closure watch and
        what it read then; `template`: the returned structure (`_flatten`)."""
        self.described = leaves
        self.leaves = len(leaves)
        self.grad_mode = grad_mode
        self.default_dtype = get_default_dtype()  # (int_tensor / 2's dtype, tensor(1.5)'s)
        self.closure, self.seen = watch
        self.template = template
        self.positions = {id(leaf.tensor): index for index, leaf in enumerate(leaves)}
        self.by_identity = {}  # the tensors the call function names by identity, by id
        self.updated = []     # the parameters the step's optimizers update
        self.on_buffers = []  # (name, .grad tensor) of tensors whose .grad is a kernel buffer

    def name_of(self, writer, tensor):
        """The call function's expression for `tensor`: arguments are inputs by position,
        any other tensor is bound by identity."""
        position = self.positions.get(id(tensor))
        if position is not None:
            return f"leaf_{position}"
        self.by_identity[id(tensor)] = tensor
        return writer.bind(tensor, "tensor")

    def guard(self, writer, tracer, emitter):
        """Checks of what the call was keyed on, and fetches of the tensor arguments."""
        self.closure.write_checks(writer, self.seen)
        writer.check(f"grad_mode.enabled is not {self.grad_mode}")
        writer.check(f"default_dtype() is not {writer.bind(self.default_dtype, 'default')}")
        arguments = {argument.source: argument.name for argument in emitter.arguments
                     if argument.kind == "arg"}
        for index, (kind, shape, dtype, requires_grad, _) in enumerate(self.described):
            writer.check(f"type(leaf_{index}) is not {writer.bind(kind, name=kind.__name__)}")
            writer.check(f"leaf_{index}._requires_grad is not {requires_grad}")
            name = arguments.get(index)
            writer.lines += writer.fetch(name or f"leaf_array_{index}", f"leaf_{index}._data",
                                         shape, dtype, contiguous=name is not None)
        # requires_grad of every tensor the step reads or updates decides what it computes,
        # and so does whether a .grad the step adds to was None (None: the step drops it).
        watched = {id(t): t for t in tracer.touched}
        for kind, tensor in tracer.handles.values():
            if kind in ("data", "grad"):
                watched[id(tensor)] = tensor
        for tensor in watched.values():
            name = self.name_of(writer, tensor)
            writer.check(f"{name}._requires_grad is not {tensor._requires_grad}")
            grad_was_none = tracer.touched.get(tensor)
            if grad_was_none is not None:
                writer.check(f"{name}._grad is {'not ' if grad_was_none else ''}None")
        for module, training in tracer.modules.items():
            writer.check(f"{writer.bind(module, 'module')}.training is not {training}")

    def fetch(self, writer, argument):
        name, kind, source, traced = argument
        if kind in ("arg", "state"):
            # Fetched with the tensor arguments (`guard`), or with its optimizer's scalars
            # (`before_call`).
            return traced
        tensor = self.name_of(writer, source)
        if kind == "grad":
            writer.check(f"{tensor}._grad is None")
        expression = f"{tensor}._grad._data" if kind == "grad" else f"{tensor}._data"
        writer.lines += writer.fetch(name, expression, traced.shape, traced.dtype)
        sample = np.empty(traced.shape, traced.dtype)
        sample.flags.writeable = traced.flags.writeable  # (a read-only array types apart)
        return sample

    def before_call(self, writer, tracer, emitter, arenas, samples):
        """Lines fetching the optimizers' state and scalars, and keeping the .grad tensors
        a caller holds from the kernel's next write."""
        states = {argument.source: argument.name for argument in emitter.arguments
                  if argument.kind == "state"}
        updates = [event for event in tracer.events if type(event) is UpdateEvent]
        slot = 0
        for number, event in enumerate(updates):
            optimizer, group, param, scalars = event.optimizer, event.group, event.param, \
                event.scalars
            self.updated.append(param)
            rule = optimizer.rule
            fetch = f"{writer.bind(optimizer, 'optimizer')}_update_arguments"
            writer.namespace.setdefault(fetch, optimizer.update_arguments)
            tensors = [f"{name}_{number}" for name in rule.arrays]
            writer.lines.append(f"{tuple_target(tensors)}, scalars_{number} = "
                                f"{fetch}({self.name_of(writer, param)}, "
                                f"{writer.bind(group, 'group')})")
            written = writer.remember(f"written_{number}", tuple(scalars))
            writer.lines += [f"if scalars_{number} != {written}:",
                             f"    hyper[{slot}:{slot + len(scalars)}] = {written} = "
                             f"scalars_{number}"]
            slot += len(scalars)
            data = param._data
            for index, (name, tensor) in enumerate(zip(rule.arrays, tensors)):
                argument = states[(number, index)]
                if name not in rule.state:  # a counter: always there
                    traced = samples[argument]
                    writer.lines += writer.fetch(argument, f"{tensor}._data", traced.shape,
                                                 traced.dtype)
                    continue
                # Absent state (None) is a zero-size stand-in, which the rule does not touch.
                absent = writer.bind(np.empty((0,) * data.ndim, data.dtype),
                                     name=f"{argument}_absent")
                writer.lines += [f"if {tensor} is None:", f"    {argument} = {absent}", "else:"]
                writer.lines += ["    " + line for line in writer.fetch(
                    argument, f"{tensor}._data", data.shape, data.dtype)]
        # After a call, each touched tensor's .grad is what the traced run left there: None,
        # a buffer of this specialization (wrapped once), or its own array updated in place.
        buffers = {id(array): arenas.view(name, array.shape) for name, array in emitter.buffers}
        self.on_buffers = [(self.name_of(writer, tensor),
                            Tensor._wrap(buffers[id(tensor.grad._data)]))
                           for tensor in tracer.touched
                           if tensor.grad is not None and id(tensor.grad._data) in buffers]
        for index, (tensor, grad) in enumerate(self.on_buffers):
            grad = writer.remember(f"grad_{index}", grad)
            # NOTE: the references to a .grad tensor here are the namespace's, getrefcount's
            # argument, and the tensor's ._grad if it still is this one; any more are kept
            # by the caller.
            writer.lines += [f"if getrefcount({grad}) > 2 + ({tensor}._grad is {grad}):",
                             f"    {grad} = copy_kept({grad})"]

    def after_call(self, writer, tracer, outputs):
        """Lines leaving .grad and version counters as the eager step would, and returning
        its result; checks that the arguments alias as the traced call's did."""
        writer.lines += [f"{self.name_of(writer, tensor)}._grad = None"
                         for tensor in tracer.touched if tensor.grad is None]
        writer.lines += [f"{tensor}._grad = grad_{index}"
                         for index, (tensor, _) in enumerate(self.on_buffers)]
        # PyTorch counts an optimizer step as an in-place write to the parameter.
        writer.lines += [f"{self.name_of(writer, param)}._version_counter[0] += 1"
                         for param in self.updated]
        writer.lines.append(f"return {_result(writer, self.template, outputs)}")
        reachable, edges = self.closure.walk(self.seen)
        _check_aliasing(writer, self.described, reachable, self.by_identity)
        self.closure.write_holder_checks(writer, edges, self.by_identity)


def _check_aliasing(writer, leaves, reachable, by_identity):
    """Checks that the call's tensor arguments alias each other and the tensors the step
    reads by identity as the traced call's did: the kernel reads one array, and writes one
    .grad, per traced tensor.

    `leaves` as `_StepCall` takes them; `reachable`: the tensors the step's closure
    and globals hold (`ClosureWatch.walk`), as the call was keyed;
    `by_identity`: the tensors the call function names by identity, by id.
    """
    tensors = [leaf.tensor for leaf in leaves]
    for i, tensor in enumerate(tensors):
        for j in range(i):
            other = tensors[j]
            if tensor is other:
                writer.check(f"leaf_{i} is not leaf_{j}")
                break
            # NOTE: two tensors on one array (x and x.detach()) are one input of the kernel.
            shared = tensor._data is other._data
            writer.check(f"leaf_{i}._data is {'not ' if shared else ''}leaf_{j}._data")
        else:
            if id(tensor) in reachable:
                # The step also reads it from its closure or globals: another tensor passed
                # here would be two inputs.
                writer.check(f"leaf_{i} is not {writer.bind(tensor, 'reached')}")
    # A call passing a tensor the call function names by identity (a parameter, say) as an
    # argument makes two traced inputs one.
    if by_identity:
        name = writer.bind(frozenset(by_identity), name="bound_tensors")
        for i, tensor in enumerate(tensors):
            if id(tensor) not in reachable:
                writer.check(f"id(leaf_{i}) in {name}")
            # An argument on the array of such a tensor (w.detach()) was traced as one input.
            for other in by_identity.values():
                if other._data is tensor._data:
                    writer.check(f"leaf_{i}._data is not {writer.bind(other, 'tensor')}._data")


def _result(writer, template, outputs):
    """The expression of the step's return value: a new tensor on a copy of each output
    buffer, the rest as traced."""
    kind, content = template
    if kind == "tensor":
        return f"wrap({writer.bind(outputs[content], 'output')}.copy())"
    if kind == "value":
        return writer.bind(content, "value")
    items = ", ".join(_result(writer, item, outputs) for item in content)
    if kind is list:
        return f"[{items}]"
    if kind is tuple:
        return f"({items},)" if len(content) == 1 else f"({items})"
    return f"{writer.bind(kind, 'result_type')}([{items}])"


def _no_call(leaves):
    return MISMATCH


class Compiled:
    """A compiled step: call it like the original function."""

    def __init__(self, fn, fullgraph=False, max_specializations=8):
        self.fn = fn
        self.fullgraph = fullgraph
        self.max_specializations = max_specializations
        # call key -> its Kernels, tried in order, or its _Fallback
        self._specializations = {}
        # NOTE: the objects the call keys name by identity, kept alive so that no other
        # object gets their id while a specialization refers to it.
        self._keyed_objects = []
        self._closure = ClosureWatch(fn)
        self._warned = set()
        self._latest = None
        # The call function of the specialization that ran last, if its arguments were all
        # tensors: the next calls try it first, without building a key (it checks all).
        self._last_call = _no_call
        self.breaks = FailureLog()
        self.stats = KernelStats()
        functools.update_wrapper(self, fn if not hasattr(fn, "forward") else fn.forward)

    @property
    def source(self):
        """The generated kernel source of the most recent specialization (None before one
        exists)."""
        return self._latest.source if self._latest is not None else None

    @property
    def call_source(self):
        """The generated Python around that kernel: the checks that a call fits, the fetches
        of arrays and optimizer scalars, the kernel call, and the result."""
        return self._latest.call_source if self._latest is not None else None

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
        # The step writes in place (parameters, .grad): deferred ops run before, on the values
        # they were called with.
        mode.run_pending()
        if not kwargs:
            result = self._last_call(args)
            if result is not MISMATCH:
                self.stats["fused_calls"] += 1
                return result
        self._last_call = _no_call
        leaves, keep = [], []
        key = (_describe(args, leaves, keep), _describe(kwargs, leaves, keep) if kwargs else None,
               _grad_state.enabled, get_default_dtype(), self._closure.key(keep))
        for kernel in self._specializations.get(key, ()):
            if type(kernel) is _Fallback:
                self.stats["eager_calls"] += 1
                return self.fn(*args, **kwargs)
            result = kernel.call(leaves)
            if result is not MISMATCH:
                self.stats["fused_calls"] += 1
                # NOTE: only then do the call function's leaves line up with the arguments:
                # (x, [y]) must not run as (x, y).
                if not kwargs and all(isinstance(arg, Tensor) for arg in args):
                    self._last_call = kernel.call
                return result
        if self.stats["specializations"] >= self.max_specializations:
            self._warn_once(f"nbgrad.compile: more than {self.max_specializations} "
                            "specializations; running eagerly from now on")
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        return self._trace(key, leaves, keep, args, kwargs)

    def _trace(self, key, leaves, keep, args, kwargs):
        # The checks of the call function are on what the call was keyed on: the step may
        # change flags or globals as it runs.
        described = [_Leaf(type(t), t._data.shape, t._data.dtype, t._requires_grad, t)
                     for t in leaves]
        watch = (self._closure, self._closure.seen)
        grad_mode = _grad_state.enabled
        tracer, result = traced_run(lambda: self.fn(*args, **kwargs), leaves, self.fullgraph)
        self.stats["eager_calls"] += 1
        outputs = []
        template = _flatten(result, outputs)
        reason = tracer.break_reason
        if reason is None and any(t.grad_fn is not None for t in outputs) and \
                not any(type(event) is VjpEvent for event in tracer.events):
            reason = ("the step returns a tensor that still needs its autograd graph (no "
                      "backward ran inside it); compile the step with its backward, or call "
                      "it under no_grad for inference")
        if reason is None:
            try:
                kernel = Kernel(tracer, [t._data for t in outputs],
                                _StepCall(described, grad_mode, watch, template), self.stats)
            except Unfusable as error:
                reason = str(error)
        if reason is not None:
            self.breaks.append(reason)
            if self.fullgraph:
                raise GraphBreak(f"nbgrad.compile(fullgraph=True): cannot fuse the step: {reason}")
            self._warn_once(f"nbgrad.compile: running the step eagerly: {reason}", stacklevel=4)
            kernel = _Fallback(reason)
        else:
            self._latest = kernel
        self._keyed_objects.append(keep)
        self._specializations.setdefault(key, []).append(kernel)
        return result
