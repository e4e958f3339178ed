"""nn.Module: the container that registers parameters, buffers and submodules."""
from collections import OrderedDict, namedtuple

import numpy as np

from .._core import tracing as _tracing
from .._core.dtype import as_dtype, dtype as _dtype
from .._core.mode import run_pending
from ..autograd.engine import clear_grads
from .._tensor import device as _device
from .._tensor.tensor import Tensor
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer. Assigning a Parameter, a Module or a registered buffer to an
    attribute registers it (in insertion order, which is the order of `parameters()` and of
    `state_dict()`, as in PyTorch)."""

    training = True

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  '"forward" function')

    def __call__(self, *args, **kwargs):
        if _tracing.current is not None:
            _tracing.current.module(self)
        return self.forward(*args, **kwargs)

    # --- registration -------------------------------------------------------------------

    def _registries(self):
        registries = self.__dict__.get("_parameters")
        if registries is None:
            raise AttributeError("cannot assign parameters, buffers or modules before "
                                 "Module.__init__() call")
        return self._parameters, self._buffers, self._modules

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)) or name in self.__dict__.get("_parameters", ()) \
                or name in self.__dict__.get("_buffers", ()) or name in self.__dict__.get("_modules", ()):
            parameters, buffers, modules = self._registries()
            if isinstance(value, Parameter):
                self._forget(name)
                parameters[name] = value
            elif isinstance(value, Module):
                # Replacing a submodule (model.fc = nn.Linear(...)) re-registers it.
                self._forget(name)
                modules[name] = value
            elif name in parameters:
                if value is not None:
                    raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                    "(nn.Parameter or None expected)")
                parameters[name] = None
            elif name in modules:
                if value is not None:
                    raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                    f"'{name}' (nn.Module or None expected)")
                modules[name] = None
            else:
                if value is not None and not isinstance(value, Tensor):
                    raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                    "(Tensor or None expected)")
                buffers[name] = value
            return
        object.__setattr__(self, name, value)

    def _forget(self, name):
        for registry in self._registries():
            registry.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: registered things live in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in self._registries():
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(nn.Parameter or None required)")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(Tensor or None required)")
        self._forget(name)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        module = self
        for name in target.split(".") if target else ():
            module = module._modules[name]
        return module

    # --- traversal ----------------------------------------------------------------------

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name,
                                                remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    # --- state ----------------------------------------------------------------------------

    def _state_items(self):
        """(dotted name, tensor) for every parameter and persistent buffer, in state order."""
        for prefix, module in self.named_modules(remove_duplicate=False):
            dot = prefix + "." if prefix else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, param
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent_buffers:
                    yield dot + name, buffer

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name; detached tensors that share
        memory with the module's own (as in PyTorch)."""
        if destination is None:
            destination = OrderedDict()
        for name, tensor in self._state_items():
            destination[prefix + name] = tensor if keep_vars else tensor.detach()
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy values (nbgrad tensors or NumPy arrays) into the module's parameters and
        buffers in place. With `strict`, missing and unexpected keys are errors; a wrong shape
        or a value of another type (a list, a float: PyTorch refuses them too) is always one.
        Returns (missing_keys, unexpected_keys)."""
        own = OrderedDict(self._state_items())
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        updates = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if isinstance(value, Tensor):
                array = value._data
            elif isinstance(value, np.ndarray):
                array = value
            else:
                errors.append(f'While copying the parameter named "{key}", expected nbgrad.Tensor '
                              f"or Tensor-like object (a NumPy array) from checkpoint but "
                              f"received {type(value)}")
                continue
            if array.shape != target._data.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{_size_repr(array.shape)} from checkpoint, the shape in current "
                              f"model is {_size_repr(target._data.shape)}.")
                continue
            updates.append((target, array))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                                 f"{', '.join(repr_key(k) for k in unexpected)}. ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                                 f"{', '.join(repr_key(k) for k in missing)}. ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        # Nothing is written unless every entry is valid.
        run_pending()  # deferred ops read the values as they are now
        for target, array in updates:
            np.copyto(target._data, array, casting="unsafe")
            target._version_counter[0] += 1
        return IncompatibleKeys(missing, unexpected)

    # --- modes and bulk changes -----------------------------------------------------------

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        clear_grads(self.parameters(), set_to_none)

    def apply(self, fn):
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def _cast(self, np_dtype):
        run_pending()  # deferred ops read the arrays this replaces
        for tensor in list(self.parameters()) + list(self.buffers()):
            if tensor._data.dtype.kind == "f":
                tensor._data = tensor._data.astype(np_dtype)
        return self

    def float(self):
        return self._cast(np.float32)

    def double(self):
        return self._cast(np.float64)

    def to(self, *args, device=None, dtype=None, non_blocking=False):
        """`to(device)`, `to(dtype)`, `to(device, dtype)`, `to(tensor)`: only CPU devices
        (others raise PyTorch's error for a missing backend); a floating dtype casts the
        floating parameters and buffers."""
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif isinstance(arg, _dtype):
                dtype = arg
            else:
                device = arg
        _device.checked(device, creating=False)
        if dtype is not None:
            dtype = as_dtype(dtype)
            if not dtype.is_floating_point:
                raise TypeError(f"nn.Module.to only accepts floating point or complex dtypes, but "
                                f"got desired dtype=torch.{dtype.name}")
            self._cast(dtype.np)
        return self

    def cpu(self):
        return self

    def cuda(self, device=None):
        _device.checked("cuda" if device is None else device, creating=False)

    # --- repr -----------------------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def repr_key(key):
    return f'"{key}"'


def _size_repr(shape):
    return f"nbgrad.Size({list(shape)})"
