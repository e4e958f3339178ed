"""Deferred eager mode: how eager mode runs a graph it has seen before as one fused kernel.

A primitive call whose result needs a gradient does not run at once (`defer`): its result
is a tensor whose op is pending (`Pending`, on the tape), and its grad_fn node is made and
linked at once. Shape, dtype and the errors about them (and about class indices) come at
once, from the primitive's shape rule and `check`. Anything that reads a value
(`tensor._data`: printing, `.item()`, NumPy, an op that does not defer) runs the pending
forwards of the tape first, op by op, exactly as eager mode runs them, and empties the tape
(`realize_all`). Ops on arrays of MAX_SIZE elements or more, and ops without a fused rule,
run at once.

The tape holds the ops deferred since it was last emptied, and a key of their structure
(primitives, parameters, how they connect, and the shape, dtype and flags of each tensor
they read from outside). `backward()` on a pending tensor looks that key up. The first
`FUSE_AFTER - 1` times a key comes up the graph runs eagerly; the next time it runs eagerly
under the tracer of `nbgrad.compile`, which generates one Numba kernel for its forward and
backward (`nbgrad.fuse.graph`); from then on each backward of that graph is one kernel
call. Every pending tensor still referenced gets its value, and every leaf its gradient,
as eager mode would give them. A tape with a hook or `retain_grad` on it, ops backward does
not reach, or a value read before backward, runs eagerly node by node instead.

This module plugs into the layers below through `nbgrad._core.mode` (see `Deferred`): they
do not know that it exists.

NOTE: a pending op reads its inputs when it runs. Every in-place write nbgrad makes
(in-place ops, optimizer steps, `load_state_dict`, `.data = `) first runs all pending ops
(`nbgrad._core.mode.run_pending`), so they see the values they were called with. The
exception writes no memory: an in-place op on a pending tensor that nothing else reads
(`take_unread`: `nn.ReLU(inplace=True)` after a convolution, `out += identity`) makes that
tensor the pending result of the out-of-place op, so that such a step can still be fused.
`.numpy()` and `np.asarray(tensor)` do the same before they hand an array out. A write
nbgrad cannot see, into a NumPy array that already shares memory with an input
(`from_numpy`), made between an op and the first read of its result, is seen by the op.
`NBGRAD_DEFERRED=0` (or `nbgrad.fuse.deferred.enabled = False`) runs every op at once.
"""
import itertools
import math
import os
import threading
import weakref

from .._core import mode, tracing
from .._tensor.tensor import Tensor, remember_view
from ..autograd import graph, profiler
from ..autograd.profiler import state as _profiling
from ..ops import PRIMITIVES, elementwise
from . import graph as fused_graphs

enabled = os.environ.get("NBGRAD_DEFERRED", "1") != "0"
# The one thread whose ops defer: the tape is not shared safely between threads, so ops on
# any other thread run at once.
THREAD = threading.main_thread().ident

# Fusing costs a trace and a compilation (about a second from a cold cache): only a graph
# that has already run this many times eagerly (a training step, not a line typed at a
# prompt) is fused.
FUSE_AFTER = 16
# A tape this long runs (a loop of forwards with no backward keeps memory bounded: the tape
# holds its ops, and an op its inputs).
MAX_TAPE = 1024
# An op reading or making an array this large runs at once. Python's time around such a
# kernel is small next to the kernel's, and eager kernels are threaded (from
# nbgrad._core.threads.PARALLEL_THRESHOLD elements): a fused graph gains nothing there.
# Measured on 2 cores, `(a + b).sum().backward()` at 1e6 elements: 175 us eager, 251 us
# fused.
MAX_SIZE = 1 << 18
# Graph keys counted but not fused yet, at most (a program whose graphs keep changing shape
# must not grow `_graphs` without end); past it the counts start again from zero.
MAX_COUNTED = 4096

# A call defers only if it has a gradient to record and a fused rule. A view (reshape, as
# in nn.Flatten) defers too: run eagerly it is a view of its input's array, and a fused run
# gives it a view of its input's value (`FusedGraph.run`), so that it shares memory as
# eager's does.
DEFERRABLE = frozenset(prim for prim in PRIMITIVES.values()
                       if prim.vjp is not None and prim.fuse is not None)
# The ops whose shape rules' results `defer` keeps (see `_inferred`): not the elementwise
# ones, whose rule (a dtype lookup and a broadcast, 0.4 us) costs less than the lookup.
RULES_KEPT = DEFERRABLE - {PRIMITIVES[row.name] for row in elementwise.TABLE}


