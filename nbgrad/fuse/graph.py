"""A deferred eager graph (`nbgrad.autograd.deferred`) as one fused kernel: its forward, its
backward, and the gradients it adds into leaves' `.grad`.

`trace` runs the graph's backward eagerly under the tracer of `nbgrad.compile` (so that
call's results are eager's own) and generates the kernel from what it saw; `FusedGraph.run`
runs a later graph with the same key through that kernel.
"""
from sys import getrefcount

import numpy as np

from .._core import threads as _threads
from ..autograd import engine
from .._tensor.tensor import new_tensor
from . import Arenas, compile_kernel
from .call import MISMATCH, CallWriter, tuple_target
from .codegen import generate
from .tracer import Tracer, tracing
from ..ops.primitive import Unfusable

stats = {"compile_time_s": 0.0, "cache_hits": 0, "cache_misses": 0}
# Why the latest graphs that were traced could not be fused (they run eagerly).
unfused = []
MAX_REASONS = 20


def trace(root, gradient, nodes, externals):
    """Run `root.backward(gradient)` eagerly, traced; the FusedGraph for later runs of the
    same graph, or None if it cannot be fused (`unfused` says why)."""
    from .. import autograd

    tensors = [node.output() for node in nodes]  # all alive: each is an input or the root
    places = {id(tensor): ~i for i, tensor in enumerate(externals)}
    places.update((id(tensor), i) for i, tensor in enumerate(tensors))
    refs = [[places[id(t)] for t in node.inputs] for node in nodes]
    tracer = Tracer(externals)
    with tracing(tracer):
        autograd.backward(root, gradient)
    reason = tracer.break_reason
    if reason is None and not _all_reach(refs, nodes.index(root.grad_fn)):
        reason = "the tape holds ops whose results backward() does not reach"
    if reason is None:
        try:
            return FusedGraph(tracer, externals, [t._data for t in tensors], nodes, refs)
        except Unfusable as error:
            reason = str(error)
    # Not a warning: eager mode gave the user eager results, and keeps doing so.
    unfused.append(reason)
    del unfused[:-MAX_REASONS]
    return None


def _all_reach(refs, root):
    """Whether every node feeds node `root`, with `refs` as made in `trace`."""
    reached = {root}
    stack = [root]
    while stack:
        for ref in refs[stack.pop()]:
            if ref >= 0 and ref not in reached:
                reached.add(ref)
                stack.append(ref)
    return len(reached) == len(refs)


class FusedGraph:
    """The kernel for one graph key, and the generated Python that calls it (`call_source`):
    fetch each argument, check what the key does not fix (a .grad's dtype and layout), call."""

    def __init__(self, tracer, externals, outputs, nodes, refs):
        position = {id(tensor): i for i, tensor in enumerate(externals)}
        # Leaves whose .grad the graph adds to in place, and those it gives a first .grad.
        self.added_grads = []
        new_grads = {}  # id(the traced first .grad array) -> position of its leaf
        fresh = []
        for tensor, grad_was_none in tracer.touched.items():
            if grad_was_none:
                new_grads[id(tensor._grad._data)] = position[id(tensor)]
                fresh.append(tensor._grad._data)
            else:
                self.added_grads.append(position[id(tensor)])
        self.source, emitter, (layout, sizes), returned = generate(tracer, outputs, fresh=fresh)
        arenas = Arenas(layout, sizes)
        writer = CallWriter(len(externals))
        if emitter.parallel:
            # A process forked from this one must not run threaded loops (nbgrad._threads):
            # there the graph runs eagerly.
            writer.check(f"not {writer.bind(_threads.start, name='threads_usable')}()")
        arguments = {}
        self.new_grads = []  # the externals whose first .grad the call returns, in order
        for name, (kind, handle, traced) in emitter.arguments:
            if kind == "fresh":
                self.new_grads.append(new_grads.pop(id(traced)))
                dtype = writer.bind(traced.dtype, name=traced.dtype.name)
                writer.lines.append(f"{name} = empty({traced.shape!r}, {dtype})")
            elif handle[0] == "arg":
                writer.lines.append(f"{name} = leaf_{handle[1]}._data")
            elif handle[0] == "grad" and id(handle[1]) in position:
                # NOTE: the kernel adds into it: a .grad of another dtype or layout, or a
                # read-only one, does not fit.
                writer.lines += writer.fetch(name, f"leaf_{position[id(handle[1])]}._grad._data",
                                             traced.shape, traced.dtype, writeable=True)
            elif handle[0] == "const":
                writer.namespace[name] = handle[1]
            else:
                raise Unfusable(f"the graph reads {handle[0]} of a tensor it does not take")
            arguments[name] = traced
        if new_grads:
            raise Unfusable("a leaf's first gradient is not an array the graph writes")
        for check, expression in emitter.preconditions:
            writer.lines.append(f"{writer.bind(check, 'precondition')}({expression})")
        writer.namespace["empty"] = np.empty
        arguments.update(arenas.arguments())
        writer.namespace.update(arenas.arguments())
        self.kernel = compile_kernel(self.source, list(arguments.values()), stats)
        writer.lines.append(writer.call(writer.bind(self.kernel, name="fused_step"), arguments))
        fresh_names = [name for name, (kind, _, _) in emitter.arguments if kind == "fresh"]
        writer.lines.append(f"return {tuple_target(fresh_names)}")
        self.call, self.call_source = writer.function()
        # Each deferred tensor's value is copied out of its buffer: the next run overwrites
        # the buffers.
        self.values = [arenas.view(name, array.shape) for name, array in zip(returned, outputs)]
        # Per node, for graphs of this key: the traced run's needs and input shapes and
        # dtypes (engine.link; engine.Node.__getattr__ reads them), and how many times the
        # other nodes hold its output tensor among their inputs.
        self.links = [(node.needs, node.input_meta) for node in nodes]
        self.held = [sum(ref == i for refs_of in refs for ref in refs_of)
                     for i in range(len(nodes))]

    def run(self, nodes, externals):
        """Run the graph ending at `nodes[-1]` (same key as the traced one); False if this
        call cannot (a .grad of another dtype or layout), and nothing has changed."""
        new_grads = self.call(externals)
        if new_grads is MISMATCH:
            return False
        held = self.held
        for index, node in enumerate(nodes):
            # The node keeps its input tensors as `sources` (its links are made from them if
            # they are read); it holds no reference back to itself, so no cycle is left for
            # the garbage collector.
            node.sources = node.inputs
            node.inputs = None
            node.fused = self
            if node.prim.save:
                # Both, so that the check before a VJP (on `_saved_versions`) runs and raises.
                node.saved = node._saved_versions = engine.FREED
            tensor = node.output()
            # NOTE: a tensor only the graph holds (its references: `tensor`, getrefcount's
            # argument, and `held[index]` places among other nodes' sources) gets no value:
            # nothing can read it.
            if tensor is not None and getrefcount(tensor) > 2 + held[index]:
                tensor._data = self.values[index].copy()
        for index, grad in zip(self.new_grads, new_grads):
            externals[index]._grad = new_tensor(grad)  # a new array: the leaf's own
        for index in self.added_grads:
            externals[index]._grad._version_counter[0] += 1
        return True
