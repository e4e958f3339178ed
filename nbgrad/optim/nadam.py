"""NAdam (torch/optim/nadam.py, single-tensor path)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import ADAM_MOMENTS, ADAM_SETUP, DECOUPLED_GRADIENT, UpdateRule


class NAdam(Optimizer):
    rule = UpdateRule(
        "nadam",
        state=("exp_avg", "exp_avg_sq"),
        counters=("step", "mu_product"),
        scalars=("lr", "beta1", "beta2", "eps", "weight_decay", "momentum_decay",
                 "decoupled_weight_decay", "maximize"),
        setup=("""
            step = step + 1
            bias_correction2 = 1 - beta2 ** step
            # The momentum cache mu^t and mu^(t+1).
            mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
            mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
            # NOTE: PyTorch multiplies its mu_product tensor by mu in the tensor's dtype
            # (float32 unless the default dtype is float64).
            mu_product = mu_product * typed(mu, mu_product)
            grad_scale = -lr * (1.0 - mu) / (1.0 - mu_product)
            exp_avg_scale = -lr * mu_next / (1.0 - mu_product * mu_next)
        """, ADAM_SETUP),
        body=(DECOUPLED_GRADIENT, ADAM_MOMENTS, """
            denom = np.sqrt(exp_avg_sq / bias_correction2) + eps
            param = param + grad_scale * g / denom
            param = param + exp_avg_scale * exp_avg / denom
        """))

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        check_options(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay,
                      momentum_decay=momentum_decay)
        reject_unsupported("NAdam", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _init_state(self, param, group):
        return {"step": counter(), "mu_product": counter(1.0),
                "exp_avg": zeros_like_param(param), "exp_avg_sq": zeros_like_param(param)}

    def _update_arguments(self, param, state, group):
        beta1, beta2 = group["betas"]
        return ((state["exp_avg"], state["exp_avg_sq"], state["step"], state["mu_product"]),
                (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                 group["momentum_decay"], group["decoupled_weight_decay"], group["maximize"]))
