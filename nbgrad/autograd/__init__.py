"""nbgrad.autograd: backward, grad, grad mode, and the functional/gradcheck helpers."""
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


def _require_graph_support(create_graph):
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported by "
                                  "nbgrad's engine")


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaf) into the `.grad` of the graph's leaves."""
    if create_graph:
        _require_graph_support(create_graph)
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


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """d(outputs)/d(inputs) returned as a tuple, without touching any `.grad`."""
    _require_graph_support(create_graph)
    mode.run_pending()
    outputs = _as_list(outputs)
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
    seeds = _seed_gradients(outputs, grad_outputs)
    nodes = [edge(x) for x in inputs]
    capture = dict.fromkeys(nodes)
    wrap = _tensor_maker(outputs)
    engine.run_backward(outputs, seeds, bool(retain_graph), wrap, capture=capture)
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
        results.append(None if g is None else wrap(np.array(g, copy=True)))
    return tuple(results)


from . import functional  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .function import Function, FunctionCtx  # noqa: E402
from .anomaly_mode import detect_anomaly, set_detect_anomaly  # noqa: E402

__all__ = ["backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "inference_mode", "functional", "gradcheck", "Function", "FunctionCtx",
           "detect_anomaly", "set_detect_anomaly"]
