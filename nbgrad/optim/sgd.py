"""SGD with momentum, dampening, weight decay and Nesterov momentum (torch/optim/sgd.py)."""
import numba
import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, reject_unsupported, required


@numba.njit(cache=True, error_model="numpy")
def sgd_kernel(param, grad, momentum_buffer, lr, weight_decay, momentum, one_minus_dampening,
               nesterov, first_step):
    """One parameter's SGD step, in place. Scalars arrive in the parameter's dtype."""
    for i in range(param.shape[0]):
        d = grad[i]
        if weight_decay != 0:
            d = d + weight_decay * param[i]
        if momentum != 0:
            if first_step:
                buf = d
            else:
                buf = momentum * momentum_buffer[i] + one_minus_dampening * d
            momentum_buffer[i] = buf
            d = d + momentum * buf if nesterov else buf
        param[i] = param[i] - lr * d


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        reject_unsupported("SGD", maximize=maximize, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=False))

    def _init_state(self, param, group):
        return {"momentum_buffer": None}

    def _kernel_arguments(self, data, state, group):
        scalar = data.dtype.type
        momentum = group["momentum"]
        buffer = state["momentum_buffer"]
        first_step = buffer is None
        if momentum != 0 and first_step:
            buffer = state["momentum_buffer"] = Tensor._wrap(np.empty(data.shape, data.dtype))
        return sgd_kernel, (_EMPTY[data.dtype] if buffer is None else buffer._data.reshape(-1),
                            scalar(group["lr"]), scalar(group["weight_decay"]), scalar(momentum),
                            scalar(1 - group["dampening"]), group["nesterov"], first_step)


# A stand-in momentum buffer when momentum is 0 (the kernel never reads it).
_EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}
