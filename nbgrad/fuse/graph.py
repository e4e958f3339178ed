"""A deferred eager graph (`nbgrad.fuse.deferred`) as one fused kernel: its forward, its
backward, and the gradients it adds into leaves' `.grad`.

This is the front end of the fused-kernel pipeline (`kernel.py`) for deferred graphs:
`trace` runs the graph's backward eagerly under the tracer (so that call's results are
eager's own) and makes the kernel of what it saw; `FusedGraph.run` runs a later graph with
the same key through that kernel.
"""
from sys import getrefcount

from .. import autograd
from ..autograd.graph import FREED, grad_accumulator
from .._tensor.tensor import new_tensor
from .call import MISMATCH, tuple_target
from .kernel import FailureLog, FrontEnd, Kernel, KernelStats, traced_run
from ..ops.primitive import Unfusable

# What the deferred graphs' kernels cost. NOTE: fused_calls and eager_calls stay 0: counting
# them would be work on every run of a graph.
stats = KernelStats()
# Why the latest graphs that were traced could not be fused (they run eagerly).
unfused = FailureLog()


def trace(root, gradient, ops, externals):
    """Run `root.backward(gradient)` eagerly, traced; the FusedGraph for later runs of the
    same graph, or None if it cannot be fused (`unfused` says why)."""
    tensors = [op.output() for op in ops]  # all alive: each is an input or the root
    places = {id(tensor): ~i for i, tensor in enumerate(externals)}
    places.update((id(tensor), i) for i, tensor in enumerate(tensors))
    refs = [[places[id(t)] for t in op.inputs] for op in ops]
    root_position = root._pending.position  # the backward run realizes the root
    tracer, _ = traced_run(lambda: autograd.backward(root, gradient), externals)
    reason = tracer.break_reason
    if reason is None and not _all_reach(refs, root_position):
        reason = "the tape holds ops whose results backward() does not reach"
    if reason is None:
        try:
            return FusedGraph(tracer, externals, [t._data for t in tensors], refs,
                              [op.node for op in ops])
        except Unfusable as error:
            reason = str(error)
    # Not a warning: eager mode gave the user eager results, and keeps doing so.
    unfused.append(reason)
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


class _TapeCall(FrontEnd):
    """The pipeline's front end for a deferred graph: the call function's leaves are the
    tape's external tensors, by position (the graph key fixes their shapes, dtypes and
    flags); it returns the leaves' first gradients, arrays it makes new on each call."""

    def __init__(self, leaves, position, new_grads):
        """`position`: id(external tensor) -> its position among the `leaves`; `new_grads`:
        id(the traced first .grad array) -> position of its leaf."""
        self.leaves = leaves
        self.position = position
        self.new_grads = new_grads
        self.returned = []  # positions of the leaves whose first .grad the call returns
        self.fresh = []     # names of those arrays, in order

    def guard(self, writer, tracer, emitter):
        written = {id(argument.traced) for argument in emitter.arguments
                   if argument.kind == "fresh"}
        if not written.issuperset(self.new_grads):
            raise Unfusable("a leaf's first gradient is not an array the graph writes")

    def fetch(self, writer, argument):
        name, kind, source, traced = argument
        if kind == "fresh":
            self.returned.append(self.new_grads[id(traced)])
            self.fresh.append(name)
            dtype = writer.bind(traced.dtype, name=traced.dtype.name)
            writer.lines.append(f"{name} = empty({traced.shape!r}, {dtype})")
        elif kind == "arg":
            writer.lines.append(f"{name} = leaf_{source}._data")
        elif kind == "grad" and id(source) in self.position:
            # NOTE: the kernel adds into it: a .grad of another dtype or layout, or a
            # read-only one, does not fit.
            writer.lines += writer.fetch(name, f"leaf_{self.position[id(source)]}._grad._data",
                                         traced.shape, traced.dtype, writeable=True)
        else:
            raise Unfusable(f"the graph reads {kind} of a tensor it does not take")
        return traced

    def after_call(self, writer, tracer, outputs):
        writer.lines.append(f"return {tuple_target(self.fresh)}")


