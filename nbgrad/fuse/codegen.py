"""Turn a traced step (a list of array events) into the source of one Numba function.

Each primitive's fused rule (`Primitive.fuse`) emits the statements for its forward and
VJP (also for the engine's own arithmetic, which is primitive calls: `nbgrad.ops.gradients`);
this module emits fills (zero_grad) and the optimizer updates (the optimizer's eager kernel
called on each parameter), and decides which arrays are arguments (read from
tensors or the optimizer's state at call time), preallocated buffers, or local views.
"""
import math
import re
from typing import NamedTuple

import numpy as np

from .._core import loops as _loops
from .._core import threads as _threads
from .._core.dtype import is_half
from ..ops.primitive import Unfusable
from . import stages
from .tracer import OpEvent, UpdateEvent, VjpEvent

_MAX_INLINE_CONSTANT = 64
# A name of the generated code's own (`Emitter.new_name`: a prefix and a number), not after a dot.
_LOCAL = re.compile(r"(?<![\w.])([a-z]+\d+)\b")
_ALIGN = 16  # elements: buffers in an arena start on 64-byte boundaries for float32


def number_source(value, kind):
    """`value` as Python source that is also valid in Numba code, for a NumPy dtype of
    `kind` ("b", "i", "u" or "f"). NOTE: `repr` is not: NumPy 2 writes `np.float64(inf)`,
    and a float's repr may be `inf` or `nan`, which are no names in the generated module."""
    if kind == "b":
        return repr(bool(value))
    if kind in "iu":
        return repr(int(value))
    number = float(value)
    if math.isnan(number):
        return "np.nan"
    if math.isinf(number):
        return "np.inf" if number > 0 else "-np.inf"
    return repr(number)  # the shortest repr that reads back as the same double, -0.0 too


class KernelArgument(NamedTuple):
    """An array the fused function takes as an argument, fetched by its caller on each call.

    `kind` and `source`, what it is fetched from: "arg" (the tensor argument at position
    `source`), "data" or "grad" (the array or .grad of tensor `source`), "const" (array
    `source`, fixed for the specialization), "state" (`source` is (number of the
    parameter update, index among the optimizer rule's arrays)), "fresh" (an array the
    caller makes new on each call; `source` None). `traced`: the array the traced run had.
    """
    name: str
    kind: str
    source: object
    traced: np.ndarray


