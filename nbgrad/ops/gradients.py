"""The backward engine's own array arithmetic, as primitive calls on arrays: the sum of two
gradients that reach one tensor, a leaf's first gradient (a copy), and a gradient fitted to
its input's shape (`sum_to`, the one place that undoes broadcasting) and dtype.

The engine calls these functions and names no op. Each reports its call to an active
tracer as an op, so the fused code generator emits it by that primitive's fused rule.
"""
import math

import numpy as np

from .._core import tracing
from .elementwise import FORWARD, run
from .primitive import PRIMITIVES, Primitive, register
from .reduction import sum_to_shape

_ADD = PRIMITIVES["add"]
_ADD_KERNELS = FORWARD["add"]
_COPY = PRIMITIVES["to_copy"]
_COPY_KERNELS = FORWARD["to_copy"]
_INT64 = np.dtype(np.int64)


def _report(prim, arrays, params, out):
    if tracing.current is not None:
        tracing.current.array_op(prim, arrays, params, out)


def added(a, b, out=None):
    """a + b for two gradients of one shape and dtype, into `out` (one of them, owned by
    the caller) or a new array."""
    result = run(_ADD_KERNELS, (a, b), (), a.shape, a.dtype, out=out)
    _report(_ADD, (a, b), {}, result)
    return result


def copied(a):
    """A copy of gradient `a` (the copy kernel runs on threads for large arrays; a gradient
    is often a broadcast view of one value, from sum's VJP)."""
    result = run(_COPY_KERNELS, (a,), (), a.shape, a.dtype)
    _report(_COPY, (a,), {"dtype": a.dtype}, result)
    return result


def fitted(g, shape, dtype):
    """Gradient `g` summed back to `shape` (if broadcasting made it larger) and cast to
    `dtype`: the gradient of an input of that shape and dtype."""
    if g.shape != shape:
        summed = sum_to_shape(g, shape)
        _report(SUM_TO, (g,), {"shape": shape}, summed)
        g = summed
    if g.dtype != dtype:
        cast = g.astype(dtype)
        _report(_COPY, (g,), {"dtype": dtype}, cast)
        g = cast
    return g


def fitted_tensor(g, shape, dtype):
    """`fitted` for create_graph=True: Tensor `g` summed back to `shape` and cast to NumPy
    `dtype` by Tensor methods, which record ops, so the result can be differentiated again."""
    if tuple(g.shape) != shape:
        g = g.sum_to_size(shape)
    return g.to(dtype)


def _sum_to_infer(g, shape):
    # As PyTorch's sum, bools are counted: an int64 result.
    return shape, _INT64 if g.dtype == np.bool_ else g.dtype


def _sum_to_forward(g, shape):
    return sum_to_shape(g.astype(_INT64) if g.dtype == np.bool_ else g, shape)


def _sum_to_vjp(node, grad):
    (shape, _), = node.input_meta
    return (np.broadcast_to(grad, shape),)


class _SumToFusion:
    """A broadcast gradient summed back to its input's shape, in float64 (or int64)
    accumulators as the eager reduction kernel sums; a sum down to one value (a scalar
    parameter's gradient) in a local, which allocates nothing."""

    def forward(self, em, arrays, params, out):
        (g,), shape = arrays, params["shape"]
        source, target = em.ref(g), em.out(out)
        em.comment(f"backward: sum a broadcast gradient {tuple(g.shape)} -> {tuple(shape)}")
        keep = (1,) * (g.ndim - len(shape)) + tuple(shape)
        accumulator = em.new_name("acc")
        wide = "np.float64" if g.dtype.kind == "f" else "np.int64"
        index = ", ".join(f"i{d}" for d in range(g.ndim))
        if math.prod(keep) == 1:
            em.emit(f"{accumulator} = {wide}(0)")
            into, summed = accumulator, accumulator
        else:
            em.emit(f"{accumulator} = np.zeros({keep!r}, {wide})")
            into = f"{accumulator}[" + ", ".join(f"i{d}" if keep[d] != 1 else "0"
                                                 for d in range(g.ndim)) + "]"
            # NOTE: read back in the target's own shape: `keep` has the leading 1s of the
            # broadcast rank, which the target's loop does not index.
            summed = (f"{accumulator}.reshape({tuple(shape)!r})", shape)
        for d in range(g.ndim):
            em.emit("    " * d + f"for i{d} in range({g.shape[d]}):")
        em.emit("    " * g.ndim + f"{into} += {source}[{index}]")
        em.copy(summed, target, shape)

    def vjp(self, em, node, g, input_grads):
        (shape, _), = node.input_meta
        em.copy((em.ref(g), g.shape), em.out(input_grads[0]), shape)


def _sum_to_differentiable_vjp(node, g, saved):
    (shape, _), = node.input_meta
    return (g.expand(shape),)


SUM_TO = register(Primitive("sum_to", "SumBackward1", _sum_to_infer, _sum_to_forward,
                            _sum_to_vjp, fuse=_SumToFusion(),
                            differentiable_vjp=_sum_to_differentiable_vjp))
