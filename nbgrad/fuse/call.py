"""The Python around a fused kernel: one generated function per specialization.

The function checks, in straight-line code, that a call fits its specialization (the
objects the step reads from its closure and globals, grad mode, the arguments' types,
shapes, dtypes and requires_grad, the guarded tensors and modules), fetches the arrays the
kernel reads and the optimizers' state and scalars, calls the kernel, and leaves .grad,
version counters and the result as the eager step would. It returns MISMATCH for a call
that does not fit. Like TorchDynamo's guard functions, it is generated rather than
interpreted from tables: a small step spends less time in Python around its kernel than in
the kernel itself.
"""
import dis
import itertools
import linecache
import math
import sys
import textwrap
import types

import numpy as np

from ..autograd import profiler
from .._core.dtype import get_default_dtype
from ..autograd.grad_mode import state as _grad_state
from .._tensor.tensor import Tensor

_PACKAGE = __name__.split(".")[0] + "."
# What a call function returns for a call that does not fit it. NOTE: not None, which is
# what a step without a return statement gives.
MISMATCH = object()
# What an empty closure cell or a global not (yet) defined reads as.
ABSENT = object()
# Values of these types are keyed by value (a traced step bakes them in as constants);
# any other object the step reads, by identity.
SCALAR_TYPES = (int, float, bool, str, type(None))


def _fits(array, shape, dtype, contiguous=True):
    return array.shape == shape and array.dtype == dtype and \
        (array.flags.c_contiguous or not contiguous)


def scalar_key(value):
    """A scalar's part of a call key: its type (2, 2.0 and True are equal but promote
    differently) and value. NOTE: -0.0 == 0.0, but they divide to opposite infinities, and
    NaN != NaN: both are keyed by their repr."""
    if isinstance(value, float) and (value != value or not value and math.copysign(1, value) < 0):
        return (type(value), repr(value))
    return (type(value), value)


def _same_scalar(value, seen):
    return value is seen or scalar_key(value) == scalar_key(seen)


def _contents_of(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a variable not yet assigned)
        return ABSENT


def _copy_kept(wrapper):
    """For a .grad tensor on a buffer that a caller kept: the next call overwrites the buffer,
    and eager would have made a new tensor, so the kept one gets a copy. The new .grad
    tensor on the buffer is returned."""
    buffer = wrapper._data
    wrapper._data = buffer.copy()
    return Tensor._wrap(buffer)


def _not_compiled_for(error):
    """Whether `error` is Numba's refusal of arguments the kernel was not compiled for (a
    read-only array where the trace had a writeable one: see `kernel.compile_kernel`)."""
    return str(error).startswith("No matching definition")


_WIDTH = 100  # of the generated source's lines, where they can be wrapped

_HELPERS = {"MISMATCH": MISMATCH, "ABSENT": ABSENT, "fits": _fits, "same_scalar": _same_scalar,
            "contents_of": _contents_of, "copy_kept": _copy_kept, "wrap": Tensor._wrap,
            "getrefcount": sys.getrefcount, "grad_mode": _grad_state, "empty": np.empty,
            "profiling": profiler.state, "clock": profiler.clock, "fused_ran": profiler.fused_ran,
            "not_compiled_for": _not_compiled_for, "default_dtype": get_default_dtype}

# A deferred graph's kernel is named in a profile by its number (a step's, by the step's name).
_graph_numbers = itertools.count()


def tuple_target(names):
    """`names` as the target of an unpacking assignment."""
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


