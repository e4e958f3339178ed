"""The Optimizer base class: parameter groups, zero_grad, state_dict/load_state_dict, and the
per-parameter loop that runs the kernel generated from a subclass's `rule` (see `rule.py`)."""
import copy

import numpy as np

from .._core import compile_ahead, dtype as _dtype, tracing as _tracing
from .._core.mode import run_pending
from ..autograd.engine import clear_grads
from ..autograd.grad_mode import enable_grad
from .._tensor.tensor import Tensor


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
        rule = getattr(self, "rule", None)  # (LBFGS has none: its step runs ops)
        if rule is not None:
            # Its update kernel is needed only after a forward and a backward: time enough
            # for the compile helper. An optimizer whose kernel is not in the cache starts
            # the helper now: training on a cold cache, whose backward kernels it compiles next.
            compile_ahead.ask(COMPILE_UPDATE, type(self),
                              [_options_and_dtypes(group) for group in self.param_groups],
                              priority=compile_ahead.LAST,
                              start=not compile_ahead.in_cache(rule.kernel))

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
        """One update of every parameter that has a gradient: one call per parameter of the
        kernel generated from the optimizer's `rule`.

        NOTE: one call per group over all its parameters (a tuple of arrays) was measured
        slower here: Numba types a tuple argument in Python, element by element (4
        parameters: 6.2 us against 4.7 us for 4 calls).
        """
        self._opt_called = True  # for the schedulers' warning about the order of steps
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        kernel = self.rule.kernel
        states = len(self.rule.state)
        run_pending()  # deferred ops read the parameters as they are now
        tracer = _tracing.current
        for group in self.param_groups:
            for param in group["params"]:
                grad = param._grad
                # NOTE: a frozen parameter (requires_grad=False) is skipped even if it still
                # holds an old .grad; PyTorch would update it.
                if grad is None or not param._requires_grad:
                    continue
                data = _flat(param)
                tensors, scalars = self.update_arguments(param, group)
                grad = grad._data
                if tracer is not None:
                    tracer.update(self, group, param, grad, tensors, scalars)
                if grad.dtype != data.dtype or not grad.flags.c_contiguous:
                    grad = np.ascontiguousarray(grad, dtype=data.dtype)
                # State flattened (an empty stand-in where absent), counters as they are (0-d);
                # scalars as floats: ints or bools would compile another kernel signature.
                kernel(data, grad.reshape(-1),
                       *[data[:0] if t is None else t._data.reshape(-1) for t in tensors[:states]],
                       *[t._data for t in tensors[states:]], *map(float, scalars))
                # PyTorch counts an optimizer step as an in-place write to the parameter.
                param._version_counter[0] += 1
        return loss

    def update_arguments(self, param, group):
        """(state tensors, scalars) of `param`'s next update, creating its state on first use:
        the tensors of the rule's `state` (None where absent: the rule does not touch it
        then) and `counters`, and the values of its `scalars`. Fused steps call this on every
        call, so learning rates and state replaced by load_state_dict are read at run time."""
        state = self.state.get(param)
        if state is None:
            state = self.state[param] = self._init_state(param, group)
        return self._update_arguments(param, state, group)

    def _init_state(self, param, group):
        raise NotImplementedError

    def _update_arguments(self, param, state, group):
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
            self.state[param] = {key: self._state_value(key, v, param)
                                 for key, v in value.items()}
        for own, saved in zip(self.param_groups, groups):
            own.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})

    def _state_value(self, key, value, param):
        """A copy of a saved state entry; arrays and tensors become nbgrad tensors. As in
        PyTorch, a counter that is a number becomes a 0-d tensor (`counter`), a step tensor
        keeps its dtype and another counter (NAdam's mu_product) takes the parameter's, as
        the per-element state does, which must also have its shape: the update kernel
        indexes it like the parameter."""
        if isinstance(value, Tensor):
            value = value._data
        if key in self.rule.counters:
            if not isinstance(value, np.ndarray):
                return counter(float(value))
            if key == "step" or param._data.dtype.kind != "f":
                return Tensor._wrap(np.array(value))
            return Tensor._wrap(np.array(value, dtype=param._data.dtype))
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            return copy.deepcopy(value)
        if key not in self.rule.state:
            return Tensor._wrap(np.array(value))
        if value.shape != param._data.shape:
            raise ValueError(f"loaded state {key!r} has shape {tuple(value.shape)}, its "
                             f"parameter {tuple(param._data.shape)}")
        return Tensor._wrap(np.array(value, dtype=param._data.dtype))

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


COMPILE_UPDATE = "nbgrad.optim.optimizer:compile_update"


def _options_and_dtypes(group):
    options = {key: value for key, value in group.items() if key != "params"}
    return options, sorted({param._data.dtype.str for param in group["params"]})


def compile_update(optimizer_class, groups):
    """(In the compile helper.) One step of `optimizer_class` (pickled by reference) with the
    options of `groups` on a zero parameter of each of their dtypes: its update kernels."""
    param_groups = []
    for options, dtypes in groups:
        params = [Tensor._wrap(np.zeros(1, dtype), requires_grad=True) for dtype in dtypes]
        for param in params:
            param.grad = Tensor._wrap(np.zeros(1, param._data.dtype))
        param_groups.append(dict(options, params=params))
    optimizer_class(param_groups).step()


def _flat(param):
    """The parameter's memory as a 1-D array the kernel writes into."""
    if not param._data.flags.c_contiguous:
        # NOTE: a non-contiguous parameter gets its own contiguous copy (views of the old
        # array stop seeing updates); nbgrad's layers never create one.
        param._data = np.ascontiguousarray(param._data)
    return param._data.reshape(-1)


def reject_unsupported(owner, **flags):
    """Raise for PyTorch options that change an optimizer's math and nbgrad does not have.

    NOTE: `foreach` and `fused` are not checked: in PyTorch they pick an implementation
    strategy with the same results, and every nbgrad update is already one fused kernel.
    """
    for name, value in flags.items():
        if value:
            raise NotImplementedError(f"{owner}({name}=True) is not supported by nbgrad")


def zeros_like_param(param, value=0.0):
    """A per-element state tensor: `param`'s shape and dtype, filled with `value`."""
    return Tensor._wrap(np.full(param._data.shape, value, param._data.dtype))


def counter(value=0.0):
    """A new counter of a rule (Adam's step): a 0-d tensor of PyTorch's scalar dtype, float64
    under a float64 default dtype, else float32."""
    dtype = np.float64 if _dtype.get_default_dtype() is _dtype.float64 else np.float32
    return Tensor._wrap(np.array(value, dtype))


def check_options(**options):
    """PyTorch's ValueErrors for options out of range, in the order given: each must be >= 0
    (the learning rate and eps have their own wording), each of `betas` in [0, 1)."""
    for name, value in options.items():
        if name == "betas":
            for index, beta in enumerate(value):
                if not 0.0 <= beta < 1.0:
                    raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        elif not 0.0 <= value:
            label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {value}")
