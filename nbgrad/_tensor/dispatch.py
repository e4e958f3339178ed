"""The one place an op call goes: `dispatch` runs a primitive on tensors, through the
active mode (nbgrad._core.mode: eager, or deferred by nbgrad.fuse.deferred), records its
grad_fn node when a gradient is needed, and shows the call to an active tracer
(nbgrad.compile).
"""
from .._core import mode, tracing as _tracing
from .._core.dtype import run_in_float32
from .. import autograd
from ..autograd import graph
from ..autograd import profiler
from ..autograd.grad_mode import state as _grad_state
from ..autograd.profiler import state as _profiling
from ..ops.primitive import PRIMITIVES
from .memory import positions_in
from .tensor import cannot_allocate, new_tensor, remember_view

_NO_PARAMS = {}


def dispatch(prim, inputs, params=_NO_PARAMS, grad_fn_name=None, into=None):
    """Run primitive `prim` on Tensors `inputs`; record a graph node if a gradient is needed.
    The active mode may defer a call whose result needs a gradient (nbgrad._core.mode).
    `into`: an array for an elementwise forward to write its result into (where it has
    the result's shape and dtype), given by in-place ops that record nothing."""
    needs_grad = False
    if _grad_state.enabled and prim.vjp is not None:
        for tensor in inputs:
            if tensor._base is not None and tensor._version_counter[0] != tensor._view_version:
                renew_view(tensor)  # (renew_if_stale, inline: every op's inputs pass here)
            needs_grad = needs_grad or tensor._requires_grad
        if needs_grad:
            result = mode.active.defer(prim, inputs, params, grad_fn_name)
            if result is not None:
                return result
    arrays = [t._data for t in inputs]
    started = _profiling.enabled and profiler.clock()
    forward = prim.forward_saving if needs_grad and prim.forward_saving else prim.forward
    try:
        out = forward(*arrays, **params) if into is None else forward(*arrays, into=into, **params)
    except MemoryError:
        shape, dtype = prim.infer(*arrays, **params)
        raise cannot_allocate(shape, dtype) from None
    except Exception:
        # NOTE: Numba has no float16 or bfloat16, so a kernel fails on them (after typing,
        # about 25 ms); the call runs again in float32 then. Nothing looks for them before
        # the call: the common path stays as cheap as it was.
        out = run_in_float32(forward, arrays, params)
        if out is None:
            raise
    extra = None
    if forward is not prim.forward:
        out, extra = out
    result = new_tensor(out)
    if prim.view:
        result._version_counter = inputs[0]._version_counter
    # As PyTorch: an integer or bool result (x.long(), x.bool()) never requires grad,
    # whatever its inputs; the gradient stops there.
    if needs_grad and out.dtype.kind == "f":
        result.grad_fn = graph.record(prim, inputs, arrays, out, result, params, grad_fn_name,
                                      extra)
        result._requires_grad = True
    if prim.view:
        remember_view(result, inputs[0])
    if _tracing.current is not None:
        _tracing.current.op(prim, inputs, arrays, params, out, extra)
    if started:
        profiler.op_ran(prim, grad_fn_name, arrays, started)
    return result


def renew_view(view):
    """Give `view`, whose memory was written since its node was made (through its base or
    another view of it), a node that reads its elements out of its base's value now
    (PyTorch's AsStridedBackward0, which PyTorch makes when the view's grad_fn is next read):
    the old node leads to the old value's node, whose gradient would be wrong. Called where a
    view enters the graph again: as an op's input, or a backward's root."""
    view._view_version = view._version_counter[0]
    base = view._base
    if not (_grad_state.enabled and base._requires_grad):
        return
    positions = positions_in(base._data, view._data)
    if positions is not None:
        renewed = dispatch(PRIMITIVES["take"], (base,), {"positions": positions},
                           grad_fn_name="AsStridedBackward0")
        renewed._data  # noqa: B018  (a deferred op runs now: nothing else holds its result)
        graph.adopt(view, renewed)


def renew_if_stale(tensor):
    """renew_view(tensor) where tensor is a view whose memory was written since its node
    was made (anything else, a backward's root that is no Tensor included, is left alone)."""
    if getattr(tensor, "_base", None) is not None and \
            tensor._version_counter[0] != tensor._view_version:
        renew_view(tensor)


autograd.renew_if_stale = renew_if_stale  # (the engine, a layer below, calls it: see there)
