"""Adam and AdamW (torch/optim/adam.py, single-tensor path, maximize=False): one njit kernel
updates a parameter and its moment estimates in place."""
import math

import numba
import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, reject_unsupported


@numba.njit(cache=True, error_model="numpy")
def adam_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay, weight_decay,
                one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps,
                amsgrad):
    """`decay` multiplies the parameter first (AdamW's decoupled weight decay, else 1);
    `weight_decay` is Adam's L2 term added to the gradient (0 for AdamW). Scalars arrive in
    the parameter's dtype (a Python float would turn float32 arithmetic into float64)."""
    for i in range(param.shape[0]):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        m = exp_avg[i]
        m = m + one_minus_beta1 * (g - m)  # torch's lerp_(grad, 1 - beta1)
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = param[i] * decay - step_size * m / denom


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        reject_unsupported(type(self).__name__, maximize=maximize, capturable=capturable,
                           differentiable=differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=False, decoupled_weight_decay=self._decoupled))

    def _init_state(self, param, group):
        shape, dtype = param._data.shape, param._data.dtype
        state = {"step": Tensor._wrap(np.zeros((), np.float32)),
                 "exp_avg": Tensor._wrap(np.zeros(shape, dtype)),
                 "exp_avg_sq": Tensor._wrap(np.zeros(shape, dtype))}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = Tensor._wrap(np.zeros(shape, dtype))
        return state

    def _kernel_arguments(self, data, state, group):
        scalar = data.dtype.type
        step_tensor = state["step"]
        step_tensor._data[...] += 1
        step = float(step_tensor._data)
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        # Bias corrections in double precision in Python, as PyTorch computes them.
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        decoupled = group["decoupled_weight_decay"]
        maximum = state.get("max_exp_avg_sq")
        flat = data.reshape(-1)
        return adam_kernel, (state["exp_avg"]._data.reshape(-1),
                             state["exp_avg_sq"]._data.reshape(-1),
                             flat[:0] if maximum is None else maximum._data.reshape(-1),
                             scalar(1 - lr * weight_decay if decoupled else 1),
                             scalar(0 if decoupled else weight_decay), scalar(1 - beta1),
                             scalar(beta2), scalar(1 - beta2), scalar(step_size),
                             scalar(bias_correction2_sqrt), scalar(group["eps"]),
                             group["amsgrad"])


class AdamW(Adam):
    """Adam with decoupled weight decay: the parameter shrinks by lr * weight_decay each step
    instead of weight decay entering the gradient."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, **kwargs):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)
