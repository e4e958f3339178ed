"""Convolution: one primitive, `convolution`, for 1-D and 2-D spatial inputs (NCL, NCHW),
with stride, zero padding, dilation, groups and an optional bias (the third input).

Why a primitive: speed. A convolution is a GEMM over im2col columns, and BLAS (SciPy's
OpenBLAS, through Numba's gemm wrapper: `gemm`) runs that GEMM near the machine's peak; as a
composite of unfold/matmul ops it would make several full-size copies and graph nodes per
layer.

The kernels are plain `njit` functions shared by both ranks (a 1-D convolution is a 2-D one
with H = 1). Each call works through the batch in chunks of images whose im2col columns fit a
fixed budget (`COLUMN_BUDGET` elements), so the buffers stay a few MB whatever the batch; per
chunk and group: im2col, one GEMM, and a copy of the result into NCHW with the bias added
(one image: the GEMM writes into the output, onto the bias). The workspace is allocated per
call (glibc reuses the block), so a network's convolutions share one instead of each keeping
its own.
Backward recomputes the columns (saving them would cost K times the input's memory) for the
weight's GEMM, then reuses that buffer for the input's columns (weight.T @ grad), which
col2im adds back. A 1x1 stride-1 unpadded convolution of one image reads the input as the
column matrix: a plain GEMM without im2col.

NOTE: the kernels are serial: BLAS threads the GEMMs, and Numba's parallel workers spin after
a parallel region and starve OpenBLAS (design.md), so im2col gets no prange.
NOTE: a fused step that calls these kernels links and optimizes their code again: about 2 s
more compile time per dtype (measured: a Conv2d-Tanh step 3.7 s CPU, a Linear-Tanh one 1.5).
"""
import numba
import numpy as np
from numba import types

from .._core.dtype import C_TYPE_NAMES
from .._core.kernel_support import typed
from .primitive import TORCH_TYPE_NAMES, Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")

# Elements of the im2col buffer a call aims at (4 MB in float32). A chunk holds at least one
# image, so a larger image gets a buffer of its own size.
COLUMN_BUDGET = 1 << 20


# ---------------------------------------------------------------------------------------
# Kernels. Arrays are 4-D (N, C, H, W); a column matrix `col` is (Cg * KH * KW, count * P)
# for `count` images from `first`, P = OH * OW, and input channels from `channel0`.

@_jit
def _inside(out_w, offset, step, size):
    """The range [lo, hi) of output positions o with 0 <= o * step + offset < size."""
    lo = 0 if offset >= 0 else (-offset + step - 1) // step
    hi = (size - offset + step - 1) // step if size > offset else 0
    hi = min(max(hi, lo), out_w)
    return min(lo, out_w), hi


# NOTE: the inner loops index with unsigned integers: a signed index makes Numba check for a
# negative one (Python's wraparound) at every element, which keeps LLVM from vectorizing the
# copies; and a row's slices are taken only in the stride-1 branch that copies through them
# (made for every row, they cost as much as the copy). Measured: 2 to 4 times faster than
# signed indexing. Signed and unsigned mixed give a float in Numba: an index is made
# unsigned as a whole (`_u(ow * stride_w + offset)`).
_u = np.uint64


