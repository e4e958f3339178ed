"""Calls from a generated fused step into nbgrad's own njit kernels (convolution, pooling,
normalization, row-wise ...) that do not compile those kernels into the step.

Why: Numba compiles a call to another njit function by linking the callee's LLVM code into the
caller's module and optimizing it all again, so a fused step re-optimized every kernel it
called: a digits-CNN step took 6.6 s to compile cold, of which 5 went into convolution
kernels compiled before for eager mode (and cached).

`unlinked(dispatcher)` is a Numba intrinsic that calls the callee's own machine code by its
symbol: typing compiles (or loads from the cache) the callee as a normal call would, and the
step only declares the symbol and calls it with Numba's calling convention, so the callee's
exceptions still reach the caller.

NOTE: a step loaded from Numba's cache is not typed again: the callees it names must be in
the process, under the names its machine code uses, before Numba loads it, or the first call
jumps to nothing (a segfault). So the compile records the step's callees (`recording`), the
caller saves them beside the generated module (`save_callees`), and `load_callees` compiles or
loads them and registers their symbols before every load. A step without that record must not
be loaded from the cache: `load_callees` says so.
"""
import contextlib
import functools
import os
import pickle

import llvmlite.binding as llvm
from numba.core import cgutils, types
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
    record = [(names[id(dispatcher)], argument_types, symbol)
              for symbol, (dispatcher, argument_types) in callees.items()]
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
