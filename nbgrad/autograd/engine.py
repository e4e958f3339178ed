"""The backward engine: the reverse-mode sweep over the recorded graph
(nbgrad.autograd.graph), gradient accumulation into `.grad`, and zero_grad.

Nothing here names a specific op: a node calls its primitive's VJP, and the engine's own
array arithmetic (summing gradients, a leaf's first gradient) is in nbgrad.ops.gradients.

Two sweeps: `run_backward` on NumPy arrays with the primitives' njit VJP kernels (the
ordinary backward), and `run_backward_with_graph` on Tensors with grad mode on
(create_graph=True): each node's VJP is then its primitive's `differentiable_vjp`, made of
recorded ops, so the gradients it returns can be differentiated again.
"""
import heapq
import itertools

from .._core import mode, tracing
from ..ops import gradients
from . import anomaly_mode, grad_mode, graph, profiler
from .graph import FREED, AccumulateGrad, edge
from .profiler import state as _profiling

def _add_into(pending, node, grad, owned):
    """Sum gradients arriving at `node`; `owned` says the array is ours to overwrite."""
    entry = pending.get(node)
    if entry is None or entry[0] is None:
        pending[node] = [grad, owned]
        return
    if entry[1]:
        gradients.added(entry[0], grad, out=entry[0])
    else:
        entry[0] = gradients.added(entry[0], grad)
        entry[1] = True


def _run_tensor_hooks(hooks, grad, wrap):
    tracing.graph_break("a tensor hook runs Python code during backward")
    for hook in hooks:
        result = hook(wrap(grad))
        if result is not None:
            grad = result._data
    return grad


def _after_prehooks(node, grad, wrap):
    """`grad` as `node`'s prehooks leave it (each may replace it), and `node`'s hooks."""
    tracing.graph_break("a grad_fn hook runs Python code during backward")
    prehooks, hooks = graph.node_hooks[node]
    for hook in list(prehooks):
        result = hook((wrap(grad),))
        if result is not None:
            grad = result[0]._data
    return grad, hooks


def _run_node_hooks(node, grad, wrap, anomaly):
    """`node.apply(grad)` between its prehooks and hooks (Node.register_prehook/register_hook),
    each of which may replace the gradients it is given."""
    grad, hooks = _after_prehooks(node, grad, wrap)
    grads = anomaly_mode.apply(node, grad) if anomaly else node.apply(grad)
    if hooks:
        grad_inputs = tuple(None if g is None else wrap(g) for g in grads)
        grad_outputs = (wrap(grad),)
        for hook in list(hooks):
            result = hook(grad_inputs, grad_outputs)
            if result is not None:
                grad_inputs = tuple(result)
        grads = [None if g is None else g._data for g in grad_inputs]
    # NOTE: a hook may keep the tensors it saw or returned: views, so that the sweep never
    # adds into them in place (it owns only arrays whose `base` is None).
    return [None if g is None else g.view() for g in grads]


def accumulate_into_grad(tensor, grad, owned, wrap):
    """`tensor.grad += grad`, in place when a .grad exists (PyTorch keeps the same object)."""
    # NOTE: `_grad`, not the `grad` property: the engine needs no validation, and reports
    # to a tracer itself.
    if tracing.current is not None:
        tracing.current.touch(tensor)
    if tensor._grad is None:
        tensor._grad = wrap(grad if owned else gradients.copied(grad))
    else:
        target = tensor._grad._data
        gradients.added(target, grad, out=target)
        tensor._grad._version_counter[0] += 1


def clear_grads(tensors, set_to_none=True):
    """zero_grad for modules and optimizers: drop each `.grad`, or zero it in place."""
    for tensor in tensors:
        if tracing.current is not None:
            tracing.current.touch(tensor, reads_grad=not set_to_none)
        if tensor._grad is None:
            continue
        if tracing.current is not None and not set_to_none:
            tracing.current.write(tensor, tensor._grad._data, 0)
        if set_to_none:
            tensor._grad = None
        else:
            mode.run_pending()  # a deferred op may read this .grad
            tensor._grad._data[...] = 0
            tensor._grad._version_counter[0] += 1


def _seeded(roots, root_grads, add):
    """(pending, queue) of a sweep: each root's node with its seed added by `add(pending,
    node, grad)`, and the queue of (-sequence_nr, node), where the latest-made node runs
    first."""
    pending, queue = {}, []
    for tensor, grad in zip(roots, root_grads):
        node = edge(tensor)
        if node is None:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
        if node not in pending:
            heapq.heappush(queue, (-node.sequence_nr, node))
        add(pending, node, grad)
    return pending, queue


