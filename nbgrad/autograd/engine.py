"""The graph recorder and the backward engine. Nothing here names a specific op: a node
holds a row of the primitive table and calls its VJP.
"""
import heapq
import itertools
import math
import weakref

from ..ops import elementwise
from ..ops.reduction import sum_to_shape
from .._core import tracing as _tracing
from . import deferred, grad_mode

FREED = object()
_ADD = elementwise.FORWARD["add"]

# Every node takes the next number when it is made. A node's inputs exist before it does, so
# the nodes feeding a gradient into a node always have higher numbers: running nodes from the
# highest number down is a topological order (PyTorch's engine orders its queue the same way).
# A leaf's AccumulateGrad feeds nothing, so it runs last: its numbers are negative (it may be
# made after the nodes it is a child of, when a deferred node runs).
sequence = itertools.count()
_leaf_sequence = itertools.count(-1, -1)


class Node:
    """A recorded primitive call (PyTorch's grad_fn). One subclass per grad_fn name."""

    # `children[i]` is the node input i's gradient goes to (None if none); `next_functions`
    # is the same in PyTorch's form.
    # `inputs` is None once the forward has run. A deferred node (nbgrad.autograd.deferred)
    # holds its input tensors there, and stands in for its output's array where only the
    # shape and dtype are read (`shape`, `dtype`, `ndim`, `size`, as an array has them).
    # A node that ran inside a fused graph is linked only when something reads its links
    # (`__getattr__`), from `fused` (the FusedGraph) and `sources` (its input tensors).
    __slots__ = ("prim", "params", "saved", "_saved_versions", "needs", "children",
                 "input_meta", "_pre_hooks", "_retained", "sequence_nr", "inputs", "shape",
                 "dtype", "output", "tape_position", "fused", "sources", "__weakref__")

    def __getattr__(self, name):
        # Reached only for a slot that is not set. A deferred node has saved nothing yet, and
        # one that ran in a fused graph saved nothing it would need again (or FREED is set).
        if name in ("saved", "_saved_versions"):
            return ()
        if name in ("needs", "children", "input_meta"):
            try:
                graph = object.__getattribute__(self, "fused")
            except AttributeError:
                pass
            else:
                self.needs, self.input_meta = graph.links[self.tape_position]
                self.children = [edge(tensor) if need else None
                                 for tensor, need in zip(self.sources, self.needs)]
                return object.__getattribute__(self, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def name(self):
        return type(self).__name__

    def _sequence_nr(self):
        return self.sequence_nr

    def __repr__(self):
        return f"<{type(self).__name__} object at {id(self):#x}>"

    def register_hook(self, hook):
        raise NotImplementedError("Node.register_hook is not supported; use Tensor.register_hook")

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
        key, array = self.prim.save[i], self.saved[i]
        producer = self if key == "out" else self.children[key]
        name = "a leaf" if producer is None or type(producer) is AccumulateGrad else \
            type(producer).__name__
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{array.dtype} tensor {list(array.shape)}], which is output 0 "
            f"of {name}, is at version {current}; expected version {version} instead. Hint: "
            "the backtrace further above shows the operation that failed to compute its "
            "gradient.")

    def apply(self, grad):
        """Gradients for each input, summed to the input's shape and cast to its dtype."""
        if self._saved_versions:
            self._check_saved()
        grads = self.prim.vjp(self, grad)
        fitted = grads
        for i, g in enumerate(grads):
            if g is not None:
                shape, dtype = self.input_meta[i]
                if g.shape != shape or g.dtype != dtype:
                    if fitted is grads:
                        fitted = list(grads)
                    if g.shape != shape:
                        g = sum_to_shape(g, shape)
                    fitted[i] = g.astype(dtype, copy=False)
        if _tracing.current is not None:
            _tracing.current.vjp(self, grad, grads, fitted)
        return fitted

    @property
    def next_functions(self):
        children = self.children if self.inputs is None else _edges(self.prim, self.inputs)[1]
        return tuple((child, 0) for child in children)


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


_node_classes = {}