@_jit
def im2col(x, first, count, channel0, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
           dilation_h, dilation_w, out_h, out_w, col):
    height, width = x.shape[2], x.shape[3]
    positions = out_h * out_w
    zero = typed(0.0, x)
    for c in range(col.shape[0] // (kernel_h * kernel_w)):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = col[(c * kernel_h + i) * kernel_w + j]
                offset = j * dilation_w - pad_left
                lo, hi = _inside(out_w, offset, stride_w, width)
                for m in range(count):
                    image = x[first + m, channel0 + c]
                    for oh in range(out_h):
                        ih = oh * stride_h - pad_top + i * dilation_h
                        start = _u(m * positions + oh * out_w)
                        if ih < 0 or ih >= height:
                            for ow in range(_u(out_w)):
                                row[start + ow] = zero
                            continue
                        for ow in range(_u(lo)):
                            row[start + ow] = zero
                        line = image[ih]
                        if stride_w == 1:  # (a literal stride: a copy LLVM vectorizes)
                            inside, source = row[start + _u(lo):], line[lo + offset:]
                            for ow in range(_u(hi - lo)):
                                inside[ow] = source[ow]
                        else:
                            for ow in range(lo, hi):
                                row[start + _u(ow)] = line[_u(ow * stride_w + offset)]
                        for ow in range(_u(hi), _u(out_w)):
                            row[start + ow] = zero


@_jit
def col2im(col, first, count, channel0, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
           dilation_h, dilation_w, out_h, out_w, grad_x):
    """Adds the columns back onto the input positions they were read from (im2col's adjoint)."""
    height, width = grad_x.shape[2], grad_x.shape[3]
    positions = out_h * out_w
    for c in range(col.shape[0] // (kernel_h * kernel_w)):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = col[(c * kernel_h + i) * kernel_w + j]
                offset = j * dilation_w - pad_left
                lo, hi = _inside(out_w, offset, stride_w, width)
                for m in range(count):
                    image = grad_x[first + m, channel0 + c]
                    for oh in range(out_h):
                        ih = oh * stride_h - pad_top + i * dilation_h
                        if ih < 0 or ih >= height:
                            continue
                        start = _u(m * positions + oh * out_w)
                        line = image[ih]
                        if stride_w == 1:  # (see im2col)
                            inside, source = line[lo + offset:], row[start + _u(lo):]
                            for ow in range(_u(hi - lo)):
                                inside[ow] += source[ow]
                        else:
                            for ow in range(lo, hi):
                                line[_u(ow * stride_w + offset)] += row[start + _u(ow)]


# NOTE: numba's own BLAS entry (its helper library's wrapper of SciPy's cython_blas gemm,
# which np.dot calls): it takes leading dimensions (a block of a larger matrix needs no copy)
# and beta (gradients accumulate in place), and a call compiles to a few instructions where
# each np.dot layout compiles its own checks. Pointers go as integers (x86-64 passes both
# alike); the C function is: (kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb,
# *beta, *c, ldc), column-major.
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp))
_NO, _TRANSPOSED = ord("n"), ord("t")


@_jit
def gemm(a, transpose_a, b, transpose_b, c, beta):
    """c = op(a) @ op(b) + beta * c for row-major matrices (unit stride along rows; op
    transposes where asked), through BLAS."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0:
            c[:] = 0
        return
    item = c.itemsize
    scalars = np.empty(2, c.dtype)
    scalars[0], scalars[1] = 1, beta
    # Row-major c = op(a) op(b) is column-major c.T = op(b).T op(a).T: b first.
    status = _xxgemm(ord("s") if item == 4 else ord("d"), _TRANSPOSED if transpose_b else _NO,
                     _TRANSPOSED if transpose_a else _NO, n, m, k, scalars.ctypes.data,
                     b.ctypes.data, b.strides[0] // item, a.ctypes.data, a.strides[0] // item,
                     scalars.ctypes.data + item, c.ctypes.data, c.strides[0] // item)
    if status != 0:
        raise RuntimeError("no BLAS gemm: numba could not load SciPy's cython_blas")


@_jit
def _is_pointwise(weight, stride_h, stride_w, pad_top, pad_left, in_positions, positions):
    """A 1x1 stride-1 unpadded convolution: an image's channels are its column matrix."""
    return (weight.shape[2] == 1 and weight.shape[3] == 1 and stride_h == 1 and stride_w == 1
            and pad_top == 0 and pad_left == 0 and in_positions == positions)


@_jit
def conv_forward_kernel(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                        dilation_h, dilation_w, groups, chunk, workspace):
    """out = conv(x, weight) + bias (bias of size 0: none). x, weight, out C-contiguous;
    workspace: at least (K + group_out) * chunk * P elements."""
    batch, channels = x.shape[0], x.shape[1]
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    group_out = out_channels // groups
    size = group_in * kernel_h * kernel_w
    positions = out_h * out_w
    weights = weight.reshape(out_channels, size)
    out3 = out.reshape(batch, out_channels, positions)
    has_bias = bias.shape[0] > 0
    pointwise = _is_pointwise(weight, stride_h, stride_w, pad_top, pad_left,
                              x.shape[2] * x.shape[3], positions)
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * positions
        for g in range(groups):
            w_g = weights[g * group_out:(g + 1) * group_out]
            if pointwise and count == 1:
                col = x[first].reshape(channels, positions)[g * group_in:(g + 1) * group_in]
            else:
                col = workspace[:size * columns].reshape(size, columns)
                im2col(x, first, count, g * group_in, kernel_h, kernel_w, stride_h, stride_w,
                       pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, col)
            if count == 1:
                # One image: the GEMM writes its output rows, onto the bias.
                result = out3[first, g * group_out:(g + 1) * group_out]
                if has_bias:
                    for o in range(group_out):
                        result[o] = bias[g * group_out + o]
                gemm(w_g, False, col, False, result, 1.0 if has_bias else 0.0)
                continue
            result = workspace[size * columns:(size + group_out) * columns].reshape(group_out, columns)
            gemm(w_g, False, col, False, result, 0.0)
            for m in range(count):
                for o in range(group_out):
                    channel = g * group_out + o
                    shift = bias[channel] if has_bias else typed(0.0, x)
                    target = out3[first + m, channel]
                    source = result[o, m * positions:(m + 1) * positions]
                    for p in range(positions):
                        target[p] = source[p] + shift


