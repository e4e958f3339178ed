"""Calls from njit code into other njit functions that do not compile the callee into the
caller: from a generated fused step into nbgrad's kernels (convolution, pooling,
normalization, row-wise ...), and from a family's kernels into its helpers (im2col, gemm ...).

Why: Numba compiles a call to another njit function by linking the callee's LLVM code into the
caller's module and optimizing it all again, so a fused step re-optimized every kernel it
called (a digits-CNN step took 6.6 s to compile cold, of which 5 went into convolution
kernels compiled before for eager mode and cached), and each kernel every helper it called.

`unlinked(dispatcher)` is a Numba intrinsic that calls the callee's own machine code by its
symbol: typing compiles (or loads from the cache) the callee as a normal call would, and the
caller only declares the symbol and calls it with Numba's calling convention, so the callee's
exceptions still reach the caller.

NOTE: a caller loaded from Numba's cache is not typed again: the callees it names must be in
the process, under the names its machine code uses, before Numba loads it, or the first call
jumps to nothing (a segfault). Two records keep them, one per kind of caller:
- a fused step (generated module, one per step): the compile records its callees
  (`recording`), the fuse layer saves them beside the generated module (`save_callees`), and
  `load_callees` compiles or loads them and registers their symbols before every load. A step
  without that record must not be loaded from the cache: `load_callees` says so.
- a kernel or helper of an op family (a fixed function with versions per argument types):
  its callees are declared helpers (`unlinked_helper`), and its disk cache
  (`UnlinkedCallsCache`, given by `calling_unlinked`) stores each version with the helper
  versions it calls and registers them before rebuilding it.
The two nest: a step's record names the kernels it calls; loading such a kernel (from
`load_callees`) goes through the kernel's own cache, which registers its helpers first.
"""
import contextlib
import functools
import os
import pickle

import llvmlite.binding as llvm
from numba.core import caching, cgutils, types
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

_recorders = []  # the callee logs of the steps being compiled (innermost last)


@contextlib.contextmanager
def recording():
    """A dict that collects {symbol: (dispatcher, argument types)} of the unlinked calls
    compiled while the block runs."""
    callees = {}
    _recorders.append(callees)
    try:
        yield callees
    finally:
        _recorders.pop()


def _register(dispatcher, argument_types, symbol):
    """Make `symbol` resolve to the compiled `dispatcher` for `argument_types`."""
    result = dispatcher.overloads[tuple(argument_types)]
    address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
    if not address:
        raise RuntimeError(f"no machine code for {dispatcher.py_func.__qualname__}"
                           f"{tuple(argument_types)}")
    llvm.add_symbol(symbol, address)


@functools.cache
def unlinked(dispatcher):
    """A function for njit code that calls `dispatcher` without compiling it into the
    caller."""

    @intrinsic
    def call(typingctx, *arguments):
        callee = typingctx.resolve_function_type(types.Dispatcher(dispatcher), arguments, {})
        if callee is None:
            return None
        # Compiled (or loaded) by the resolution above; named as its own library names it.
        symbol = dispatcher.overloads[callee.args].fndesc.llvm_func_name

        def lower(context, builder, signature, values):
            # NOTE: here, not in the typing above, which Numba caches: a second step making
            # the same call would not be typed again, and its record would lack the callee.
            _register(dispatcher, callee.args, symbol)
            for callees in _recorders:
                callees[symbol] = (dispatcher, callee.args)
            function_type = context.call_conv.get_function_type(callee.return_type, callee.args)
            function = cgutils.get_or_insert_function(builder.module, function_type, symbol)
            values = [context.cast(builder, value, given, wanted) for value, given, wanted
                      in zip(cgutils.unpack_tuple(builder, values[0]), arguments, callee.args)]
            status, result = context.call_conv.call_function(
                builder, function, callee.return_type, callee.args, values)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return result

        return callee.return_type(types.StarArgTuple.from_types(arguments)), lower

    call.__name__ = f"unlinked_{dispatcher.py_func.__name__}"
    return call


def _record_path(module):
    return os.path.splitext(module.__file__)[0] + ".callees"


