"""Gradient clipping (torch/nn/utils/clip_grad.py), written with tensor operations under
no_grad, as PyTorch does.

NOTE: `foreach` is accepted and not used: in PyTorch it picks an implementation with the
same results.
"""
import types
import warnings

from ..._core import tracing as _tracing
from ...autograd.grad_mode import no_grad
from ..._tensor import api as _api
from ..._tensor.reductions import vector_norm
from ..._tensor.tensor import Tensor


def _not_in_a_compiled_step(name):
    # NOTE: a fused step does not yet see in-place changes of a .grad made after backward
    # (the optimizer's update would read the gradients unclipped): until it does, a step that
    # clips runs eagerly.
    _tracing.graph_break(f"{name} changes .grad in place, which a fused step does not follow")


def _listed(parameters):
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients of `parameters` in place so that their total `norm_type` norm (the
    norm of the per-gradient norms) is at most `max_norm`; return that total norm (before
    clipping) as a 0-d tensor."""
    if isinstance(parameters, types.GeneratorType):
        parameters = list(parameters)
        if not parameters:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                          stacklevel=2)
    _not_in_a_compiled_step("clip_grad_norm_")
    grads = [p.grad for p in _listed(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return _api.tensor(0.0)
    with no_grad():
        total_norm = vector_norm(_api.stack([vector_norm(g, norm_type) for g in grads]),
                                 norm_type)
        if error_if_nonfinite and not bool(total_norm.isfinite()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                               "`parameters` is non-finite, so it cannot be clipped. To disable "
                               "this error and scale the gradients by the non-finite norm "
                               "anyway, set `error_if_nonfinite=False`")
        clip_coef = _api.clamp(float(max_norm) / (total_norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(clip_coef)
    return total_norm


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Deprecated in PyTorch in favor of `clip_grad_norm_` (same function)."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp the gradients of `parameters` in place to [-clip_value, clip_value]."""
    _not_in_a_compiled_step("clip_grad_value_")
    clip_value = float(clip_value)
    with no_grad():
        for p in _listed(parameters):
            if p.grad is not None:
                p.grad.clamp_(min=-clip_value, max=clip_value)
