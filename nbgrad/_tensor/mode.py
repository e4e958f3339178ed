"""The active mode of op calls: eager, deferred, or traced (see `dispatch`)."""
from ..autograd import deferred


def run_pending():
    """Run every op whose result is still pending (deferred), so that every array holds
    its value. Called before anything writes an array in place or hands one out."""
    deferred.realize_all()