@_jit
def conv_backward_kernel(x, weight, grad, grad_x, grad_weight, grad_bias, need_x, need_weight,
                         need_bias, in_positions, stride_h, stride_w, pad_top, pad_left,
                         dilation_h, dilation_w, groups, chunk, workspace):
    """The gradients of conv_forward_kernel's inputs that are asked for (the others are
    zero-size stand-ins, as x is when only the weight's gradient is not asked for: it is not
    saved then). in_positions: the input's H * W. workspace: at least
    (K + group_out) * chunk * P elements."""
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    out_h, out_w = grad.shape[2], grad.shape[3]
    group_out = out_channels // groups
    size = group_in * kernel_h * kernel_w
    positions = out_h * out_w
    weights = weight.reshape(out_channels, size)
    grads = grad.reshape(grad.shape[0], out_channels, positions)
    if need_bias:
        for o in range(out_channels):
            total = 0.0
            for n in range(grad.shape[0]):
                for p in range(positions):
                    total += grads[n, o, p]
            grad_bias[o] = total
    if not (need_x or need_weight):
        return
    grad_weights = grad_weight.reshape(grad_weight.shape[0], size)
    if need_x:
        grad_x[:] = 0
    if need_weight and grad.shape[0] == 0:
        grad_weights[:] = 0  # (else the first chunk's GEMM writes it)
    channels = group_in * groups
    pointwise = _is_pointwise(weight, stride_h, stride_w, pad_top, pad_left, in_positions,
                              positions)
    for first in range(0, grad.shape[0], chunk):
        count = min(chunk, grad.shape[0] - first)
        columns = count * positions
        col = workspace[:size * columns].reshape(size, columns)
        for g in range(groups):
            if count == 1:
                g_g = grads[first, g * group_out:(g + 1) * group_out]
            else:
                g_g = workspace[size * columns:(size + group_out) * columns].reshape(
                    group_out, columns)
                for m in range(count):
                    for o in range(group_out):
                        g_g[o, m * positions:(m + 1) * positions] = grads[first + m, g * group_out + o]
            if need_weight:
                if pointwise and count == 1:
                    x_col = x[first].reshape(channels, positions)[g * group_in:(g + 1) * group_in]
                else:
                    x_col = col
                    im2col(x, first, count, g * group_in, kernel_h, kernel_w, stride_h, stride_w,
                           pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, col)
                # The first chunk writes the weight's gradient, the others add to it.
                gemm(g_g, False, x_col, True, grad_weights[g * group_out:(g + 1) * group_out],
                     1.0 if first else 0.0)
            if need_x:
                w_g = weights[g * group_out:(g + 1) * group_out]
                if pointwise and count == 1:
                    gemm(w_g, True, g_g, False,
                         grad_x[first].reshape(channels, positions)[g * group_in:(g + 1) * group_in], 0.0)
                else:
                    gemm(w_g, True, g_g, False, col, 0.0)
                    col2im(col, first, count, g * group_in, kernel_h, kernel_w, stride_h, stride_w,
                           pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, grad_x)


# ---------------------------------------------------------------------------------------
# The row. Parameters: `stride`, `padding`, `dilation` (each a tuple of one int, or of one per
# spatial dim; the API turns padding='same'/'valid' into ints), `groups`. Inputs: input,
# weight and bias (a zero-size stand-in when there is none: PyTorch's node has a bias slot
# either way).

def _shape_list(shape):
    return str(list(shape))


def _per_dim(name, values, dims):
    # As PyTorch, one value stands for all spatial dims.
    if len(values) == 1:
        return tuple(values) * dims
    if len(values) != dims:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {dims} values "
                           f"to match the convolution dimensions, but got {name}={list(values)}")
    return tuple(values)


