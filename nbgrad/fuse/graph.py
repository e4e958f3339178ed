"""A deferred eager graph (`nbgrad.autograd.deferred`) as one fused kernel: its forward, its
backward, and the gradients it adds into leaves' `.grad`.

`trace` runs the graph's backward eagerly under the tracer of `nbgrad.compile` (so that
call's results are eager's own) and generates the kernel from what it saw; `FusedGraph.run`
runs a later graph with the same key through that kernel.
"""
import warnings

import numpy as np

from .. import _threads
from ..autograd import engine
from ..tensor import Tensor
from . import Arenas, compile_kernel
from .codegen import generate
from .tracer import Tracer, tracing
from ..ops.primitive import Unfusable

stats = {"compile_time_s": 0.0, "cache_hits": 0, "cache_misses": 0}

# How the kernel gets each argument: the array of external tensor i, the .grad array of
# external tensor i, or an array fixed when the graph was traced.
_EXTERNAL, _GRAD, _FIXED = range(3)


def trace(root, gradient, nodes, externals):
    """Run `root.backward(gradient)` eagerly, traced; the FusedGraph for later runs of the
    same graph, or None if it cannot be fused (the warning says why)."""
    from .. import autograd

    tensors = [node.output() for node in nodes]  # all alive: each is an input or the root
    tracer = Tracer(externals)
    with tracing(tracer):
        autograd.backward(root, gradient)
    reason = tracer.break_reason
    if reason is None:
        try:
            return FusedGraph(tracer, externals, [t._data for t in tensors])
        except Unfusable as error:
            reason = str(error)
    warnings.warn(f"nbgrad: this graph runs eagerly, node by node: it cannot be fused "
                  f"({reason})", RuntimeWarning, stacklevel=4)
    return None


class FusedGraph:
    def __init__(self, tracer, externals, outputs):
        self.source, emitter, (layout, sizes), returned = generate(tracer, outputs)
        arenas = Arenas(layout, sizes)
        position = {id(tensor): i for i, tensor in enumerate(externals)}
        self.fetch = []
        samples = []
        for name, (kind, handle, traced) in emitter.arguments:
            if handle[0] == "arg":
                self.fetch.append((_EXTERNAL, handle[1], None))
            elif handle[0] == "grad" and id(handle[1]) in position:
                self.fetch.append((_GRAD, position[id(handle[1])], traced.dtype))
            elif handle[0] == "const":
                self.fetch.append((_FIXED, handle[1], None))
            else:
                raise Unfusable(f"the graph reads {handle[0]} of a tensor it does not take")
            samples.append(traced)
        names = [name for name, _ in emitter.arguments]
        self.preconditions = [(check, names.index(name)) for check, name in emitter.preconditions]
        self.arenas = list(arenas.arguments().values())
        self.parallel = emitter.parallel
        # Each deferred tensor's value, and each new .grad, is copied out of its buffer: the
        # next run overwrites the buffers.
        self.values = [arenas.view(name, array.shape) for name, array in zip(returned, outputs)]
        self.new_grads = []
        self.added_grads = []
        for tensor, grad_was_none in tracer.touched.items():
            if not grad_was_none:
                self.added_grads.append(position[id(tensor)])
                continue
            name = emitter.names.get(id(tensor._grad._data))
            if name not in layout:
                raise Unfusable("a leaf's new gradient is not one of the kernel's buffers")
            self.new_grads.append((position[id(tensor)], arenas.view(name, tensor._data.shape)))
        self.kernel = compile_kernel(self.source, samples + self.arenas, stats)

    def run(self, nodes, externals):
        """Run the graph ending at `nodes[-1]` (same key as the traced one); False if this
        call cannot (a .grad of another dtype or layout), and nothing has changed."""
        arguments = []
        for kind, what, dtype in self.fetch:
            if kind == _EXTERNAL:
                arguments.append(externals[what]._data)
            elif kind == _GRAD:
                grad = externals[what]._grad._data
                if grad.dtype != dtype or not grad.flags.c_contiguous or not grad.flags.writeable:
                    return False
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
        for index in range(len(nodes) - 1, -1, -1):
            node = nodes[index]
            node.inputs = None
            if node.prim.save:
                node.saved = engine.FREED
            tensor = node.output()
            if tensor is not None:
                tensor._data = self.values[index].copy()
        for index, value in self.new_grads:
            externals[index]._grad = Tensor._wrap(value.copy())
        for index in self.added_grads:
            externals[index]._grad._version_counter[0] += 1
        return True
