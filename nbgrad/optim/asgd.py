"""ASGD, averaged SGD (torch/optim/asgd.py, single-tensor path): SGD with a decaying rate
`eta`, and `ax`, the average of the parameter's values from step t0 on."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import GRADIENT, UpdateRule


class ASGD(Optimizer):
    rule = UpdateRule(
        "asgd",
        state=("ax",),
        counters=("step", "eta", "mu"),
        scalars=("lr", "lambd", "alpha", "t0", "weight_decay", "maximize"),
        # The update reads eta and mu as they were, then sets them for the next step.
        # NOTE: PyTorch makes each new value a tensor of the default dtype (as_tensor of a
        # float) before copying it into eta and mu: rounded as the step counter, which has
        # that dtype, even where eta and mu were loaded in the parameter's dtype.
        setup="""
            step = step + 1
            rate = eta
            decay = 1 - lambd * rate
            averaging = mu != 1
            weight = mu
            eta = typed(lr / ((1 + lambd * lr * step) ** alpha), step)
            mu = typed(1 / max(1, step - t0), step)
        """,
        body=(GRADIENT, """
            param = param * decay
            param = param - rate * g
            if averaging:
                ax = ax + (param - ax) * weight
            else:
                ax = param
        """))

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
                 foreach=None, maximize=False, differentiable=False, capturable=False):
        check_options(lr=lr, weight_decay=weight_decay)
        reject_unsupported("ASGD", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                                      weight_decay=weight_decay, maximize=maximize))

    def _init_state(self, param, group):
        return {"step": counter(), "eta": counter(group["lr"]), "mu": counter(1.0),
                "ax": zeros_like_param(param)}

    def _update_arguments(self, param, state, group):
        return ((state["ax"], state["step"], state["eta"], state["mu"]),
                (group["lr"], group["lambd"], group["alpha"], group["t0"], group["weight_decay"],
                 group["maximize"]))
