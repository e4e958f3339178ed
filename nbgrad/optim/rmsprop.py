"""RMSprop (torch/optim/rmsprop.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import GRADIENT, UpdateRule


class RMSprop(Optimizer):
    rule = UpdateRule(
        "rmsprop",
        state=("square_avg", "grad_avg", "momentum_buffer"),
        counters=("step",),
        scalars=("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
        setup="""
            step = step + 1
            one_minus_alpha = 1 - alpha
        """,
        body=(GRADIENT, """
            square_avg = square_avg * alpha + one_minus_alpha * g * g
            if centered:
                grad_avg = lerp(grad_avg, g, one_minus_alpha)
                avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
            else:
                avg = np.sqrt(square_avg) + eps
            if momentum > 0:
                momentum_buffer = momentum_buffer * momentum + g / avg
                param = param - lr * momentum_buffer
            else:
                param = param - lr * g / avg
        """))

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        check_options(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        reject_unsupported("RMSprop", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      maximize=maximize))

    def _init_state(self, param, group):
        state = {"step": counter(), "square_avg": zeros_like_param(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_like_param(param)
        if group["centered"]:
            state["grad_avg"] = zeros_like_param(param)
        return state

    def _update_arguments(self, param, state, group):
        # NOTE: as in PyTorch, turning momentum or centered on after the first step is a
        # KeyError (the state lacks the buffer).
        momentum, centered = group["momentum"], group["centered"]
        return ((state["square_avg"], state["grad_avg"] if centered else None,
                 state["momentum_buffer"] if momentum > 0 else None, state["step"]),
                (group["lr"], group["alpha"], group["eps"], group["weight_decay"], momentum,
                 centered, group["maximize"]))