def save_callees(module, callees):
    """Write the `recording()` of `module`'s step beside it: each callee by the module's
    global name for its dispatcher, with those of its versions recorded before."""
    names = {id(value): name for name, value in vars(module).items()
             if isinstance(value, CPUDispatcher)}
    # Not the helpers of a kernel first compiled during the step's compile (recorded while
    # it ran): the step's code does not call them, and the kernel's own cache registers them.
    record = [(names[id(dispatcher)], argument_types, symbol)
              for symbol, (dispatcher, argument_types) in callees.items()
              if id(dispatcher) in names]
    # Added to what the module's other versions (other argument types) recorded before.
    try:
        with open(_record_path(module), "rb") as handle:
            record = [entry for entry in pickle.load(handle) if entry[2] not in callees] + record
    except Exception:  # noqa: BLE001 - none yet, or unreadable: this one alone
        pass
    path = _record_path(module)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        pickle.dump(record, handle)
    os.replace(temporary, path)


def load_callees(module):
    """Compile or load the callees that `module`'s cached step calls and register their
    symbols; False when there is no readable record (then the cached step must not be
    loaded)."""
    try:
        with open(_record_path(module), "rb") as handle:
            record = pickle.load(handle)
        for name, argument_types, symbol in record:
            dispatcher = getattr(module, name)
            dispatcher.compile(tuple(argument_types))
            _register(dispatcher, argument_types, symbol)
    except Exception:  # noqa: BLE001 - missing, unreadable or stale: compile the step afresh
        return False
    return True


# ---------------------------------------------------------------------------------------
# Op families: kernels calling their helpers unlinked, with the callees in each cache entry.

_helpers = {}  # the declared helpers (unlinked_helper), by module and qualified name


def _helper_name(dispatcher):
    return f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"


class _CalleesFirst(caching.CompileResultCacheImpl):
    """How UnlinkedCallsCache stores a compiled version: with the versions it calls
    (callee name, argument types, symbol), which are compiled or loaded and registered
    before the version is rebuilt. In the version's own cache entry: two processes that
    compile it at once name its callees differently (the symbols carry a number of the
    process's), and a record apart from the version could be the other process's. A callee
    is a declared helper (by its name), or an njit function that is a global of the caller's
    module (by "global:" and its name there: a fused step's stage calls kernels)."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._globals = py_func.__globals__

    def _callees(self):
        yield from _helpers.items()
        for name, value in self._globals.items():
            if isinstance(value, CPUDispatcher):
                yield f"global:{name}", value

    def _callee(self, name):
        return self._globals[name[7:]] if name.startswith("global:") else _helpers[name]

    def reduce(self, cres):
        # The versions this one calls: the symbols its code declares (and does not define:
        # a callee's code defines its own).
        declared = "\n".join(line for line in cres.library.get_llvm_str().splitlines()
                             if line.startswith("declare "))
        callees = [(name, argument_types, version.fndesc.llvm_func_name)
                   for name, callee in self._callees()
                   for argument_types, version in callee.overloads.items()
                   if version.fndesc.llvm_func_name in declared]
        # (last: the entry keeps Numba's layout, which _core.modules checks on loading)
        return super().reduce(cres) + (callees,)

    def rebuild(self, target_context, payload):
        *data, callees = payload
        try:
            for name, argument_types, symbol in callees:
                callee = self._callee(name)
                callee.compile(argument_types)
                _register(callee, argument_types, symbol)
        except Exception:  # noqa: BLE001 - a callee gone, renamed or not imported: compiled afresh
            return None
        return super().rebuild(target_context, tuple(data))


class UnlinkedCallsCache(caching.FunctionCache):
    """Numba's disk cache for an njit function that calls declared helpers `unlinked`
    (`unlinked_helper`): each version is stored with the helper versions it calls, and
    those are registered before it is loaded (see the module's NOTE)."""

    _impl_class = _CalleesFirst


def calling_unlinked(dispatcher):
    """`dispatcher` (an njit function with cache=True that calls helpers through
    `unlinked_helper`'s functions) with UnlinkedCallsCache as its disk cache."""
    dispatcher._cache = UnlinkedCallsCache(dispatcher.py_func)
    return dispatcher


def unlinked_helper(dispatcher):
    """Declare `dispatcher` (an njit function with cache=True, best with
    no_cpython_wrapper=True: it is not called from Python) a helper that njit code calls
    through the returned function, `unlinked(dispatcher)`: compiled once, not into each
    caller. Its callers must be `calling_unlinked`, so that a caller loaded from the cache
    finds it registered; it may call other helpers itself (it is `calling_unlinked` too)."""
    _helpers[_helper_name(dispatcher)] = calling_unlinked(dispatcher)
    return unlinked(dispatcher)