def run_backward(roots, root_grads, retain_graph, wrap, capture=None):
    """Reverse-mode sweep from `roots` seeded with `root_grads` (NumPy arrays).

    Without `capture`, gradients accumulate into leaves' (and retain_grad tensors') `.grad`.
    With `capture` (a dict node -> None, from autograd.grad), the gradient arriving at each
    captured node is stored there instead and no `.grad` is touched.
    """
    # pending: node -> [sum of the gradients that reached it (or None), owned]
    pending, queue = _seeded(roots, root_grads, lambda pending, node, grad:
                             _add_into(pending, node, grad, False))
    previous_mode = grad_mode.state.enabled
    grad_mode.state.enabled = False
    # Read once: a sweep without node hooks or anomaly mode checks one local per node.
    node_hooks = graph.node_hooks or None
    anomaly = anomaly_mode.state.enabled
    try:
        while queue:
            node = heapq.heappop(queue)[1]
            grad, owned = pending.pop(node)
            if type(node) is AccumulateGrad:
                if grad is not None:
                    started = _profiling.enabled and profiler.clock()
                    _accumulate(node, grad, owned, wrap, capture, node_hooks)
                    if started:
                        profiler.vjp_ran(node, grad, started)
                        profiler.node_ran(node, started)
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
                if node_hooks is not None and node in node_hooks:
                    grads = _run_node_hooks(node, grad, wrap, anomaly)
                    owned = False
                elif anomaly:
                    grads = anomaly_mode.apply(node, grad)
                else:
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


def _accumulate(node, grad, owned, wrap, capture, node_hooks):
    """A leaf's gradient: into its `.grad`, or into `capture` for autograd.grad (which, as
    PyTorch's, runs no AccumulateGrad node, so not its hooks)."""
    tensor = node.variable
    if tensor._hooks:
        grad = _run_tensor_hooks(tensor._hooks, grad, wrap)
        owned = False
    if capture is None:
        if node_hooks is not None and node in node_hooks:
            _accumulate_with_node_hooks(node, grad, wrap)
        else:
            accumulate_into_grad(tensor, grad, owned, wrap)
    elif node in capture:
        capture[node] = grad


def _accumulate_with_node_hooks(node, grad, wrap):
    """As PyTorch: prehooks may replace the gradient; hooks get `()` and the gradient."""
    grad, hooks = _after_prehooks(node, grad, wrap)
    accumulate_into_grad(node.variable, grad, False, wrap)
    for hook in list(hooks):
        hook((), (wrap(grad),))


# ---------------------------------------------------------------------------------------
# create_graph=True: the same sweep on Tensors, recorded.

def run_backward_with_graph(roots, root_grads, retain_graph, wrap, capture=None):
    """`run_backward` for create_graph=True: `root_grads` are Tensors, grad mode is on, and
    every gradient is a Tensor made by recorded ops (a node's `differentiable_vjp`, sums of
    gradients by `+`), so `.grad` (or what `capture` receives) has a graph of its own.

    NOTE: a separate loop, not a flag in `run_backward`: the ordinary sweep's in-place sums
    and array ownership have no place here, and it stays as cheap as it was.
    """
    tracing.graph_break("a backward with create_graph=True")
    if anomaly_mode.state.enabled:
        raise NotImplementedError("anomaly mode (detect_anomaly) with create_graph=True is not "
                                  "supported by nbgrad")
    # pending: node -> sum of the gradient Tensors that reached it (or None)
    pending, queue = _seeded(roots, root_grads, _add_tensor)
    previous_mode = grad_mode.state.enabled
    grad_mode.state.enabled = True
    node_hooks = graph.node_hooks or None
    try:
        while queue:
            node = heapq.heappop(queue)[1]
            grad = pending.pop(node)
            if type(node) is AccumulateGrad:
                if grad is not None:
                    _accumulate_tensor(node, grad, capture, node_hooks)
                continue
            if grad is None:
                grads = _NO_GRADS
            else:
                grad = _hooked(node._pre_hooks, grad)
                if capture is not None:
                    if node in capture:
                        capture[node] = grad
                elif node._retained is not None:
                    tensor = node._retained()
                    if tensor is not None:
                        accumulate_graph_grad(tensor, grad)
                if node_hooks is not None and node in node_hooks:
                    grads = _run_node_hooks_with_graph(node, grad, wrap)
                else:
                    grads = _apply_with_graph(node, grad, wrap)
            if node.saved and not retain_graph:
                node.saved = FREED
            for child, child_grad in zip(node.children, grads):
                if child is None:
                    continue
                if child not in pending:
                    heapq.heappush(queue, (-child.sequence_nr, child))
                    pending[child] = child_grad
                elif child_grad is not None:
                    _add_tensor(pending, child, child_grad)
    finally:
        grad_mode.state.enabled = previous_mode


