"""Resampling: constant padding, and resampling dimensions by weighted taps (every other
padding mode and every `interpolate` mode).

`pad_constant` copies the input (cropped where a pad is negative) into an output filled
with the value: two slices, no index.

`resample` resamples each dimension in turn (separably, as PyTorch's linear modes):
output index o along it is sum_k weight[o, k] * input[index[o, k]], with the taps
(`index`, `weight`, both (out_size, taps)) computed by the API function
(nbgrad/_tensor/resample.py), which owns PyTorch's index rules. A primitive for memory
and speed. As `take` on flat positions, a gather (reflect padding, nearest resizing) needs
an int64 position per output element, built in Python for each new shape: 16 MB and 48 ms
for nearest x2 of 8x16x64x64, then 0.85 ms forward and 1.1 ms backward; taps are a few KB
per dimension, built in microseconds, and run in 1.26 and 1.54 ms. Bilinear as weighted
takes would be four gathers, four products and three sums (eleven nodes and full-size
passes) where this is one pass per dimension and one node. (No fused rule yet: a step that
calls it runs eagerly.)

NOTE: Numba does not bounds-check. The tap indices are made in Python from sizes alone and
lie in [0, input size); they are never user data.
"""
import numba
import numpy as np

from .primitive import Primitive, register
from .shape import copy_into, zeros_tensor

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def resample_axis_kernel(x, index, weight, out):
    """x (outer, n_in, inner) -> out (outer, n_out, inner) along the middle axis."""
    for a in range(out.shape[0]):
        for o in range(out.shape[1]):
            source, w = index[o, 0], weight[o, 0]
            for i in range(out.shape[2]):
                out[a, o, i] = w * x[a, source, i]
            for k in range(1, index.shape[1]):
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


# NOTE: the last dimension (inner size 1) has its own 2-D kernels: through the 3-D ones,
# with an inner loop of one element, its backward ran 3x slower (8.4 against 2.8 ms for
# an 8x16x128x128 gradient); and one tap (nearest, padding) its own loop, without the loop
# over taps, which halves the backward's time again (1.35 ms, as `take`'s scatter).

@_jit
def resample_last_kernel(x, index, weight, out):
    """x (outer, n_in) -> out (outer, n_out) along the last axis."""
    taps = index.shape[1]
    for a in range(out.shape[0]):
        row, out_row = x[a], out[a]
        for o in range(out.shape[1]):
            total = weight[o, 0] * row[index[o, 0]]
            for k in range(1, taps):
                total += weight[o, k] * row[index[o, k]]
            out_row[o] = total


@_jit
def resample_last_vjp_kernel(g, index, weight, grad):
    grad[:] = 0.0
    if index.shape[1] == 1:
        for a in range(g.shape[0]):
            g_row, grad_row = g[a], grad[a]
            for o in range(g.shape[1]):
                grad_row[index[o, 0]] += weight[o, 0] * g_row[o]
        return
    for a in range(g.shape[0]):
        for o in range(g.shape[1]):
            for k in range(index.shape[1]):
                grad[a, index[o, k]] += weight[o, k] * g[a, o]


def _along(kernel, last_kernel, source, dim, index, weight, out):
    """Run `kernel` (or `last_kernel` for the last dimension) on C-contiguous arrays `source`
    and `out` viewed as (before dim, dim, after dim)."""
    before = int(np.prod(source.shape[:dim]))
    if dim == source.ndim - 1:
        last_kernel(source.reshape(before, source.shape[dim]), index, weight,
                    out.reshape(before, out.shape[dim]))
    else:
        after = int(np.prod(source.shape[dim + 1:]))
        kernel(source.reshape(before, source.shape[dim], after), index, weight,
               out.reshape(before, out.shape[dim], after))


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
        _along(resample_axis_kernel, resample_last_kernel, source, dim, index,
               weight.astype(x.dtype, copy=False), out)
    return out


def _undone_passes(node):
    """The passes of `taps` last one first, each with the shape it was given."""
    shape = list(node.input_meta[0][0])
    taps = node.params["taps"]
    shapes = []
    for dim, index, _ in taps:
        shapes.append(tuple(shape))
        shape[dim] = index.shape[0]
    return zip(taps[::-1], shapes[::-1])


def _resample_vjp(node, g):
    grad = np.ascontiguousarray(g)
    for (dim, index, weight), in_shape in _undone_passes(node):
        source = grad
        grad = np.empty(in_shape, g.dtype)
        _along(resample_axis_vjp_kernel, resample_last_vjp_kernel, source, dim, index,
               weight.astype(g.dtype, copy=False), grad)
    return (grad,)


def _resample_differentiable_vjp(node, g, saved):
    """Each pass undone as a product with its (n_out, n_in) matrix along its dimension: Tensor
    operations, so differentiable again (the matrix is dense: fine for higher-order
    gradients, which are rare)."""
    grad = g
    for (dim, index, weight), in_shape in _undone_passes(node):
        matrix = np.zeros((index.shape[0], in_shape[dim]))
        np.add.at(matrix, (np.arange(index.shape[0])[:, None], index), weight)
        dense = zeros_tensor(g, matrix.shape)
        dense[...] = matrix
        grad = (grad.transpose(dim, -1) @ dense).transpose(dim, -1)
    return (grad,)


def _pad_constant_infer(x, crop, interior, out_shape, value):
    return out_shape, x.dtype


def _pad_constant_forward(x, crop, interior, out_shape, value):
    out = np.full(out_shape, value, x.dtype)
    copy_into(out[interior], x[crop])
    return out


def _pad_constant_vjp(node, g):
    grad = np.zeros(node.input_meta[0][0], g.dtype)
    copy_into(grad[node.params["crop"]], g[node.params["interior"]])
    return (grad,)


def _pad_constant_differentiable_vjp(node, g, saved):
    grad = zeros_tensor(g, node.input_meta[0][0])
    grad[node.params["crop"]] = g[node.params["interior"]]
    return (grad,)


PRIMS = {
    # `crop`: the slices of the input's kept part; `interior`: where it goes in the output
    # of `out_shape`, filled with `value` elsewhere. Not `index_put` on a filled constant:
    # PyTorch's ConstantPadNdBackward0 links the input alone.
    "pad_constant": register(Primitive("pad_constant", "ConstantPadNdBackward0",
                                       _pad_constant_infer, _pad_constant_forward,
                                       _pad_constant_vjp,
                                       differentiable_vjp=_pad_constant_differentiable_vjp)),
    # `taps`: ((dim, index, weight), ...) applied in order; the API function passes
    # PyTorch's grad_fn name (ReflectionPad2DBackward0, UpsampleBilinear2DBackward0, ...).
    "resample": register(Primitive("resample", "UpsampleBilinear2DBackward0", _resample_infer,
                                   _resample_forward, _resample_vjp,
                                   differentiable_vjp=_resample_differentiable_vjp)),
}
