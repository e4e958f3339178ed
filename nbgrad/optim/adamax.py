"""Adamax (torch/optim/adamax.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import GRADIENT, UpdateRule


class Adamax(Optimizer):
    rule = UpdateRule(
        "adamax",
        state=("exp_avg", "exp_inf"),
        counters=("step",),
        scalars=("lr", "beta1", "beta2", "eps", "weight_decay", "maximize"),
        setup="""
            step = step + 1
            one_minus_beta1 = 1 - beta1
            clr = lr / (1 - beta1 ** step)
        """,
        body=(GRADIENT, """
            exp_avg = lerp(exp_avg, g, one_minus_beta1)
            exp_inf = max(exp_inf * beta2, abs(g) + eps)
            param = param - clr * exp_avg / exp_inf
        """))

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        check_options(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        reject_unsupported("Adamax", differentiable=differentiable, capturable=capturable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, maximize=maximize))

    def _init_state(self, param, group):
        return {"step": counter(), "exp_avg": zeros_like_param(param),
                "exp_inf": zeros_like_param(param)}

    def _update_arguments(self, param, state, group):
        beta1, beta2 = group["betas"]
        return ((state["exp_avg"], state["exp_inf"], state["step"]),
                (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                 group["maximize"]))
