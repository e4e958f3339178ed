"""Deferred forward: how eager mode runs a graph it has seen before as one fused kernel.

A primitive call whose result needs a gradient does not run at once (`defer`): it records
its grad_fn node with its input tensors on the tape, and its result has no array yet. Shape,
dtype and the errors about them (and about class indices) come at once, from the
primitive's shape rule and `check`. Anything that reads a value (`tensor._data`: printing,
`.item()`, NumPy, an op that does not defer) runs the deferred forwards of the tape first,
op by op, exactly as eager mode runs them, and empties the tape (`realize_all`). Ops on
arrays of MAX_SIZE elements or more, views, and ops without a fused rule run at once.

The tape holds the nodes deferred since it was last emptied, and a key of their structure
(primitives, parameters, how they connect, and the shape, dtype and flags of each tensor
they read from outside). `backward()` on a deferred tensor looks that key up. The first
`FUSE_AFTER - 1` times a key comes up the graph runs eagerly; the next time it runs eagerly
under the tracer of `nbgrad.compile`, which generates one Numba kernel for its forward and
backward (`nbgrad.fuse.graph`); from then on each backward of that graph is one kernel
call. Every deferred tensor still referenced gets its value, and every leaf its gradient,
as eager mode would give them. A tape with a hook or `retain_grad` on it, ops backward does
not reach, or a value read before backward, runs eagerly node by node instead.

NOTE: a deferred op reads its inputs when it runs. Every in-place write nbgrad makes
(in-place ops, optimizer steps, `load_state_dict`, `.data = `) first runs all deferred ops
(`realize_all`), so they see the values they were called with. `.numpy()` and
`np.asarray(tensor)` do the same before they hand an array out. A write nbgrad cannot see,
into a NumPy array that already shares memory with an input (`from_numpy`), made between
an op and the first read of its result, is seen by the op. `NBGRAD_DEFERRED=0` (or
`nbgrad.autograd.deferred.enabled = False`) runs every op at once.
"""
import math
import os
import threading
import weakref

from .._core import mode, tracing as _tracing
from . import engine

enabled = os.environ.get("NBGRAD_DEFERRED", "1") != "0"
# The one thread whose ops defer: the tape is not shared safely between threads, so ops on
# any other thread run at once.
THREAD = threading.main_thread().ident

# Fusing costs a trace and a compilation (about a second from a cold cache): only a graph
# that has already run this many times eagerly (a training step, not a line typed at a
# prompt) is fused.
FUSE_AFTER = 16
# A tape this long runs (a loop of forwards with no backward keeps memory bounded: the tape
# holds its nodes, and a node its inputs).
MAX_TAPE = 1024
# An op reading or making an array this large runs at once. Python's time around such a
# kernel is small next to the kernel's, and eager kernels are threaded from this size
# (nbgrad._threads.PARALLEL_THRESHOLD): a fused graph gains nothing there. Measured on 2
# cores, `(a + b).sum().backward()` at 1e6 elements: 175 us eager, 251 us fused.
MAX_SIZE = 1 << 18
# Graph keys counted but not fused yet, at most (a program whose graphs keep changing shape
# must not grow `_graphs` without end); past it the counts start again from zero.
MAX_COUNTED = 4096

_Tensor = None  # set by nbgrad.tensor, which imports this module


class _Tape:
    def __init__(self):
        self.nodes = []       # deferred nodes, in the order they were made
        self.key = []         # per node, and per tensor read from outside when first read
        self.externals = []   # tensors read from outside the tape
        self.places = {}      # id(external tensor) -> ~its index in `externals`
        self.array_places = {}  # id(array) -> place of the first external on that array
        # False once the tape cannot be one kernel: a node ran alone, a hook or retain_grad
        # is on a node (they run Python during backward), or a gradient must flow on into
        # nodes that already ran.
        self.fusable = True


tape = _Tape()
_graphs = {}   # graph key -> eager runs so far (int), its FusedGraph, or None (cannot fuse)


def is_deferred(tensor):
    node = tensor.grad_fn
    return node is not None and node.inputs is not None


