"""Watch one eager run of a step and record every array operation it performs.

The step really runs (so the first call's results are exactly eager's); the tracer only
listens to the hooks in `nbgrad._core.tracing`. Events (the named tuples below) name arrays
by identity; `codegen` turns them into one Numba function.
"""
import os
import traceback
from typing import NamedTuple

import numpy as np

from .._core import tracing as _tracing

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GraphBreak(Exception):
    """Raised (with `fullgraph=True`) when a step cannot be turned into one kernel."""


def user_line():
    """'file:line' of the innermost frame outside nbgrad (where the user's step is)."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno}"
    return "<unknown>"


class OpEvent(NamedTuple):
    """A primitive call: `out = prim.forward(*arrays, **params)` (`out` may be one of
    `arrays`, written in place), or the pair `out, extra = prim.forward_saving(...)`;
    `where` says where in the step it was called."""
    prim: object
    arrays: tuple
    params: dict
    out: object
    where: str


class VjpEvent(NamedTuple):
    """A node's VJP: `input_grads` (one per input, None where none is needed) from
    `output_grad`, as the VJP returned them, before the engine fits them to their inputs'
    shapes and dtypes (with OpEvents of nbgrad.ops.gradients)."""
    node: object  # a NodeRecord
    output_grad: object
    input_grads: tuple


class WriteEvent(NamedTuple):
    """`array[...] = value`: a number (zero_grad, fill_), or an array of `array`'s shape
    (the write-back of an in-place op: `p.sub_(lr * p.grad)`, `h.relu_()`)."""
    array: object
    value: object


class UpdateEvent(NamedTuple):
    """`optimizer` updates `param` from `grad` with its `state` tensors (None where absent)
    and run-time `scalars` (see `Optimizer.update_arguments`)."""
    optimizer: object
    group: dict
    param: object
    grad: object
    state: tuple
    scalars: tuple


class NodeRecord:
    """What a fused rule reads of a grad_fn node, kept past the engine freeing it."""

    def __init__(self, node):
        self.prim, self.params, self.needs = node.prim, node.params, node.needs
        self.saved, self.input_meta = node.saved, node.input_meta
        self.name = type(node).__name__


class Tracer:
    def __init__(self, args, fullgraph=False):
        self.events = []
        self.break_reason = None
        self.fullgraph = fullgraph
        tensors = [(i, a) for i, a in enumerate(args) if hasattr(a, "_data")]
        self.arg_positions = {id(t): i for i, t in tensors}
        self.arg_arrays = {id(t._data): i for i, t in tensors}
        # id(array) -> how to fetch it when the fused step runs: ("arg", i), ("data", tensor),
        # ("grad", tensor) or ("const", array).
        self.handles = {}
        self.created = set()
        self.keep_alive = []
        self.touched = {}          # tensor -> .grad-is-None when the step started
        self.modules = {}          # module -> .training when traced

    # --- bookkeeping ----------------------------------------------------------------------

    def _keep(self, *arrays):
        self.keep_alive.extend(a for a in arrays if a is not None)

    def _made(self, array):
        if array is not None:
            self.created.add(id(array))
            self._keep(array)

    def _seen(self, tensor):
        array = tensor._data
        if id(array) in self.created or id(array) in self.handles:
            return
        position = self.arg_positions.get(id(tensor))
        self.handles[id(array)] = ("arg", position) if position is not None else ("data", tensor)
        self._keep(array)

    def constant(self, array):
        """Register an array the step did not create and no tensor argument owns as fixed."""
        if id(array) not in self.created and id(array) not in self.handles:
            position = self.arg_arrays.get(id(array))
            self.handles[id(array)] = ("arg", position) if position is not None else ("const", array)
            self._keep(array)

    def touch(self, tensor, reads_grad=True):
        """Note a tensor whose .grad the step changes. Unless the step first drops the .grad
        (zero_grad), whether it had one when the call started is part of the guard."""
        if tensor not in self.touched:
            self.touched[tensor] = (tensor.grad is None) if reads_grad else None
        if tensor.grad is not None:
            array = tensor.grad._data
            if id(array) not in self.created and id(array) not in self.handles:
                self.handles[id(array)] = ("grad", tensor)
                self._keep(array)

    def graph_break(self, reason):
        if self.break_reason is None:
            self.break_reason = f"{reason} (at {user_line()})"
            if self.fullgraph:
                # Stop at the offending line, as PyTorch's fullgraph does, rather than after
                # the whole step has run eagerly.
                raise GraphBreak(f"nbgrad.compile(fullgraph=True): cannot fuse the step: "
                                 f"{self.break_reason}")

    # --- hooks called by the library ----------------------------------------------------------

    def op(self, prim, inputs, arrays, params, out, extra=None):
        if prim.fuse is None:
            self.graph_break(f"op '{prim.name}' has no fused rule")
            return
        # The code generator sizes buffers from the traced arrays; the row's shape/dtype
        # rule must describe them, or the fused rule would be emitting the wrong program.
        shape, dtype = prim.infer(*arrays, **params)
        if (tuple(shape), np.dtype(dtype)) != (out.shape, out.dtype):
            self.graph_break(f"op '{prim.name}': its shape rule gives {tuple(shape)} {dtype}, "
                             f"its forward {out.shape} {out.dtype}")
            return
        for tensor in inputs:
            self._seen(tensor)
        self._made(out)
        if extra is not None:
            self._made(extra)
            out = (out, extra)
        self.events.append(OpEvent(prim, arrays, params, out, user_line()))

    def array_op(self, prim, arrays, params, out):
        """A primitive call on arrays (the engine's own arithmetic, nbgrad.ops.gradients);
        `out` may be one of `arrays`, written in place."""
        for array in arrays:
            self.constant(array)
        if not any(out is array for array in arrays):
            self._made(out)
        self.events.append(OpEvent(prim, arrays, params, out, "in the backward engine"))

    def vjp(self, node, grad, grads):
        """Node `node`'s VJP made `grads` (one per input, None where none is needed) from
        `grad`, before the engine fits them to their inputs' shapes and dtypes."""
        if node.prim.fuse is None:
            self.graph_break(f"op '{node.prim.name}' has no fused rule")
            return
        self.constant(grad)
        for array in grads:
            if array is not grad:  # a gradient passed through unchanged is not made here
                self._made(array)
        self._keep(*node.saved)
        # The engine frees saved arrays after backward; the code generator needs them later.
        self.events.append(VjpEvent(NodeRecord(node), grad, grads))

    def write(self, tensor, array, value):
        """`array` (`tensor`'s data, or its .grad's) is overwritten with `value`."""
        if array is tensor._data:
            self._seen(tensor)
        else:
            self.touch(tensor)
        if isinstance(value, np.ndarray):
            self.constant(value)
        self.events.append(WriteEvent(array, value))

    def update(self, optimizer, group, param, grad, tensors, scalars):
        """`optimizer` updates `param` from `grad` with its state `tensors` (None where
        absent) and `scalars` (see `Optimizer.update_arguments`)."""
        self.touch(param)
        self._seen(param)
        self.events.append(UpdateEvent(optimizer, group, param, grad, tensors, scalars))

    def module(self, module):
        self.modules.setdefault(module, module.training)


class tracing:
    """Context manager that installs a tracer on `nbgrad._core.tracing.current`."""

    def __init__(self, tracer):
        self.tracer = tracer

    def __enter__(self):
        if _tracing.current is not None:
            raise RuntimeError("nbgrad.compile: a compiled step cannot call another compiled "
                               "step while it is being traced")
        _tracing.current = self.tracer
        return self.tracer

    def __exit__(self, *exc):
        _tracing.current = None
        return False
