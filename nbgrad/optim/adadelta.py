"""Adadelta (torch/optim/adadelta.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import GRADIENT, UpdateRule


class Adadelta(Optimizer):
    rule = UpdateRule(
        "adadelta",
        state=("square_avg", "acc_delta"),
        counters=("step",),
        scalars=("lr", "rho", "eps", "weight_decay", "maximize"),
        setup="""
            step = step + 1
            one_minus_rho = 1 - rho
        """,
        body=(GRADIENT, """
            square_avg = square_avg * rho + one_minus_rho * g * g
            std = np.sqrt(square_avg + eps)
            delta = np.sqrt(acc_delta + eps) / std * g
            acc_delta = acc_delta * rho + one_minus_rho * delta * delta
            param = param - lr * delta
        """))

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        check_options(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_options(eps=eps, weight_decay=weight_decay)
        reject_unsupported("Adadelta", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _init_state(self, param, group):
        return {"step": counter(), "square_avg": zeros_like_param(param),
                "acc_delta": zeros_like_param(param)}

    def _update_arguments(self, param, state, group):
        return ((state["square_avg"], state["acc_delta"], state["step"]),
                (group["lr"], group["rho"], group["eps"], group["weight_decay"],
                 group["maximize"]))
