"""The recorded graph: a node per primitive call (PyTorch's grad_fn), an AccumulateGrad per
leaf, and what each node saved for its VJP, with the versions of the tensors it saved.

Nothing here names a specific op: a node holds a row of the primitive table and calls its
VJP. When a node's forward runs (at once, or later in deferred mode: `ran`), it is linked
to the nodes its input gradients go to, notes its inputs' shapes and dtypes, and saves its
tensors.
"""
import itertools
import weakref

import numpy as np

from .._core import compile_ahead, mode, tracing
from ..ops import gradients
from . import anomaly_mode, profiler
from .grad_mode import state as _grad_state
from .profiler import state as _profiling

FREED = object()

# Every node takes the next number when it is made. A node's inputs exist before it does, so
# the nodes feeding a gradient into a node always have higher numbers: running nodes from the
# highest number down is a topological order (PyTorch's engine orders its queue the same way).
# A leaf's AccumulateGrad feeds nothing, so it runs last: its numbers are negative (it may be
# made after the nodes it is a child of).
sequence = itertools.count()
_leaf_sequence = itertools.count(-1, -1)

# A compilation that starts while grad mode is on starts the compile helper: a backward, whose
# kernels it can compile meanwhile, is likely to follow (see `ran`).
compile_ahead.start_when = lambda: _grad_state.enabled
# NOTE: named, not imported: the helper's side of a node is in the Tensor layer above.
COMPILE_BACKWARD = "nbgrad._tensor.compile_ahead:compile_backward"


class Node:
    """A recorded primitive call (PyTorch's grad_fn). One subclass per grad_fn name.

    Once the forward has run (all three None before): `children[i]` is the node input i's
    gradient goes to (None if none), `needs[i]` says whether input i needs a gradient, and
    `input_meta[i]` is input i's (shape, dtype). `next_functions` is `children` in PyTorch's
    form. `saved` holds what the primitive's `save` names (`()` before the forward), FREED
    after a backward without retain_graph.
    """

    __slots__ = ("prim", "params", "saved", "_saved_versions", "needs", "children",
                 "input_meta", "_pre_hooks", "_retained", "sequence_nr", "__weakref__")

    def name(self):
        return type(self).__name__

    def _sequence_nr(self):
        return self.sequence_nr

    def __repr__(self):
        return f"<{type(self).__name__} object at {id(self):#x}>"

    def register_hook(self, hook):
        """`hook(grad_inputs, grad_outputs)` after the node's VJP; may return new grad_inputs."""
        return _add_node_hook(self, 1, hook)

    def register_prehook(self, hook):
        """`hook(grad_outputs)` before the node's VJP; may return new grad_outputs."""
        return _add_node_hook(self, 0, hook)

    # {id(output tensor): OutputSlot} of a node with several differentiable outputs (a custom
    # Function's); None for the usual one output.
    _output_slots = None

    @property
    def next_functions(self):
        children = self.children
        if children is None:
            # A pending op (deferred mode): its links as they will be, without running it.
            children = mode.active.pending_children(self)
        prim = self.prim
        if prim is None:  # a custom Function's node: every argument
            return tuple(_function_and_output(child) for child in children)
        listed = prim.scalar_overloads.get(type(self).__name__, prim.differentiable)
        return tuple(_function_and_output(child) for i, child in enumerate(children)
                     if i in listed)

    def _check_saved(self):
        if self.saved is FREED:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time or "
                "if you need to access saved tensors after calling backward.")
        for i, counter, version in self._saved_versions:
            if counter[0] != version:
                self._raise_modified(i, counter[0], version)

    def _raise_modified(self, i, current, version):
        if type(i) is GuardedResult:
            raise modified_error(i, self, current, version)
        key, array = self.prim.save[i], self.saved[i]
        producer = self if key == "out" else self.children[key]
        raise modified_error(array, producer, current, version)

    def apply(self, grad):
        """The gradient of each input (None where none is needed), summed to the input's
        shape and cast to its dtype."""
        started = _profiling.enabled and profiler.clock()
        if self._saved_versions:
            self._check_saved()
        grads = self.prim.vjp(self, grad)
        if started:
            profiler.vjp_ran(self, grad, started)
        if tracing.current is not None:
            tracing.current.vjp(self, grad, grads)
        fitted = grads
        for i, g in enumerate(grads):
            if g is not None:
                shape, dtype = self.input_meta[i]
                if g.shape != shape or g.dtype != dtype:
                    if fitted is grads:
                        fitted = list(grads)  # the tracer keeps `grads` as the VJP made them
                    fitted[i] = gradients.fitted(g, shape, dtype)
        if started:
            profiler.node_ran(self, started)
        return fitted


# node -> ([prehooks], [hooks]) of Node.register_prehook/register_hook: outside the node's
# slots, so a node without hooks costs nothing, and the engine checks one dict per backward.
node_hooks = weakref.WeakKeyDictionary()