class Pending:
    """An op call on the tape that has not run. It stands in for the array to come where
    only its shape and dtype are read (shape rules, `Tensor.shape`)."""

    __slots__ = ("prim", "params", "inputs", "node", "shape", "dtype", "output", "position")

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)


class PendingWrite:
    """The `_pending` of a tensor that an op on the tape writes in place when it runs
    (`Primitive.writes`: batch_norm's running statistics). Its `_data` is unset meanwhile,
    so that reading it runs the tape first; the tape's own ops read `array`."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)


class _Tape:
    def __init__(self):
        self.written = []     # tensors marked with a PendingWrite by ops on the tape
        self.ops = []         # Pending ops, in the order they were called
        self.key = []         # per op, and per tensor read from outside when first read
        self.externals = []   # tensors read from outside the tape
        self.places = {}      # id(external tensor) -> ~its index in `externals`
        self.array_places = {}  # id(array) -> place of the first external on that array
        # False once the tape cannot be one kernel: a gradient must flow on into nodes that
        # already ran (an op reads a tensor that has a grad_fn but no pending op).
        self.fusable = True


tape = _Tape()
_graphs = {}   # graph key -> eager runs so far (int), its FusedGraph, or None (cannot fuse)


def is_deferred(tensor):
    """Whether `tensor`'s op is pending."""
    return tensor._pending is not None and type(tensor._pending) is not PendingWrite


def _release_written(tape):
    """Give the tensors the tape's ops write in place their arrays back (before the ops
    run: they write into those very arrays)."""
    for tensor in tape.written:
        if type(tensor._pending) is PendingWrite:
            tensor._data = tensor._pending.array
            tensor._pending = None


class Deferred(mode.Eager):
    """The mode that defers op calls onto the tape (installed when this module loads)."""

    def defer(self, prim, inputs, params, grad_fn_name):
        """A tensor for `prim`'s result with its shape, dtype and grad_fn, whose op is
        pending; None if the call runs at once: it cannot be fused, or is on large arrays
        (see MAX_SIZE). (`dispatch` asks only for a call whose result needs a gradient.)"""
        # NOTE: one function: this runs once per op of every step.
        if prim not in DEFERRABLE or not enabled or tracing.current is not None or \
                threading.get_ident() != THREAD:
            return None
        metas = []
        refs = []
        new_externals = []
        for tensor in inputs:
            pending = tensor._pending
            if pending is None:
                array = tensor._data
            elif type(pending) is PendingWrite:
                array = pending.array  # an external an op on the tape writes
            else:
                metas.append(pending)  # it has the shape and dtype of the array to come
                refs.append(pending.position)
                continue
            if array.size >= MAX_SIZE:
                return None
            metas.append(array)
            place = tape.places.get(id(tensor))
            if place is None:
                place = ~(len(tape.externals) + len(new_externals))
                new_externals.append(tensor)
            refs.append(place)
        param_items = tuple(params.items()) if params else ()
        if prim in RULES_KEPT:
            shape, dtype = _infer(prim, metas, params, param_items)
        else:
            shape, dtype = prim.infer(*metas, **params)
            shape = tuple(shape)
        # (After the shape rule, as the forward checks: PyTorch's shape errors come first.)
        if prim.check is not None:
            prim.check(*metas, **params)
        # An integer or bool result needs no gradient (dispatch records no node for it),
        # and a tensor defers only with a node: it runs at once.
        if math.prod(shape) >= MAX_SIZE or dtype.kind != "f":
            return None
        if len(tape.ops) >= MAX_TAPE:
            realize_all()
            return self.defer(prim, inputs, params, grad_fn_name)
        for tensor in new_externals:
            array = tensor._data
            place = tape.places[id(tensor)] = ~len(tape.externals)
            tape.externals.append(tensor)
            if tensor._requires_grad and tensor.grad_fn is not None:
                tape.fusable = False
            # Two tensors on one array are one argument of the kernel: part of the key.
            tape.key.append((array.shape, array.dtype, array.flags.c_contiguous,
                             tensor._requires_grad,
                             tape.array_places.setdefault(id(array), place)))
        node = graph.new_node(prim, params, grad_fn_name)
        # NOTE: tensor.py's `_set`, inline, with `_pending` for `_data`.
        result = Tensor.__new__(Tensor)
        result._grad = None
        result.grad_fn = node
        result._requires_grad = True
        result._accumulator = None
        result._hooks = None
        result._base = None
        if prim.view:
            result._version_counter = inputs[0]._version_counter
            remember_view(result, inputs[0])
        else:
            result._version_counter = [0]
        pending = result._pending = Pending()
        pending.prim = prim
        pending.params = params
        pending.inputs = inputs
        pending.node = node
        pending.shape = shape
        pending.dtype = dtype
        pending.output = weakref.ref(result)
        pending.position = len(tape.ops)
        tape.ops.append(pending)
        tape.key.append((type(node), prim, param_items, tuple(refs)))
        for i in prim.writes:
            written = inputs[i]
            if written._pending is None and written._data.size:  # not a zero-size stand-in
                written._pending = PendingWrite(written._data)
                del written._data
                tape.written.append(written)
        return result

    def value(self, tensor):
        return realize(tensor)

    def run_pending(self):
        realize_all()

    def take_unread(self, tensor):
        pending = tensor._pending
        if pending is None or type(pending) is PendingWrite or tensor._base is not None or \
                tensor._hooks or tensor._grad is not None or tracing.current is not None or \
                threading.get_ident() != THREAD:
            return None
        prim, node = pending.prim, pending.node
        # NOTE: a node that saved the value (its own result: exp's, relu's) or keeps its
        # version (`result_guarded`: elu_'s) must see the write, as PyTorch's "modified by
        # an inplace operation" error at backward.
        if prim.view or "out" in prim.save or type(node).__name__ in prim.result_guarded or \
                node._pre_hooks or node._retained is not None:
            return None
        ops, position = tape.ops, pending.position
        if position >= len(ops) or ops[position] is not pending:
            return None  # left pending by a forward that raised
        for later in itertools.islice(ops, position + 1, None):
            for each in later.inputs:
                if each is tensor:
                    return None  # an op that reads the value before the write
        before = Tensor.__new__(Tensor)
        before._grad = None
        before.grad_fn = node
        before._requires_grad = tensor._requires_grad
        before._accumulator = None
        before._hooks = None
        before._base = None
        before._version_counter = [tensor._version_counter[0]]
        self.give(tensor, before)
        return before

    def give(self, source, tensor):
        pending = source._pending
        if pending is None:
            tensor._data = source._data
            tensor._pending = None
            del source._data
        else:
            tensor._pending = pending
            pending.output = weakref.ref(tensor)
        source._pending = None

    def pending_children(self, node):
        # NOTE: a scan of the tape: inspecting a pending graph is rare, and a map from nodes
        # to ops would cost every op.
        for pending in tape.ops:
            if pending.node is node:
                return graph.edges(pending.prim, pending.inputs)[1]
        return ()  # an op nothing reads, which will never run

    def backward(self, tensors, grad_tensors, retain_graph, inputs):
        return bool(tape.ops) and backward(tensors, grad_tensors, retain_graph, inputs)