def defer(prim, inputs, params, grad_fn_name):
    """A tensor for `prim`'s result with its shape, dtype and grad_fn, but no array yet; None
    if the call should run at once (large arrays: see MAX_SIZE)."""
    # NOTE: one function, with the node made inline: this runs once per op of every step.
    metas = []
    refs = []
    new_externals = []
    for tensor in inputs:
        upstream = tensor.grad_fn
        if upstream is not None and upstream.inputs is not None:
            metas.append(upstream)  # it has the shape and dtype of the array to come
            refs.append(upstream.tape_position)
            continue
        array = tensor._data
        if array.size >= MAX_SIZE:
            return None
        metas.append(array)
        place = tape.places.get(id(tensor))
        if place is None:
            place = ~(len(tape.externals) + len(new_externals))
            new_externals.append(tensor)
        refs.append(place)
    if prim.check is not None:
        prim.check(*metas, **params)
    shape, dtype = prim.infer(*metas, **params)
    shape = tuple(shape)
    # An integer or bool result needs no gradient (dispatch records no node for it), and a
    # tensor defers only with a node: it runs at once.
    if math.prod(shape) >= MAX_SIZE or dtype.kind != "f":
        return None
    if len(tape.nodes) >= MAX_TAPE:
        realize_all()
        return defer(prim, inputs, params, grad_fn_name)
    for tensor in new_externals:
        array = tensor._data
        place = tape.places[id(tensor)] = ~len(tape.externals)
        tape.externals.append(tensor)
        if tensor._requires_grad and tensor.grad_fn is not None:
            tape.fusable = False
        # Two tensors on one array are one argument of the kernel: part of the key.
        tape.key.append((array.shape, array.dtype, array.flags.c_contiguous,
                         tensor._requires_grad, tape.array_places.setdefault(id(array), place)))
    result = _Tensor.__new__(_Tensor)
    result._grad = None
    result._requires_grad = True
    result._version_counter = [0]
    result._accumulator = None
    result._hooks = None
    # engine.new_node, inline.
    name = grad_fn_name or prim.grad_fn
    cls = prim.node_classes.get(name) or engine.node_class_of(prim, name)
    node = result.grad_fn = cls()
    node.prim = prim
    node.params = params
    node.sequence_nr = next(engine.sequence)
    node._pre_hooks = None
    node._retained = None
    node.inputs = inputs
    node.shape = shape
    node.dtype = dtype
    node.output = weakref.ref(result)
    nodes = tape.nodes
    node.tape_position = len(nodes)
    nodes.append(node)
    tape.key.append((cls, prim, tuple(params.items()) if params else (), tuple(refs)))
    return result


def realize(tensor):
    """Run the deferred forward of `tensor`, and of every deferred op still on the tape (the
    tape is emptied: it would not be fused now, and must not keep their nodes alive); the
    array of `tensor`."""
    realize_all()
    if is_deferred(tensor):
        # NOTE: left behind by a forward on the tape that raised (a check of values, such as
        # BCE's input range): it runs now, after what it reads, and raises again if it must.
        node = tensor.grad_fn
        for each in node.inputs:
            each._data  # noqa: B018  (runs that input if it is deferred too)
        _run_forward(node, tensor)
    return tensor._data


def _run_forward(node, tensor):
    inputs, prim, params = node.inputs, node.prim, node.params
    arrays = [t._data for t in inputs]
    out = prim.forward(*arrays, **params)
    if out.shape != node.shape or out.dtype != node.dtype:
        raise RuntimeError(f"nbgrad internal error: {prim.name}'s shape rule said "
                           f"{node.shape} {node.dtype}, its forward made {out.shape} {out.dtype}")
    tensor._data = out
    node.inputs = None
    engine.link(node, inputs, arrays)
    engine.save(node, inputs, arrays, out, tensor)
    if _tracing.current is not None:
        _tracing.current.op(prim, inputs, arrays, params, out)


def realize_all():
    """Run every deferred forward whose result anything can still read; empty the tape."""
    global tape
    if not tape.nodes:
        return
    nodes = tape.nodes
    tape = _Tape()
    # In tape order, a node's deferred inputs run before it. A node whose output is gone is
    # read by nothing (a reader would hold it): it never runs, as eager mode would not know.
    for node in nodes:
        if node.inputs is not None:
            tensor = node.output()
            if tensor is not None:
                _run_forward(node, tensor)


def backward(root, gradient, retain_graph, inputs):
    """Run `root.backward(gradient)` as one fused kernel if it can be; False if the caller
    must run it eagerly."""
    global tape
    if retain_graph or inputs is not None or _tracing.current is not None or \
            type(root) is not _Tensor or not tape.fusable or not is_deferred(root):
        return False
    node = root.grad_fn
    if node.tape_position >= len(tape.nodes) or tape.nodes[node.tape_position] is not node:
        return False  # left deferred by a forward that raised: the eager path runs it
    if gradient is None:
        if node.shape and node.size != 1 or node.dtype.kind != "f":
            return False  # the eager path raises PyTorch's error
        seed = None
    elif type(gradient) is _Tensor and not is_deferred(gradient) and \
            gradient._data.shape == node.shape and gradient._data.dtype == node.dtype:
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
    key = (tuple(tape.key), node.tape_position, tuple(leaves), seed)
    try:
        entry = _graphs.get(key, 0)
    except TypeError:  # a parameter that is an array (loss weights) has no hash
        return False
    if entry is None:
        return False
    nodes, externals = tape.nodes, tape.externals
    if gradient is not None:
        externals = externals + [gradient]
    if type(entry) is int:
        if entry + 1 < FUSE_AFTER:
            if not entry and len(_graphs) >= MAX_COUNTED:
                for counted in [k for k, v in _graphs.items() if type(v) is int]:
                    del _graphs[counted]
            _graphs[key] = entry + 1
            return False
        for each in nodes:
            if each.output() is None:
                # A node nothing reads, which eager mode never runs (`realize_all` skips
                # it): a trace would not see it. Later runs of the key may have none.
                return False
        from ..fuse.graph import trace
        _graphs[key] = None  # if tracing fails, it is not tried again
        _graphs[key] = trace(root, gradient, nodes, externals)
        return True
    if not entry.run(nodes, externals):
        return False
    tape = _Tape()
    return True


class _Interim(mode.Eager):
    def run_pending(self):
        realize_all()


mode.use(_Interim())