class Emitter:
    def __init__(self, tracer, fresh=()):
        self.tracer = tracer
        self.names = {}
        # Arrays the step makes that the caller passes in, new, on each call (see `out`).
        self.fresh = {id(array) for array in fresh}
        self.arguments = []          # KernelArgument, in the function's parameters' order
        self.buffers = []            # (name, traced array): views into one arena per dtype
        self.hyper = []              # traced optimizer scalars, passed in one float64 array
        self.updates = 0             # parameter updates emitted so far
        self.globals = []            # module-level constant arrays
        self.lines = []
        self.imports = {}
        self.unlinked = {}  # name in the step -> name of the imported dispatcher
        self.preconditions = []      # (function, expression over the arguments): run in
                                     # Python before each call (see `precondition`)
        self._views = {}             # name of a local view -> its expression (see `define`)
        self._local_views = set()    # the names of `local_view`s
        self._view_shapes = {}       # name of a `define`d view (a reshape) -> its shape
        self._constants = {}         # id(array) -> (name, array): one name per constant
        self._empties = {}           # (ndim, dtype) -> name of a zero-size buffer (see `empty`)
        self._loop = None            # the open elementwise loop nest (see `elementwise`)
        self.parallel = False        # whether any loop is long enough for threads
        self._parallel_headers = []  # positions in `lines` of numba.prange loop headers
        self._threaded_calls = []    # (position in `lines`, the serial form of that line)
        self._uses_blas = False      # see `blas`
        self.threaded_helpers = False  # see `threaded_helper`
        self._comments = []
        self._count = 0

    def new_name(self, prefix):
        self._count += 1
        return f"{prefix}{self._count}"

    # --- naming arrays ----------------------------------------------------------------------

    def ref(self, array):
        """The variable holding an input array (an argument if the step did not make it)."""
        name = self.names.get(id(array))
        if name is not None:
            return name
        if is_half(array.dtype):
            # NOTE: Numba has no float16/bfloat16 type: eager mode computes them in float32.
            raise Unfusable(f"a {array.dtype} array of shape {tuple(array.shape)} (computed in float32 "
                            "by eager mode)")
        handle = self.tracer.handles.get(id(array))
        if handle is None or id(array) in self.tracer.created:
            raise Unfusable(f"an array of shape {tuple(array.shape)} is used before the step makes it")
        kind, source = handle
        if kind == "const":
            name = self.names[id(array)] = self.constant(array)
            return name
        if not array.flags.c_contiguous:
            raise Unfusable(f"a non-contiguous input of shape {tuple(array.shape)}")
        name = self.new_name("arg")
        self.arguments.append(KernelArgument(name, kind, source, array))
        self.names[id(array)] = name
        return name

    def out(self, array):
        """The variable for an array the step writes in full: a C-contiguous buffer of its
        shape, allocated once per specialization (also for an eager result that was a view,
        such as the broadcast gradient of a sum: the fused rule writes every element)."""
        name = self.names.get(id(array))
        if name is None:
            if id(array) in self.fresh:
                # An argument: a result the caller keeps (a new .grad), which a buffer
                # reused by the next call would have to be copied out of.
                name = self.new_name("fresh")
                self.arguments.append(KernelArgument(name, "fresh", None, array))
            else:
                name = self.new_name("buf")
                self.buffers.append((name, array))
            self.names[id(array)] = name
        return name

    def empty(self, ndim, dtype):
        """A zero-size writable array of `ndim` dimensions, the stand-in for an output a
        kernel is told not to compute. A view of the arena: eager passes such stand-ins from
        np.empty, so the kernel is called with the same types (its eager compilation is
        reused) and the step allocates nothing."""
        dtype = np.dtype(dtype)
        stand_in = self._empties.get((ndim, dtype))
        if stand_in is None:
            stand_in = self._empties[(ndim, dtype)] = self.out(np.empty((0,) * ndim, dtype))
        return stand_in

    def define(self, array, expression):
        """A local variable for `array`: a reshape (C-contiguous) computed inside the fused
        function."""
        name = self.names[id(array)] = self.local_view(expression)
        self._view_shapes[name] = array.shape
        return name

    def local_view(self, expression):
        """A local view bound to no traced array, which may be strided (a transpose, a
        slice): `elementwise` reads or writes it at its own shape, without reshaping it
        (Numba reshapes only contiguous arrays), in a loop nest of its own."""
        name = self.new_name("view")
        self.emit(f"{name} = {expression}")
        self._views[name] = expression
        self._local_views.add(name)
        return name

    def same(self, array, other):
        self.names[id(array)] = self.ref(other)

    def constant(self, array):
        """An array fixed for the specialization (default class weights, seeds): small ones
        are module-level constants of the generated source, large ones arguments."""
        known = self._constants.get(id(array))
        if known is not None:
            return known[0]
        name = self.new_name("const")
        self._constants[id(array)] = (name, array)  # kept alive: its id stays its own
        # Only read-only arrays (nbgrad's own constants) and empty ones are written into the
        # source; any other array may be changed in place between calls: an argument.
        if array.size == 0 or array.size <= _MAX_INLINE_CONSTANT and not array.flags.writeable:
            values = np.array2string(array, separator=", ", threshold=_MAX_INLINE_CONSTANT,
                                     formatter={"all": lambda v: number_source(v, array.dtype.kind)}
                                     ).replace("\n", "")
            self.globals.append(f"{name} = np.array({values}, dtype=np.{array.dtype.name})"
                                f".reshape({array.shape!r})")
        else:
            self.arguments.append(KernelArgument(name, "const", array, array))
        return name

    def state(self, update, index, traced):
        """An optimizer state array or counter of the `update`-th parameter update,
        read from the optimizer at call time: load_state_dict may replace it."""
        name = self.new_name("state")
        self.arguments.append(KernelArgument(name, "state", (update, index), traced))
        return name

    def helper(self, function):
        """The step's name for the njit scalar `function` (compiled into the step, so that
        a loop calling it inlines it)."""
        alias = f"_{function.__name__}"
        existing = self.imports.get(alias)
        if existing is not None and existing != (function.__module__, function.__name__):
            alias = self.new_name(alias + "_")
        self.imports[alias] = (function.__module__, function.__name__)
        return alias

    def kernel(self, function):
        """The step's name for the njit whole-array `function`, called as compiled for eager
        mode instead of compiled again into the step (`_core.unlinked`)."""
        compiled = self.helper(function)
        self.unlinked["call" + compiled] = compiled
        return "call" + compiled

    def emit(self, line):
        self._close_loop()
        self._flush_comments(self.lines)
        self.lines.append("    " + line)

    def comment(self, text):
        # Held until the op's first line: inside a fused chain's preamble if it joins the
        # open loop, after that loop if it does not.
        self._comments.append("    # " + text)

    def _flush_comments(self, target):
        target += self._comments
        self._comments = []

    def precondition(self, function, name):
        """Run `function` on the array the step names `name`, in Python, before each call of
        the kernel (a check of values that change from call to call, such as targets).

        NOTE: the call function has only the kernel's arguments, not its local names: a view
        is rebuilt there from the argument it views (its own name exists only inside the
        kernel), an inline constant never changes (the traced run checked it), and an array
        the step computes cannot be checked before the step runs.
        """
        arguments = {argument.name for argument in self.arguments}
        constants = {constant for constant, _ in self._constants.values()} - arguments
        reads = set()

        def outside(match):
            local = match.group(1)
            if local in self._views:
                return "(" + _LOCAL.sub(outside, self._views[local]) + ")"
            if local not in arguments and local not in constants:
                raise Unfusable(f"a value checked before the step runs ({local}) is computed "
                                "by the step")
            reads.add(local)
            return local

        expression = _LOCAL.sub(outside, name)
        if reads - constants:
            self.preconditions.append((function, expression))

    @staticmethod
    def literal(value, dtype):
        """Source of the constant `value` as a scalar of `dtype`, converted as eager code
        converts a parameter (`dtype.type(value)`)."""
        dtype = np.dtype(dtype)
        name = "bool_" if dtype.kind == "b" else dtype.name
        return f"np.{name}({number_source(value, dtype.kind)})"

    @staticmethod
    def scalar(value):
        """A Python bool, int or float argument of a kernel call, typed as eager code's call
        types it (bool, int64, float64). NOTE: a bare `True` or `-100` in the source is a
        Numba Literal type, which compiles the called kernel once more for each value
        instead of reusing the compilation that the traced eager run made."""
        kind = "bool" if isinstance(value, (bool, np.bool_)) else \
            "int64" if isinstance(value, (int, np.integer)) else "float64"
        return Emitter.literal(value, kind)

    # --- loops ------------------------------------------------------------------------------

    def elementwise(self, expr, operands, result, shape, reference):
        """Write `expr` into variable `result` of `shape`, one element per loop iteration.

        `operands` maps each name in `expr` to (variable, shape) for arrays broadcast to
        `shape` (or (variable, shape, dtype name) for one whose elements are converted to
        that dtype as they are read), or to a literal string for scalars. Numbers become
        `reference`'s dtype.
        Consecutive calls over the same shape share one loop nest (a fused chain); a value
        the chain already wrote is read back in the same iteration.
        """
        if math.prod(shape) == 0:
            return
        # NOTE: a loop through a local view (a transpose or slice of a buffer) is a nest of
        # its own: in a chain, an iteration would read elements of that buffer that a later
        # iteration writes (y = a + row; y.T).
        apart = result in self._local_views or any(
            not isinstance(operand, str) and operand[0] in self._local_views
            for operand in operands.values())
        if apart:
            self._close_loop()
        padded_shape = tuple(shape) if shape else (1,)
        # Without broadcasting, over C-contiguous arrays (not local views or arguments that
        # may be strided), the loop runs over the flat elements: a one-level loop compiles
        # several times faster than a loop nest, and runs as fast.
        strided = set(self._views).union(argument.name for argument in self.arguments
                                         if not argument.traced.flags.c_contiguous)
        if result not in strided and all(
                isinstance(operand, str) or operand[0] not in strided and (
                    math.prod(operand[1]) in (1, math.prod(shape)))
                for operand in operands.values()):
            padded_shape = (math.prod(shape),)
        rank = len(padded_shape)
        loop = self._loop
        written = loop["written"] if loop and loop["shape"] == padded_shape else {}
        for operand in operands.values():
            if not isinstance(operand, str) and operand[0] in written and \
                    tuple(operand[1]) != tuple(shape):
                written = {}  # a broadcast read of a value this loop writes: start afresh
        if loop is None or loop["shape"] != padded_shape or not written and loop["written"]:
            self._close_loop()
            loop = self._loop = {"shape": padded_shape, "preamble": [], "body": [],
                                 "written": {}}
        indices = _loops.index_names(rank)
        index = ", ".join(indices)
        preamble = loop["preamble"]
        self._flush_comments(preamble)
        body, constants = _loops.hoist_constants(expr, reference,
                                                 lambda count: self.new_name("c"))
        preamble += ["    " + line for line in constants]
        reads = {}
        for symbol, operand in operands.items():
            if isinstance(operand, str):
                reads[symbol] = operand
                continue
            variable, operand_shape = operand[:2]
            padded = padded_shape if math.prod(operand_shape) == math.prod(padded_shape) else \
                (1,) * (rank - len(operand_shape)) + tuple(operand_shape)
            # NOTE: a `define`d view is a reshape, C-contiguous: given in another shape (sum's
            # gradient reads a (2,) one as (2, 1), a 0-d one as (1,)), it is reshaped as a
            # buffer is, not indexed at a rank it does not have.
            reshaped_view = tuple(self._view_shapes.get(variable, operand_shape)) != \
                tuple(operand_shape)
            if variable in loop["written"]:
                read = loop["written"][variable]
            elif variable in strided and not reshaped_view and \
                    tuple(operand_shape) == padded_shape:
                read = f"{variable}[{index}]"
            elif math.prod(operand_shape) == 1:
                read = self.new_name("s")
                preamble.append(f"    {read} = {variable}.reshape(1)[0]")
            else:
                view = self.new_name("v")
                preamble.append(f"    {view} = {variable}.reshape({padded!r})")
                read = f"{view}[" + ", ".join(
                    indices[d] if padded[d] != 1 else "0" for d in range(rank)) + "]"
            reads[symbol] = read if len(operand) == 2 else f"np.{operand[2]}({read})"
        if result in strided and tuple(shape) == padded_shape:
            target = result
        else:
            target = self.new_name("o")
            preamble.append(f"    {target} = {result}.reshape({padded_shape!r})")
        loop["body"].append(f"{target}[{index}] = {_loops.substitute(body, reads)}")
        loop["written"][result] = f"{target}[{index}]"
        if apart:
            self._close_loop()

    def copy(self, source, target, shape):
        """Copy `source` (an `elementwise` operand: (variable, shape) broadcast to `shape`,
        with a dtype name to convert to, or a scalar's source) into variable `target`."""
        self.elementwise("a", {"a": source}, target, shape, target)

    def _close_loop(self):
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self.lines += loop["preamble"]
        parallel = math.prod(loop["shape"]) >= _threads.PARALLEL_THRESHOLD
        self.parallel |= parallel
        if parallel:
            self._parallel_headers.append(len(self.lines))
        shape = loop["shape"]
        self.lines += _loops.loop_nest(_loops.index_names(len(shape)), shape, loop["body"],
                                       parallel)

    def threaded_call(self, serial, threaded, size):
        """Emit the call `threaded` (of a parallel kernel) if `size` elements are enough for
        threads, else `serial`; `finish` goes back to `serial` where loops must stay serial."""
        if size < _threads.PARALLEL_THRESHOLD:
            self.emit(serial)
            return
        self.emit(threaded)
        self._threaded_calls.append((len(self.lines) - 1, "    " + serial))
        self.parallel = True

    def blas(self):
        """Say that the step calls BLAS (np.dot): its loops then stay serial."""
        self._uses_blas = True

    def threaded_helper(self, threaded):
        """Say whether the step calls a kernel told to thread parts of its own work (its
        loops between BLAS calls, as eager mode calls it), and return `threaded`: a process
        forked from this one must not make that call (see fuse/kernel.py)."""
        self.threaded_helpers |= threaded
        return threaded

    def finish(self):
        self._close_loop()
        self._flush_comments(self.lines)
        if self.parallel and (self._uses_blas or not _threads.start()):
            for position in self._parallel_headers:
                self.lines[position] = self.lines[position].replace("numba.prange(", "range(")
            for position, serial in self._threaded_calls:
                self.lines[position] = serial
            self.parallel = False