def node_class(grad_fn_name):
    cls = _node_classes.get(grad_fn_name)
    if cls is None:
        cls = _node_classes[grad_fn_name] = type(grad_fn_name, (Node,), {"__slots__": ()})
    return cls


def edge(tensor):
    """Where a gradient for `tensor` goes: its grad_fn, its accumulator, or nowhere (None)."""
    if tensor.grad_fn is not None:
        return tensor.grad_fn
    if tensor._requires_grad:
        return grad_accumulator(tensor)
    return None


def node_class_of(prim, name):
    """The node class a call of `prim` with grad_fn name `name` makes, registered on it."""
    cls = prim.node_classes.get(name)
    if cls is None:
        cls = prim.node_classes[name] = node_class(name)
    return cls


def new_node(prim, params, grad_fn_name):
    """A grad_fn node of a primitive call, not yet linked to its inputs. (`deferred.defer`
    makes its nodes the same way, inline.)"""
    node = node_class_of(prim, grad_fn_name or prim.grad_fn)()
    node.prim = prim
    node.params = params
    node.sequence_nr = next(sequence)
    node._pre_hooks = None
    node._retained = None
    return node


def _edges(prim, inputs):
    """(needs, children) of a node of `prim` on Tensors `inputs`."""
    differentiable = prim.differentiable
    needs = []
    children = []
    for i, tensor in enumerate(inputs):
        if tensor._requires_grad and i in differentiable:
            needs.append(True)
            upstream = tensor.grad_fn
            children.append(upstream if upstream is not None else grad_accumulator(tensor))
        else:
            needs.append(False)
            children.append(None)
    return needs, children


def link(node, inputs, arrays):
    """Connect the node to the nodes its input gradients go to."""
    node.needs, node.children = _edges(node.prim, inputs)
    node.input_meta = [(array.shape, array.dtype) for array in arrays]


def record(prim, inputs, arrays, out, out_tensor, params, grad_fn_name):
    """Make the grad_fn node for a primitive call whose inputs need a gradient."""
    node = new_node(prim, params, grad_fn_name)
    node.inputs = None
    link(node, inputs, arrays)
    save(node, inputs, arrays, out, out_tensor)
    return node


def save(node, inputs, arrays, out, out_tensor):
    """Keep what the node's VJP reads, with the version of each saved tensor."""
    prim = node.prim
    if not prim.save:
        node.saved = node._saved_versions = ()
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
    # (position, version counter, version when saved); the error message is made on failure.
    versions = []
    for i, key in enumerate(prim.save):
        if needed is not None and key not in needed:
            saved.append(None)
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


# ---------------------------------------------------------------------------------------
# Backward.

def _add_into(pending, node, grad, owned):
    """Sum gradients arriving at `node`; `owned` says the array is ours to overwrite."""
    entry = pending.get(node)
    if entry is None or entry[0] is None:
        pending[node] = [grad, owned]
        return
    before = entry[0]
    if entry[1]:
        elementwise.run(_ADD, (before, grad), (), grad.shape, grad.dtype, out=before)
    else:
        entry[0] = elementwise.run(_ADD, (before, grad), (), grad.shape, grad.dtype)
        entry[1] = True
    if _tracing.current is not None:
        _tracing.current.add(before, grad, entry[0])


def _run_tensor_hooks(hooks, grad, wrap):
    _tracing.graph_break("a tensor hook runs Python code during backward")
    for hook in hooks:
        result = hook(wrap(grad))
        if result is not None:
            grad = result._data
    return grad


def accumulate_into_grad(tensor, grad, owned, wrap):
    """`tensor.grad += grad`, in place when a .grad exists (PyTorch keeps the same object)."""
    # NOTE: `_grad`, not the `grad` property: the engine needs no validation, and reports
    # to a tracer itself.
    if tensor._grad is None:
        # The copy kernel, not ndarray.copy: it runs on threads for large gradients (often a
        # broadcast view of one value, from sum's VJP).
        new = grad if owned else elementwise.run(elementwise.COPY, (grad,), (), grad.shape,
                                                 grad.dtype)
        if _tracing.current is not None:
            _tracing.current.grad_created(tensor, grad, new)
        tensor._grad = wrap(new)
    else:
        target = tensor._grad._data
        if _tracing.current is not None:
            _tracing.current.grad_added(tensor, grad)
        elementwise.run(_ADD, (target, grad), (), target.shape, target.dtype, out=target)
        tensor._grad._version_counter[0] += 1


