"""nbgrad.autograd.functional: vjp and jacobian over functions of tensors."""
import numpy as np

from . import grad as _grad
from .grad_mode import enable_grad


def _tuple(x):
    return (tuple(x), True) if isinstance(x, (list, tuple)) else ((x,), False)


def _fresh_inputs(inputs):
    return tuple(x.detach().requires_grad_(True) for x in inputs)


def _evaluate(func, inputs, strict):
    """Call `func` on fresh leaf copies of `inputs` with grad enabled.

    Returns (inputs, whether inputs was a tuple, outputs, whether the outputs were a tuple).
    """
    if strict:
        raise NotImplementedError("strict=True (checking that outputs depend on every input) "
                                  "is not supported by nbgrad")
    inputs, inputs_were_tuple = _tuple(inputs)
    inputs = _fresh_inputs(inputs)
    with enable_grad():
        outputs = func(*inputs)
    outs, outputs_were_tuple = _tuple(outputs)
    return inputs, inputs_were_tuple, outs, outputs_were_tuple


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), v^T J) with the second in the structure of `inputs`."""
    inputs, inputs_were_tuple, outs, outputs_were_tuple = _evaluate(func, inputs, strict)
    vs = _tuple(v)[0] if v is not None else (None,) * len(outs)
    grads = _grad(list(outs), list(inputs), list(vs), create_graph=create_graph,
                  allow_unused=True, materialize_grads=True)
    detached = tuple(o.detach() for o in outs)
    return (detached if outputs_were_tuple else detached[0],
            grads if inputs_were_tuple else grads[0])


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """J[i][j] = d outputs[i] / d inputs[j], each of shape output.shape + input.shape.

    `vectorize` and `strategy` choose how PyTorch computes the same matrix; here it is always
    one reverse-mode pass per output element.
    """
    if create_graph:
        raise NotImplementedError("jacobian(create_graph=True) is not supported by nbgrad yet")
    inputs, inputs_were_tuple, outs, outputs_were_tuple = _evaluate(func, inputs, strict)
    rows = []
    for out in outs:
        row = reverse_jacobian(out, inputs)
        rows.append(row if inputs_were_tuple else row[0])
    return tuple(rows) if outputs_were_tuple else rows[0]


def reverse_jacobian(out, inputs):
    """d out / d x for each x in `inputs`, one backward pass per element of `out`."""
    blocks = [np.zeros(out.shape + x.shape, x._data.dtype) for x in inputs]
    for k in range(out.numel()):
        seed = np.zeros(out._data.size, out._data.dtype)
        seed[k] = 1
        grads = _grad([out], list(inputs), [out._new_plain(seed.reshape(out.shape))],
                      retain_graph=True, allow_unused=True, materialize_grads=True)
        for block, g in zip(blocks, grads):
            block.reshape((out._data.size,) + g.shape)[k] = g._data
    return tuple(out._new_plain(b) for b in blocks)
