"""Rprop (torch/optim/rprop.py, single-tensor path): each element's step size grows by
etaplus while its gradient keeps its sign and shrinks by etaminus when the sign flips (that
step then moves nothing, and the next one starts afresh)."""
from .optimizer import Optimizer, check_options, counter, reject_unsupported, zeros_like_param
from .rule import UpdateRule


class Rprop(Optimizer):
    rule = UpdateRule(
        "rprop",
        state=("prev", "step_size"),
        counters=("step",),
        scalars=("etaminus", "etaplus", "step_size_min", "step_size_max", "maximize"),
        setup="""
            step = step + 1
        """,
        body="""
            g = -grad if maximize else grad
            direction = g * prev
            if direction > 0:
                factor = etaplus
            elif direction < 0:
                factor = etaminus
            else:
                factor = 1
            step_size = min(max(step_size * factor, step_size_min), step_size_max)
            if direction < 0:
                g = 0
            # (torch.sign, which is 0 at NaN: a NaN gradient moves nothing)
            if g > 0:
                param = param - step_size
            elif g < 0:
                param = param + step_size
            prev = g
        """)

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        check_options(lr=lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        reject_unsupported("Rprop", capturable=capturable, differentiable=differentiable)
        super().__init__(params, dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes),
                                      maximize=maximize))

    def _init_state(self, param, group):
        return {"step": counter(), "prev": zeros_like_param(param),
                "step_size": zeros_like_param(param, group["lr"])}

    def _update_arguments(self, param, state, group):
        (etaminus, etaplus), (step_size_min, step_size_max) = group["etas"], group["step_sizes"]
        return ((state["prev"], state["step_size"], state["step"]),
                (etaminus, etaplus, step_size_min, step_size_max, group["maximize"]))
