"""SGD with momentum, dampening, weight decay, Nesterov momentum and maximize
(torch/optim/sgd.py, single-tensor path)."""
import numpy as np

from .._tensor.tensor import Tensor
from .optimizer import Optimizer, reject_unsupported, required
from .rule import GRADIENT, UpdateRule


class SGD(Optimizer):
    rule = UpdateRule(
        "sgd",
        state=("momentum_buffer",),
        scalars=("lr", "weight_decay", "momentum", "dampening", "nesterov", "maximize",
                 "first_step"),
        setup="one_minus_dampening = 1 - dampening",
        body=(GRADIENT, """
            if momentum != 0:
                if first_step:
                    momentum_buffer = g
                else:
                    momentum_buffer = momentum * momentum_buffer + one_minus_dampening * g
                g = g + momentum * momentum_buffer if nesterov else momentum_buffer
            param = param - lr * g
        """))

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
        reject_unsupported("SGD", differentiable=differentiable)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _init_state(self, param, group):
        return {"momentum_buffer": None}

    def _update_arguments(self, param, state, group):
        momentum = group["momentum"]
        buffer = state["momentum_buffer"]
        # PyTorch's first momentum step copies the gradient into a new buffer.
        first_step = buffer is None
        if momentum != 0 and first_step:
            buffer = state["momentum_buffer"] = Tensor._wrap(np.zeros_like(param._data))
        return ((buffer,), (group["lr"], group["weight_decay"], momentum, group["dampening"],
                            group["nesterov"], group["maximize"], first_step))