# ---------------------------------------------------------------------------------------
# Fills and optimizer updates.

def _emit_write(em, array, value):
    name = em.ref(array)
    if isinstance(value, np.ndarray):
        em.comment("in-place write-back")
        em.elementwise("x", {"x": (em.ref(value), value.shape, array.dtype.name)}, name, array.shape, name)
    else:
        em.comment("zero_grad / fill_")
        em.elementwise(Emitter.literal(value, array.dtype), {}, name, array.shape, name)


def _emit_updates(em, events):
    """Consecutive updates of parameters of one dtype by one optimizer: the optimizer's eager
    kernel (generated from its rule) called on each parameter."""
    optimizer = events[0].optimizer
    rule, dtype = optimizer.rule, events[0].param._data.dtype
    em.comment(f"{type(optimizer).__name__} update of {len(events)} parameter(s) by its eager "
               f"kernel ({type(optimizer).__module__}.{type(optimizer).__name__}.rule)")
    # NOTE: one call per parameter, not a loop over tuples of the arrays: Numba indexes a
    # tuple with a run-time index through a switch over its items, and a ResNet-18 step's 62
    # parameters made that the costliest code to compile in the step (5.7 -> 4.3 s).
    kernel = em.kernel(rule.kernel)
    for event in events:
        param, grad = event.param, event.grad
        if grad.dtype != dtype or grad.shape != param._data.shape:
            raise Unfusable(f"a gradient {grad.dtype}{list(grad.shape)} for a parameter "
                            f"{dtype}{list(param._data.shape)}")
        size = param._data.size
        arguments = [f"{em.ref(param._data)}.reshape({size})", f"{em.ref(grad)}.reshape({size})"]
        for index, (name, tensor) in enumerate(zip(rule.arrays, event.state)):
            if name not in rule.state:  # a counter, passed as it is
                arguments.append(em.state(em.updates, index, tensor._data))
                continue
            # State is passed as the optimizer holds it (absent: a zero-size stand-in, which
            # the rule does not touch), and flattened here.
            traced = np.empty((0,) * param._data.ndim, dtype) if tensor is None else tensor._data
            arguments.append(f"{em.state(em.updates, index, traced)}.reshape(-1)")
        arguments += [f"hyper[{len(em.hyper) + j}]" for j in range(len(event.scalars))]
        em.updates += 1
        em.hyper += [float(value) for value in event.scalars]
        em.emit(f"{kernel}({', '.join(arguments)})")