def _add_tensor(pending, node, grad):
    summed = pending.get(node)
    pending[node] = grad if summed is None else summed + grad


def _apply_with_graph(node, grad, wrap):
    """The input gradients of `node` as Tensors made by recorded ops: a custom Function's
    backward run with grad mode on, or the primitive's `differentiable_vjp`, fitted to each
    input's shape and dtype by differentiable ops."""
    custom = getattr(type(node), "apply_with_graph", None)
    if custom is not None:
        return custom(node, grad)
    vjp = node.prim.differentiable_vjp
    if vjp is None:
        raise NotImplementedError(
            f"{type(node).__name__} has no differentiable VJP in nbgrad yet: a backward with "
            "create_graph=True (higher-order gradients) cannot go through it")
    if node._saved_versions or node.saved is FREED:
        node._check_saved()
    grads = vjp(node, grad, _saved_tensors(node, wrap))
    return [None if g is None else gradients.fitted_tensor(g, *meta)
            for g, meta in zip(grads, node.input_meta)]


def _saved_tensors(node, wrap):
    """What `node` saved, as Tensors connected to the graph, as PyTorch's SavedVariable
    unpacks them (see Primitive.differentiable_vjp); each keeps the version counter of the
    tensor it was saved from, so a later in-place change is caught by the nodes that save
    it again."""
    counters = {i: counter for i, counter, _ in node._saved_versions}
    tensors = []
    for i, (key, array) in enumerate(zip(node.prim.save, node.saved)):
        if array is None:
            tensors.append(None)
            continue
        producer = node if key == "out" else None if key == "extra" else node.children[key]
        if type(producer) is AccumulateGrad:
            tensors.append(producer.variable)
            continue
        tensor = wrap(array)
        if i in counters:
            tensor._version_counter = counters[i]
        if producer is not None:
            tensor.grad_fn = producer
            tensor._requires_grad = True
        tensors.append(tensor)
    return tensors


def _run_node_hooks_with_graph(node, grad, wrap):
    """`_run_node_hooks` on Tensors."""
    tracing.graph_break("a grad_fn hook runs Python code during backward")
    prehooks, hooks = graph.node_hooks[node]
    for hook in list(prehooks):
        result = hook((grad,))
        if result is not None:
            grad = result[0]
    grads = _apply_with_graph(node, grad, wrap)
    if hooks:
        grad_inputs = tuple(grads)
        for hook in list(hooks):
            result = hook(grad_inputs, (grad,))
            if result is not None:
                grad_inputs = tuple(result)
        grads = list(grad_inputs)
    return grads


def _hooked(hooks, grad):
    """`grad` as tensor hooks (None: none) leave it: each may return a replacement."""
    for hook in hooks or ():
        result = hook(grad)
        if result is not None:
            grad = result
    return grad


def _accumulate_tensor(node, grad, capture, node_hooks):
    """`_accumulate` on Tensors."""
    tensor = node.variable
    grad = _hooked(tensor._hooks, grad)
    if capture is not None:
        if node in capture:
            capture[node] = grad
        return
    hooks = ()
    if node_hooks is not None and node in node_hooks:
        prehooks, hooks = graph.node_hooks[node]
        for hook in list(prehooks):
            result = hook((grad,))
            if result is not None:
                grad = result[0]
    accumulate_graph_grad(tensor, grad)
    for hook in list(hooks):
        hook((), (grad,))


def accumulate_graph_grad(tensor, grad):
    """`tensor.grad += grad` with grad mode on, as PyTorch's AccumulateGrad does then: the
    first gradient is a copy (recorded), later ones make a new `.grad`, `old + grad`."""
    if tracing.current is not None:
        tracing.current.touch(tensor)
    if tensor._grad is None:
        tensor._grad = grad.clone()
    else:
        tensor._grad = tensor._grad + grad
