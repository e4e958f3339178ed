"""A second process that compiles kernels this one will need later, while this one runs on.

On an empty Numba cache a model's first step compiles every kernel it calls, one after
another, on one core: a small CNN spends seconds there, half of it on kernels that are known
well before they are called. When a node's forward has just compiled something, its backward
very likely will too, and everything its VJP kernels are specialized on (the inputs' shapes,
dtypes and layouts, the parameters) is known already; an optimizer's update kernel is known
when the optimizer is made; and of a fused step cut into stages, the stages that take only
the step's arguments can be compiled apart (nbgrad.fuse.stages). So this process describes
such a call to a helper process, which repeats it on stand-in arrays of the same layout (or
compiles the stage), and so writes the compiled kernels into the shared Numba cache. When
this process reaches them, Numba loads them from there instead of compiling.

A request names a function by module and name, with picklable arguments: the layer that knows
the call provides the function (nbgrad._tensor.compile_ahead for a backward, nbgrad.optim for
an update), and this module imports none of them. The helper never touches this process's
data: all it can change is what is in the cache, and a kernel it did not compile (or compiled
for another signature) is compiled here as before. What it sends back is the number of each
request it has done, so that this process can wait for a stage the helper compiles
(`wait_for`) instead of compiling it too.

The helper starts at the first compilation in grad mode (`start_when`), or when an optimizer
is made on a cold cache, and is ended when this process exits. `NBGRAD_COMPILE_HELPER=0`
keeps it from starting (the requests are still made, and dropped: the code that makes them
runs in the test suite, which turns the helper off).
"""
import atexit
import heapq
import importlib
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
import weakref

import numpy as np
from numba.core import event

from . import modules

# Whether a helper may start (NBGRAD_COMPILE_HELPER=0: never; also set False where none can).
ENABLED = os.environ.get("NBGRAD_COMPILE_HELPER", "1") != "0"

# The helper does the requests of priority NOW first (a stage of a fused step, which this
# process waits for), then those of priority FIRST, in the order asked (a forward's backward:
# this process needs the last-asked first, and compiles those itself meanwhile), then those
# of priority LAST (an optimizer's update, needed only at the end of a step).
NOW, FIRST, LAST = -1, 0, 1

# A call on larger arrays is not asked: the helper makes stand-ins of the same size.
MAX_BYTES = 1 << 26
# The helper ends when it has had nothing to do for this long (a long training run does not
# keep it); this process then compiles whatever else it needs itself.
IDLE_EXIT_S = 60.0

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Whether Numba has compiled anything since the last forward asked (set by _CompileSeen).
compiled = False

# Whether a compilation that starts now should start the helper (set by autograd: in grad
# mode a backward, whose kernels the helper can compile meanwhile, is likely to follow).
start_when = None

# Waiting for a request ends after this long (what it was for is then compiled here).
WAIT_LIMIT_S = 60.0

_process = None
_owner = None  # the process that started _process (a forked child starts its own)
_asked_before_start = {}  # requests kept for a helper that has not started (in order)
_KEPT_BEFORE_START = 64  # (a process that never starts one keeps no more than these)
_lock = threading.Lock()  # one writer at a time on the pipe, one helper started

# The requests sent to this process's helper: {message: number} (one send each), and the
# number that each waiter (an object given to `ask`, about to use what it asked for) waits
# for; by the helper's reports, the numbers of those done.
_numbers = {}
_waiters = weakref.WeakKeyDictionary()
_progress = threading.Condition()
_done = set()
_helper_gone = False


class _CompileSeen(event.Listener):
    # Numba announces "numba:compile" only for a real compilation, never for a cache load.
    def on_start(self, event):
        global compiled
        compiled = True
        # Started at the first compilation, the helper has imported nbgrad (about half a
        # second) by the time the forward that is compiling now asks it for its backward.
        if _owner != os.getpid() and start_when is not None and start_when():
            with _lock:
                _start()

    def on_end(self, event):
        pass


def ask(function, *arguments, priority=FIRST, start=True, waiter=None):
    """Ask the helper to call `function` ("module:name") with `arguments` (picklable), once a
    process. If the helper has not started, `start` starts it; otherwise the request waits for
    its start (an optimizer asks when it is made, often before anything compiles). `waiter`
    (weakly held) is what will call `wait_for` before it uses the request's kernels."""
    try:
        message = pickle.dumps((priority, function, arguments))
    except Exception:  # noqa: BLE001 - an argument that does not pickle: nothing is asked
        return
    if not ENABLED:
        return
    with _lock:
        if _owner != os.getpid():  # (no helper of this process's: a forked child's are its parent's)
            _numbers.clear()
            _waiters.clear()
        if message in _asked_before_start:
            return
        number = _numbers.get(message)
        if number is None:
            number = len(_numbers) + len(_asked_before_start)
            if not running():
                if not start:
                    if len(_asked_before_start) < _KEPT_BEFORE_START:
                        _asked_before_start[message] = number
                    return  # (no waiter: nothing to wait for on a warm cache)
                _start()
            _numbers[message] = number
            _send(number, message)
        if waiter is not None and running():
            _waiters[waiter] = number


