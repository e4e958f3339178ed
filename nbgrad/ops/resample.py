"""Resampling: constant padding, and `interpolate`'s linear, bilinear, antialiased bilinear
and trilinear modes.

`pad_constant` writes the input (cropped where a pad is negative) at flat positions of an
output filled with the value, with the `indexing` kernels; its own row (not `index_put` on a
filled constant) because PyTorch's ConstantPadNdBackward0 links the input alone. Gathering
pads and nearest resizing are `take` itself.

The linear modes resample by weighted taps, each resized dimension in turn (separably, as
PyTorch does): output index o along it is sum_k weight[o, k] * input[index[o, k]], with the
taps (`index`, `weight`, both (out_size, taps)) computed and checked by the API function
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

from .indexing import put_values, take_kernel
from .primitive import Primitive, register
from .shape import flat_contiguous

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


def _pad_constant_infer(x, positions, crop, out_shape, value):
    return out_shape, x.dtype


def _pad_constant_forward(x, positions, crop, out_shape, value):
    out = np.full(out_shape, value, x.dtype)
    put_values(out, x[crop], positions)
    return out


def _pad_constant_vjp(node, g):
    positions = node.params["positions"]
    grad = np.zeros(node.input_meta[0][0], g.dtype)
    kept = np.empty(positions.shape, g.dtype)
    take_kernel(flat_contiguous(g), positions.reshape(-1), kept.reshape(-1))
    grad[node.params["crop"]] = kept
    return (grad,)


PRIMS = {
    # `crop`: the basic index of the input's kept part; `positions`: where each of its
    # elements goes in the output of `out_shape`, filled with `value` elsewhere.
    "pad_constant": register(Primitive("pad_constant", "ConstantPadNdBackward0",
                                       _pad_constant_infer, _pad_constant_forward,
                                       _pad_constant_vjp)),
    # `taps`: ((dim, index, weight), ...) applied in order; the API function passes
    # PyTorch's grad_fn name (UpsampleLinear1DBackward0, UpsampleBilinear2DBackward0, ...).
    "resample": register(Primitive("resample", "UpsampleBilinear2DBackward0", _resample_infer,
                                   _resample_forward, _resample_vjp)),
}
