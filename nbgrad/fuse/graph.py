"""A deferred eager graph (`nbgrad.autograd.deferred`) as one fused kernel: its forward, its
backward, and the gradients it adds into leaves' `.grad`.

`trace` runs the graph's backward eagerly under the tracer of `nbgrad.compile` (so that
call's results are eager's own) and generates the kernel from what it saw; `FusedGraph.run`
runs a later graph with the same key through that kernel.
"""
import numpy as np

from .. import _threads
from ..autograd import engine
from ..tensor import new_tensor
from . import Arenas, compile_kernel
from .codegen import generate
from .tracer import Tracer, tracing
from ..ops.primitive import Unfusable

stats = {"compile_time_s": 0.0, "cache_hits": 0, "cache_misses": 0}
# Why the latest graphs that were traced could not be fused (they run eagerly).
unfused = []
MAX_REASONS = 20

# How the kernel gets each argument: the array of external tensor i, the .grad array of
# external tensor i, an array fixed when the graph was traced, or a new array for the
# first .grad of external tensor i.
_EXTERNAL, _GRAD, _FIXED, _NEW_GRAD = range(4)


def trace(root, gradient, nodes, externals):
    """Run `root.backward(gradient)` eagerly, traced; the FusedGraph for later runs of the
    same graph, or None if it cannot be fused (the warning says why)."""
    from .. import autograd

    tensors = [node.output() for node in nodes]  # all alive: each is an input or the root
    places = {id(tensor): ~i for i, tensor in enumerate(externals)}
    places.update((id(tensor), i) for i, tensor in enumerate(tensors))
    refs = [[places[id(t)] for t in node.inputs] for node in nodes]
    tracer = Tracer(externals)
    with tracing(tracer):
        autograd.backward(root, gradient)
    reason = tracer.break_reason
    if reason is None and not _all_reach(refs):
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


def _all_reach(refs):
    """Whether every node feeds the last one (the root), with `refs` as made in `trace`."""
    reached = {len(refs) - 1}
    stack = [len(refs) - 1]
    while stack:
        for ref in refs[stack.pop()]:
            if ref >= 0 and ref not in reached:
                reached.add(ref)
                stack.append(ref)
    return len(reached) == len(refs)


class FusedGraph:
    def __init__(self, tracer, externals, outputs, nodes, refs):
        position = {id(tensor): i for i, tensor in enumerate(externals)}
        # Leaves whose .grad the graph adds to in place, and those it gives a first .grad.
        self.added_grads = []
        new_grads = {}
        for tensor, grad_was_none in tracer.touched.items():
            if grad_was_none:
                new_grads[id(tensor._grad._data)] = position[id(tensor)]
            else:
                self.added_grads.append(position[id(tensor)])
        self.source, emitter, (layout, sizes), returned = generate(
            tracer, outputs, fresh=[t._grad._data for t, none in tracer.touched.items() if none])
        arenas = Arenas(layout, sizes)
        self.fetch = []
        samples = []
        for name, (kind, handle, traced) in emitter.arguments:
            if kind == "fresh":
                self.fetch.append((_NEW_GRAD, new_grads.pop(id(traced)), traced))
            elif handle[0] == "arg":
                self.fetch.append((_EXTERNAL, handle[1], None))
            elif handle[0] == "grad" and id(handle[1]) in position:
                self.fetch.append((_GRAD, position[id(handle[1])], traced))
            elif handle[0] == "const":
                self.fetch.append((_FIXED, handle[1], None))
            else:
                raise Unfusable(f"the graph reads {handle[0]} of a tensor it does not take")
            samples.append(traced)
        names = [name for name, _ in emitter.arguments]
        self.preconditions = [(check, names.index(name)) for check, name in emitter.preconditions]
        self.arenas = list(arenas.arguments().values())
        self.parallel = emitter.parallel
        if new_grads:
            raise Unfusable("a leaf's first gradient is not an array the graph writes")
        # Each deferred tensor's value is copied out of its buffer: the next run overwrites
        # the buffers.
        self.values = [arenas.view(name, array.shape) for name, array in zip(returned, outputs)]
        # What each node's links (engine.link) are, for graphs of this key: its inputs, as
        # refs (>= 0: a node, < 0: ~index of a tensor read from outside), and the traced run's
        # needs and input shapes and dtypes.
        self._links = [(ref, node.needs, node.input_meta) for ref, node in zip(refs, nodes)]
        self.kernel = compile_kernel(self.source, samples + self.arenas, stats)

    def links(self, position, nodes, externals):
        """(needs, children, input_meta) of the node at `position` of a graph this kernel
        ran (see engine.Node.__getattr__)."""
        refs, needs, input_meta = self._links[position]
        children = [None if not need else nodes[ref] if ref >= 0 else
                    engine.edge(externals[~ref]) for ref, need in zip(refs, needs)]
        return needs, children, input_meta

    def run(self, nodes, externals):
        """Run the graph ending at `nodes[-1]` (same key as the traced one); False if this
        call cannot (a .grad of another dtype or layout), and nothing has changed."""
        arguments = []
        new_grads = []
        for kind, what, traced in self.fetch:
            if kind == _EXTERNAL:
                arguments.append(externals[what]._data)
            elif kind == _GRAD:
                grad = externals[what]._grad._data
                if grad.dtype != traced.dtype or not grad.flags.c_contiguous or \
                        not grad.flags.writeable:
                    return False
                arguments.append(grad)
            elif kind == _NEW_GRAD:
                grad = np.empty(traced.shape, traced.dtype)
                new_grads.append((what, grad))
                arguments.append(grad)
            else:
                arguments.append(what)
        if self.parallel and not _threads.start():
            return False  # a process forked after the pool started: serial from here on
        for check, index in self.preconditions:
            check(arguments[index])
        self.kernel(*arguments, *self.arenas)
        # From the last node back: a node drops its inputs before the nodes that made them
        # are reached, so only tensors the caller still holds are alive there, and copied.
        ran = (self, nodes, externals)
        for index in range(len(nodes) - 1, -1, -1):
            node = nodes[index]
            node.inputs = None
            node.fused = ran
            if node.prim.save:
                # Both, so that the check before a VJP (on `_saved_versions`) runs and raises.
                node.saved = node._saved_versions = engine.FREED
            tensor = node.output()
            if tensor is not None:
                tensor._data = self.values[index].copy()
        for index, grad in new_grads:
            externals[index]._grad = new_tensor(grad)
        for index in self.added_grads:
            externals[index]._grad._version_counter[0] += 1
        return True