def resolve(weight_shape, stride, padding, dilation):
    """stride, padding and dilation with one int per spatial dim, with PyTorch's checks."""
    dims = len(weight_shape) - 2
    return (_per_dim("stride", stride, dims), _per_dim("padding", padding, dims),
            _per_dim("dilation", dilation, dims))


def check_bias(weight_shape, bias_shape):
    if bias_shape != weight_shape[:1]:
        raise RuntimeError(f"Given weight of size {_shape_list(weight_shape)}, expected bias to be "
                           f"1-dimensional with {weight_shape[0]} elements, but got bias of size "
                           f"{_shape_list(bias_shape)} instead")


def infer(x, weight, bias, stride, padding, dilation, groups):
    stride, padding, dilation = resolve(weight.shape, stride, padding, dilation)
    if bias.dtype != x.dtype:
        raise RuntimeError(f"Input type ({C_TYPE_NAMES.get(x.dtype.name, x.dtype.name)}) and bias "
                           f"type ({C_TYPE_NAMES.get(bias.dtype.name, bias.dtype.name)}) should be the same")
    if any(side < 0 for side in padding):
        raise RuntimeError("negative padding is not supported")
    if any(step <= 0 for step in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got {list(dilation)}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if x.ndim != weight.ndim:
        raise RuntimeError(f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional "
                           f"weight {_shape_list(weight.shape)}, but got {x.ndim}-dimensional input of "
                           f"size {_shape_list(x.shape)} instead")
    out_channels = weight.shape[0]
    if out_channels < groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at "
                           f"dimension 0, but got weight of size {_shape_list(weight.shape)} instead")
    if out_channels % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size [{_shape_list(weight.shape)}] instead")
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {_shape_list(weight.shape)}, "
                           f"expected input{_shape_list(x.shape)} to have {weight.shape[1] * groups} "
                           f"channels, but got {x.shape[1]} channels instead")
    if bias.shape != (0,):
        check_bias(weight.shape, bias.shape)
    padded = [size + 2 * side for size, side in zip(x.shape[2:], padding)]
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]
    if any(span > size for span, size in zip(spans, padded)):
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))})."
                           f" Kernel size: ({' x '.join(map(str, spans))}). Kernel size can't be "
                           "greater than actual input size")
    if x.dtype != weight.dtype:
        raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[x.dtype.name]} but found "
                           f"{TORCH_TYPE_NAMES[weight.dtype.name]}")
    if x.dtype.kind != "f":
        raise RuntimeError(f"convolution is implemented for floating point tensors only, got "
                           f"{x.dtype}")
    out = tuple((size - span) // step + 1 for size, span, step in zip(padded, spans, stride))
    return (x.shape[0], out_channels) + out, x.dtype


class _Plan:
    """A call's kernel arguments: 4-D shapes (a 1-D convolution has H = 1), the spatial
    parameters as ints, the chunk of images per GEMM and the workspace sizes."""

    def __init__(self, x_shape, weight_shape, out_shape, stride, padding, dilation, groups):
        stride, padding, dilation = resolve(weight_shape, stride, padding, dilation)

        def two(values, fill):
            return (fill,) * (2 - len(values)) + tuple(values)

        self.x_shape, self.weight_shape, self.out_shape = (
            shape[:2] + (1,) * (4 - len(shape)) + shape[2:]
            for shape in (x_shape, weight_shape, out_shape))
        (stride_h, stride_w), (dilation_h, dilation_w) = two(stride, 1), two(dilation, 1)
        pad_top, pad_left = two(padding, 0)
        size = weight_shape[1] * int(np.prod(weight_shape[2:]))
        positions = int(np.prod(out_shape[2:]))
        group_out = weight_shape[0] // groups
        self.chunk = max(1, min(x_shape[0], COLUMN_BUDGET // max(1, size * positions)))
        columns = self.chunk * positions
        self.forward_workspace = (size + group_out) * columns
        self.backward_workspace = (size + group_out) * columns
        self.in_positions = int(np.prod(x_shape[2:]))
        self.spatial = (stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)


def _plan(x_shape, weight_shape, out_shape, params):
    return _Plan(x_shape, weight_shape, out_shape, params["stride"], params["padding"],
                 params["dilation"], params["groups"])


def forward(x, weight, bias, **params):
    shape, dtype = infer(x, weight, bias, **params)
    plan = _plan(x.shape, weight.shape, shape, params)
    out = np.empty(shape, dtype)
    conv_forward_kernel(np.ascontiguousarray(x).reshape(plan.x_shape),
                        np.ascontiguousarray(weight).reshape(plan.weight_shape),
                        np.ascontiguousarray(bias), out.reshape(plan.out_shape),
                        *plan.spatial, plan.chunk, np.empty(plan.forward_workspace, dtype))
    return out


def _backward_arrays(node, g, plan):
    """The backward kernel's array arguments; the gradients it makes come first."""
    x, weight = node.saved
    needs = tuple(node.needs)
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    dtype = g.dtype
    grad_x = np.empty(plan.x_shape if needs[0] else (0,) * 4, dtype)
    grad_weight = np.empty(plan.weight_shape if needs[1] else (0,) * 4, dtype)
    grad_bias = np.empty(weight_shape[0] if needs[2] else 0, dtype)
    # What a VJP does not read is not saved (save_for): stand-ins then. The kernel reads the
    # weight's shape even when it reads no weight (only the bias needs a gradient).
    x = np.empty((0,) * 4, dtype) if x is None else np.ascontiguousarray(x).reshape(plan.x_shape)
    weight = np.empty(plan.weight_shape, dtype) if weight is None else \
        np.ascontiguousarray(weight).reshape(plan.weight_shape)
    g = np.ascontiguousarray(g).reshape(plan.out_shape)
    return (grad_x, grad_weight, grad_bias), (x, weight, g), needs


def vjp(node, g):
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    plan = _plan(x_shape, weight_shape, g.shape, node.params)
    grads, arrays, needs = _backward_arrays(node, g, plan)
    conv_backward_kernel(*arrays, *grads, *needs, plan.in_positions, *plan.spatial, plan.chunk,
                         np.empty(plan.backward_workspace, g.dtype))
    grad_x, grad_weight, grad_bias = grads
    return (grad_x.reshape(x_shape) if needs[0] else None,
            grad_weight.reshape(weight_shape) if needs[1] else None,
            grad_bias if needs[2] else None)


class _ConvolutionFusion:
    """The eager kernels called from the fused step, with the same arguments (so their eager
    compilations are reused); the workspace is allocated by the step at each call, as eager
    mode does, so that a network's convolutions do not each keep one in the step's arena."""

    @staticmethod
    def _workspace(em, size, dtype):
        name = em.new_name("workspace")
        em.emit(f"{name} = np.empty({size}, np.{dtype.name})")
        return name

    @staticmethod
    def _spatial(em, plan):
        return ", ".join(em.scalar(value) for value in plan.spatial + (plan.chunk,))

    def forward(self, em, arrays, params, out):
        x, weight, bias = arrays
        plan = _plan(x.shape, weight.shape, out.shape, params)
        bias_name = em.ref(bias)
        em.blas()
        workspace = self._workspace(em, plan.forward_workspace, out.dtype)
        em.emit(f"{em.kernel(conv_forward_kernel)}({em.ref(x)}.reshape({plan.x_shape!r}), "
                f"{em.ref(weight)}.reshape({plan.weight_shape!r}), {bias_name}, "
                f"{em.out(out)}.reshape({plan.out_shape!r}), {self._spatial(em, plan)}, {workspace})")

    def vjp(self, em, node, g, input_grads):
        x, weight = node.saved
        (x_shape, _), (weight_shape, _) = node.input_meta[:2]
        plan = _plan(x_shape, weight_shape, g.shape, node.params)
        needs = [grad is not None for grad in input_grads]
        grads = []
        for grad, shape, ndim in zip(input_grads, (plan.x_shape, plan.weight_shape, None), (4, 4, 1)):
            grads.append(em.empty(ndim, g.dtype) if grad is None else
                         em.out(grad) if shape is None else f"{em.out(grad)}.reshape({shape!r})")
        x_name = em.empty(4, g.dtype) if x is None else f"{em.ref(x)}.reshape({plan.x_shape!r})"
        # The kernel reads the weight's shape even when it reads no weight (see vjp).
        weight_name = em.out(np.empty(plan.weight_shape, g.dtype)) if weight is None else \
            f"{em.ref(weight)}.reshape({plan.weight_shape!r})"
        em.blas()
        workspace = self._workspace(em, plan.backward_workspace, g.dtype)
        em.emit(f"{em.kernel(conv_backward_kernel)}({x_name}, {weight_name}, "
                f"{em.ref(g)}.reshape({plan.out_shape!r}), {', '.join(grads)}, "
                f"{', '.join(em.scalar(need) for need in needs)}, {em.scalar(plan.in_positions)}, "
                f"{self._spatial(em, plan)}, {workspace})")


# ---------------------------------------------------------------------------------------
# The differentiable VJP (create_graph=True): each gradient is itself a convolution, called
# through `Tensor._primitive` so that it is recorded (PyTorch's convolution_backward
# formulas, derivatives.yaml). Spatial dims are handled one by one, for 1-D and 2-D alike.

def _input_gradient(g, weight, x_shape, stride, padding, dilation, groups):
    """The transposed convolution of g: g zero-stuffed (stride - 1 zeros between its
    elements) into zeros placed so that a stride-1 convolution with the weights flipped,
    in and out channels swapped per group, and the same dilation gives each input position's
    gradient. An output that read only padding reaches no input and is left out."""
    spatial = len(x_shape) - 2
    out_channels, group_in = weight.shape[:2]
    placed, taken, sizes = [slice(None)] * 2, [slice(None)] * 2, []
    for size, kernel, step, side, spread, out in zip(x_shape[2:], weight.shape[2:], stride,
                                                     padding, dilation, g.shape[2:]):
        reach = spread * (kernel - 1)
        offset = reach - side  # where output 0 lands in the stuffed, padded gradient
        first = -(min(offset, 0) // step)  # the first output that lands at or after 0
        last = min(out, (size + reach - 1 - offset) // step + 1)
        if last <= first:
            return g.new_zeros(x_shape)
        placed.append(slice(offset + first * step, offset + (last - 1) * step + 1, step))
        taken.append(slice(first, last))
        sizes.append(size + reach)
    stuffed = g.new_zeros(tuple(g.shape[:2]) + tuple(sizes))
    stuffed[tuple(placed)] = g[tuple(taken)]
    kernel_shape = tuple(weight.shape[2:])
    swapped = (weight.reshape((groups, out_channels // groups, group_in) + kernel_shape)
               .transpose(1, 2).reshape((groups * group_in, out_channels // groups) + kernel_shape)
               .flip(tuple(range(2, 2 + spatial))))
    return stuffed._primitive("convolution", swapped, g.new_zeros((0,)), stride=(1,) * spatial,
                              padding=(0,) * spatial, dilation=dilation, groups=groups)


def _weight_gradient(g, x, weight_shape, stride, padding, dilation, groups):
    """The convolution of the input (its channels of a group as the batch, the group's batch
    as channels) with g (as weights: out channels by batch), stride and dilation exchanged;
    its extent may pass the kernel's by less than a stride: cropped."""
    batch, channels = x.shape[:2]
    out_channels = g.shape[1]
    group_in = channels // groups
    images = (x.reshape((batch, groups, group_in) + tuple(x.shape[2:])).permute(
        (2, 1, 0) + tuple(range(3, x.ndim + 1))).reshape((group_in, groups * batch) + tuple(x.shape[2:])))
    filters = (g.reshape((batch, groups, out_channels // groups) + tuple(g.shape[2:])).permute(
        (1, 2, 0) + tuple(range(3, g.ndim + 1))).reshape((out_channels, batch) + tuple(g.shape[2:])))
    result = images._primitive("convolution", filters, g.new_zeros((0,)), stride=dilation,
                               padding=padding, dilation=stride, groups=groups)
    crop = (slice(None),) * 2 + tuple(slice(0, kernel) for kernel in weight_shape[2:])
    return result[crop].transpose(0, 1)


def differentiable_vjp(node, g, saved):
    x, weight = saved
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    params = node.params
    stride, padding, dilation = resolve(weight_shape, params["stride"], params["padding"],
                                        params["dilation"])
    needs = node.needs
    return (_input_gradient(g, weight, x_shape, stride, padding, dilation, params["groups"])
            if needs[0] else None,
            _weight_gradient(g, x, weight_shape, stride, padding, dilation, params["groups"])
            if needs[1] else None,
            g.sum((0,) + tuple(range(2, g.ndim))) if needs[2] else None)


PRIMS = {
    "convolution": register(Primitive("convolution", "ConvolutionBackward0", infer, forward, vjp,
                                      save=(0, 1), save_for=((1,), (0,), ()),
                                      differentiable=(0, 1, 2), fuse=_ConvolutionFusion(),
                                      differentiable_vjp=differentiable_vjp)),
}