# ---------------------------------------------------------------------------------------

_HEADER = '''"""Fused step generated by nbgrad.compile from one traced run; do not edit.

Arguments: tensors' arrays and the optimizers' state read at call time, buffers allocated
once per specialization, and the optimizers' run-time scalars (`hyper`: learning rates and
other options, read before each call).
"""
import math

import numba
import numpy as np
from nbgrad._core.kernel_support import permuted, reshaped, typed, view
from nbgrad._core.unlinked import calling_unlinked, unlinked
'''


def _output_buffer(em, array):
    """The name of a buffer holding returned `array`: its own if it has one, else a copy."""
    name = em.ref(array)
    if any(name == buffer for buffer, _ in em.buffers):
        return name
    em.comment("a returned value, copied into a buffer")
    copy = em.out(np.empty_like(array))
    em.copy((name, array.shape), copy, array.shape)
    return copy


# `name.reshape(` with a shape tuple, a size or -1: the fused rules' and loops' reshapes,
# which a serial step makes with `reshaped` (`.reshape` compiles its checks at each use, about
# 25 ms of compile time apiece, and a step has dozens).
# NOTE: not in a threaded step: Numba's parfors know that `.reshape` returns an alias of its
# argument, not that `reshaped` or `view` do, and would fuse a loop writing one view of a
# buffer with a loop reading another (measured: wrong results).
_RESHAPE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.reshape\((?=\(|\d+\)|-1\))")