def _linker(nodes, refs):
    """`link(ops, externals)`: link the nodes of a later run of the graph of the traced
    `nodes` (whose inputs are `refs`, as `trace` makes them) as `autograd.graph.ran` links
    them, and free what they saved (the kernel ran their VJPs).

    `needs` and `input_meta` are the traced nodes' lists, which the key fixes (shared by the
    nodes of every later run: nothing changes them). Each input's gradient goes to the node
    of op `ref` (ref >= 0), the accumulator of external ~ref, or nowhere.
    NOTE: written out as straight-line code: a loop over the nodes took about 1 us of a
    20 us step.
    """
    namespace = {"FREED": FREED, "accumulator": grad_accumulator}
    lines = ["def link(ops, externals):"]
    lines += [f"    n{i} = ops[{i}].node" for i in range(len(nodes))]
    for i, (node, refs_of) in enumerate(zip(nodes, refs)):
        namespace[f"needs_{i}"], namespace[f"meta_{i}"] = node.needs, node.input_meta
        children = "".join(("None" if not need else f"n{ref}" if ref >= 0 else
                            f"accumulator(externals[{~ref}])") + ", "
                           for need, ref in zip(node.needs, refs_of))
        lines.append(f"    n{i}.needs, n{i}.input_meta, n{i}.children = "
                     f"needs_{i}, meta_{i}, [{children}]")
        if node.prim.save:
            # Both, so that the check before a VJP (on `_saved_versions`) runs and raises.
            lines.append(f"    n{i}.saved = n{i}._saved_versions = FREED")
    exec("\n".join(lines), namespace)
    return namespace["link"]


class FusedGraph:
    """The kernel for one graph key, and the generated Python that calls it (`call_source`):
    fetch each argument, check what the key does not fix (a .grad's dtype and layout), call."""

    def __init__(self, tracer, externals, outputs, refs, nodes):
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
        front_end = _TapeCall(len(externals), position, new_grads)
        kernel = Kernel(tracer, outputs, front_end, stats, fresh)
        self.source, self.call, self.call_source = kernel.source, kernel.call, kernel.call_source
        self.new_grads = front_end.returned  # the externals whose first .grad `call` returns
        # Each deferred tensor's value is copied out of its buffer: the next run overwrites
        # the buffers.
        self.values = kernel.outputs
        # Per op, for graphs of this key: how many times the other ops hold its output
        # tensor among their inputs.
        self.held = [sum(ref == i for refs_of in refs for ref in refs_of)
                     for i in range(len(refs))]
        self.link = _linker(nodes, refs)
        # Whether the graph has views (reshape), whose values `run` makes from their inputs'.
        self.has_views = any(node.prim.view for node in nodes)

    def run(self, ops, externals):
        """Run the graph of the pending `ops` (same key as the traced one); False if this
        call cannot (a .grad of another dtype or layout), and nothing has changed."""
        new_grads = self.call(externals)
        if new_grads is MISMATCH:
            return False
        self.link(ops, externals)
        held = self.held
        # The tensors with a value now (a view's input must have one), only for a graph
        # with views: this runs on every step.
        valued = {id(tensor) for tensor in externals} if self.has_views else None
        for index, op in enumerate(ops):
            tensor = op.output()
            if tensor is None:
                continue
            # NOTE: a tensor only the graph holds (its references: `tensor`, getrefcount's
            # argument, and `held[index]` places among other ops' inputs) gets no value:
            # nothing can read it.
            if getrefcount(tensor) > 2 + held[index]:
                # A view of an input that has a value is made from it (sharing its memory,
                # as eager's view does); anything else is copied out of its buffer.
                if op.prim.view and all(id(each) in valued for each in op.inputs):
                    tensor._data = op.prim.forward(*[each._data for each in op.inputs],
                                                   **op.params)
                else:
                    tensor._data = self.values[index].copy()
                if valued is not None:
                    valued.add(id(tensor))
            tensor._pending = None
        for index, grad in zip(self.new_grads, new_grads):
            externals[index]._grad = new_tensor(grad)  # a new array: the leaf's own
        for index in self.added_grads:
            externals[index]._grad._version_counter[0] += 1
        return True
