"""The Optimizer base class: parameter groups, zero_grad, state_dict/load_state_dict, and the
per-parameter loop that hands each parameter's arrays to one njit update kernel."""
import copy

import numpy as np

from .. import _tracing
from ..autograd.engine import clear_grads
from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for param in group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        clear_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                # NOTE: a frozen parameter (requires_grad=False) is skipped even if it still
                # holds an old .grad; PyTorch would update it.
                if param.grad is None or not param._requires_grad:
                    continue
                data = _flat(param)
                grad = np.ascontiguousarray(param.grad._data, dtype=data.dtype).reshape(-1)
                kernel, extras = self.kernel_arguments(param, group)
                if _tracing.current is not None:
                    _tracing.current.update(self, group, param, kernel, extras)
                kernel(data, grad, *extras)
                # PyTorch counts an optimizer step as an in-place write to the parameter.
                param._version_counter[0] += 1
        return loss

    def kernel_arguments(self, param, group):
        """(update kernel, its arguments after the parameter and gradient), creating the
        parameter's state on first use. Fused steps call this again on every call, so the
        learning rate and step counts are read at run time, never baked in."""
        state = self.state.get(param)
        if state is None:
            state = self.state[param] = self._init_state(param, group)
        return self._kernel_arguments(param._data, state, group)

    def _init_state(self, param, group):
        raise NotImplementedError

    def _kernel_arguments(self, data, state, group):
        raise NotImplementedError

    # --- state_dict -----------------------------------------------------------------------

    def state_dict(self):
        """PyTorch's layout: parameters are numbered in group order; `state` maps those numbers
        to each parameter's state, `param_groups` holds the options and the numbers."""
        index = {}
        groups = []
        for group in self.param_groups:
            numbers = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {index[id(p)]: value for p, value in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for own, saved in zip(self.param_groups, groups):
            if len(own["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        by_number = {}
        for own, saved in zip(self.param_groups, groups):
            by_number.update(zip(saved["params"], own["params"]))
        self.state = {}
        for number, value in state_dict["state"].items():
            param = by_number[int(number)]
            self.state[param] = {key: _state_value(v, param) for key, v in value.items()}
        for own, saved in zip(self.param_groups, groups):
            own.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


def _flat(param):
    """The parameter's memory as a 1-D array the kernel writes into."""
    if not param._data.flags.c_contiguous:
        # NOTE: a non-contiguous parameter gets its own contiguous copy (views of the old
        # array stop seeing updates); nbgrad's layers never create one.
        param._data = np.ascontiguousarray(param._data)
    return param._data.reshape(-1)


def _state_value(value, param):
    """A copy of a saved state entry: arrays and tensors become nbgrad tensors."""
    if isinstance(value, Tensor):
        return Tensor._wrap(value._data.copy())
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return Tensor._wrap(np.array(value))
    return copy.deepcopy(value)


def reject_unsupported(owner, **flags):
    """Raise for PyTorch options that change an optimizer's math and nbgrad does not have.

    NOTE: `foreach` and `fused` are not checked: in PyTorch they pick an implementation
    strategy with the same results, and every nbgrad update is already one fused kernel.
    """
    for name, value in flags.items():
        if value:
            raise NotImplementedError(f"{owner}({name}=True) is not supported by nbgrad")