# A shape rule's results: (prim, its parameters, their types, the shape and dtype of each
# input) -> (shape, dtype). A step calls the same ops on the same shapes every time, and
# the rules (with their checks, in Python) were a third of the time `defer` takes. The
# rules read only shapes, dtypes and parameters: Pending inputs have nothing else. A call
# whose rule raises leaves no entry, so it raises every time.
_inferred = {}
# Parameter types a result is kept for: values, compared by value. (Not arrays, which have
# no hash, nor objects compared by identity, which the entry would keep alive.)
_VALUE_TYPES = frozenset((int, float, bool, str, tuple, type(None)))


def _value_type(value):
    """A parameter's type in a signature, a tuple's with its elements' types: (1,) and (1.0,)
    are equal but may give different shapes or errors."""
    kind = type(value)
    return (kind, *map(type, value)) if kind is tuple else kind


def _infer(prim, metas, params, param_items):
    """prim.infer(*metas, **params) as (tuple shape, dtype), from `_inferred` when it can:
    kept there for parameters that are plain, hashable values."""
    signature = None
    if _VALUE_TYPES.issuperset(map(type, params.values())):
        types = tuple(map(_value_type, params.values()))
        signature = (prim, param_items, types, *[(meta.shape, meta.dtype) for meta in metas])
        try:
            return _inferred[signature]
        except KeyError:
            pass
        except TypeError:  # a parameter (tuple) holding an array or another unhashable value
            signature = None
    shape, dtype = prim.infer(*metas, **params)
    result = tuple(shape), dtype
    if signature is not None:
        if len(_inferred) >= MAX_COUNTED:
            _inferred.clear()
        _inferred[signature] = result
    return result


def _hashable(value):
    """`value` (a graph key) with each slice as a tuple: a slice does not hash before Python
    3.12, and `x[:, 0]` has two among its parameters."""
    if type(value) is slice:
        return (slice, value.start, value.stop, value.step)
    if type(value) is tuple:
        return tuple(_hashable(each) for each in value)
    return value


