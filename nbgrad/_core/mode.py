"""The active mode of op calls: the one small interface through which deferred eager mode
(nbgrad.fuse.deferred) plugs into the layers below it.

`nbgrad._tensor.dispatch` asks the active mode to defer each op call that needs a gradient;
`Tensor` asks it for the value of a tensor whose op is pending, and a graph node for the
links of a pending op; `autograd.backward` offers it the backward pass first; and
everything that writes an array in place or hands one out calls `run_pending()` first, so
that pending ops read the values they were called with. The default mode runs every op at
once (eager): it defers nothing and has nothing pending.
"""


class Eager:
    """Every op runs when it is called."""

    def defer(self, prim, inputs, params, grad_fn_name):
        """A pending result Tensor for the call of differentiable `prim` on `inputs`, one of
        which requires grad (grad mode on), or None: the caller runs it now."""
        return None

    def value(self, tensor):
        """The array of `tensor`, whose op is pending (only a mode that defers makes one)."""
        raise AssertionError("a pending tensor without a deferring mode")

    def run_pending(self):
        """Run every pending op."""

    def take_unread(self, tensor):
        """For an in-place write into `tensor`: a new tensor that takes over its value, if
        that value is still to come and nothing but `tensor` will ever read it (no op, view
        or hook), leaving `tensor` empty to take the result of the out-of-place op instead
        (`give`); else None, and the write must go into tensor's memory."""
        return None

    def give(self, source, tensor):
        """`tensor`, left empty by `take_unread`, takes the value of `source` (pending or
        not); `source` is left empty."""
        raise AssertionError("only a deferring mode empties a tensor")

    def pending_children(self, node):
        """The nodes the input gradients of pending op `node` will go to (its
        `next_functions`), without running it."""
        return ()

    def backward(self, tensors, grad_tensors, retain_graph, inputs):
        """Run `backward` itself (True), or leave it to autograd's engine (False)."""
        return False


active = Eager()


def use(mode):
    """Make `mode` the active mode; the previous one."""
    global active
    previous, active = active, mode
    return previous


def run_pending():
    """Run every op whose result is still pending, so that every array holds its value.
    Called before anything writes an array in place or hands one out."""
    active.run_pending()