class RemovableHandle:
    """What registering a hook returns: `.remove()` unregisters it."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _add_node_hook(node, kind, hook):
    # NOTE: a pending node runs first: a deferred tape is then never fused over a hooked node.
    mode.run_pending()
    hooks = node_hooks.setdefault(node, ([], []))[kind]
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


class GuardedResult:
    """In a node's `_saved_versions`, in place of a position in its `save`: the result whose
    version the node keeps without keeping the result (`Primitive.result_guarded`), by the
    shape and dtype that the error names."""

    __slots__ = ("shape", "dtype")

    def __init__(self, array):
        self.shape, self.dtype = array.shape, array.dtype


def modified_error(array, producer, current, version):
    """PyTorch's error for a saved `array` (or its GuardedResult; made by node `producer`,
    None for a leaf) changed in place since it was saved (the Node's own check, and custom
    Functions' saved_tensors)."""
    name = "a leaf" if producer is None or type(producer) is AccumulateGrad else \
        type(producer).__name__
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{array.dtype} tensor {list(array.shape)}], which is output 0 "
        f"of {name}, is at version {current}; expected version {version} instead. Hint: "
        "the backtrace further above shows the operation that failed to compute its "
        "gradient.")


class AccumulateGrad:
    """The node at a leaf that requires grad: adds what arrives into `variable.grad`."""

    __slots__ = ("variable", "sequence_nr", "__weakref__")
    next_functions = children = ()

    def __init__(self, variable):
        self.variable = variable
        self.sequence_nr = next(_leaf_sequence)

    def _sequence_nr(self):
        return self.sequence_nr

    def name(self):
        return "AccumulateGrad"

    register_hook = Node.register_hook
    register_prehook = Node.register_prehook

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


def grad_accumulator(tensor):
    """The leaf's AccumulateGrad, shared by every op that uses the leaf while one is alive."""
    ref = tensor._accumulator
    node = ref() if ref is not None else None
    if node is None:
        node = AccumulateGrad(tensor)
        tensor._accumulator = weakref.ref(node)
    return node


_node_classes = {}  # grad_fn name -> its Node subclass


def new_node(prim, params, grad_fn_name):
    """The grad_fn node of a call of `prim`, before its forward runs (see `ran`)."""
    name = grad_fn_name or prim.grad_fn
    cls = _node_classes.get(name)
    if cls is None:
        cls = _node_classes[name] = type(name, (Node,), {"__slots__": ()})
    node = cls()
    node.prim = prim
    node.params = params
    node.sequence_nr = next(sequence)
    node._pre_hooks = None
    node._retained = None
    node.saved = node._saved_versions = ()
    node.needs = node.children = node.input_meta = None
    if anomaly_mode.state.enabled:
        anomaly_mode.record(node)
    return node


class OutputSlot(Node):
    """Where the gradient of output `output_nr` of a node with several outputs arrives (the
    engine sums it here as at any node): it hands the sum to its `owner` and passes the
    owner an empty marker, so the owner runs once, after all its slots, with one gradient
    per output (PyTorch's edges carry an output number instead; nbgrad's engine sends one
    gradient to a node, and this keeps it so). Hidden: `next_functions` shows (owner, nr)."""

    __slots__ = ("owner", "output_nr")

    def __init__(self, owner, output_nr):
        self.owner, self.output_nr = owner, output_nr
        self.prim = self.params = self._pre_hooks = self._retained = None
        self.sequence_nr = next(sequence)  # after its owner, before what reads the output
        self.saved = self._saved_versions = ()
        self.needs, self.children, self.input_meta = [True], [owner], [None]

    def apply(self, grad):
        self.owner._slot_grads[self.output_nr] = grad
        return [_SLOT_MARKER]

    def apply_with_graph(self, grad):
        """`apply` for create_graph=True (the engine's sweep on Tensors)."""
        self.owner._slot_grads[self.output_nr] = grad
        return [grad._new_plain(_SLOT_MARKER)]


# What a slot passes its owner: a real array, so the engine's sums work on it unchanged.
# NOTE: a view, so the engine never takes it for an array it owns and adds into it.
_SLOT_MARKER = np.zeros(1)[:]
_SLOT_MARKER.flags.writeable = False


def _function_and_output(child):
    if type(child) is OutputSlot:
        return child.owner, child.output_nr
    return child, 0


def output_edge(tensor):
    """The node a non-leaf `tensor`'s gradient arrives at: its grad_fn, or its slot where
    the grad_fn has several outputs."""
    node = tensor.grad_fn
    if node._output_slots is not None:
        return node._output_slots[id(tensor)]
    return node


