"""nbgrad.autograd: backward, grad, grad mode, and the functional/gradcheck helpers."""
import warnings

import numpy as np

from .._core import mode
from . import engine
from .graph import edge
from .grad_mode import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


_ones_cache = {}


def _ones(shape, dtype):
    """A read-only ones array; the engine never writes into a seed it does not own."""
    key = (shape, dtype)
    ones = _ones_cache.get(key)
    if ones is None:
        ones = _ones_cache[key] = np.ones(shape, dtype)
        ones.flags.writeable = False
    return ones


def _seed_gradients(outputs, grad_outputs):
    """The initial gradient array for each output (ones for scalars); PyTorch's errors."""
    seeds = []
    for i, (out, grad) in enumerate(zip(outputs, grad_outputs)):
        if grad is None:
            if out._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if out._data.dtype.kind != "f":
                raise RuntimeError("grad can be implicitly created only for real scalar outputs "
                                   f"but got {out.dtype.name}")
            seeds.append(_ones(out._data.shape, out._data.dtype))
            continue
        array = grad._data if hasattr(grad, "_data") else np.asarray(grad, out._data.dtype)
        if array.shape != out._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{tuple(array.shape)} and output[{i}] has a shape of "
                               f"{tuple(out._data.shape)}.")
        seeds.append(array.astype(out._data.dtype, copy=False))
    return seeds


def _tensor_maker(tensors):
    """The function that makes a plain Tensor of an array, from the tensors autograd was
    given: this layer is below the Tensor class and does not import it."""
    return tensors[0]._new_plain


def _seed_tensors(outputs, grad_outputs, wrap):
    """The initial gradient Tensor of each output, for create_graph=True: a given gradient
    itself (a graph it has is differentiated through, as in PyTorch), else ones."""
    seeds = []
    for out, grad, array in zip(outputs, grad_outputs, _seed_gradients(outputs, grad_outputs)):
        if hasattr(grad, "_data") and grad.dtype == out.dtype:
            seeds.append(grad)
        else:
            seeds.append(wrap(np.array(array, copy=True)))
    return seeds


_CYCLE_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the "
    "parameter and its gradient which can cause a memory leak. We recommend using "
    "autograd.grad when creating the graph to avoid this. If you have to use this function, "
    "make sure to reset the .grad fields of your parameters to None after use to break the "
    "cycle and avoid the leak.")


# Set by the Tensor layer above (nbgrad._tensor.dispatch.renew_if_stale): gives a view whose
# memory was written since its node was made a node that reads its base's value now.
renew_if_stale = None


def _renew_stale_views(tensors):
    """A backward that starts from a view starts from the value it has now."""
    for t in tensors:
        renew_if_stale(t)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaf) into the `.grad` of the graph's leaves."""
    _renew_stale_views(_as_list(tensors))
    if create_graph:
        _backward_with_graph(tensors, grad_tensors, retain_graph, inputs)
        return
    if mode.active.backward(tensors, grad_tensors, retain_graph, inputs):
        return
    # Pending ops must not see the .grad this adds to.
    mode.run_pending()
    tensors = _as_list(tensors)
    grads = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    for t in tensors:
        if not t._requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
    seeds = _seed_gradients(tensors, grads)
    if inputs is not None:
        captured = grad(tensors, _as_list(inputs), grads, retain_graph=retain_graph,
                        allow_unused=True)
        for leaf, g in zip(_as_list(inputs), captured):
            if g is not None:
                engine.accumulate_into_grad(leaf, g._data, True, _tensor_maker(tensors))
        return
    engine.run_backward(tensors, seeds, bool(retain_graph), _tensor_maker(tensors))


def _backward_with_graph(tensors, grad_tensors, retain_graph, inputs):
    """backward(create_graph=True): the `.grad` of each leaf becomes a Tensor with a graph.
    As PyTorch, the graph is retained unless retain_graph=False says otherwise."""
    warnings.warn(_CYCLE_WARNING, UserWarning, stacklevel=3)
    # NOTE: never fused: pending ops run first, and the backward's own ops are recorded
    # (deferred like any op, so they run when read).
    mode.run_pending()
    tensors = _as_list(tensors)
    grads = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    retain_graph = True if retain_graph is None else retain_graph
    if inputs is not None:
        captured = grad(tensors, _as_list(inputs), grads, retain_graph=retain_graph,
                        create_graph=True, allow_unused=True)
        for leaf, g in zip(_as_list(inputs), captured):
            if g is not None:
                engine.accumulate_graph_grad(leaf, g)
        return
    for t in tensors:
        if not t._requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
    wrap = _tensor_maker(tensors)
    engine.run_backward_with_graph(tensors, _seed_tensors(tensors, grads, wrap), retain_graph,
                                   wrap)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """d(outputs)/d(inputs) returned as a tuple, without touching any `.grad`. With
    `create_graph`, the results have a graph of their own (they can be differentiated)."""
    mode.run_pending()
    outputs = _as_list(outputs)
    _renew_stale_views(outputs)
    inputs = _as_list(inputs)
    grad_outputs = (_as_list(grad_outputs) if grad_outputs is not None
                    else [None] * len(outputs))
    for x in inputs:
        if not x._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    for out in outputs:
        if not out._requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
    nodes = [edge(x) for x in inputs]
    capture = dict.fromkeys(nodes)
    wrap = _tensor_maker(outputs)
    if create_graph:
        retain_graph = True if retain_graph is None else retain_graph
        engine.run_backward_with_graph(outputs, _seed_tensors(outputs, grad_outputs, wrap),
                                       retain_graph, wrap, capture=capture)
    else:
        engine.run_backward(outputs, _seed_gradients(outputs, grad_outputs),
                            bool(retain_graph), wrap, capture=capture)
    results = []
    for x, node in zip(inputs, nodes):
        g = capture[node]
        if g is None:
            if materialize_grads:
                g = np.zeros(x._data.shape, x._data.dtype)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
        if g is None or create_graph and hasattr(g, "_data"):
            results.append(g)  # a Tensor made by recorded ops: its graph is the point
        else:
            results.append(wrap(np.array(g, copy=True)))
    return tuple(results)


from . import functional  # noqa: E402
from .gradcheck import gradcheck, gradgradcheck  # noqa: E402
from .function import Function, FunctionCtx  # noqa: E402
from .anomaly_mode import detect_anomaly, set_detect_anomaly  # noqa: E402
from . import profiler  # noqa: E402

__all__ = ["backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "inference_mode", "functional", "gradcheck", "gradgradcheck", "Function", "FunctionCtx",
           "detect_anomaly", "set_detect_anomaly"]
