"""nn.Module: the container that registers parameters, buffers and submodules."""
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from .._core import tracing as _tracing
from .._core.dtype import HALF, as_dtype, bfloat16, dtype as _dtype, float16, float32, float64
from .._core.mode import run_pending
from ..autograd.engine import clear_grads
from ..autograd.function import Function
from ..autograd.graph import RemovableHandle
from ..autograd.grad_mode import is_grad_enabled, no_grad
from .._tensor import device as _device
from .._tensor.factories import zeros
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
        if self._hooks is None:
            return self.forward(*args, **kwargs)
        return _call_with_hooks(self, self._hooks, args, kwargs)

    # --- hooks (PyTorch's order: forward pre-hooks, forward, forward hooks; backward hooks
    # through identity nodes on the inputs and the output, as PyTorch's BackwardHook) -------
    # `_hooks` is None until a hook is registered: a call without hooks checks one attribute.
    _hooks = None

    def _add_hook(self, kind, entry, prepend):
        if self._hooks is None:
            object.__setattr__(self, "_hooks", _Hooks())
        hooks = getattr(self._hooks, kind)
        if prepend:
            hooks.insert(0, entry)
        else:
            hooks.append(entry)
        return RemovableHandle(hooks, entry)

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        return self._add_hook("forward_pre", _Hook(hook, with_kwargs), prepend)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False,
                              always_call=False):
        return self._add_hook("forward", _Hook(hook, with_kwargs, always_call), prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        return self._add_hook("backward_pre", _Hook(hook), prepend)

    def register_full_backward_hook(self, hook, prepend=False):
        return self._add_hook("backward", _Hook(hook), prepend)

    # --- registration -------------------------------------------------------------------
    # As PyTorch's: assigning to a registered name keeps its place in the registry (so the
    # order of `named_parameters()` and `state_dict()` stays PyTorch's); a name moves to the
    # end only when it changes registry (a Parameter where a buffer was) or after `del`.

    def __setattr__(self, name, value):
        parameters = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if parameters is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._remove_other_registrations(name, keep=parameters)
            self.register_parameter(name, value)
        elif parameters is not None and name in parameters:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as parameter '{name}' "
                                "(nbgrad.nn.Parameter or None expected)")
            parameters[name] = None
        else:
            modules = self.__dict__.get("_modules")
            if isinstance(value, Module):
                if modules is None:
                    raise AttributeError("cannot assign module before Module.__init__() call")
                self._remove_other_registrations(name, keep=modules)
                modules[name] = value
            elif modules is not None and name in modules:
                if value is not None:
                    raise TypeError(f"cannot assign '{_typename(value)}' as child module "
                                    f"'{name}' (nbgrad.nn.Module or None expected)")
                modules[name] = None
            elif name in self.__dict__.get("_buffers", ()):
                if value is not None and not isinstance(value, Tensor):
                    raise TypeError(f"cannot assign '{_typename(value)}' as buffer '{name}' "
                                    "(nbgrad.Tensor or None expected)")
                self._buffers[name] = value
            else:
                object.__setattr__(self, name, value)

    def _remove_other_registrations(self, name, keep):
        """Forget `name` as a plain attribute and in every registry but `keep`."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # Only called when normal lookup fails: registered things live in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def _check_name(self, kind, name, registry):
        """PyTorch's checks of a name to register in `registry` (a dict of this module)."""
        if registry is None:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {_typename(name)}")
        if "." in name:
            raise KeyError(f"{kind} name can't contain \".\""
                           + (f", got: {name}" if kind == "module" else ""))
        if name == "":
            raise KeyError(f"{kind} name can't be empty string \"\"")
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name, param):
        self._check_name("parameter", name, self.__dict__.get("_parameters"))
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                            "(nbgrad.nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        self._check_name("buffer", name, self.__dict__.get("_buffers"))
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_typename(tensor)}' object to buffer '{name}' "
                            "(nbgrad Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        self._check_name("module", name, self.__dict__.get("_modules"))
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        module = self
        for name in target.split(".") if target else ():
            if not hasattr(module, name):
                raise AttributeError(f"{type(module).__name__} has no attribute `{name}`")
            module = getattr(module, name)
            if not isinstance(module, Module):
                raise AttributeError(f"`{name}` is not an nn.Module")
        return module

    def _get_registered(self, target, registry, kind):
        """get_parameter/get_buffer: the entry of `registry` named by dotted `target`."""
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if not hasattr(module, name):
            raise AttributeError(f"{type(module).__name__} has no attribute `{name}`")
        if name not in getattr(module, registry):
            raise AttributeError(f"`{name}` is not {kind}")
        return getattr(module, name)

    def get_parameter(self, target):
        return self._get_registered(target, "_parameters", "an nn.Parameter")

    def get_buffer(self, target):
        return self._get_registered(target, "_buffers", "a buffer")

    def __dir__(self):
        # (As PyTorch: the registered names that are identifiers too, for tab completion.)
        registered = set(self._parameters) | set(self._buffers) | set(self._modules)
        return sorted(set(super().__dir__()) | {name for name in registered
                                                if not name[:1].isdigit()})

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
        state_dict = self._with_older_state_filled(state_dict)
        own = OrderedDict(self._state_items())
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        updates = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, (Tensor, np.ndarray)):
                errors.append(f'While copying the parameter named "{key}", expected nbgrad.Tensor '
                              f"or Tensor-like object (a NumPy array) from checkpoint but "
                              f"received {type(value)}")
                continue
            shape = tuple(value.shape)
            if shape != target._data.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{_size_repr(shape)} from checkpoint, the shape in current "
                              f"model is {_size_repr(target._data.shape)}.")
                continue
            updates.append((target, value))
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
        # Nothing is written unless every entry is valid. Then as PyTorch: copy_ under
        # no_grad, which casts as its casts do (float64 to float16 through float32).
        with no_grad():
            for target, value in updates:
                target.copy_(value)
        return IncompatibleKeys(missing, unexpected)

    def _with_older_state_filled(self, state_dict):
        """`state_dict` with what each submodule fills in for a state dict of an older
        version of it (`_older_state_entries`), as PyTorch's `_load_from_state_dict` does:
        its version, per module, is in the state dict's `_metadata` (torch.save keeps it),
        and a state dict without one is of the oldest version."""
        metadata = getattr(state_dict, "_metadata", None) or {}
        filled = None
        for name, module in self.named_modules():
            version = metadata.get(name, {}).get("version")
            for key, value in module._older_state_entries(name + "." if name else "", version):
                if key not in state_dict:
                    filled = filled if filled is not None else OrderedDict(state_dict)
                    filled[key] = value
        return state_dict if filled is None else filled

    def _older_state_entries(self, prefix, version):
        """(key, value) of entries missing from a state dict of `version` (None: unknown)
        of this module that it fills in with defaults; none for most modules."""
        return ()

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

    def _cast(self, cast):
        """Apply `cast` (a tensor -> the tensor in another dtype, or itself) to every parameter
        and its grad, in place (`param.data`, as PyTorch: optimizers keep their parameters),
        and to every buffer, which the result replaces (as PyTorch). Every result is made
        before anything changes, so an error leaves the module as it was.

        NOTE: nbgrad computes no gradients in float16 or bfloat16. A parameter that requires
        grad and is cast to one of them has the requirement set aside, not refused: that is
        what `model.half()` before inference needs (a frozen half model; training it fails
        at `backward()`, which finds nothing that requires grad), and a cast back to float32
        or float64 (`model.float()`) makes it require grad again, as it does in PyTorch. A
        buffer that requires grad gets the cast's own error in float16 (outside no_grad)."""
        run_pending()  # deferred ops read the arrays this replaces
        parameters = []
        for param in self.parameters():
            data = cast(param.data)
            if data.dtype == param.dtype:
                continue
            if param._wants_grad() and not data.dtype.is_floating_point:
                raise RuntimeError("data set to a tensor that requires gradients must be "
                                   "floating point or complex dtype")
            grad = None if param.grad is None else cast(param.grad.data)
            parameters.append((param, data, grad))
        buffers = [(module._buffers, name, cast(buffer)) for module in self.modules()
                   for name, buffer in module._buffers.items() if buffer is not None]
        for param, data, grad in parameters:
            wants_grad = param._wants_grad()
            half = data.dtype in HALF
            param.requires_grad = False  # before its data is half, which cannot require grad
            param.data = data
            if grad is not None:
                param.grad.data = grad
            param.requires_grad = wants_grad and not half
            param._grad_set_aside = wants_grad and half
        for registry, name, buffer in buffers:
            registry[name] = buffer
        return self

    def _cast_floating(self, dtype):
        return self._cast(lambda tensor: tensor.to(dtype) if tensor.is_floating_point()
                          else tensor)

    def half(self):
        return self._cast_floating(float16)

    def bfloat16(self):
        return self._cast_floating(bfloat16)

    def float(self):
        return self._cast_floating(float32)

    def double(self):
        return self._cast_floating(float64)

    def type(self, dst_type):
        """Every parameter and buffer, integer ones too, cast to `dst_type` (a dtype or a
        legacy name such as "torch.DoubleTensor"), as PyTorch's `Module.type`."""
        return self._cast(lambda tensor: tensor.type(dst_type))

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
            self._cast_floating(dtype)
        return self

    def cpu(self):
        return self

    def cuda(self, device=None):
        _device.checked("cuda" if device is None else device, creating=False)

    # --- repr -----------------------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        # PyTorch's layout: a one-line extra_repr without children stays on the line; else
        # one line per extra_repr line and per child, indented by two.
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indented(repr(module), 2)}"
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        if len(extra_lines) == 1 and not child_lines:
            return f"{type(self).__name__}({extra})"
        if not lines:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def registered_weight(module):
    """`module.weight` read from the parameter registry (a parameter is found through
    Module.__getattr__ only after a failed lookup, which costs more than a layer's call), or
    the attribute that stands for it after nn.utils.weight_norm (a tensor it computes)."""
    parameters = module._parameters
    return parameters["weight"] if "weight" in parameters else module.weight