class CallWriter:
    """The source of one call function, and the namespace it runs in.

    Objects the function refers to (tensors, modules, the kernel, buffers) are names in its
    namespace; what it remembers between calls (the arrays the last call saw, the optimizer
    scalars last written) are names it rebinds.
    """

    def __init__(self, leaves):
        self.namespace = dict(_HELPERS)
        self.leaves = leaves
        self.checks = []    # conditions: the call does not fit if any is true
        self.lines = []     # statements after the checks
        self.remembered = []
        self._bound = {}    # id(object) -> its name
        self._counts = {}
        self.step_name = None  # the compiled step's (`ClosureWatch.write_checks`)

    def bind(self, value, prefix=None, name=None):
        """The name of `value` in the namespace: `name` if that is free, else `prefix` (or
        `name`) numbered; an object bound before keeps its first name."""
        known = self._bound.get(id(value))
        if known is not None:
            return known
        if name is None or name in self.namespace:
            prefix = prefix or name
            count = self._counts[prefix] = self._counts.get(prefix, -1) + 1
            name = f"{prefix}_{count}"
        self._bound[id(value)] = name
        self.namespace[name] = value
        return name

    def remember(self, name, value):
        """A name the function rebinds to carry `value` from one call to the next."""
        self.namespace[name] = value
        self.remembered.append(name)
        return name

    def call(self, kernel, arguments):
        """Lines calling `kernel` with `arguments`, wrapped; while a profiler records, the
        call is one event named after the step."""
        label = f"fused: {self.step_name or f'deferred graph {next(_graph_numbers)}'}"
        start = f"{kernel}("
        return "started = profiling.enabled and clock()\ntry:\n" + \
            textwrap.fill(", ".join(arguments), _WIDTH - 4, initial_indent="    " + start,
                          subsequent_indent=" " * (len(start) + 4)) + ")\n" + \
            "except TypeError as error:\n" + \
            "    if not_compiled_for(error):\n        return MISMATCH\n    raise\n" + \
            f"if started:\n    fused_ran({label!r}, started)"

    def check(self, condition):
        if condition not in self.checks:
            self.checks.append(condition)

    def fetch(self, name, expression, shape, dtype, contiguous=True, writeable=False):
        """Lines setting `name` to the array `expression`, checked against `shape` and
        `dtype` (and, if asked, that it is writeable) only when it is not the array the
        last call saw."""
        seen = self.remember(f"seen_{name}", None)
        option = "" if contiguous else ", contiguous=False"
        condition = f"not fits({name}, {shape!r}, {self.bind(dtype, name=dtype.name)}{option})"
        if writeable:
            condition += f" or not {name}.flags.writeable"
        return [f"{name} = {expression}",
                f"if {name} is not {seen}:",
                f"    if {condition}:",
                "        return MISMATCH",
                f"    {seen} = {name}"]

    def source(self):
        body = ["def call(leaves):",
                '    """Run the fused step if this call fits its specialization; MISMATCH if not."""']
        body += [f"    global {names.rstrip(',')}"
                 for names in textwrap.wrap(", ".join(self.remembered), _WIDTH - 11)]
        body += ["    try:",
                 f"        {tuple_target([f'leaf_{i}' for i in range(self.leaves)])} = leaves",
                 "        if (" + "\n                or ".join(self.checks or ["False"]) + "):",
                 "            return MISMATCH",
                 "    except (KeyError, ValueError, IndexError):  # a global deleted, a cell "
                 "emptied, a list shortened, another number of arguments",
                 "        return MISMATCH"]
        body += [textwrap.indent(line, "    ") for line in self.lines]
        return "\n".join(body) + "\n"

    def function(self):
        """The call function (and its source)."""
        source = self.source()
        # Registered with linecache, so a traceback through the call function (a target out
        # of range, say) shows its lines.
        filename = f"<nbgrad.compile call {id(self.namespace):#x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.namespace)
        return self.namespace["call"], source