def _arenas(em):
    """Lay each dtype's buffers end to end in one array: one argument instead of dozens."""
    layout = {}
    sizes = {}
    for name, array in em.buffers:
        key = array.dtype.str
        offset = sizes.get(key, 0)
        layout[name] = (key, offset)
        sizes[key] = offset + -(-max(array.size, 1) // _ALIGN) * _ALIGN
    lines = []
    for name, array in em.buffers:
        key, offset = layout[name]
        arena = f"arena_{np.dtype(key).name}"
        lines.append(f"{name} = {arena}[{offset}:{offset + array.size}].reshape({array.shape!r})"
                     if em.parallel else f"{name} = view({arena}, {offset}, {array.shape!r})")
    return layout, sizes, lines


def _update_runs(events):
    """The events, with each run of consecutive updates by one optimizer of parameters of
    one dtype gathered into a list."""
    runs = []
    run_of = None  # (optimizer, dtype) of the run of updates `runs` ends with
    for event in events:
        if type(event) is not UpdateEvent:
            runs.append(event)
            run_of = None
            continue
        dtype = event.param._data.dtype
        if run_of is not None and run_of[0] is event.optimizer and run_of[1] == dtype:
            runs[-1].append(event)
        else:
            runs.append([event])
            run_of = (event.optimizer, dtype)
    return runs


def _arrays_in(values):
    for value in values:
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _arrays_in(value)


def _reads(event):
    if type(event) is OpEvent:
        return list(_arrays_in(event.arrays))
    if type(event) is VjpEvent:
        return list(_arrays_in((event.output_grad, *event.node.saved)))
    if type(event) is UpdateEvent:
        return list(_arrays_in((event.param._data, event.grad,
                                *(None if t is None else t._data for t in event.state))))
    return list(_arrays_in((event.value,)))


def _writes(event):
    if type(event) is OpEvent:
        return [event.out] if any(event.out is array for array in event.arrays) else []
    if type(event) is UpdateEvent:
        return list(_arrays_in((event.param._data,
                                *(None if t is None else t._data for t in event.state))))
    if type(event) is VjpEvent:
        return []
    return [event.array]


def _refuse_stale_copies(events):
    """Refuse a step in which a write into memory that a copied view (`copies_view`: a
    transpose or broadcast, a copy in fused code and a view in eager) shares is followed by
    a read of that memory: eager's view would see the write, the fused copy would not (or,
    for a write into the copy, its source would not). Reading a view of a parameter in the
    forward and updating the parameter at the end is the common case, and fuses."""
    copies = []
    for position, event in enumerate(events):
        for written in _writes(event):
            for copy in copies:
                if np.may_share_memory(written, copy) and any(
                        np.may_share_memory(read, copy)
                        for later in events[position + 1:] for read in _reads(later)):
                    raise Unfusable(f"a write into the memory of a transposed or expanded view "
                                    f"of shape {tuple(copy.shape)} that the step reads after it "
                                    f"(fused code copies such views)")
        if type(event) is OpEvent and getattr(event.prim.fuse, "copies_view", False):
            copies.append(event.out)


def generate(tracer, outputs, fresh=()):
    """(source, emitter, arena layout, names of the output buffers) of the fused function
    for `tracer`'s events. The function returns nothing: the caller copies the outputs
    out of their buffers (cheaper than Numba boxing new arrays), except arrays in `fresh`,
    which the caller passes in new on each call."""
    _refuse_stale_copies(tracer.events)
    em = Emitter(tracer, fresh)
    for event in _update_runs(tracer.events):
        if isinstance(event, list):
            _emit_updates(em, event)
        elif type(event) is OpEvent:
            em.comment(f"forward: {event.prim.name}  ({event.where})")
            event.prim.fuse.forward(em, event.arrays, event.params, event.out)
        elif type(event) is VjpEvent:
            em.comment(f"backward: {event.node.name}")
            event.node.prim.fuse.vjp(em, event.node, event.output_grad, event.input_grads)
        else:
            _emit_write(em, event.array, event.value)
    returned = [_output_buffer(em, array) for array in outputs]
    em.finish()
    layout, sizes, views = _arenas(em)
    arguments = [argument.name for argument in em.arguments]
    arguments += [f"arena_{np.dtype(key).name}" for key in sizes]
    if em.hyper:
        arguments.append("hyper")
    imports = "".join(f"from {module} import {attr} as {alias}\n"
                      for alias, (module, attr) in sorted(em.imports.items()))
    imports += "".join(f"{name} = unlinked({compiled})\n"
                       for name, compiled in sorted(em.unlinked.items()))
    constants = "".join(line + "\n" for line in em.globals)
    decorator = ('@numba.njit(cache=True, error_model="numpy"'
                 + (", parallel=True" if em.parallel else "") + ")")
    body = [line if em.parallel else _RESHAPE.sub(r"reshaped(\1, ", line) for line in em.lines]
    # (A stage is called only through `unlinked`: no wrapper for calls from Python; its cache
    # keeps the symbols of the kernels it calls, as a family kernel's does: see _core.unlinked.)
    functions = None if em.parallel else stages.split(
        body, arguments, views, decorator, "@calling_unlinked\n@numba.njit(cache=True, "
        'error_model="numpy", no_cpython_wrapper=True)')
    if functions is None:
        functions = "\n".join([decorator, f"def fused_step({', '.join(arguments)}):"]
                              + [f"    {line}" for line in views] + body) + "\n"
    source = _HEADER + imports + constants + "\n\n" + functions
    return source, em, (layout, sizes), returned
