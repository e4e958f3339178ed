"""Custom differentiable functions (`torch.autograd.Function`): a user's `forward` and
`backward`, recorded as one graph node that the ordinary engine runs.

As in PyTorch, the ctx a forward gets is the grad_fn node itself (a `<Name>Backward` class
made per Function); its `apply` calls the user's `backward` with Tensors, checks what comes
back, and hands the engine arrays, like a primitive's VJP.
"""
import inspect

import numpy as np

from .._core import mode
from ..ops import gradients
from . import anomaly_mode, grad_mode, profiler
from .graph import Node, OutputSlot, edge, modified_error, sequence
from .profiler import state as _profiling


def _is_tensor(value):
    # NOTE: this layer is below the Tensor class and cannot import it: a Tensor is what has
    # autograd's attributes.
    return hasattr(value, "_version_counter") and hasattr(value, "_requires_grad")


def _expandable(shape, to):
    """Whether `shape` broadcasts to `to`."""
    try:
        return np.broadcast_shapes(shape, to) == to
    except ValueError:
        return False


class FunctionCtx:
    """What `forward` (or `setup_context`) tells `backward` through `ctx`."""

    def save_for_backward(self, *tensors):
        for tensor in tensors:
            if tensor is not None and not _is_tensor(tensor):
                raise TypeError("save_for_backward can only save variables, but argument "
                                f"{tensors.index(tensor)} is of type {type(tensor).__name__}")
        self.to_save = tensors

    def mark_dirty(self, *args):
        self.dirty_tensors = args

    def mark_non_differentiable(self, *args):
        self.non_differentiable = args

    def set_materialize_grads(self, value):
        self.materialize_grads = value


class BackwardCFunction(Node, FunctionCtx):
    """The grad_fn node of a custom Function's call (one subclass per Function)."""

    _forward_cls = None

    @property
    def saved_tensors(self):
        self._check_saved()
        return tuple(self.saved)

    def _raise_modified(self, i, current, version):
        tensor = self.saved[i]
        raise modified_error(tensor._data, tensor.grad_fn, current, version)

    def apply(self, grad):
        """The gradient array of each forward argument (None where none is needed), from the
        user's backward called on the gradients of the differentiable outputs."""
        started = _profiling.enabled and profiler.clock()
        grads = [None if g is None else gradients.fitted(g._data, *meta)
                 for g, meta in zip(self._user_gradients(grad, self._wrap), self.input_meta)]
        if started:
            profiler.vjp_ran(self, grad, started)
            profiler.node_ran(self, started)
        return grads

    def apply_with_graph(self, grad):
        """`apply` for create_graph=True (the engine's sweep on Tensors): the user's backward
        runs with grad mode on, as PyTorch's, so its ops are recorded, and its gradients come
        back as Tensors, fitted to the inputs by recorded ops."""
        return [None if g is None else gradients.fitted_tensor(g, *meta)
                for g, meta in zip(self._user_gradients(grad, _same), self.input_meta)]

    def _user_gradients(self, grad, as_tensor):
        """Per forward argument, the gradient Tensor the user's backward returned for it
        (checked as PyTorch checks it), or None where none is needed; `as_tensor` makes a
        Tensor of an arriving gradient."""
        if self._output_slots is None:
            arrived = {self._differentiable_outputs[0]: grad}
        else:
            arrived, self._slot_grads = self._slot_grads, {}
        grads = []
        for k, meta in enumerate(self._outputs):
            if k in arrived:
                grads.append(as_tensor(arrived[k]))
            elif meta is not None and self.materialize_grads:
                grads.append(self._wrap(np.zeros(*meta)))
            else:
                grads.append(None)
        result = self._forward_cls.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        name = type(self).__name__
        expected = len(self.needs)
        if len(result) != expected:
            if len(result) > expected and all(g is None for g in result[expected:]):
                result = result[:expected]
            else:
                raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                                   f"(expected {expected}, got {len(result)})")
        checked = []
        for i, g in enumerate(result):
            meta = self.input_meta[i]
            if g is None:
                checked.append(None)
                continue
            if meta is None:
                raise RuntimeError(f"function {name} returned a gradient different than None "
                                   f"at position {i + 1}, but the corresponding forward input "
                                   "was not a Variable")
            if not _is_tensor(g):
                raise RuntimeError(f"expected Variable or None (got {type(g).__name__})")
            if not self.needs[i]:
                checked.append(None)
                continue
            shape = tuple(g.shape)
            # As PyTorch: a gradient the input broadcasts to is summed to its shape.
            if shape != meta[0] and not _expandable(meta[0], shape):
                raise RuntimeError(f"Function {name} returned an invalid gradient at index "
                                   f"{i} - got {list(shape)} but expected shape "
                                   f"compatible with {list(meta[0])}")
            checked.append(g)
        return checked


def _same(tensor):
    return tensor


class FunctionMeta(type):
    """Makes each Function's backward node class, `<Name>Backward`."""

    def __init__(cls, name, bases, attrs):
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,),
                                 {"_forward_cls": cls})
        super().__init__(name, bases, attrs)


