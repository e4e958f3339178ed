"""Weight normalization by a forward pre-hook (torch/nn/utils/weight_norm.py, PyTorch's older
API): a parameter `weight` becomes `weight_g` (its norm over all dimensions but `dim`) and
`weight_v` (its direction), and the hook recomputes `weight = weight_g * weight_v /
||weight_v||` before every forward.

nbgrad has no parametrize machinery, so `nn.utils.parametrizations.weight_norm` is not
there. NOTE: the weight is composed of tensor ops (its grad_fn is MulBackward0, where
PyTorch's fused kernel for dim 0 or the last dim records WeightNormInterfaceBackward0).
"""
import warnings

from ..parameter import Parameter

__all__ = ["WeightNorm", "weight_norm", "remove_weight_norm"]


def norm_except_dim(v, pow, dim):
    """The `pow`-norm of `v` over every dimension but `dim` (keeping it; all of them for -1)."""
    if dim == -1:
        return v.norm(pow)
    if dim == 0:
        return v.contiguous().view(v.shape[0], -1).norm(pow, 1).view(
            (v.shape[0],) + (1,) * (v.ndim - 1))
    if dim == v.ndim - 1:
        return v.contiguous().view(-1, v.shape[-1]).norm(pow, 0).view(
            (1,) * (v.ndim - 1) + (v.shape[-1],))
    return norm_except_dim(v.transpose(0, dim), pow, 0).transpose(0, dim)


def _forward_pre_hooks(module):
    """The registrations of `module`'s forward pre-hooks (a list; empty without hooks)."""
    return [] if module._hooks is None else module._hooks.forward_pre


class WeightNorm:
    def __init__(self, name, dim):
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module):
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return v * (g / norm_except_dim(v, 2, self.dim))

    @staticmethod
    def apply(module, name, dim):
        warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of "
                      "`torch.nn.utils.parametrizations.weight_norm`.", FutureWarning,
                      stacklevel=3)
        for entry in _forward_pre_hooks(module):
            if isinstance(entry.fn, WeightNorm) and entry.fn.name == name:
                raise RuntimeError(f"Cannot register two weight_norm hooks on the same parameter "
                                   f"{name}")
        fn = WeightNorm(name, dim)
        weight = getattr(module, name)
        del module._parameters[name]
        module.register_parameter(name + "_g",
                                  Parameter(norm_except_dim(weight, 2, fn.dim).data))
        module.register_parameter(name + "_v", Parameter(weight.data))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module):
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.data))

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module, name="weight", dim=0):
    """Reparameterize `module.<name>` as `<name>_g * <name>_v / ||<name>_v||`, the norm over
    every dimension but `dim` (over all of them for dim=None)."""
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module, name="weight"):
    """Undo weight_norm: `module.<name>` a Parameter again, with the weight's current value."""
    hooks = _forward_pre_hooks(module)
    for index, entry in enumerate(hooks):
        if isinstance(entry.fn, WeightNorm) and entry.fn.name == name:
            entry.fn.remove(module)
            del hooks[index]
            return module
    raise ValueError(f"weight_norm of '{name}' not found in {module}")