def _global_reads(code):
    """The names `code`, and the functions and comprehensions defined in it, load as globals
    (NOTE: not `co_names`, which also holds attribute names such as `.step`)."""
    names = {instruction.argval for instruction in dis.get_instructions(code)
             if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_reads(constant)
    return names


class ClosureWatch:
    """The objects the step reads from its closure cells and its globals.

    They are part of the call key and of the call function's checks: Python scalars by
    value, since a traced step bakes them in as constants; any other object (a tensor, a
    model, an optimizer, a function) by identity, since the traced step is bound to that
    very object. Which cells and global names to read is worked out once.
    """

    def __init__(self, fn):
        code = getattr(fn, "__code__", None)
        self.cells = list(zip(code.co_freevars, fn.__closure__ or ())) if code else []
        # The step's name in a profile: its qualified name without the function it is local to.
        self.name = getattr(fn, "__qualname__", type(fn).__qualname__).rsplit("<locals>.", 1)[-1]
        self.namespace = getattr(fn, "__globals__", {})
        self.names = sorted(_global_reads(code)) if code is not None else []
        self.seen = []  # what `key` read, cells first

    def key(self, keep):
        """The watched objects' part of the call key. Objects keyed by identity are appended
        to `keep`: NOTE: kept alive, so that no other object gets their id while a
        specialization refers to it."""
        namespace = self.namespace
        self.seen = [_contents_of(cell) for _, cell in self.cells] + \
                    [namespace.get(name, ABSENT) for name in self.names]
        key = []
        for value in self.seen:
            if isinstance(value, SCALAR_TYPES):
                key.append(scalar_key(value))
            else:
                keep.append(value)
                key.append(id(value))
        return tuple(key)

    @staticmethod
    def _children(value):
        """What the walk from `value` enters, as (slot, key, child): `slot` names a place
        whose content can be replaced ("item" of a list, "key" of a dict, "cell" of a
        function's closure cell, "global" a name in a function's globals), None one that
        cannot (a tuple's member, a method's object, an object's attribute dict); a dict's
        keys are "dict key" (a tensor keying an optimizer's state is not held there)."""
        if isinstance(value, list):
            return [("item", index, item) for index, item in enumerate(value)]
        if isinstance(value, (tuple, set, frozenset)):
            return [(None, None, item) for item in value]
        if isinstance(value, dict):
            return [("dict key", None, key) for key in value] + \
                [("key", key, item) for key, item in value.items()]
        if isinstance(value, types.MethodType):
            return [(None, None, value.__self__), (None, None, value.__func__)]
        if isinstance(value, types.FunctionType):
            if (value.__module__ or "").startswith(_PACKAGE):
                return []
            return [("cell", cell, _contents_of(cell)) for cell in value.__closure__ or ()] + \
                [("global", name, value.__globals__.get(name)) for name in _global_reads(value.__code__)
                 if name in value.__globals__]
        if not isinstance(value, (type, types.ModuleType)) and hasattr(value, "__dict__"):
            return [(None, None, vars(value))]
        return []

    @classmethod
    def walk(cls, seen):
        """The tensors (by id) that the objects in `seen` (a `key` call's) hold: directly, in
        containers, as attributes (modules, optimizers, user objects), or read by the
        functions and methods among them (their cells and the globals they load); and the
        walk's edges (holder, slot, key, child), every one, not only the first to reach a
        child.

        NOTE: nbgrad's own functions and Python modules are not entered: a global `F` or
        `np` would take the walk through the whole library, where no user tensor is."""
        found, edges = {}, []
        visited = set()
        stack = list(seen)
        while stack:
            value = stack.pop()
            if id(value) in visited:
                continue
            visited.add(id(value))
            if isinstance(value, Tensor):
                found[id(value)] = value
                continue
            for slot, key, child in cls._children(value):
                edges.append((value, slot, key, child))
                stack.append(child)
        return found, edges

    @staticmethod
    def write_holder_checks(writer, edges, tensors):
        """Checks that every replaceable place on a path of `edges` (a `walk`'s) to one of
        `tensors` (by id: the tensors the call function names by identity) holds what it
        held: a buffer, parameter or submodule replaced (`model.scale = new`), a dict or list
        entry rebound, would otherwise leave the kernel reading the traced tensor. NOTE: all
        paths, so that a parameter an optimizer holds and a module replaced are both seen."""
        wanted = set(tensors)
        holders_of = {}
        for edge in edges:
            if edge[1] != "dict key":
                holders_of.setdefault(id(edge[3]), []).append(edge)
        stack = list(wanted)
        while stack:
            for holder, _, _, _ in holders_of.pop(stack.pop(), ()):
                if id(holder) not in wanted:
                    wanted.add(id(holder))
                    stack.append(id(holder))
        for holder, slot, key, child in edges:
            if slot in (None, "dict key") or id(child) not in wanted:
                continue
            held = writer.bind(holder, "holder")
            if slot == "cell":
                place = f"{writer.bind(key, 'cell')}.cell_contents"
            elif slot == "item":
                place = f"{held}[{key}]"
            elif slot == "global":  # (the holder is the function reading it)
                place = f"{held}.__globals__.get({key!r})"
            else:
                key_name = repr(key) if type(key) in (str, int) else writer.bind(key, "key")
                place = f"{held}.get({key_name})"
            writer.check(f"{place} is not {writer.bind(child, 'held')}")

    def write_checks(self, writer, seen):
        """Checks that every cell and global still holds what it held in `seen` (a `key`
        call's); the call's kernel is named after the step."""
        writer.step_name = self.name
        reads = []
        for (name, cell), value in zip(self.cells, seen):
            cell_name = writer.bind(cell, name=f"cell_{name}")
            expression = f"{cell_name}.cell_contents" if value is not ABSENT else \
                f"contents_of({cell_name})"
            reads.append((expression, value, f"closed_{name}"))
        if self.names:
            writer.bind(self.namespace, name="step_globals")
        for name, value in zip(self.names, seen[len(self.cells):]):
            if value is ABSENT:
                writer.check(f"{name!r} in step_globals")
            else:
                reads.append((f"step_globals[{name!r}]", value, f"global_{name}"))
        for expression, value, name in reads:
            name = writer.bind(value, name=name)
            writer.check(f"not same_scalar({expression}, {name})"
                         if isinstance(value, SCALAR_TYPES) else f"{expression} is not {name}")