class RetainedEarlier:
    """A node's `_retained` where the tensor's retain_grad() stays with an earlier node:
    PyTorch's in-place view ops (transpose_, squeeze_ ...) give the tensor a new node but
    leave its retains-grad hook where it was, so `.grad` is the gradient of the value before
    them (in its shape). Called as the weakref it stands in for, it gives no tensor: this
    node keeps no gradient; `retains_grad` still reads it as set."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node  # the node whose `_retained` is the tensor's weakref

    def __call__(self):
        return None


def drop_retained(tensor):
    """Undo tensor's retain_grad(), where its hook is (its node, or an earlier one); whether
    there was one."""
    edge = output_edge(tensor)
    retained = edge._retained
    if retained is None:
        return False
    if type(retained) is RetainedEarlier:
        retained.node._retained = None
    edge._retained = None
    return True


def adopt(tensor, result, moves_retained=True):
    """`tensor` takes the node of `result`, the value an in-place write gave it; as
    PyTorch's, a retain_grad() on tensor moves to the new node (the gradient it keeps is
    its new value's), except after an in-place view op (`moves_retained=False`: see
    RetainedEarlier)."""
    if tensor.grad_fn is None:
        retained = None
    elif moves_retained:
        retained = drop_retained(tensor) and weakref.ref(tensor)
    else:
        retained = output_edge(tensor)._retained
        if retained is not None and type(retained) is not RetainedEarlier:
            retained = RetainedEarlier(output_edge(tensor))
    tensor.grad_fn = result.grad_fn
    tensor._requires_grad = True
    guard_written_result(result, tensor)
    if retained:
        output_edge(result)._retained = retained


def guard_written_result(result, tensor):
    """PyTorch's in-place op writes its result into `tensor`'s memory, so a node that saved
    the result (relu_'s, tanh_'s) sees later writes into tensor (or into its base, for a
    view): its backward must raise then. Here the result has memory of its own, copied into
    tensor's; its node's check is moved from the result's version to tensor's."""
    node = result.grad_fn
    if node is None or not node._saved_versions:
        return
    written, counter = result._version_counter, tensor._version_counter
    node._saved_versions = [(i, counter, counter[0]) if saved is written else
                            (i, saved, version)
                            for i, saved, version in node._saved_versions]


def edges(prim, inputs):
    """(needs, children) of a node of `prim` on Tensors `inputs`: whether each input needs a
    gradient, and the node it goes to (its grad_fn, or the leaf's accumulator)."""
    differentiable = prim.differentiable
    needs = []
    children = []
    for i, tensor in enumerate(inputs):
        if tensor._requires_grad and i in differentiable:
            needs.append(True)
            upstream = tensor.grad_fn
            if upstream is None:
                upstream = grad_accumulator(tensor)
            elif upstream._output_slots is not None:
                upstream = upstream._output_slots[id(tensor)]
            children.append(upstream)
        else:
            needs.append(False)
            children.append(None)
    return needs, children


def edge(tensor):
    """Where a gradient for `tensor` goes: its grad_fn, its accumulator, or nowhere (None)."""
    if tensor.grad_fn is not None:
        return output_edge(tensor)
    if tensor._requires_grad:
        return grad_accumulator(tensor)
    return None


def ran(node, inputs, arrays, out, out_tensor, extra=None):
    """The node's forward made `out` (of Tensor `out_tensor`), and `extra` where it is the
    primitive's `forward_saving`, from `arrays` (of `inputs`): link it to the nodes its
    inputs' gradients go to, note the inputs' shapes and dtypes, and keep what its VJP
    reads, with the version of each saved tensor (`extra` has none: no tensor holds it)."""
    node.needs, node.children = edges(node.prim, inputs)
    node.input_meta = [(array.shape, array.dtype) for array in arrays]
    prim = node.prim
    # (position in `save` or GuardedResult, version counter, version when saved); the error
    # message is made on failure.
    versions = []
    if prim.result_guarded and type(node).__name__ in prim.result_guarded:
        counter = out_tensor._version_counter
        versions.append((GuardedResult(out), counter, counter[0]))
        node._saved_versions = versions
    if compile_ahead.compiled:
        # The forward compiled: its VJP kernels will too, in the helper while this runs on.
        compile_ahead.asked_for_forward()
        if out.nbytes + sum(array.nbytes for array in arrays) <= compile_ahead.MAX_BYTES:
            compile_ahead.ask(COMPILE_BACKWARD, prim.name, type(node).__name__,
                              [compile_ahead.layout(array) for array in arrays], node.needs,
                              node.params, compile_ahead.layout(out),
                              None if extra is None else compile_ahead.layout(extra))
    if not prim.save:
        return
    # As PyTorch, only what the VJPs of the inputs that need a gradient read (`save_for`):
    # x * w with only w requiring grad saves x, so w may change in place before backward.
    needed = None
    if prim.save_for is not None:
        needed = set()
        for reads, need in zip(prim.save_for, node.needs):
            if need:
                needed.update(reads)
    saved = []
    for i, key in enumerate(prim.save):
        if needed is not None and key not in needed:
            saved.append(None)
            continue
        if key == "extra":
            saved.append(extra)
            continue
        if key == "out":
            saved.append(out)
            counter = out_tensor._version_counter
        else:
            saved.append(arrays[key])
            counter = inputs[key]._version_counter
        versions.append((i, counter, counter[0]))
    node.saved = saved
    node._saved_versions = versions


def record(prim, inputs, arrays, out, out_tensor, params, grad_fn_name, extra=None):
    """The grad_fn node of a primitive call that has run, whose result needs a gradient
    (`extra`: what its `forward_saving` returned beside the result)."""
    node = new_node(prim, params, grad_fn_name)
    ran(node, inputs, arrays, out, out_tensor, extra)
    return node
