"""Resampling by weighted taps: `interpolate`'s linear, bilinear and antialiased bilinear
modes. Each resized dimension is resampled in turn (separably, as PyTorch does): output
index o along it is sum_k weight[o, k] * input[index[o, k]], with the taps (`index`,
`weight`, both (out_size, taps)) computed and checked by the API function
(nbgrad/_tensor/resample.py), which owns PyTorch's source-index rules.

A primitive for speed: as weighted `take`s, bilinear would be four full-size gathers, four
products and three sums (eleven nodes and passes over the output), where this is one pass
per dimension and one node under PyTorch's grad_fn name. Nearest modes need no weights and
are `take` itself. (No fused rule yet: a step that calls it runs eagerly.)

NOTE: Numba does not bounds-check. The tap indices are made in Python from sizes alone and
lie in [0, input size); they are never user data.
"""
import numba
import numpy as np

from .primitive import Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def resample_axis_kernel(x, index, weight, out):
    """x (outer, n_in, inner) -> out (outer, n_out, inner) along the middle axis."""
    for a in range(out.shape[0]):
        for o in range(out.shape[1]):
            out[a, o, :] = 0.0
            for k in range(index.shape[1]):
                source, w = index[o, k], weight[o, k]
                for i in range(out.shape[2]):
                    out[a, o, i] += w * x[a, source, i]


@_jit
def resample_axis_vjp_kernel(g, index, weight, grad):
    """The transpose of `resample_axis_kernel`: g (outer, n_out, inner) scattered into grad
    (outer, n_in, inner)."""
    grad[:] = 0.0
    for a in range(g.shape[0]):
        for o in range(g.shape[1]):
            for k in range(index.shape[1]):
                source, w = index[o, k], weight[o, k]
                for i in range(g.shape[2]):
                    grad[a, source, i] += w * g[a, o, i]


def _as_three_axes(array, dim):
    """A C-contiguous `array` viewed as (before dim, dim, after dim)."""
    shape = array.shape
    return array.reshape(int(np.prod(shape[:dim])), shape[dim], int(np.prod(shape[dim + 1:])))


def _resample_infer(x, taps):
    shape = list(x.shape)
    for dim, index, _ in taps:
        shape[dim] = index.shape[0]
    return tuple(shape), x.dtype


def _resample_forward(x, taps):
    out = np.ascontiguousarray(x)
    for dim, index, weight in taps:
        source = out
        shape = list(source.shape)
        shape[dim] = index.shape[0]
        out = np.empty(shape, x.dtype)
        resample_axis_kernel(_as_three_axes(source, dim), index,
                             weight.astype(x.dtype, copy=False), _as_three_axes(out, dim))
    return out


def _resample_vjp(node, g):
    shape = list(node.input_meta[0][0])
    grad = np.ascontiguousarray(g)
    taps = node.params["taps"]
    # The input's shape after each dimension of `taps` is resampled, last one first.
    shapes = []
    for dim, index, _ in taps:
        shapes.append(tuple(shape))
        shape[dim] = index.shape[0]
    for (dim, index, weight), in_shape in zip(taps[::-1], shapes[::-1]):
        source = grad
        grad = np.empty(in_shape, g.dtype)
        resample_axis_vjp_kernel(_as_three_axes(source, dim), index,
                                 weight.astype(g.dtype, copy=False), _as_three_axes(grad, dim))
    return (grad,)


PRIMS = {
    # `taps`: ((dim, index, weight), ...) applied in order; the API function passes
    # PyTorch's grad_fn name (UpsampleLinear1DBackward0, UpsampleBilinear2DBackward0, ...).
    "resample": register(Primitive("resample", "UpsampleBilinear2DBackward0", _resample_infer,
                                   _resample_forward, _resample_vjp)),
}