def clear_grads(tensors, set_to_none=True):
    """zero_grad for modules and optimizers: drop each `.grad`, or zero it in place."""
    for tensor in tensors:
        if _tracing.current is not None:
            _tracing.current.touch(tensor, reads_grad=not set_to_none)
        if tensor._grad is None:
            continue
        if _tracing.current is not None and not set_to_none:
            _tracing.current.fill(tensor, tensor._grad._data, 0)
        if set_to_none:
            tensor._grad = None
        else:
            deferred.realize_all()  # a deferred op may read this .grad
            tensor._grad._data[...] = 0
            tensor._grad._version_counter[0] += 1


def run_backward(roots, root_grads, retain_graph, wrap, capture=None):
    """Reverse-mode sweep from `roots` seeded with `root_grads` (NumPy arrays).

    Without `capture`, gradients accumulate into leaves' (and retain_grad tensors') `.grad`.
    With `capture` (a dict node -> None, from autograd.grad), the gradient arriving at each
    captured node is stored there instead and no `.grad` is touched.
    """
    pending = {}   # node -> [sum of the gradients that reached it (or None), owned]
    queue = []     # (-sequence_nr, node): the latest-made node runs first
    for tensor, grad in zip(roots, root_grads):
        node = edge(tensor)
        if node is None:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
        if node not in pending:
            heapq.heappush(queue, (-node.sequence_nr, node))
        _add_into(pending, node, grad, False)
    previous_mode = grad_mode.state.enabled
    grad_mode.state.enabled = False
    try:
        while queue:
            node = heapq.heappop(queue)[1]
            grad, owned = pending.pop(node)
            if type(node) is AccumulateGrad:
                if grad is not None:
                    _accumulate(node, grad, owned, wrap, capture)
                continue
            if grad is None:
                # Reached only by None gradients: nothing runs, but the saved tensors are
                # freed as if it had (PyTorch does the same).
                grads = _NO_GRADS
            else:
                if node._pre_hooks:
                    grad = _run_tensor_hooks(node._pre_hooks, grad, wrap)
                    owned = False
                if capture is not None:
                    owned = False  # autograd.grad may return this very array
                    if node in capture:
                        capture[node] = grad
                elif node._retained is not None:
                    tensor = node._retained()
                    if tensor is not None:
                        accumulate_into_grad(tensor, grad, False, wrap)
                grads = node.apply(grad)
            if node.saved and not retain_graph:
                node.saved = FREED
            for child, child_grad in zip(node.children, grads):
                if child is None:
                    continue
                # NOTE: a node may add into a gradient in place only if it owns it: a fresh
                # array (not a view, which can alias the user's gradient), or the gradient
                # this node owned, passed through to this child alone.
                if child_grad is None:
                    child_owned = False
                elif child_grad is grad:
                    child_owned = owned and sum(g is grad for g in grads) == 1
                else:
                    child_owned = child_grad.base is None
                if child not in pending:
                    heapq.heappush(queue, (-child.sequence_nr, child))
                    pending[child] = [child_grad, child_owned]
                elif child_grad is not None:
                    _add_into(pending, child, child_grad, child_owned)
    finally:
        grad_mode.state.enabled = previous_mode


_NO_GRADS = itertools.repeat(None)


def _accumulate(node, grad, owned, wrap, capture):
    """A leaf's gradient: into its `.grad`, or into `capture` for autograd.grad."""
    tensor = node.variable
    if tensor._hooks:
        grad = _run_tensor_hooks(tensor._hooks, grad, wrap)
        owned = False
    if capture is None:
        accumulate_into_grad(tensor, grad, owned, wrap)
    elif node in capture:
        capture[node] = grad
