"""The garbage collector's threshold while Numba compiles (nbgrad._core.compile_gc)."""
import gc

import numba
import pytest
from numba.core import event

import nbgrad  # noqa: F401  (registers the listener)
from nbgrad._core.compile_gc import COMPILE_THRESHOLD


class _Thresholds(event.Listener):
    def __init__(self):
        self.seen = []

    def on_start(self, event):
        self.seen.append(gc.get_threshold())

    def on_end(self, event):
        pass


@pytest.fixture
def thresholds():
    listener = _Thresholds()
    event.register("numba:compile", listener)
    saved = gc.get_threshold()
    yield listener
    event.unregister("numba:compile", listener)
    gc.set_threshold(*saved)


def test_compiles_raise_the_young_threshold_and_put_back_the_users(thresholds):
    gc.set_threshold(900, 7, 3)

    @numba.njit
    def inner(x):
        return x * 2

    @numba.njit
    def outer(x):
        return inner(x) + 1  # compiles inner inside outer's compilation

    assert outer(20) == 41
    assert thresholds.seen == [(COMPILE_THRESHOLD, 7, 3)] * 2
    assert gc.get_threshold() == (900, 7, 3)


def test_a_failed_compile_puts_the_threshold_back(thresholds):
    gc.set_threshold(800, 10, 10)

    @numba.njit
    def bad(x):
        return x.no_such_attribute

    with pytest.raises(numba.core.errors.TypingError):
        bad(1)
    assert thresholds.seen and thresholds.seen[0][0] == COMPILE_THRESHOLD
    assert gc.get_threshold() == (800, 10, 10)


def test_a_higher_threshold_of_the_users_is_kept(thresholds):
    gc.set_threshold(COMPILE_THRESHOLD * 3, 10, 10)

    @numba.njit
    def f(x):
        return x - 1

    assert f(3) == 2
    assert thresholds.seen == [(COMPILE_THRESHOLD * 3, 10, 10)]
