"""Turn a traced step (a list of array events) into the source of one Numba function.

Each primitive's fused rule (`Primitive.fuse`) emits the statements for its forward and
VJP; this module emits the engine's own operations (gradient sums, copies, fills, casts,
summing a broadcast gradient back) and optimizer updates, and decides which arrays are
arguments (read from tensors at call time), preallocated buffers, or local views.
"""
import math
import re

import numpy as np

from ..ops.elementwise import _NUMBER
from ..ops.primitive import Unfusable


class Emitter:
    def __init__(self, tracer):
        self.tracer = tracer
        self.names = {}
        self.arguments = []          # (name, source); source: ("handle", h, array) | ("buffer", array) | ("extra", k)
        self.lines = []
        self.imports = {}
        self.preconditions = []      # (function, argument name): run in Python before each call
        self._count = 0

    def _new(self, prefix):
        self._count += 1
        return f"{prefix}{self._count}"

    # --- naming arrays ----------------------------------------------------------------------

    def ref(self, array):
        """The variable holding an input array (an argument if the step did not make it)."""
        name = self.names.get(id(array))
        if name is not None:
            return name
        handle = self.tracer.handles.get(id(array))
        if handle is None or id(array) in self.tracer.created:
            raise Unfusable(f"an array of shape {tuple(array.shape)} is used before the step makes it")
        if not array.flags.c_contiguous:
            raise Unfusable(f"a non-contiguous input of shape {tuple(array.shape)}")
        name = self._new("arg")
        self.arguments.append((name, ("handle", handle, array)))
        self.names[id(array)] = name
        return name

    def out(self, array):
        """The variable for an array the step writes: a buffer allocated once per specialization."""
        name = self.names.get(id(array))
        if name is None:
            if not array.flags.c_contiguous:
                raise Unfusable(f"a non-contiguous result of shape {tuple(array.shape)}")
            name = self._new("buf")
            self.arguments.append((name, ("buffer", array)))
            self.names[id(array)] = name
        return name

    def define(self, array, expression):
        """A local variable (a view) computed inside the fused function."""
        name = self._new("view")
        self.emit(f"{name} = {expression}")
        self.names[id(array)] = name
        return name

    def same(self, array, other):
        self.names[id(array)] = self.ref(other)

    def constant(self, array):
        """An array argument fixed for the specialization (e.g. default class weights)."""
        name = self._new("const")
        self.arguments.append((name, ("handle", ("const", array), array)))
        return name

    def extra(self, traced_value):
        """A run-time argument (an optimizer value recomputed before each call)."""
        name = self._new("run")
        self.arguments.append((name, ("extra", traced_value)))
        return name

    def kernel(self, function):
        alias = f"_{function.__name__}"
        existing = self.imports.get(alias)
        if existing is not None and existing != (function.__module__, function.__name__):
            alias = self._new(alias + "_")
        self.imports[alias] = (function.__module__, function.__name__)
        return alias

    def emit(self, line):
        self.lines.append("    " + line)

    def comment(self, text):
        self.lines.append("    # " + text)

    def precondition(self, function, name):
        self.preconditions.append((function, name))

    @staticmethod
    def literal(value, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind == "f" and not math.isfinite(value):
            return f"np.{dtype.name}({str(float(value))!r})"
        return f"np.{dtype.name}({value!r})"

    # --- loops ------------------------------------------------------------------------------

    def elementwise(self, expr, operands, result, shape, reference):
        """Emit one loop writing `expr` into variable `result` of `shape`.

        `operands` maps each name in `expr` to (variable, shape) for arrays broadcast to
        `shape`, or to a literal string for scalars. Numbers become `reference`'s dtype.
        """
        size = math.prod(shape)
        if size == 0:
            return
        constants = {}

        def hoist(match):
            literal = match.group(1)
            literal = literal if "." in literal else literal + ".0"
            return constants.setdefault(literal, self._new("c"))

        body = _NUMBER.sub(hoist, expr)
        for value, name in constants.items():
            self.emit(f"{name} = typed({value}, {reference})")
        rank = max(len(shape), 1)
        padded_shape = tuple(shape) if shape else (1,)
        index = ", ".join(f"i{d}" for d in range(rank))
        reads = {}
        for symbol, operand in operands.items():
            if isinstance(operand, str):
                reads[symbol] = operand
                continue
            variable, operand_shape = operand
            padded = (1,) * (rank - len(operand_shape)) + tuple(operand_shape)
            if math.prod(operand_shape) == 1:
                scalar = self._new("s")
                self.emit(f"{scalar} = {variable}.reshape(1)[0]")
                reads[symbol] = scalar
            else:
                view = self._new("v")
                self.emit(f"{view} = {variable}.reshape({padded!r})")
                reads[symbol] = f"{view}[" + ", ".join(
                    f"i{d}" if padded[d] != 1 else "0" for d in range(rank)) + "]"
        target = self._new("o")
        self.emit(f"{target} = {result}.reshape({padded_shape!r})")
        element = re.sub(r"\b(" + "|".join(map(re.escape, reads)) + r")\b",
                         lambda m: reads[m.group(1)], body) if reads else body
        for d in range(rank):
            self.emit("    " * d + f"for i{d} in range({padded_shape[d]}):")
        self.emit("    " * rank + f"{target}[{index}] = {element}")


# ---------------------------------------------------------------------------------------
# Engine and optimizer events.

def _emit_engine(em, event):
    kind = event[0]
    if kind == "add":
        _, a, b, result = event
        em.comment("backward: sum the gradients arriving at one tensor")
        a_name, b_name = em.ref(a), em.ref(b)
        out = em.out(result) if result is not a else a_name
        em.elementwise("a + b", {"a": (a_name, a.shape), "b": (b_name, b.shape)}, out,
                       result.shape, a_name)
    elif kind == "copy":
        _, source, target = event
        em.comment("backward: first gradient of a leaf (a copy, as eager makes)")
        name = em.ref(source)
        em.elementwise("a", {"a": (name, source.shape)}, em.out(target), target.shape, name)
    elif kind == "fill":
        _, array, value = event
        em.comment("zero_grad / fill_")
        name = em.ref(array)
        em.elementwise(Emitter.literal(value, array.dtype), {}, name, array.shape, name)
    elif kind == "fit":
        _emit_fit(em, event[1], event[2])
    elif kind == "update":
        _, optimizer, group, param, kernel, grad, traced_extras = event
        em.comment(f"{type(optimizer).__name__} update of a parameter of shape {tuple(param.shape)}")
        extras = [em.extra(value) for value in traced_extras]
        size = param._data.size
        em.emit(f"{em.kernel(kernel)}({em.ref(param._data)}.reshape({size}), "
                f"{em.ref(grad)}.reshape({size}), {', '.join(extras)})")
    else:
        raise Unfusable(f"event {kind!r}")


def _emit_fit(em, before, after):
    """A gradient summed back to its input's shape and/or cast to its dtype."""
    source = em.ref(before)
    target = em.out(after)
    if before.shape == after.shape:
        em.comment("backward: cast the gradient to the input's dtype")
        em.elementwise("a", {"a": (source, before.shape)}, target, after.shape, target)
        return
    em.comment(f"backward: sum a broadcast gradient {tuple(before.shape)} -> {tuple(after.shape)}")
    lead = before.ndim - after.ndim
    keep = (1,) * lead + tuple(after.shape)
    em.elementwise("0.0", {}, target, after.shape, target)
    accumulator = em._new("acc")
    em.emit(f"{accumulator} = {target}.reshape({keep!r})")
    index = ", ".join(f"i{d}" for d in range(before.ndim))
    into = ", ".join(f"i{d}" if keep[d] != 1 else "0" for d in range(before.ndim))
    for d in range(before.ndim):
        em.emit("    " * d + f"for i{d} in range({before.shape[d]}):")
    em.emit("    " * before.ndim + f"{accumulator}[{into}] += {source}[{index}]")


# ---------------------------------------------------------------------------------------

_HEADER = '''"""Fused step generated by nbgrad.compile from one traced run; do not edit.

Arguments: tensors' arrays read at call time, buffers allocated once per specialization,
and run-time optimizer values (learning rates, step counts) computed before each call.
"""
import numba
import numpy as np
from nbgrad.ops._kernel_support import typed
'''


def generate(tracer, outputs, cache=True):
    """(source, emitter) of the fused function for `tracer`'s events returning `outputs`."""
    em = Emitter(tracer)
    for event in tracer.events:
        if event[0] == "op":
            _, prim, arrays, params, out = event
            em.comment(f"forward: {prim.name}")
            prim.fuse.forward(em, arrays, params, out)
        elif event[0] == "vjp":
            _, node, grad, raw = event
            em.comment(f"backward: {node.name}")
            node.prim.fuse.vjp(em, node, grad, raw)
        else:
            _emit_engine(em, event)
    returned = [em.ref(array) for array in outputs]
    em.emit(f"return ({''.join(name + ', ' for name in returned)})")
    imports = "".join(f"from {module} import {attr} as {alias}\n"
                      for alias, (module, attr) in sorted(em.imports.items()))
    signature = ", ".join(name for name, _ in em.arguments)
    source = (_HEADER + imports + "\n\n"
              + f'@numba.njit(cache={cache}, error_model="numpy")\n'
              + f"def fused_step({signature}):\n" + "\n".join(em.lines) + "\n")
    return source, em
