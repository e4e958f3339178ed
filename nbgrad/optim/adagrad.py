"""Adagrad (torch/optim/adagrad.py, single-tensor path, dense gradients)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import GRADIENT, UpdateRule


class Adagrad(Optimizer):
    rule = UpdateRule(
        "adagrad",
        state=("sum",),
        counters=("step",),
        scalars=("lr", "lr_decay", "weight_decay", "eps", "maximize"),
        setup="""
            step = step + 1
            clr = lr / (1 + (step - 1) * lr_decay)
        """,
        body=(GRADIENT, """
            sum = sum + g * g
            param = param - clr * g / (np.sqrt(sum) + eps)
        """))

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        check_options(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, eps=eps)
        reject_unsupported("Adagrad", differentiable=differentiable)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      maximize=maximize))
        # PyTorch creates Adagrad's state at construction (state_dict() has it at once).
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param] = self._init_state(param, group)

    def _init_state(self, param, group):
        return {"step": counter(),
                "sum": zeros_like_param(param, group["initial_accumulator_value"])}

    def _update_arguments(self, param, state, group):
        return ((state["sum"], state["step"]),
                (group["lr"], group["lr_decay"], group["weight_decay"], group["eps"],
                 group["maximize"]))