def wait_for(waiter):
    """Wait until the helper has done `waiter`'s request (its kernels are then in the cache),
    has gone, or WAIT_LIMIT_S have passed."""
    number = _waiters.pop(waiter, None)
    if number is None or not running():
        return
    with _progress:
        _progress.wait_for(lambda: number in _done or _helper_gone, timeout=WAIT_LIMIT_S)


def in_cache(dispatcher):
    """Whether Numba's disk cache holds some compiled version of `dispatcher` (a first
    hint at a warm cache, before anything has compiled)."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:  # no disk cache: nothing for a helper to hand over
        return True


def asked_for_forward():
    """Reset `compiled`: the forward that compiled has asked (or need not)."""
    global compiled
    compiled = False


def running():
    """Whether this process has a helper at work."""
    return _process is not None and _owner == os.getpid() and _process.poll() is None


def layout(array):
    """What Numba specializes a kernel on, of `array`: (shape, dtype, strides, writeable)."""
    return array.shape, array.dtype.str, array.strides, array.flags.writeable


def stand_in(layout):
    """Zeros laid out as `layout` describes (made in the helper)."""
    shape, dtype, strides, writeable = layout
    dtype = np.dtype(dtype)
    low = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0 and n > 0)
    high = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0 and n > 0)
    base = np.zeros((high - low) // dtype.itemsize + 1, dtype)
    return np.lib.stride_tricks.as_strided(base[-low // dtype.itemsize:], shape, strides,
                                           writeable=writeable)


def _start():
    global _process, _owner, ENABLED, _helper_gone
    if not ENABLED or _owner == os.getpid():
        return  # (once a process: a helper that died is not started again)
    if modules.uses_private_directory():
        ENABLED = False  # nothing compiled there is kept: a helper could not hand it over
        return
    # The same caches (the environment is inherited) and this nbgrad before any other.
    path = [_PACKAGE_PARENT] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, NBGRAD_COMPILE_HELPER="0", NBGRAD_DEFERRED="0",
               PYTHONPATH=os.pathsep.join(path))
    try:
        _process = subprocess.Popen(
            [sys.executable, "-c", "from nbgrad._core.compile_ahead import helper; helper()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)  # (a Ctrl-C at the terminal is this process's)
    except OSError:
        ENABLED = False
        return
    _owner = os.getpid()
    _done.clear()  # (a forked child's: its parent's helper's)
    _helper_gone = False
    threading.Thread(target=_follow, args=(_process.stdout,), daemon=True).start()
    for message, number in _asked_before_start.items():
        _numbers[message] = number
        _send(number, message)
    _asked_before_start.clear()


def _send(number, message):
    if not running():
        return
    try:
        _process.stdin.write(struct.pack("<II", len(message), number) + message)
        _process.stdin.flush()
    except OSError:  # the helper has gone: this process compiles what it needs itself
        _stop()


def _follow(reports):
    """Note the helper's reports (a line with the number of each request done) until it
    ends."""
    global _helper_gone
    for line in reports:
        with _progress:
            _done.add(int(line))
            _progress.notify_all()
    with _progress:
        _helper_gone = True
        _progress.notify_all()


def _stop():
    global _process
    if _process is not None and _owner == os.getpid():
        _process.kill()
        _process.wait()
    _process = None


def wait():
    """Let the helper do what it was asked, and end it (for tests and measurements)."""
    global _process
    if _process is not None and _owner == os.getpid():
        _process.stdin.close()
        _process.wait()
    _process = None


def helper():
    """The helper process's main: requests on stdin, reports on stdout (anything else the
    work prints goes to /dev/null, not into the reports)."""
    reports = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, reports=reports)


def serve(stream, idle_exit_s=IDLE_EXIT_S, reports=None):
    """The helper process: do the requests read from `stream`, by priority, until it closes
    or nothing comes for `idle_exit_s`, writing the number of each request done (failed or
    not) on a line of `reports` (if given). A request that fails is dropped: the parent
    compiles that kernel itself."""
    requests = []  # a heap of (priority, order, number, message); None: the end of the stream
    arrived = threading.Condition()
    order = itertools.count()

    def read():
        # NOTE: a thread reads the pipe at once, so the parent's writes never wait for a
        # compilation to end.
        try:
            while len(header := stream.read(8)) == 8:
                length, number = struct.unpack("<II", header)
                message = stream.read(length)
                with arrived:
                    heapq.heappush(requests,
                                   (pickle.loads(message)[0], next(order), number, message))
                    arrived.notify()
        except Exception:  # noqa: BLE001, S110 - a garbled stream ends the helper
            pass
        with arrived:
            heapq.heappush(requests, (LAST + 1, next(order), None, None))
            arrived.notify()

    threading.Thread(target=read, daemon=True).start()
    while True:
        with arrived:
            if not arrived.wait_for(lambda: requests, timeout=idle_exit_s):
                return
            _, _, number, message = heapq.heappop(requests)
        if message is None:
            return
        _, function, arguments = pickle.loads(message)
        module, name = function.split(":")
        try:
            getattr(importlib.import_module(module), name)(*arguments)
        except Exception:  # noqa: BLE001, S110 - this process compiles it itself then
            pass
        if reports is not None:
            reports.write(f"{number}\n".encode())
            reports.flush()


event.register("numba:compile", _CompileSeen())
atexit.register(_stop)
