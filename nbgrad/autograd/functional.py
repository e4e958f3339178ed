"""nbgrad.autograd.functional: vjp, jvp, vhp, hvp, jacobian and hessian of functions of
tensors, as torch.autograd.functional computes them (jvp by the double-backward trick),
with its arguments, result structures and errors.

Reverse mode only: nbgrad has no forward-mode AD, so strategy="forward-mode" raises.
"""
import numpy as np

from . import grad as _grad
from .grad_mode import enable_grad

_STRATEGIES = ("forward-mode", "reverse-mode")


def _tuple(x):
    return (tuple(x), True) if isinstance(x, (list, tuple)) else ((x,), False)


def _untuple(values, was_tuple):
    return values if was_tuple else values[0]


def _prepare(inputs, create_graph):
    """torch's _grad_preprocess: each input as a fresh leaf that requires grad; with
    create_graph, an input that requires grad is used itself, so that the results stay
    differentiable with respect to it."""
    return tuple(x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
                 for x in inputs)


def _finish(tensors, create_graph):
    """torch's _grad_postprocess: results leave the graph unless create_graph asked for it."""
    return tensors if create_graph else tuple(t.detach() for t in tensors)


def _evaluate(func, inputs, strict, create_graph):
    """`func` called on the prepared `inputs` (a tuple) with grad enabled: (inputs, outputs,
    whether the outputs were a tuple)."""
    if strict:
        raise NotImplementedError("strict=True (checking that outputs depend on every input) "
                                  "is not supported by nbgrad")
    inputs = _prepare(inputs, create_graph)
    with enable_grad():
        outputs = func(*inputs)
    outs, outputs_were_tuple = _tuple(outputs)
    return inputs, outs, outputs_were_tuple


def _zeros(like, requires_grad=False):
    tensor = like._new_plain(np.zeros(like.shape, like.dtype.np))
    return tensor.requires_grad_(True) if requires_grad else tensor


def _validated_v(v, others, others_were_tuple, what):
    """`v` as a tuple matching `others` in number and shapes (torch's _validate_v); None
    only where `others` is one tensor of one element (then ones)."""
    if v is None:
        if others_were_tuple or others[0].numel() != 1:
            raise RuntimeError(f"The vector v can only be None if the {what} to the "
                               "user-provided function is a single Tensor with a single "
                               "element.")
        return (others[0]._new_plain(np.ones(others[0].shape, others[0].dtype.np)),)
    v, _ = _tuple(v)
    if len(v) != len(others):
        if others_were_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(others)} but "
                               f"got {len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for i, (vector, other) in enumerate(zip(v, others)):
        if tuple(vector.shape) != tuple(other.shape):
            entry = f"Entry {i} in " if len(others) > 1 else ""
            raise RuntimeError(f"{entry}v has invalid size: should be torch.Size("
                               f"{list(other.shape)}) but got torch.Size({list(vector.shape)}).")
    return v


def _grads(outputs, inputs, grad_outputs, create_graph):
    """torch's _autograd_grad: d outputs / d inputs, outputs that need no gradient left out;
    zeros where an input is not used (torch's _fill_in_zeros)."""
    used = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    if not used:
        return tuple(_zeros(x) for x in inputs)
    outs, seeds = zip(*used)
    return _grad(list(outs), list(inputs), list(seeds), retain_graph=True,
                 create_graph=create_graph, allow_unused=True, materialize_grads=True)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), v^T J) with the second in the structure of `inputs`."""
    inputs, inputs_were_tuple = _tuple(inputs)
    inputs, outs, outputs_were_tuple = _evaluate(func, inputs, strict, create_graph)
    if v is None:
        if outputs_were_tuple or outs[0].numel() != 1:
            raise RuntimeError("The vector v can only be None if the user-provided function "
                               "returns a single Tensor with a single element.")
        vs = (None,)
    else:
        vs = _validated_v(v, outs, outputs_were_tuple, "output")
    grads = _grads(outs, inputs, vs, create_graph)
    return (_untuple(_finish(outs, create_graph), outputs_were_tuple),
            _untuple(_finish(grads, create_graph), inputs_were_tuple))


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), J v) by the double-backward trick, as PyTorch: the VJP u -> J^T u
    taken with create_graph at u = 0 is linear in u, and its VJP with v is J v."""
    inputs, inputs_were_tuple = _tuple(inputs)
    v = _validated_v(v, inputs, inputs_were_tuple, "input")
    inputs, outs, outputs_were_tuple = _evaluate(func, inputs, strict, create_graph)
    us = tuple(_zeros(out, requires_grad=True) for out in outs)
    grad_inputs = _grads(outs, inputs, us, create_graph=True)
    jv = _grads(grad_inputs, us, v, create_graph)
    return (_untuple(_finish(outs, create_graph), outputs_were_tuple),
            _untuple(_finish(jv, create_graph), outputs_were_tuple))


def _scalar_function_value(func, inputs, strict, create_graph, name):
    inputs, outs, outputs_were_tuple = _evaluate(func, inputs, strict, create_graph)
    _check_single_element(outs, outputs_were_tuple, name)
    return inputs, outs[0]


def _check_single_element(outs, outputs_were_tuple, name):
    if outputs_were_tuple and len(outs) != 1:
        raise RuntimeError(f"The function given to {name} should return a single Tensor")
    if outs[0].numel() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {name} should "
                           "contain a single element")


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), v^T H) for a scalar function, in the structure of `inputs`."""
    return _hessian_product(func, inputs, v, create_graph, strict, "vhp")


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), H v) for a scalar function, in the structure of `inputs`.

    NOTE: computed as v^T H: the Hessian of a twice-differentiable function is symmetric,
    so the two are equal, and this needs one differentiation of the gradient where
    PyTorch's double-backward trick needs two."""
    return _hessian_product(func, inputs, v, create_graph, strict, "hvp")