class _Hooks:
    """A module's registered hooks, each list in calling order."""

    def __init__(self):
        self.forward_pre, self.forward, self.backward_pre, self.backward = [], [], [], []


class _Hook:
    """One registration (its own object, so that its handle removes exactly it)."""

    def __init__(self, fn, with_kwargs=False, always_call=False):
        self.fn, self.with_kwargs, self.always_call = fn, with_kwargs, always_call


def _call_with_hooks(module, hooks, args, kwargs):
    """Module.__call__ of a module with hooks, in PyTorch's order."""
    # A trace would run a hook's Python (printing, keeping activations) only once.
    _tracing.graph_break(f"{type(module).__name__} has hooks, which run Python code")
    for hook in list(hooks.forward_pre):
        if hook.with_kwargs:
            result = hook.fn(module, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError("forward pre-hook must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {result}.")
                args, kwargs = result
        else:
            result = hook.fn(module, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
    backward = None
    if (hooks.backward or hooks.backward_pre) and is_grad_enabled():
        backward = _BackwardHooks(module, hooks, args)
        args = backward.wrap_inputs(args)
    called = []
    try:
        output = module.forward(*args, **kwargs)
        for hook in list(hooks.forward):
            called.append(hook)
            result = (hook.fn(module, args, kwargs, output) if hook.with_kwargs
                      else hook.fn(module, args, output))
            if result is not None:
                output = result
    except Exception:
        # As PyTorch: hooks registered with always_call=True run even when forward fails.
        for hook in hooks.forward:
            if hook.always_call and hook not in called:
                if hook.with_kwargs:
                    hook.fn(module, args, kwargs, None)
                else:
                    hook.fn(module, args, None)
        raise
    if backward is not None:
        output = backward.wrap_output(output)
    return output


class BackwardHookFunction(Function):
    """Identity on the tensors given, whose backward hands their gradients to its node's
    `on_grad` (what that returns flows on): PyTorch's node between a module with backward
    hooks and the graph around it."""

    @staticmethod
    def forward(ctx, *tensors):
        # As PyTorch's hooks: an output no gradient reached shows as None, not zeros.
        ctx.set_materialize_grads(False)
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return ctx.on_grad(grads)

    @classmethod
    def hooked(cls, tensors, on_grad):
        # NOTE: set on the node, not passed to forward: a non-tensor argument of apply would
        # add an entry to the node's next_functions, which PyTorch's node does not have.
        out = cls.apply(*tensors)
        out[0].grad_fn.on_grad = on_grad
        return out


def _through_hook_node(values, on_grad):
    """`values` with its tensors that require grad passed through one BackwardHookFunction
    node, and their positions."""
    positions = [i for i, v in enumerate(values) if isinstance(v, Tensor) and v.requires_grad]
    values = list(values)
    if positions:
        hooked = BackwardHookFunction.hooked([values[i] for i in positions], on_grad)
        for i, tensor in zip(positions, hooked):
            values[i] = tensor
    return tuple(values), positions


class _BackwardHooks:
    """The backward hooks of one module call: backward pre-hooks when the gradients of the
    outputs arrive, backward hooks when the gradients of the inputs are known."""

    def __init__(self, module, hooks, args):
        self.module, self.hooks = module, hooks
        self.n_inputs = len(args)
        self.input_positions = []
        # As PyTorch: once an input requires grad, the other tensor inputs' gradients are
        # zeros (its identity node materializes them); non-tensor arguments' are None.
        self.others = [(a.shape, a.dtype) if isinstance(a, Tensor) else None for a in args]
        self.grad_outputs = None

    def wrap_inputs(self, args):
        args, self.input_positions = _through_hook_node(args, self._input_grads)
        return args

    def wrap_output(self, output):
        single = isinstance(output, Tensor)
        outputs = (output,) if single else output
        if not (isinstance(outputs, tuple) and all(isinstance(o, Tensor) for o in outputs)):
            raise NotImplementedError(
                f"{type(self.module).__name__}: a full backward hook on a module whose output is "
                "not a Tensor or a tuple of Tensors is not supported by nbgrad")
        self.n_outputs = len(outputs)
        outputs, self.output_positions = _through_hook_node(outputs, self._output_grads)
        return outputs[0] if single else outputs

    def _output_grads(self, grads):
        arrived = dict(zip(self.output_positions, grads))
        grad_outputs = tuple(arrived.get(k) for k in range(self.n_outputs))
        for hook in list(self.hooks.backward_pre):
            result = hook.fn(self.module, grad_outputs)
            if result is not None:
                if len(result) != self.n_outputs:
                    raise RuntimeError("Backward pre hook returned an invalid number of "
                                       f"grad_output, got {len(result)}, but expected "
                                       f"{self.n_outputs}")
                grad_outputs = tuple(result)
        self.grad_outputs = grad_outputs
        if not self.input_positions and self.hooks.backward:
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients. See https://docs."
                          "pytorch.org/docs/main/generated/torch.nn.Module.html#torch.nn.Module."
                          "register_full_backward_hook for more details.", stacklevel=2)
            grad_inputs = (None,) * self.n_inputs
            for hook in list(self.hooks.backward):
                result = hook.fn(self.module, grad_inputs, grad_outputs)
                if result is not None and not (isinstance(result, tuple) and
                                               all(g is None for g in result)):
                    raise RuntimeError("Backward hook for Modules where no input requires "
                                       "gradient should always return None or None for all "
                                       "gradients.")
        return tuple(grad_outputs[k] for k in self.output_positions)

    def _input_grads(self, grads):
        arrived = dict(zip(self.input_positions, grads))
        grad_inputs = tuple(arrived[k] if k in arrived else other if other is None else
                            zeros(other[0], dtype=other[1])
                            for k, other in enumerate(self.others))
        for hook in list(self.hooks.backward):
            result = hook.fn(self.module, grad_inputs, self.grad_outputs)
            if result is not None:
                if len(result) != self.n_inputs:
                    raise RuntimeError("Backward hook returned an invalid number of grad_input, "
                                       f"got {len(result)}, but expected {self.n_inputs}")
                grad_inputs = tuple(result)
        return tuple(grad_inputs[k] for k in self.input_positions)


def _indented(text, spaces):
    """Every line of `text` but the first indented by `spaces`; blank lines stay empty
    (PyTorch's _addindent)."""
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line if line.strip() else "" for line in rest])


def _typename(value):
    """How PyTorch's messages name a value's type (torch.typename): a tensor by its legacy
    type name ("torch.FloatTensor"), anything else by its qualified class name."""
    if isinstance(value, Tensor):
        return value.type()
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def repr_key(key):
    return f'"{key}"'


def _size_repr(shape):
    return f"nbgrad.Size({list(shape)})"
