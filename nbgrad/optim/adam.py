"""Adam and AdamW (torch/optim/adam.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import ADAM_MOMENTS, ADAM_SETUP, DECOUPLED_GRADIENT, UpdateRule


class Adam(Optimizer):
    rule = UpdateRule(
        "adam",
        state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        counters=("step",),
        scalars=("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay",
                 "amsgrad", "maximize"),
        setup=("""
            step = step + 1
            # Bias corrections in double precision, as PyTorch computes them in Python.
            step_size = lr / (1 - beta1 ** step)
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        """, ADAM_SETUP),
        body=(DECOUPLED_GRADIENT, ADAM_MOMENTS, """
            v = exp_avg_sq
            if amsgrad:
                max_exp_avg_sq = max(max_exp_avg_sq, v)
                v = max_exp_avg_sq
            param = param - step_size * exp_avg / (np.sqrt(v) / bias_correction2_sqrt + eps)
        """))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        check_options(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        reject_unsupported(type(self).__name__, capturable=capturable,
                           differentiable=differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _init_state(self, param, group):
        state = {"step": counter(), "exp_avg": zeros_like_param(param),
                 "exp_avg_sq": zeros_like_param(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_like_param(param)
        return state

    def _update_arguments(self, param, state, group):
        amsgrad = group["amsgrad"]
        beta1, beta2 = group["betas"]
        # NOTE: as in PyTorch, switching amsgrad on after the first step is a KeyError (the
        # state has no max_exp_avg_sq).
        return ((state["exp_avg"], state["exp_avg_sq"],
                 state["max_exp_avg_sq"] if amsgrad else None, state["step"]),
                (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                 group["decoupled_weight_decay"], amsgrad, group["maximize"]))


class AdamW(Adam):
    """Adam with decoupled weight decay: the parameter shrinks by lr * weight_decay each step
    instead of weight decay entering the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         capturable=capturable, differentiable=differentiable,
                         decoupled_weight_decay=True)