class Function(metaclass=FunctionMeta):
    """Base of a custom differentiable function: subclass it with static `forward` and
    `backward` (and optionally `setup_context`), call it as `MyFunction.apply(...)`."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            "Legacy autograd function with non-static forward method is deprecated. Please use "
            "new-style autograd function with static forward method. (Example: "
            "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)")

    @staticmethod
    def forward(*args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward "
                                  "mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        # NOTE: no graph break: under nbgrad.compile the user's forward and backward are
        # traced like any code of the step, so a Function made of ops that trace fuses, and
        # one that reads a value (`.item()`, `float(t)`), writes by index outside autograd
        # (MyReLU's `grad_input[input < 0] = 0`) or calls an op without a fused rule breaks
        # the graph there, with the tracer's one warning.
        # Deferred ops the forward reads (or writes in place) run first.
        mode.run_pending()
        separate_setup = cls.setup_context is not Function.setup_context
        if separate_setup:
            # As PyTorch: the node and setup_context see the arguments with forward's
            # defaults filled in.
            bound = inspect.signature(cls.forward).bind(*args, **kwargs)
            bound.apply_defaults()
            args, kwargs = bound.args, bound.kwargs
        started = _profiling.enabled and profiler.clock()
        ctx = _new_ctx(cls._backward_cls, args)
        previous = grad_mode.state.enabled
        grad_mode.state.enabled = False
        try:
            if separate_setup:
                output = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args, **kwargs)
        finally:
            grad_mode.state.enabled = previous
        needs_grad = previous and any(ctx.needs_input_grad)
        output = _finish(ctx, args, output, needs_grad)
        if started:
            profiler.function_ran(cls.__name__, started)
        return output


def _new_ctx(backward_cls, args):
    """The node of a call of a Function on `args`, linked to where their gradients go."""
    ctx = backward_cls()
    ctx.prim = ctx.params = ctx._pre_hooks = ctx._retained = None
    ctx.sequence_nr = next(sequence)
    ctx.saved = ctx._saved_versions = ()
    ctx.to_save = ctx.dirty_tensors = ctx.non_differentiable = ()
    ctx.materialize_grads = True
    ctx.needs = [_is_tensor(a) and a._requires_grad for a in args]
    ctx.needs_input_grad = tuple(ctx.needs)
    ctx.children = [edge(a) if need else None for a, need in zip(args, ctx.needs)]
    ctx.input_meta = [(a._data.shape, a._data.dtype) if _is_tensor(a) else None for a in args]
    if anomaly_mode.state.enabled:
        anomaly_mode.record(ctx)  # the forward traceback, as graph.new_node keeps it
    return ctx


def _finish(ctx, args, output, needs_grad):
    """Link the outputs of the forward to node `ctx` (when a gradient is needed), and keep
    what it saved with their versions; the output `apply` returns."""
    single = not isinstance(output, tuple)
    outputs = (output,) if single else output
    if needs_grad:
        outputs = tuple(_alias_if_input(t, args, ctx.dirty_tensors) for t in outputs)
    for tensor in ctx.dirty_tensors:
        if tensor.grad_fn is None and tensor._requires_grad:
            raise RuntimeError("a leaf Variable that requires grad has been used in an "
                               "in-place operation.")
        # As PyTorch: marking a tensor dirty is itself a change of its version.
        tensor._version_counter[0] += 1
    non_differentiable = {id(t) for t in ctx.non_differentiable}
    ctx._outputs = [(t._data.shape, t._data.dtype) if _is_tensor(t) else None for t in outputs]
    differentiable = [k for k, t in enumerate(outputs)
                      if _is_tensor(t) and id(t) not in non_differentiable
                      and t._data.dtype.kind == "f"]
    ctx._differentiable_outputs = differentiable
    if needs_grad and differentiable:
        ctx._wrap = outputs[differentiable[0]]._new_plain
        for k in differentiable:
            outputs[k].grad_fn = ctx
            outputs[k]._requires_grad = True
        if len(differentiable) > 1:
            # Each output's gradient arrives at its own slot (graph.OutputSlot).
            ctx._output_slots = {id(outputs[k]): OutputSlot(ctx, k) for k in differentiable}
            ctx._slot_grads = {}
    ctx.saved = list(ctx.to_save)
    ctx._saved_versions = [(i, t._version_counter, t._version_counter[0])
                           for i, t in enumerate(ctx.saved) if t is not None]
    del ctx.to_save  # `saved` alone holds them: a backward frees them there
    return outputs[0] if single else outputs


def _alias_if_input(output, args, dirty):
    """As PyTorch: an input returned as it is (not marked dirty) comes back as a new tensor
    on the same data and version counter, so the input keeps its own grad_fn."""
    if not _is_tensor(output) or not any(output is a for a in args) or \
            any(output is d for d in dirty):
        return output
    alias = output._new_plain(output._data)
    alias._version_counter = output._version_counter
    return alias


__all__ = ["Function", "FunctionCtx"]
