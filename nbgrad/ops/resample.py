"""Resampling: constant padding, and resampling dimensions by weighted taps (every other
padding mode and every `interpolate` mode).

`pad_constant` copies the input (cropped where a pad is negative) into an output filled
with the value: two boxes of (start, stop) bounds, one per dimension, no index.

`resample` resamples each dimension in turn (separably, as PyTorch's linear modes):
output index o along it is sum_k weight[o, k] * input[index[o, k]], with the taps
(`index`, `weight`, both (out_size, taps)) computed by the API function
(nbgrad/_tensor/resample.py), which owns PyTorch's index rules. A primitive for memory
and speed. As `take` on flat positions, a gather (reflect padding, nearest resizing) needs
an int64 position per output element, built in Python for each new shape: 16 MB and 48 ms
for nearest x2 of 8x16x64x64, then 0.85 ms forward and 1.1 ms backward; taps are a few KB
per dimension, built in microseconds, and run in 1.26 and 1.54 ms. Bilinear as weighted
takes would be four gathers, four products and three sums (eleven nodes and full-size
passes) where this is one pass per dimension and one node.

Both have fused rules that call the eager kernels (`_ResampleRule`, `_PadConstantRule`). Their
parameters hash by value (tuples of ints, `Taps`): a deferred graph is keyed by its ops'
parameters, and one that cannot be keyed never fuses.

NOTE: Numba does not bounds-check. The tap indices are made in Python from sizes alone and
lie in [0, input size); they are never user data. A window shorter than the table's width
(area, antialias) ends in taps of index -1, which the kernels skip: as weight-0 taps of a
real index they would add 0 * inf = NaN where PyTorch's window has no such element. The
first tap of each output is always a real one.
"""
import math

import numba
import numpy as np

from .elementwise import _MAX_STRIDED_NDIM, COPY
from .primitive import Primitive, Unfusable, register
from .shape import copy_into

_jit = numba.njit(cache=True, error_model="numpy")


def _same_array(a, b):
    return a is b or (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b))


class Taps:
    """One pass of `resample`: output index o along `dim` reads
    sum_k weight[o, k] * input[index[o, k]] (`index` and `weight` (out_size, taps)).

    Equal and hashed by value, as a parameter must be for deferred graphs to be keyed by it.
    The API function's tap tables are cached and shared by every call with the same sizes:
    they are made read-only here (so fused steps may also inline them as constants)."""
    __slots__ = ("dim", "index", "weight")

    def __init__(self, dim, index, weight):
        index.flags.writeable = weight.flags.writeable = False
        self.dim, self.index, self.weight = dim, index, weight

    def __iter__(self):
        return iter((self.dim, self.index, self.weight))

    def __eq__(self, other):
        if not isinstance(other, Taps):
            return NotImplemented
        return (self.dim == other.dim and _same_array(self.index, other.index)
                and _same_array(self.weight, other.weight))

    def __hash__(self):
        return hash((self.dim, self.index.tobytes(), self.weight.tobytes()))

    def __repr__(self):
        return f"Taps(dim={self.dim}, taps={self.index.shape[1]}, out_size={self.index.shape[0]})"


def _typed(weight, dtype):
    """`weight` in the data's dtype, read-only in every case (one kernel signature for eager
    calls and fused steps, which pass it as a constant)."""
    if weight.dtype == dtype:
        return weight
    converted = weight.astype(dtype)
    converted.flags.writeable = False
    return converted


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
                if source < 0:
                    break  # (the window's end)
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
                if source < 0:
                    break
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
                if index[o, k] < 0:
                    break
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
                if index[o, k] < 0:
                    break
                grad[a, index[o, k]] += weight[o, k] * g[a, o]


def _axis_view(shape, dim):
    """`shape` as the kernels view it: (before dim, dim), or (before dim, dim, after dim)."""
    before = math.prod(shape[:dim])
    if dim == len(shape) - 1:
        return (before, shape[dim])
    return (before, shape[dim], math.prod(shape[dim + 1:]))


def _pass_kernel(kernel, last_kernel, shape, dim):
    """`kernel`, or `last_kernel` for the last dimension (see above)."""
    return last_kernel if dim == len(shape) - 1 else kernel


def _along(kernel, last_kernel, source, dim, index, weight, out):
    """Run `kernel` (or `last_kernel` for the last dimension) on C-contiguous arrays `source`
    and `out` viewed as (before dim, dim, after dim)."""
    _pass_kernel(kernel, last_kernel, source.shape, dim)(
        source.reshape(_axis_view(source.shape, dim)), index, weight,
        out.reshape(_axis_view(out.shape, dim)))


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
               _typed(weight, x.dtype), out)
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
               _typed(weight, g.dtype), grad)
    return (grad,)


def _resample_differentiable_vjp(node, g, saved):
    """Each pass undone as a product with its (n_out, n_in) matrix along its dimension: Tensor
    operations, so differentiable again (the matrix is dense: fine for higher-order
    gradients, which are rare)."""
    grad = g
    for (dim, index, weight), in_shape in _undone_passes(node):
        matrix = np.zeros((index.shape[0], in_shape[dim]))
        real = index >= 0
        np.add.at(matrix, (np.nonzero(real)[0], index[real]), weight[real])
        grad = (grad.transpose(dim, -1) @ g.new_tensor(matrix)).transpose(dim, -1)
    return (grad,)