def _hessian_product(func, inputs, v, create_graph, strict, name):
    inputs, inputs_were_tuple = _tuple(inputs)
    v = _validated_v(v, inputs, inputs_were_tuple, "input")
    inputs, out = _scalar_function_value(func, inputs, strict, create_graph, name)
    gradient = _grads((out,), inputs, (None,), create_graph=True)
    product = _grads(gradient, inputs, v, create_graph)
    return (_finish((out,), create_graph)[0],
            _untuple(_finish(product, create_graph), inputs_were_tuple))


def _check_strategy(strategy, vectorize, create_graph, name):
    if strategy not in _STRATEGIES:
        hint = "" if name == "hessian" else (
            ' Hint: If your function has more outputs than inputs, "forward-mode" tends to be '
            'more performant. Otherwise, prefer to use "reverse-mode".')
        raise AssertionError(f'Expected strategy to be either "forward-mode" or '
                             f'"reverse-mode".{hint}')
    if strategy == "forward-mode":
        if create_graph and name == "jacobian":
            raise NotImplementedError(
                "torch.autograd.functional.jacobian: `create_graph=True` and "
                '`strategy="forward-mode"` are not supported together (yet). Please either set '
                '`create_graph=False` or `strategy="reverse-mode"`.')
        if not vectorize:
            raise NotImplementedError("Computing Jacobian using forward-AD or forward-over-reverse "
                                      "Hessian isonly implemented for `vectorize=True`.")
        raise NotImplementedError(f'{name}(strategy="forward-mode"): nbgrad has no forward-mode '
                                  "AD; use the default reverse-mode")


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """J[i][j] = d outputs[i] / d inputs[j], each of shape output.shape + input.shape.

    `vectorize=True` is how PyTorch batches the backward passes (vmap); the values are the
    same, computed here by one reverse-mode pass per output element either way.
    """
    _check_strategy(strategy, vectorize, create_graph, "jacobian")
    inputs, inputs_were_tuple = _tuple(inputs)
    inputs, outs, outputs_were_tuple = _evaluate(func, inputs, strict, create_graph)
    rows = []
    for out in outs:
        row = _finish(reverse_jacobian(out, inputs, create_graph), create_graph)
        rows.append(_untuple(row, inputs_were_tuple))
    return _untuple(tuple(rows), outputs_were_tuple)


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy="reverse-mode"):
    """H[i][j] = d^2 func / d inputs[i] d inputs[j] of a scalar function, each of shape
    inputs[i].shape + inputs[j].shape: the jacobian of the jacobian, as PyTorch."""
    _check_strategy(outer_jacobian_strategy, vectorize, create_graph, "hessian")
    inputs, inputs_were_tuple = _tuple(inputs)

    def single_output(*xs):
        outs, outputs_were_tuple = _tuple(func(*xs))
        _check_single_element(outs, outputs_were_tuple, "hessian")
        return outs[0].squeeze() if outs[0].ndim else outs[0]

    def gradient(*xs):
        return jacobian(single_output, xs, create_graph=True, strict=strict)

    result = jacobian(gradient, inputs, create_graph=create_graph, strict=strict,
                      vectorize=vectorize)
    return _untuple(tuple(_untuple(row, inputs_were_tuple) for row in result), inputs_were_tuple)


def reverse_jacobian(out, inputs, create_graph=False):
    """d out / d x for each x in `inputs`, one backward pass per element of `out`; with
    `create_graph`, Tensors with a graph (rows written in by recorded index_put)."""
    if not out.requires_grad:
        return tuple(out._new_plain(np.zeros(out.shape + x.shape, x.dtype.np)) for x in inputs)
    if create_graph:
        return _jacobian_with_graph(out, inputs)
    blocks = [np.zeros(out.shape + x.shape, x._data.dtype) for x in inputs]
    for k in range(out.numel()):
        seed = np.zeros(out._data.size, out._data.dtype)
        seed[k] = 1
        grads = _grad([out], list(inputs), [out._new_plain(seed.reshape(out.shape))],
                      retain_graph=True, allow_unused=True, materialize_grads=True)
        for block, g in zip(blocks, grads):
            block.reshape((out._data.size,) + g.shape)[k] = g._data
    return tuple(out._new_plain(b) for b in blocks)


def _jacobian_with_graph(out, inputs):
    size = out.numel()
    if size == 1:  # one row: the gradient itself, no rows to write
        seed = out._new_plain(np.ones(out.shape, out.dtype.np))
        grads = _grad([out], list(inputs), [seed], retain_graph=True, create_graph=True,
                      allow_unused=True, materialize_grads=True)
        return tuple(g if tuple(out.shape) == () else g.reshape(out.shape + x.shape)
                     for g, x in zip(grads, inputs))
    blocks = [out._new_plain(np.zeros((size,) + tuple(x.shape), x.dtype.np)) for x in inputs]
    for k in range(size):
        seed = np.zeros(size, out.dtype.np)
        seed[k] = 1
        grads = _grad([out], list(inputs), [out._new_plain(seed.reshape(out.shape))],
                      retain_graph=True, create_graph=True, allow_unused=True,
                      materialize_grads=True)
        for block, g in zip(blocks, grads):
            block[k] = g
    return tuple(b.reshape(out.shape + x.shape) for b, x in zip(blocks, inputs))
