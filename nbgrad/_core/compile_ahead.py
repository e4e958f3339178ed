"""A second process that compiles backward kernels while this one is still running forwards.

On an empty Numba cache a model's first step compiles every kernel it calls, one after
another, on one core: a small CNN spends seconds there, half of it on VJP kernels that the
backward pass will need only later. When a node's forward has just compiled something, its
backward very likely will too, and everything that the VJP kernels are specialized on (the
inputs' shapes, dtypes and layouts, the parameters) is known already. So this process
describes the call to a helper process, which repeats it on stand-in arrays of the same
layout, runs its backward, and so writes the compiled kernels into the shared Numba cache.
When this process's backward reaches them, Numba loads them from there instead of compiling.

The helper never sends anything back and never touches this process's data: all it can
change is what is in the cache, and a kernel it did not compile (or compiled for another
signature) is compiled here as before. It starts at the first such call, and is ended when
this process exits. `NBGRAD_COMPILE_HELPER=0` turns it off.
"""
import atexit
import os
import pickle
import struct
import subprocess
import sys

from numba.core import event

from . import modules

ENABLED = os.environ.get("NBGRAD_COMPILE_HELPER", "1") != "0"

# The helper's main module. NOTE: it lives in the Tensor layer (it dispatches ops and runs
# backward), and is named here only as a string: nothing in this layer imports it.
WORKER = "nbgrad._tensor.compile_ahead_worker"
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Whether Numba has compiled anything since the last node asked (set by _CompileSeen).
compiled = False

_process = None
_owner = None  # the process that started _process (a forked child starts its own)


# Whether the helper is worth starting when Numba starts compiling (set by autograd: while
# grad mode is on, a backward is likely to follow).
start_when = None


class _CompileSeen(event.Listener):
    # Numba announces "numba:compile" only for a real compilation, never for a cache load.
    def on_start(self, event):
        global compiled
        compiled = True
        # Started at the first compilation, the helper has imported nbgrad (about a second)
        # by the time the forward that is compiling now asks it for its backward.
        if _process is None and start_when is not None and start_when():
            _helper()

    def on_end(self, event):
        pass


def ask_to_compile_backward(prim_name, grad_fn_name, arrays, params, needs):
    """Ask the helper to compile the backward of a call of `prim_name` on arrays laid out as
    `arrays`, with inputs `needs` needing a gradient. Called after a forward that compiled."""
    global compiled
    compiled = False
    layouts = [(array.shape, array.dtype.str, array.strides, array.flags.writeable)
               for array in arrays]
    try:
        message = pickle.dumps((prim_name, grad_fn_name, layouts, params, list(needs)))
    except Exception:  # noqa: BLE001 - a parameter that does not pickle: nothing is asked
        return
    helper = _helper()
    if helper is None:
        return
    try:
        helper.stdin.write(struct.pack("<I", len(message)) + message)
        helper.stdin.flush()
    except OSError:  # the helper has gone: this process compiles what it needs itself
        _stop()


def _helper():
    global _process, _owner, ENABLED
    if _process is not None and _owner == os.getpid():
        return _process if _process.poll() is None else None
    if modules.uses_private_directory():
        ENABLED = False  # nothing compiled there is kept: a helper could not hand it over
        return None
    # The same caches (the environment is inherited) and this nbgrad before any other.
    path = [_PACKAGE_PARENT] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, NBGRAD_COMPILE_HELPER="0", NBGRAD_DEFERRED="0",
               PYTHONPATH=os.pathsep.join(path))
    try:
        _process = subprocess.Popen([sys.executable, "-m", WORKER], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=env)
    except OSError:
        ENABLED = False
        return None
    _owner = os.getpid()
    return _process


def _stop():
    global _process
    if _process is not None and _owner == os.getpid():
        _process.kill()
        _process.wait()
    _process = None


def wait():
    """Let the helper finish what it was asked, and end it (for tests and measurements)."""
    global _process
    if _process is not None and _owner == os.getpid():
        _process.stdin.close()
        _process.wait()
    _process = None


if ENABLED:
    event.register("numba:compile", _CompileSeen())
    atexit.register(_stop)