def realize(tensor):
    """Run the pending op of `tensor`, and every pending op still on the tape (the tape is
    emptied: it would not be fused now, and must not keep their nodes alive); the array of
    `tensor`."""
    realize_all()
    pending = tensor._pending
    if pending is not None:
        # NOTE: left behind by a forward on the tape that raised (a check of values, such as
        # BCE's input range): it runs now, after what it reads, and raises again if it must.
        for each in pending.inputs:
            each._data  # noqa: B018  (runs that input if it is pending too)
        _run(pending, tensor)
    return tensor._data


def _run(pending, tensor):
    inputs, prim, params = pending.inputs, pending.prim, pending.params
    arrays = [t._data for t in inputs]
    # A deferred op is profiled when it runs (never when `defer` put it on the tape).
    started = _profiling.enabled and profiler.clock()
    extra = None
    if prim.forward_saving:  # (a pending op always has a node)
        out, extra = prim.forward_saving(*arrays, **params)
    else:
        out = prim.forward(*arrays, **params)
    if out.shape != pending.shape or out.dtype != pending.dtype:
        raise RuntimeError(f"nbgrad internal error: {prim.name}'s shape rule said "
                           f"{pending.shape} {pending.dtype}, its forward made {out.shape} "
                           f"{out.dtype}")
    tensor._data = out
    tensor._pending = None
    graph.ran(pending.node, inputs, arrays, out, tensor, extra)
    if tracing.current is not None:
        tracing.current.op(prim, inputs, arrays, params, out, extra)
    if started:
        profiler.op_ran(prim, type(pending.node).__name__, arrays, started)


def realize_all():
    """Run every pending op whose result anything can still read; empty the tape."""
    global tape
    if not tape.ops:
        return
    ops = tape.ops
    _release_written(tape)
    tape = _Tape()
    # In tape order, an op's pending inputs run before it. An op whose output is gone is
    # read by nothing (a reader would hold it): it never runs, as eager mode would not know,
    # unless it writes into its inputs.
    for pending in ops:
        tensor = pending.output()
        if tensor is not None and tensor._pending is pending:
            _run(pending, tensor)
        elif tensor is None and pending.prim.writes:
            pending.prim.forward(*[t._data for t in pending.inputs], **pending.params)


def backward(root, gradient, retain_graph, inputs):
    """Run `root.backward(gradient)` as one fused kernel if it can be; False if the caller
    must run it eagerly."""
    global tape
    if retain_graph or inputs is not None or tracing.current is not None or \
            type(root) is not Tensor or not tape.fusable or root._pending is None:
        return False
    last = root._pending
    if last.position >= len(tape.ops) or tape.ops[last.position] is not last:
        return False  # left pending by a forward that raised: the eager path runs it
    if gradient is None:
        if last.shape and last.size != 1 or last.dtype.kind != "f":
            return False  # the eager path raises PyTorch's error
        seed = None
    elif type(gradient) is Tensor and gradient._pending is None and \
            gradient._data.shape == last.shape and gradient._data.dtype == last.dtype:
        array = gradient._data
        seed = (array.shape, array.dtype, array.flags.c_contiguous)
    else:
        return False
    leaves = []
    for tensor in tape.externals:
        if tensor._requires_grad:
            if tensor._hooks:
                return False
            leaves.append(tensor._grad is None)
    ops = tape.ops
    for pending in ops:
        node = pending.node
        if node._pre_hooks or node._retained is not None:
            return False  # a hook or retain_grad runs Python when backward reaches the node
    key = (tuple(tape.key), last.position, tuple(leaves), seed)
    try:
        entry = _graphs.get(key, 0)
    except TypeError:
        try:
            key = _hashable(key)
            entry = _graphs.get(key, 0)
        except TypeError:  # a parameter that is an array (loss weights) has no hash
            return False
    if entry is None:
        return False
    externals = tape.externals
    if gradient is not None:
        externals = externals + [gradient]
    if type(entry) is int:
        if entry + 1 < FUSE_AFTER:
            if not entry and len(_graphs) >= MAX_COUNTED:
                for counted in [k for k, v in _graphs.items() if type(v) is int]:
                    del _graphs[counted]
            _graphs[key] = entry + 1
            return False
        for pending in ops:
            if pending.output() is None:
                # An op nothing reads, which eager mode never runs (`realize_all` skips
                # it): a trace would not see it. Later runs of the key may have none.
                return False
        _graphs[key] = None  # if tracing fails, it is not tried again
        _release_written(tape)
        _graphs[key] = fused_graphs.trace(root, gradient, ops, externals)
        return True
    _release_written(tape)
    if not entry.run(ops, externals):
        tape.written = []  # given back: the eager path runs the ops on those arrays
        return False
    tape = _Tape()
    return True


mode.use(Deferred())