class _ResampleRule:
    """The fused rule of `resample`: the eager kernels, one call per pass, on the step's
    buffers (a buffer between passes), the taps as constants."""

    @staticmethod
    def _emit_passes(em, kernels, source, passes, dtype, result):
        """Emit `passes` ((dim, index, weight), source shape, target shape) from the array
        named `source`, the last one into the array `result`."""
        for k, ((dim, index, weight), source_shape, target_shape) in enumerate(passes):
            target = em.out(result if k == len(passes) - 1 else np.empty(target_shape, dtype))
            kernel = em.kernel(_pass_kernel(*kernels, source_shape, dim))
            em.emit(f"{kernel}({source}.reshape({_axis_view(source_shape, dim)!r}), "
                    f"{em.constant(index)}, {em.constant(_typed(weight, dtype))}, "
                    f"{target}.reshape({_axis_view(target_shape, dim)!r}))")
            source = target

    def forward(self, em, arrays, params, out):
        (x,) = arrays
        passes, shape = [], list(x.shape)
        for taps in params["taps"]:
            source_shape = tuple(shape)
            shape[taps.dim] = taps.index.shape[0]
            passes.append((taps, source_shape, tuple(shape)))
        self._emit_passes(em, (resample_axis_kernel, resample_last_kernel), em.ref(x), passes,
                          x.dtype, out)

    def vjp(self, em, node, g, input_grads):
        # Each pass undone, last one first: from its output's shape back to its input's.
        passes, shape = [], tuple(g.shape)
        for taps, in_shape in _undone_passes(node):
            passes.append((taps, shape, in_shape))
            shape = in_shape
        self._emit_passes(em, (resample_axis_vjp_kernel, resample_last_vjp_kernel), em.ref(g),
                          passes, g.dtype, input_grads[0])


def _slices(bounds):
    # NOTE: the trailing Ellipsis keeps a 0-d box a view: `a[()]` of a 0-d array is a copy,
    # and a copy into it would be lost.
    return tuple(slice(start, stop) for start, stop in bounds) + (Ellipsis,)


def _pad_constant_infer(x, crop, interior, out_shape, value):
    return out_shape, x.dtype


def _pad_constant_forward(x, crop, interior, out_shape, value):
    out = np.full(out_shape, value, x.dtype)
    copy_into(out[_slices(interior)], x[_slices(crop)])
    return out


def _pad_constant_vjp(node, g):
    grad = np.zeros(node.input_meta[0][0], g.dtype)
    copy_into(grad[_slices(node.params["crop"])], g[_slices(node.params["interior"])])
    return (grad,)


def _pad_constant_differentiable_vjp(node, g, saved):
    grad = g.new_zeros(node.input_meta[0][0])
    grad[_slices(node.params["crop"])] = g[_slices(node.params["interior"])]
    return (grad,)


def _box(name, shape, bounds):
    """Source of the box `bounds` of the C-contiguous array `name` of `shape`, as the view
    eager's copy (`copy_into`: elementwise's strided kernel) gets: padded to its rank by
    leading dimensions of size 1."""
    lead = _MAX_STRIDED_NDIM - len(shape)
    index = [":"] * lead + [f"{start}:{stop}" for start, stop in bounds]
    return f"{name}.reshape({(1,) * lead + tuple(shape)!r})[{', '.join(index)}]"


class _PadConstantRule:
    """The fused rule of `pad_constant`: the output filled, then the box copied by eager's
    copy kernel; the VJP the same copy back into zeros."""

    @staticmethod
    def _emit_copy(em, source, source_shape, source_box, target, target_shape, target_box, fill):
        if len(target_shape) > _MAX_STRIDED_NDIM:
            raise Unfusable(f"constant padding of a {len(target_shape)}-D tensor (the copy "
                            f"kernel takes at most {_MAX_STRIDED_NDIM} dimensions)")
        # (Filled flat: Numba's fill does not take a 0-d array.)
        em.emit(f"{target}.reshape({math.prod(target_shape)}).fill({fill})")
        em.emit(f"{em.kernel(COPY.strided)}({_box(source, source_shape, source_box)}, "
                f"{_box(target, target_shape, target_box)})")

    def forward(self, em, arrays, params, out):
        (x,) = arrays
        self._emit_copy(em, em.ref(x), x.shape, params["crop"], em.out(out), out.shape,
                        params["interior"], em.literal(params["value"], out.dtype))

    def vjp(self, em, node, g, input_grads):
        (grad,) = input_grads
        self._emit_copy(em, em.ref(g), g.shape, node.params["interior"], em.out(grad),
                        grad.shape, node.params["crop"], em.literal(0, grad.dtype))


PRIMS = {
    # `crop`: the (start, stop) bounds of the input's kept part in each dimension;
    # `interior`: where it goes in the output of `out_shape`, filled with `value` elsewhere.
    # Not `index_put` on a filled constant: PyTorch's ConstantPadNdBackward0 links the input
    # alone.
    "pad_constant": register(Primitive("pad_constant", "ConstantPadNdBackward0",
                                       _pad_constant_infer, _pad_constant_forward,
                                       _pad_constant_vjp, fuse=_PadConstantRule(),
                                       differentiable_vjp=_pad_constant_differentiable_vjp)),
    # `taps`: a tuple of `Taps`, applied in order; the API function passes PyTorch's grad_fn
    # name (ReflectionPad2DBackward0, UpsampleBilinear2DBackward0, ...).
    "resample": register(Primitive("resample", "UpsampleBilinear2DBackward0", _resample_infer,
                                   _resample_forward, _resample_vjp, fuse=_ResampleRule(),
                                   differentiable_vjp=_resample_differentiable_vjp)),
}
