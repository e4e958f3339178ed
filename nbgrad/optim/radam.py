"""RAdam (torch/optim/radam.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import ADAM_MOMENTS, ADAM_SETUP, DECOUPLED_GRADIENT, UpdateRule


class RAdam(Optimizer):
    rule = UpdateRule(
        "radam",
        state=("exp_avg", "exp_avg_sq"),
        counters=("step",),
        scalars=("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay",
                 "maximize"),
        setup=("""
            step = step + 1
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            # The variance rectification term: the adaptive step is taken only once the
            # approximated SMA length rho_t exceeds 5.
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
            rectified = rho_t > 5.0
            rect = 0.0
            if rectified:
                rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            bias_correction2_sqrt = bias_correction2 ** 0.5
        """, ADAM_SETUP),
        body=(DECOUPLED_GRADIENT, ADAM_MOMENTS, """
            corrected = exp_avg / bias_correction1
            if rectified:
                adaptive_lr = bias_correction2_sqrt / (np.sqrt(exp_avg_sq) + eps)
                param = param - corrected * lr * adaptive_lr * rect
            else:
                param = param - corrected * lr
        """))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        check_options(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        reject_unsupported("RAdam", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _init_state(self, param, group):
        return {"step": counter(), "exp_avg": zeros_like_param(param),
                "exp_avg_sq": zeros_like_param(param)}

    def _update_arguments(self, param, state, group):
        beta1, beta2 = group["betas"]
        return ((state["exp_avg"], state["exp_avg_sq"], state["step"]),
                (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                 group["decoupled_weight_decay"], group["maximize"]))
