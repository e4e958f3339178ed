"""Grad mode: whether operations record a graph. Context managers that also decorate."""
import functools


class _State:
    enabled = True


state = _State()


def is_grad_enabled():
    return state.enabled


class _GradMode:
    """Base for no_grad / enable_grad / set_grad_enabled: a context manager and a decorator."""

    mode = True

    def __enter__(self):
        self._previous = state.enabled
        state.enabled = self.mode

    def __exit__(self, *exc):
        state.enabled = self._previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__(*self._args()):
                return fn(*args, **kwargs)
        return wrapper

    def _args(self):
        return ()


class no_grad(_GradMode):
    mode = False


class enable_grad(_GradMode):
    mode = True


class set_grad_enabled(_GradMode):
    """Sets grad mode on construction (as PyTorch does), so it also works as a plain call."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self._previous = state.enabled
        state.enabled = self.mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        # Used as a decorator, construction must not leave the mode changed.
        state.enabled = self._previous
        return super().__call__(fn)

    def _args(self):
        return (self.mode,)


class inference_mode(no_grad):
    def __init__(self, mode=True):
        self.mode = not mode
