"""Anomaly mode (PyTorch's torch.autograd.detect_anomaly): each node made while it is on keeps
the traceback of the forward call that made it, and backward checks every VJP's outputs for
NaN. On an error in a node's backward, a warning shows that node's forward traceback.

Off, it costs one flag check per recorded node (graph.new_node) and one per backward.
"""
import os
import traceback
import warnings
import weakref

import numpy as np

from .._core import mode, tracing


class _State:
    enabled = False
    check_nan = True
    # The mode that was active before anomaly mode made every op run at once.
    previous_mode = None


state = _State()

# node -> the formatted traceback of the forward call that made it (only while enabled).
traces = weakref.WeakKeyDictionary()

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_anomaly_enabled():
    return state.enabled


def is_anomaly_check_nan_enabled():
    return state.check_nan


def _set(enabled, check_nan):
    if enabled and not state.enabled:
        # NOTE: each op must run (and be checked) on its own: deferred ops would run fused.
        mode.run_pending()
        state.previous_mode = mode.use(mode.Eager())
    elif not enabled and state.enabled:
        mode.use(state.previous_mode)
        state.previous_mode = None
    state.enabled = enabled
    state.check_nan = check_nan


class detect_anomaly:
    """Context manager that turns anomaly mode on inside it (PyTorch warns when it is made)."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", stacklevel=2)

    def __enter__(self):
        self._previous = (state.enabled, state.check_nan)
        _set(True, self.check_nan)

    def __exit__(self, *exc):
        _set(*self._previous)
        return False



class set_detect_anomaly(detect_anomaly):
    # NOTE: detect_anomaly's __init__ (and its warning) is not called, as in PyTorch.
    """Sets anomaly mode on construction (a plain call, as PyTorch's), and back on exit when
    used as a context manager."""

    def __init__(self, mode, check_nan=True):
        self._previous = (state.enabled, state.check_nan)
        _set(bool(mode), check_nan)

    def __enter__(self):
        pass


def record(node):
    """Keep the traceback of the forward call that is making `node` (anomaly mode is on)."""
    tracing.graph_break("anomaly mode checks each backward function on its own")
    frames = [frame for frame in traceback.extract_stack()
              if not os.path.abspath(frame.filename).startswith(_PACKAGE)]
    traces[node] = "".join(traceback.format_list(frames))


def apply(node, grad):
    """`node.apply(grad)` with anomaly checks: a NaN in an output is a RuntimeError, and any
    error warns with the traceback of the forward call that made the node first."""
    tracing.graph_break("anomaly mode checks each backward function on its own")
    try:
        grads = node.apply(grad)
        if state.check_nan:
            for i, g in enumerate(grads):
                if g is not None and g.dtype.kind in "fc" and np.isnan(g).any():
                    raise RuntimeError(f"Function '{type(node).__name__}' returned nan values "
                                       f"in its {i}th output.")
    except Exception:
        trace = traces.get(node)
        if trace is not None:
            warnings.warn(f"Error detected in {type(node).__name__}. Traceback of forward call "
                          f"that caused the error:\n{trace}", stacklevel=2)
        raise
    return grads
