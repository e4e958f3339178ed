"""Convolution: one primitive, `convolution`, for 1-D and 2-D spatial inputs (NCL, NCHW),
with stride, zero padding, dilation, groups and an optional bias (the third input); the
transposed one, `conv_transpose`; and `im2col`/`col2im` (F.unfold, F.fold) on the same
im2col helpers (at the end).

Why a primitive: speed. A convolution is a GEMM over im2col columns, and BLAS (the
scipy-openblas32 package's OpenBLAS, through ops/blas.py's `gemm`) runs that GEMM near the
machine's peak; as a composite of unfold/matmul ops it would make several full-size copies
and graph nodes per layer.
3x3 stride-1 convolutions with enough channels and outputs take Winograd F(4x4, 3x3)
in the forward instead (winograd_kernel, chosen by _winograd_pays): 36 smaller GEMMs in one
batched BLAS call between transforms of the images, weights and outputs. So does their
input's gradient (with padding up to 2), the convolution of the output gradient by the
kernels transposed and turned (_winograd_kernels); the weight's goes through im2col.
Measured, float32, 2 threads, the input gradient alone, im2col and col2im -> Winograd, ms:
8 images of 64 channels at 16x16 1.33 -> 0.74, one at 56x56 1.62 -> 0.78, 128 channels at
28x28 1.34 -> 0.99 (256 at 14x14 1.31 -> 2.25: not chosen there); ResNet-18's forward and
backward at 8x3x64x64, best of 20 in 5 processes each, taking turns: 58.9-69.9 -> 56.5-63.5.
(With F(2x2), serial transforms and 16 GEMM calls, the input gradient by Winograd had made
ResNet-18's training step slower.)

The kernels are plain `njit` functions shared by both ranks (a 1-D convolution is a 2-D one
with H = 1). Each call works through the batch in equal chunks of images whose im2col columns
fit a fixed budget (`COLUMN_BUDGET` elements), so the buffers stay a few MB whatever the batch; per
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
NOTE: splitting the batch over Numba's threads, each part with its own im2col and
single-threaded GEMMs (OpenBLAS set to one thread around the split), as PyTorch's kernels
do, was built and reverted (433156a). Alone a layer gained (2 threads, f32, ms forward /
forward+backward, serial -> split: the digits CNN's conv2 0.15 / 0.42 -> 0.09 / 0.30,
ResNet's conv1 at 8x3x64x64 1.43 / 4.8 -> 1.26 / 3.9, layer1's 3x3 1.13 / 3.3 -> 1.02 / 3.0),
but not in a network, because two thread pools share two cores:
- ResNet-18 forward+backward went from 67-72 to 98-110 ms: after each 2-thread GEMM,
  OpenBLAS's idle worker spins (sched_yield, for 2^28 cycles) on the core the split needs.
  (Measured before ops/blas.py cut that wait to 2^16 cycles: worth measuring again.)
- The digits CNN eager step (no 2-thread GEMM) got no faster (best 683-956 against 708-739
  us, medians worse): Numba's worker sleeps after GOMP_SPINCOUNT's short spin (1000, see
  _core/threads.py), and waking it takes 35-55 us (median; 60-110 at the 90th percentile),
  four times a step. A longer spin (10000) made the CNN step 570 us but ResNet-18 80-84 ms.
- A cold compile of the CNN got 0.9 s longer (a parallel kernel).
One pool for both was tried in two forms, neither kept:
- OpenBLAS's jobs on Numba's OpenMP threads (openblas_set_threads_callback_function, with a
  long spin): GEMMs as fast or up to 20 % slower (128 x 1152 x 512: 825 -> 1008 us), a
  small GEMM followed by a parallel add 86 -> 17 us, a BLAS call inside a user's prange
  fine; but two Python threads calling BLAS one after the other hang (in SciPy's pthreads
  build the callback path reuses OpenBLAS's own per-thread state).
- OpenBLAS at one thread and each GEMM split over Numba's threads (prange over column
  blocks, a long spin): ResNet-18 forward+backward 83-88 ms against 69-71: OpenBLAS's own
  2-thread GEMM shares its packed panels, two 1-thread GEMMs pack the weights twice.
Other conv ideas measured and dropped (2 threads, us): the GEMM in the other orientation
(positions x channels): forward 87 -> 87 (CNN conv2), 524 -> 515 (64 x 576 x 1024), plus a
transposing copy; the input gradient as a convolution of the output gradient (flipped
weights @ its im2col) instead of weight.T @ grad and col2im: 105 -> 115, 501 -> 519,
748 -> 1052.
NOTE: a GEMM of our own for the small-K shapes where OpenBLAS is slow (ResNet's conv1, K = 147)
cannot be written in plain `njit`: a 6x16 register-blocked micro-kernel on packed panels
(generated scalar accumulators, or a tile array) ran at 4-18 GF/s on one thread, against
OpenBLAS's 77 (64 x 147 x 8192, float32): LLVM vectorizes the k loop as a reduction, or
spills the accumulators, never the 16 columns into two AVX registers. It would take LLVM IR
with vector types (llvmlite) and threading of its own (see above).
"""
import functools
import math
import types

import numba
import numpy as np

from .._core import threads as _threads
from .._core.dtype import C_TYPE_NAMES
from .._core.kernel_support import typed
from .._core.unlinked import calling_unlinked, unlinked_helper
from .blas import gemm, gemm_batch
from .primitive import TORCH_TYPE_NAMES, Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")

# Elements of the im2col buffer a call aims at (4 MB in float32). A chunk holds at least one
# image, so a larger image gets a buffer of its own size.
COLUMN_BUDGET = 1 << 20
# Below this many output channels per group, the weight's gradient is computed transposed,
# (Cg * KH * KW, group_out) = columns @ grad.T, and transposed back: OpenBLAS runs that GEMM
# 1.2 to 1.6 times faster for few output channels (measured, one thread: the digits CNN's
# conv2 200 -> 124 us, 64 -> 64 channels 3x3 over 1024 positions 1140 -> 810 us; alike from
# 128 channels on).
TRANSPOSED_WEIGHT_GRADIENT_BELOW = 128
# Winograd F(4x4, 3x3) (winograd_kernel) is chosen for a 3x3 stride-1 convolution with at
# least WINOGRAD_MIN_CHANNELS input and output channels, WINOGRAD_MIN_TILES 4x4 output tiles
# in a call and outputs of WINOGRAD_MIN_SIZE a side: see _winograd_pays for the figures.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_TILES = 8
WINOGRAD_MIN_SIZE = 16


# ---------------------------------------------------------------------------------------
# Kernels. Every array is flat (1-D, C-contiguous) and indexed from offsets: a slice or
# reshape inside a kernel is an array type of its own, with a compilation of each callee per
# type, and a chunk's buffers are offsets into one workspace. Arrays hold (N, C, H, W) images
# (a 1-D convolution has H = 1); a column matrix is (Cg * KH * KW, count * P), at the
# workspace's start: for `count` images from `first`, P = OH * OW, the input channels of one
# group from `channel0`. `geometry` is the tuple (channels, height, width, kernel_h,
# kernel_w, out_h, out_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w).
#
# im2col reads the images channel-major: (Cg, count, H, W), a copy in the workspace (x itself
# when there is no padding to add). A "same" convolution (stride 1, output as large as the
# input: the 3x3 pad-1 layers of ResNet and the digits CNN) reads tap (i, j) of every output
# position at one offset from it, so each column row is ONE shifted contiguous copy of
# count * P elements through a select against the mask of the positions whose tap reads
# padding (one mask row per tap for all channels, made once per plan): vectorized, several
# times faster than a short copy per output row when rows are short (4 elements at 4x4).
# Reads that leave an image's rows land in neighbouring rows, images or channels, or in the
# margins around the copy, and are masked. Other convolutions read a copy with the padding
# written around each image, a gather per output row without bounds. col2im (im2col's
# adjoint) adds the columns into a zeroed buffer of the same layout, copied back into the
# input's gradient.
# NOTE: a strided gather does not vectorize; copying each padded image as stride_w planes of
# its columns (so that a tap's output row is a contiguous run of one plane) was tried
# (commit 14186c0) and reverted: ResNet's conv1 (8x3x64x64, 7x7/2, one thread, float32)
# im2col 0.35 -> 0.17 ms and col2im 0.44 -> 0.17, but its forward only 2.3 -> 2.1 ms (the
# GEMM is 2.05 ms of it) and the 3x3/2 layers (rows of 8 and fewer) unchanged, while the
# cold compile grew by 0.3-0.5 s CPU for conv_forward_kernel (1.40-1.45 -> 1.73-1.94) and
# 0.1-0.25 s for conv_backward_kernel (im2col's own 0.77 -> 1.1-1.25, col2im's 0.34 ->
# 0.55-0.66), paid by every network with a convolution.
#
# NOTE (compile time, a cold cache compiles all of this): Numba compiles a call to another
# njit function by linking the callee's code into the caller and optimizing and compiling
# it all again, at every level; an inline="always" callee is typed and compiled again at
# every call site instead; a callee compiles once more for each literal constant argument
# type (a `1` or `True` in the call; `0 * n` is a zero that is not a literal); and a function
# called from Python gets a wrapper that unboxes its arguments (0.1 s for a dozen). So there
# are two levels and few loops, the helpers have no wrapper, nothing is inlined, no call to
# a compiled helper passes a constant (not even gemm's transposes), the kernels take their
# integers in one array, and the helpers (`unlinked_helper`) are called `unlinked`: by
# symbol, compiled once, not linked into each caller and optimized again there (_core.unlinked;
# their callers, `calling_unlinked`, are cached with them and register them first). The
# Winograd transforms' one-line helpers are left linked: inlined into their loops. Measured,
# float32, cold first calls, CPU, helpers included: the digits CNN's conv2 forward 1.45 s
# and backward 1.1 s (1.7-1.9 s each with the helpers linked in and gemm compiled per
# orientation), the Winograd forward 1.5 s (1.9); the digits CNN's first steps, cold,
# 8.0-8.2 -> 6.9-7.2 s CPU.

# NOTE: the loops index with unsigned integers: a signed index makes Numba check for a
# negative one (Python's wraparound) at every element, which keeps LLVM from vectorizing the
# copies (measured: 2 to 4 times slower). Signed and unsigned mixed give a float in Numba: an
# index is made unsigned as a whole (`_u(start)`, then `start + t` with an unsigned t).
_u = np.uint64
_helper = numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)


@unlinked_helper
@_helper
def _fill(a, start, stop, value):
    for t in range(_u(start), _u(max(start, stop))):
        a[t] = value


@unlinked_helper
@_helper
def _copy_blocks(source, source_at, source_a, source_b, source_c, target, target_at, target_a,
                 target_b, target_c, count_a, count_b, count_c, length):
    """For a < count_a, b < count_b, c < count_c: `length` elements from source at source_at +
    a * source_a + b * source_b + c * source_c to target likewise: a strided block copy."""
    if source_c == length and target_c == length:  # (contiguous rows: copied as one)
        length, count_c = length * count_c, count_c // max(count_c, 1)  # (1, or 0 rows)
    for a in range(count_a):
        for b in range(count_b):
            for c in range(count_c):
                s = _u(source_at + a * source_a + b * source_b + c * source_c)
                d = _u(target_at + a * target_a + b * target_b + c * target_c)
                for t in range(_u(length)):
                    target[d + t] = source[s + t]


def _layout(geometry, groups, out_channels, chunk, transposed_below):
    """Whether the convolution is "same", and the workspace's parts: offsets of the block of
    group_out rows after the column matrix (the GEMM's result or the gathered gradient), of
    the channel-major images (inside their margins for a same convolution; none for a 1x1
    one: the columns are the images), of gemm's scalars and of the transposed weight
    gradient (when there are fewer than `transposed_below` output channels per group, else
    -1: see TRANSPOSED_WEIGHT_GRADIENT_BELOW); and the size."""
    channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w, pad_top, \
        pad_left = geometry[:11]
    same = stride_h == 1 and stride_w == 1 and out_h == height and out_w == width
    taps = kernel_h * kernel_w
    columns = chunk * out_h * out_w
    group_in = channels // groups
    block_at = group_in * taps * columns
    images_at = block_at + out_channels // groups * columns
    if not same:
        scalars_at = images_at + group_in * chunk * (height + 2 * pad_top) * (width + 2 * pad_left)
    elif taps == 1:
        scalars_at = images_at
    else:
        margin = pad_top * width + pad_left
        scalars_at = images_at + 2 * margin + group_in * columns
        images_at += margin
    if out_channels // groups >= transposed_below:
        return (int(same), block_at, images_at, scalars_at, -1), scalars_at + 3
    weight_gradient_at = scalars_at + 3
    return ((int(same), block_at, images_at, scalars_at, weight_gradient_at),
            weight_gradient_at + out_channels * group_in * taps)


def _masks(geometry, chunk):
    """For a same convolution, the masks (uint8, read-only): row (i, j) is 1 where tap (i, j)
    of an output position reads the input, 0 where it reads padding; for `chunk` images."""
    _, height, width, kernel_h, kernel_w, out_h, out_w, _, _, pad_top, pad_left, dilation_h, \
        dilation_w = geometry
    rows = np.arange(out_h) + (np.arange(kernel_h) * dilation_h - pad_top)[:, None]
    columns = np.arange(out_w) + (np.arange(kernel_w) * dilation_w - pad_left)[:, None]
    inside = (((rows >= 0) & (rows < height))[:, None, None, :, None]
              & ((columns >= 0) & (columns < width))[None, :, None, None, :])
    masks = np.ascontiguousarray(
        np.broadcast_to(inside, (kernel_h, kernel_w, chunk, out_h, out_w)), np.uint8).reshape(-1)
    masks.flags.writeable = False
    return masks


@unlinked_helper
@_helper
def _copy_layout(geometry, same):
    """(an image's pixels, the output positions, the padding of im2col's channel-major copy
    of the images (none for a same convolution: its masks stand in), the copy's row length
    and image size)."""
    height, width, out_h, out_w = geometry[1], geometry[2], geometry[5], geometry[6]
    pad_h, pad_w = (0 * geometry[9], 0 * geometry[10]) if same else (geometry[9], geometry[10])
    padded_w = width + 2 * pad_w
    return height * width, out_h * out_w, pad_h, pad_w, padded_w, (height + 2 * pad_h) * padded_w


@unlinked_helper
@_helper
def _im2col(x, first, count, channel0, group_in, geometry, same, workspace, images_at, masks,
            mask_pitch):
    """The chunk's column matrix for one group, at the workspace's start. It reads the images
    channel-major: x itself for a convolution without padding that is not same, else a copy
    at images_at with zeros around each image (a same convolution: none, its margins and
    masks stand in; a 1x1 same one copies straight into the columns)."""
    zero = typed(0.0, x)
    channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w, pad_top, \
        pad_left, dilation_h, dilation_w = geometry
    image, positions, pad_h, pad_w, padded_w, padded = _copy_layout(geometry, same)
    columns = count * positions
    if not same and pad_h == 0 and pad_w == 0:
        source, at, channel_pitch, image_pitch, row_pitch = \
            x, (first * channels + channel0) * image, image, channels * image, width
    else:
        direct = same and kernel_h * kernel_w == 1
        source, at, channel_pitch, image_pitch, row_pitch = \
            workspace, 0 * images_at if direct else images_at, count * padded, padded, padded_w
        if pad_h > 0 or pad_w > 0:
            _fill(workspace, at, at + group_in * count * padded, zero)
        _copy_blocks(x, (first * channels + channel0) * image, image, channels * image, width,
                     workspace, at + pad_h * padded_w + pad_w, channel_pitch, image_pitch,
                     row_pitch, group_in, count, height, width)
        if direct:
            return
    for c in range(group_in):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = ((c * kernel_h + i) * kernel_w + j) * columns
                if same:
                    s = _u(at + c * channel_pitch + (i * dilation_h - pad_top) * row_pitch
                           + j * dilation_w - pad_left)
                    k = _u((i * kernel_w + j) * mask_pitch)
                    for t in range(_u(columns)):
                        value = source[s + t]
                        workspace[_u(row) + t] = value if masks[k + t] != 0 else zero
                    continue
                for m in range(count):
                    for oh in range(out_h):
                        s = _u(at + c * channel_pitch + m * image_pitch
                               + (oh * stride_h + i * dilation_h) * row_pitch + j * dilation_w)
                        d = _u(row + m * positions + oh * out_w)
                        # (LLVM versions the loop for stride 1: a vectorized copy)
                        for t in range(_u(out_w)):
                            workspace[d + t] = source[s + t * _u(stride_w)]


@unlinked_helper
@_helper
def _col2im(workspace, first, count, channel0, group_in, geometry, same, images_at, masks,
            mask_pitch, grad_x):
    """im2col's adjoint: the input gradient of the chunk's images and the group's channels,
    from the column matrix at the workspace's start, added into zeroed images laid out as
    im2col's copy (padding included) and copied out of them."""
    zero = typed(0.0, grad_x)
    channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w, pad_top, \
        pad_left, dilation_h, dilation_w = geometry
    image, positions, pad_h, pad_w, padded_w, padded = _copy_layout(geometry, same)
    columns = count * positions
    direct = same and kernel_h * kernel_w == 1  # (see _im2col)
    at = 0 * images_at if direct else images_at
    if not direct:
        _fill(workspace, at, at + group_in * count * padded, zero)
    for c in range(group_in * (not direct)):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = ((c * kernel_h + i) * kernel_w + j) * columns
                if same:
                    s = _u(at + c * count * padded + (i * dilation_h - pad_top) * padded_w
                           + j * dilation_w - pad_left)
                    k = _u((i * kernel_w + j) * mask_pitch)
                    for t in range(_u(columns)):
                        value = workspace[_u(row) + t]
                        workspace[s + t] += value if masks[k + t] != 0 else zero
                    continue
                for m in range(count):
                    for oh in range(out_h):
                        s = _u(at + c * count * padded + m * padded
                               + (oh * stride_h + i * dilation_h) * padded_w + j * dilation_w)
                        d = _u(row + m * positions + oh * out_w)
                        for t in range(_u(out_w)):
                            workspace[s + t * _u(stride_w)] += workspace[d + t]
    _copy_blocks(workspace, at + pad_h * padded_w + pad_w, count * padded, padded, padded_w,
                 grad_x, (first * channels + channel0) * image, image, channels * image, width,
                 group_in, count, height, width)


@unlinked_helper
@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, fastmath={"reassoc"})
def _bias_gradient(grad, batch, out_channels, positions, grad_bias):
    """grad_bias[o] = the sum of grad[:, o], in float64 (reassociated: it vectorizes)."""
    for o in range(out_channels):
        total = 0.0
        for n in range(batch):
            start = _u((n * out_channels + o) * positions)
            for p in range(_u(positions)):
                total += grad[start + p]
        grad_bias[o] = total


@calling_unlinked
@_jit
def conv_forward_kernel(x, weight, bias, out, plan, masks, workspace):
    """out = conv(x, weight) + bias (bias of size 0: none), all flat; plan and masks: see
    _Plan. Not called for an empty output (no images or no input channels)."""
    batch, channels, height, width, out_channels, kernel_h, kernel_w, out_h, out_w, stride_h, \
        stride_w, pad_top, pad_left, dilation_h, dilation_w, groups, chunk, same, block_at, \
        images_at, scalars_at, _ = plan[:22]
    geometry = (channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
                pad_top, pad_left, dilation_h, dilation_w)
    group_in, group_out = channels // groups, out_channels // groups
    size = group_in * kernel_h * kernel_w
    positions = out_h * out_w
    workspace[scalars_at], workspace[scalars_at + 1], workspace[scalars_at + 2] = 1, 0, 1
    keep = batch < 0  # (False: see gemm)
    has_bias = bias.shape[0] > 0
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * positions
        for g in range(groups):
            channel0, out0 = g * group_in, g * group_out
            if same and size == group_in and count == 1:
                # A 1x1 same convolution of one image: the image is its column matrix.
                source, source_at = x, (first * channels + channel0) * positions
            else:
                _im2col(x, first, count, channel0, group_in, geometry, same > 0, workspace,
                        images_at, masks, chunk * positions)
                source, source_at = workspace, 0 * positions
            if count == 1:
                # One image: the GEMM writes its output rows, onto the bias.
                target = (first * out_channels + out0) * positions
                for o in range(group_out * has_bias):
                    _fill(out, target + o * positions, target + (o + 1) * positions,
                          bias[out0 + o])
                gemm(group_out, positions, size, weight, out0 * size, size, keep, source,
                     source_at, columns, keep, out, target, positions, workspace, scalars_at,
                     scalars_at + 1 + has_bias)
                continue
            gemm(group_out, columns, size, weight, out0 * size, size, keep, source, source_at,
                 columns, keep, workspace, block_at, columns, workspace, scalars_at,
                 scalars_at + 1)
            for o in range(group_out):
                # (x + -0.0 is x, also for x = -0.0: the identity where there is no bias)
                shift = bias[out0 + o] if has_bias else typed(-0.0, out)
                for m in range(count):
                    s = _u(block_at + o * columns + m * positions)
                    d = _u(((first + m) * out_channels + out0 + o) * positions)
                    for p in range(_u(positions)):
                        out[d + p] = workspace[s + p] + shift


@calling_unlinked
@_jit
def conv_backward_kernel(x, weight, grad, grad_x, grad_weight, grad_bias, plan, masks,
                         workspace):
    """The gradients of conv_forward_kernel's inputs that are asked for (the others are
    zero-size stand-ins, as are x and weight when no asked gradient reads them). plan (then
    whether each gradient is asked for: 0 or 1) and masks: see _Plan. Not called for an empty
    output gradient (the gradients are zeros)."""
    batch, channels, height, width, out_channels, kernel_h, kernel_w, out_h, out_w, stride_h, \
        stride_w, pad_top, pad_left, dilation_h, dilation_w, groups, chunk, same, block_at, \
        images_at, scalars_at, weight_gradient_at, need_x, need_weight, need_bias = plan[:25]
    geometry = (channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
                pad_top, pad_left, dilation_h, dilation_w)
    group_in, group_out = channels // groups, out_channels // groups
    size = group_in * kernel_h * kernel_w
    positions = out_h * out_w
    if need_bias:
        _bias_gradient(grad, batch, out_channels, positions, grad_bias)
    if not (need_x or need_weight):
        return
    workspace[scalars_at], workspace[scalars_at + 1], workspace[scalars_at + 2] = 1, 0, 1
    keep, transpose = batch < 0, batch >= 0  # (False and True: see gemm)
    direct = same and size == group_in  # (of one image: see conv_forward_kernel)
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * positions
        for g in range(groups):
            channel0, out0 = g * group_in, g * group_out
            if count == 1:
                grads, grads_at = grad, (first * out_channels + out0) * positions
            else:
                _copy_blocks(grad, (first * out_channels + out0) * positions, positions,
                             out_channels * positions, out_w, workspace, block_at, columns,
                             positions, out_w, group_out, count, out_h, out_w)
                grads, grads_at = workspace, block_at
            if need_weight:
                if direct and count == 1:
                    source, source_at = x, (first * channels + channel0) * positions
                else:
                    _im2col(x, first, count, channel0, group_in, geometry, same > 0, workspace,
                            images_at, masks, chunk * positions)
                    source, source_at = workspace, 0 * positions
                # The first chunk writes the weight's gradient, the others add to it.
                beta_at = scalars_at + 1 + (first > 0)
                if weight_gradient_at < 0:
                    gemm(group_out, size, columns, grads, grads_at, columns, keep, source,
                         source_at, columns, transpose, grad_weight, out0 * size, size, workspace,
                         scalars_at, beta_at)
                else:  # (transposed, then transposed back below)
                    gemm(size, group_out, columns, source, source_at, columns, keep, grads,
                         grads_at, columns, transpose, workspace, weight_gradient_at + out0 * size,
                         group_out, workspace, scalars_at, beta_at)
            if need_x:
                if direct and count == 1:
                    gemm(size, positions, group_out, weight, out0 * size, size, transpose, grads,
                         grads_at, columns, keep, grad_x,
                         (first * channels + channel0) * positions, positions, workspace,
                         scalars_at, scalars_at + 1)
                else:
                    gemm(size, columns, group_out, weight, out0 * size, size, transpose, grads,
                         grads_at, columns, keep, workspace, 0 * columns, columns, workspace,
                         scalars_at, scalars_at + 1)
                    _col2im(workspace, first, count, channel0, group_in, geometry, same > 0,
                            images_at, masks, chunk * positions, grad_x)
    if need_weight and weight_gradient_at >= 0:
        for o in range(out_channels):
            block = _u(weight_gradient_at + o // group_out * group_out * size + o % group_out)
            for k in range(_u(size)):
                grad_weight[_u(o * size) + k] = workspace[block + k * _u(group_out)]


# ---------------------------------------------------------------------------------------
# Winograd F(4x4, 3x3) (Lavin and Gray, 2015) for 3x3 stride-1 undilated convolutions
# without groups, chosen by `_winograd_pays`: each 4x4 block of outputs ("tile") comes from
# the 6x6 input block under it: Y = A^T [(G g G^T) * (B^T d B)] A, elementwise product in the
# middle. Summed over the input channels, the middle is 36 GEMMs, one per element xi of the
# 6x6 transforms: M[xi] (out, tiles) = U[xi] (out, in) @ V[xi] (in, tiles): 36 multiplies a
# tile where im2col's GEMM makes 144 (4 times fewer), for the price of the transforms
# (memory-bound passes of a few adds an element), run as one batched BLAS call. The kernel's
# plan and workspace: see _WinogradPlan. Per call: the weights' transform U (weights change
# every step); per chunk of images: a channel-major copy of the images with zeros around
# each (tile-aligned: tiles run over the bottom/right edge where the output size is not a
# multiple of 4), V, the 36 GEMMs into M, and M's transform into the output (through four
# scratch rows: the edge tiles' extra rows and columns are cropped there) with the bias
# added. The image and output transforms go through a 6x6 scratch block per plane or
# output channel: rows first, then columns.
# Why F(4x4) and not F(2x2, 16 GEMMs of 2.25 times fewer multiplies): measured, float32,
# 2 threads, forward of one image, serial transforms, ms: 64 channels at 56x56 1.23 -> 1.07,
# 128 at 28x28 1.05 -> 0.97. NOTE: its float32 rounding errors are larger (transform entries
# up to 8): about 1e-5 of the output's scale at 64 to 256 channels, against 4e-7 for F(2x2)
# and 3e-7 for im2col (float64: 1e-14).

@_helper
def _skewed(size):
    """The distance between two of the 36 matrices of `size` elements: whole cache lines
    and one more. NOTE: the transforms read or write the 36 at once, and at a distance of a
    power of two (64 channels by 64 tiles...) the streams fall into one cache set: the
    transforms ran 5 to 10 times slower."""
    return (size + 15) // 16 * 16 + 16


@_helper
def _winograd_input_rows(d0, d1, d2, d3, d4, d5):
    """B^T d along one axis."""
    two, four, five = typed(2.0, d0), typed(4.0, d0), typed(5.0, d0)
    return (four * d0 - five * d2 + d4, d3 + d4 - four * (d1 + d2), four * (d1 - d2) + d4 - d3,
            two * (d3 - d1) + d4 - d2, two * (d1 - d3) + d4 - d2, four * d1 - five * d3 + d5)


@_helper
def _winograd_weight_rows(g0, g1, g2):
    """G g along one axis."""
    sixth = typed(1.0 / 6.0, g0)
    outer, middle = typed(1.0 / 24.0, g0) * g0 + sixth * g2, typed(1.0 / 12.0, g0) * g1
    return (typed(0.25, g0) * g0, -sixth * (g0 + g1 + g2), sixth * (g1 - g0 - g2),
            outer + middle, outer - middle, g2)


@_helper
def _winograd_output_rows(m0, m1, m2, m3, m4, m5):
    """A^T m along one axis."""
    sum12, difference12 = m1 + m2, m1 - m2
    sum34, difference34 = m3 + m4, m3 - m4
    return (m0 + sum12 + sum34, difference12 + typed(2.0, m0) * difference34,
            sum12 + typed(4.0, m0) * sum34, difference12 + typed(8.0, m0) * difference34 + m5)


def _winograd_kernels(weight, out_channels, channels, rotated, workspace, kernels_at):
    """The call's (out_channels, channels) 3x3 kernels, row-major from kernels_at: the
    weight's own, or for an input gradient (`rotated`: the transposed convolution of the
    output gradient) kernel (c, o) of a weight (channels, out_channels, 3, 3) turned by 180
    degrees."""
    for t in range(out_channels * channels):
        target = _u(kernels_at) + _u(9) * _u(t)
        if rotated:
            source = _u(9) * _u(t % channels * out_channels + t // channels) + _u(8)
            for i in range(_u(9)):
                workspace[target + i] = weight[source - i]
        else:
            for i in range(_u(9)):
                workspace[target + i] = weight[_u(9) * _u(t) + i]


def _winograd_weights(workspace, kernels_at, kernels, pitch):
    """U[xi] = G g G^T of the `kernels` 3x3 kernels g from kernels_at, as 36 row-major
    (out_channels, channels) matrices `pitch` apart from the workspace's start. NOTE: the
    loop runs over the kernels, whose 36 results go to 36 matrices at the same position:
    vectorized."""
    pitch = _u(pitch)
    for k in range(kernels):
        t, x = _u(k), _u(kernels_at) + _u(9) * _u(k)
        # G g: its columns
        g00, g10, g20, g30, g40, g50 = _winograd_weight_rows(workspace[x], workspace[x + _u(3)],
                                                             workspace[x + _u(6)])
        g01, g11, g21, g31, g41, g51 = _winograd_weight_rows(workspace[x + _u(1)], workspace[x + _u(4)],
                                                             workspace[x + _u(7)])
        g02, g12, g22, g32, g42, g52 = _winograd_weight_rows(workspace[x + _u(2)], workspace[x + _u(5)],
                                                             workspace[x + _u(8)])
        # (G g) G^T: its rows, element (i, j) to U[6 i + j]
        for i, (a, b, c) in enumerate(((g00, g01, g02), (g10, g11, g12), (g20, g21, g22),
                                       (g30, g31, g32), (g40, g41, g42), (g50, g51, g52))):
            u = t + _u(6 * i) * pitch
            workspace[u], workspace[u + pitch], workspace[u + _u(2) * pitch], \
                workspace[u + _u(3) * pitch], workspace[u + _u(4) * pitch], \
                workspace[u + _u(5) * pitch] = _winograd_weight_rows(a, b, c)


def _winograd_inputs(workspace, images_at, planes, padded_h, padded_w, tiles_h, tiles_w,
                     transformed_at, pitch, block):
    """V[xi] = B^T d B of every 6x6 block d at offsets of 4 of the `planes` padded images
    (channel-major: channel by image) at images_at, as 36 matrices (planes, tiles) `pitch`
    apart from transformed_at (d B: a 6x6 block per plane from `block`)."""
    tiles = tiles_h * tiles_w
    pitch, row, block = _u(pitch), _u(padded_w), _u(block)
    for p_ in numba.prange(planes):
        p = _u(p_)
        block_p = block + _u(36) * p
        for th in range(_u(tiles_h)):
            s = _u(images_at) + p * _u(padded_h * padded_w) + th * _u(4) * row
            d = _u(transformed_at) + p * _u(tiles) + th * _u(tiles_w)
            for tw in range(_u(tiles_w)):
                for i in range(_u(6)):  # d B: the block's rows
                    x, b = s + _u(4) * tw + i * row, block_p + _u(6) * i
                    workspace[b], workspace[b + _u(1)], workspace[b + _u(2)], \
                        workspace[b + _u(3)], workspace[b + _u(4)], workspace[b + _u(5)] = \
                        _winograd_input_rows(workspace[x], workspace[x + _u(1)],
                                             workspace[x + _u(2)], workspace[x + _u(3)],
                                             workspace[x + _u(4)], workspace[x + _u(5)])
                for j in range(_u(6)):  # B^T (d B): its columns, element (i, j) to V[6 i + j]
                    b, t = block_p + j, d + tw + j * pitch
                    workspace[t], workspace[t + _u(6) * pitch], workspace[t + _u(12) * pitch], \
                        workspace[t + _u(18) * pitch], workspace[t + _u(24) * pitch], \
                        workspace[t + _u(30) * pitch] = _winograd_input_rows(
                            workspace[b], workspace[b + _u(6)], workspace[b + _u(12)],
                            workspace[b + _u(18)], workspace[b + _u(24)], workspace[b + _u(30)])


def _winograd_outputs(workspace, products_at, pitch, count, out_channels, tiles_h, tiles_w,
                      first, out_h, out_w, bias, scratch_at, block, out):
    """out = A^T m A (+ bias) for the chunk's images from the 36 matrices M (out_channels,
    count * tiles) `pitch` apart from products_at, four output rows at a time through
    scratch rows (four of 4 * tiles_w per output channel from scratch_at): an edge tile's
    rows or columns past the output are dropped there (A^T m: a 4x6 block per output
    channel from `block`)."""
    tiles = tiles_h * tiles_w
    pitch, block = _u(pitch), _u(block)
    scratch, scratch_w = _u(scratch_at), _u(4 * tiles_w)
    has_bias = bias.shape[0] > 0
    for o in numba.prange(out_channels):
        # (x + -0.0 is x, also for x = -0.0: the identity where there is no bias)
        shift = bias[o] if has_bias else typed(-0.0, out)
        block_o = block + _u(36) * _u(o)
        scratch_o = scratch + _u(16) * _u(tiles_w) * _u(o)
        for m in range(count):
            for th in range(tiles_h):
                s = _u(products_at) + _u((o * count + m) * tiles + th * tiles_w)
                for tw in range(_u(tiles_w)):
                    for j in range(_u(6)):  # A^T m: its columns, from M[6 i + j]
                        x, b = s + tw + j * pitch, block_o + j
                        workspace[b], workspace[b + _u(6)], workspace[b + _u(12)], \
                            workspace[b + _u(18)] = _winograd_output_rows(
                                workspace[x], workspace[x + _u(6) * pitch],
                                workspace[x + _u(12) * pitch], workspace[x + _u(18) * pitch],
                                workspace[x + _u(24) * pitch], workspace[x + _u(30) * pitch])
                    for i in range(_u(4)):  # (A^T m) A: its rows
                        b, y = block_o + _u(6) * i, scratch_o + i * scratch_w + _u(4) * tw
                        workspace[y], workspace[y + _u(1)], workspace[y + _u(2)], \
                            workspace[y + _u(3)] = _winograd_output_rows(
                                workspace[b], workspace[b + _u(1)], workspace[b + _u(2)],
                                workspace[b + _u(3)], workspace[b + _u(4)], workspace[b + _u(5)])
                d = _u((((first + m) * out_channels + o) * out_h + 4 * th) * out_w)
                for i in range(_u(min(4, out_h - 4 * th))):
                    for t in range(_u(out_w)):
                        out[d + i * _u(out_w) + t] = workspace[scratch_o + i * scratch_w + t] + shift


def _threaded_copy(function):
    """`function` under the name `<name>_threaded`, to be compiled with parallel=True.
    NOTE: Numba names a function's cache files, and unlinked_helper its symbol, by its
    qualified name: one function compiled both ways would load one version for the other."""
    copy = types.FunctionType(function.__code__, function.__globals__,
                              function.__name__ + "_threaded", function.__defaults__,
                              function.__closure__)
    copy.__qualname__ = function.__qualname__ + "_threaded"
    return copy


# The image and output transforms, serial and over the threads of Numba's pool (by plane
# and by output channel). Measured, float32, 2 threads, forward of one image, ms: 64
# channels at 56x56 1.07 -> 0.71, 128 at 28x28 0.97 -> 0.74; ResNet-18 no_grad at 224 best
# 24.7-25.3 -> 23.0-23.4 (torch 24.1-24.8). The kernel's cold compile: 2.7 -> 5.4 s. (The
# weights' transform stays serial: 0.06 ms at 128 x 128 kernels.) NOTE: the 36 GEMMs between
# them run on OpenBLAS's threads, which the short spin of Numba's (_core/threads.py) leaves
# the cores.
_helper_parallel = numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True,
                              parallel=True)
_winograd_inputs_threaded = unlinked_helper(_helper_parallel(_threaded_copy(_winograd_inputs)))
_winograd_outputs_threaded = unlinked_helper(
    _helper_parallel(_threaded_copy(_winograd_outputs)))
_winograd_kernels = unlinked_helper(_helper(_winograd_kernels))
_winograd_weights = unlinked_helper(_helper(_winograd_weights))
_winograd_inputs = unlinked_helper(_helper(_winograd_inputs))
_winograd_outputs = unlinked_helper(_helper(_winograd_outputs))


@calling_unlinked
@_jit
def winograd_kernel(images, weight, bias, out, plan, workspace, threaded):
    """out = conv(images, weight) + bias (bias of size 0: none) for a 3x3 stride-1
    convolution, by Winograd F(4x4, 3x3), its transforms over threads if `threaded`. All
    flat; plan: see _WinogradPlan."""
    batch, channels, height, width, out_channels, out_h, out_w, pad_top, pad_left, chunk, \
        tiles_h, tiles_w, padded_h, padded_w, transformed_at, products_at, images_at, \
        scalars_at, scratch_at, block_at, kernels_at, rotated = plan[:22]
    zero = typed(0.0, out)
    weights_pitch = _skewed(channels * out_channels)
    _winograd_kernels(weight, out_channels, channels, rotated, workspace, kernels_at)
    _winograd_weights(workspace, kernels_at, out_channels * channels, weights_pitch)
    workspace[scalars_at], workspace[scalars_at + 1] = 1, 0
    image, padded = height * width, padded_h * padded_w
    for first in range(0, batch, chunk):
        count = min(chunk, batch - first)
        columns = count * tiles_h * tiles_w
        transformed_pitch, products_pitch = _skewed(channels * columns), \
            _skewed(out_channels * columns)
        _fill(workspace, images_at, images_at + channels * count * padded, zero)
        _copy_blocks(images, first * channels * image, image, channels * image, width,
                     workspace, images_at + pad_top * padded_w + pad_left, count * padded,
                     padded, padded_w, channels, count, height, width)
        if threaded:
            _winograd_inputs_threaded(workspace, images_at, channels * count, padded_h,
                                      padded_w, tiles_h, tiles_w, transformed_at,
                                      transformed_pitch, block_at)
        else:
            _winograd_inputs(workspace, images_at, channels * count, padded_h, padded_w,
                             tiles_h, tiles_w, transformed_at, transformed_pitch, block_at)
        gemm_batch(36, out_channels, columns, channels, workspace, 0, weights_pitch,
                   workspace, transformed_at, transformed_pitch, workspace, products_at,
                   products_pitch, workspace, scalars_at, scalars_at + 1)
        if threaded:
            _winograd_outputs_threaded(workspace, products_at, products_pitch, count,
                                       out_channels, tiles_h, tiles_w, first, out_h, out_w,
                                       bias, scratch_at, block_at, out)
        else:
            _winograd_outputs(workspace, products_at, products_pitch, count, out_channels,
                              tiles_h, tiles_w, first, out_h, out_w, bias, scratch_at,
                              block_at, out)


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


def _check_rank_and_groups(x, weight, groups):
    """The checks of the input's rank and of the weight's dim 0 against groups, which both
    convolutions make (dim 0: out channels, or the transposed one's in channels)."""
    if x.ndim != weight.ndim:
        raise RuntimeError(f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional "
                           f"weight {_shape_list(weight.shape)}, but got {x.ndim}-dimensional input of "
                           f"size {_shape_list(x.shape)} instead")
    if weight.shape[0] < groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at "
                           f"dimension 0, but got weight of size {_shape_list(weight.shape)} instead")
    if weight.shape[0] % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                           f"dimension 0, but got weight of size [{_shape_list(weight.shape)}] instead")


def _check_dtypes(x, weight):
    if x.dtype != weight.dtype:
        raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[x.dtype.name]} but found "
                           f"{TORCH_TYPE_NAMES[weight.dtype.name]}")
    if x.dtype.kind != "f":
        raise RuntimeError(f"convolution is implemented for floating point tensors only, got "
                           f"{x.dtype}")


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
    _check_rank_and_groups(x, weight, groups)
    out_channels = weight.shape[0]
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
    _check_dtypes(x, weight)
    out = tuple((size - span) // step + 1 for size, span, step in zip(padded, spans, stride))
    # NOTE: as PyTorch, an input without channels gives an output without channels (whatever
    # the weight's out channels), and no bias is added.
    return (x.shape[0], out_channels if x.shape[1] else 0) + out, x.dtype



def _two(values, fill):
    """Per-dim values of a 1-D convolution as a 2-D one's (height 1, with `fill` for it)."""
    return (fill,) * (2 - len(values)) + tuple(values)


def _per_side(name, values, separator=" "):
    """PyTorch's way of naming a 2-D argument in the transposed convolution's messages (a 1-D
    one is 2-D with height 1)."""
    return f"{name}_height: {values[0]}{separator}{name}_width: {values[1]}"


def check_transposed_bias(weight_shape, groups, bias_shape):
    out_channels = weight_shape[1] * groups
    if bias_shape != (out_channels,):
        raise RuntimeError(f"Given transposed=1, weight of size {_shape_list(weight_shape)}, expected "
                           f"bias to be 1-dimensional with {out_channels} elements, but got bias of "
                           f"size {_shape_list(bias_shape)} instead")


def infer_transposed(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """The transposed convolution's checks and shape: PyTorch's `conv_transpose2d`, with the
    input's and output's roles of `infer` exchanged (weight: in, out/groups, kernel...).
    The bias has x's dtype (the API function converts it, as PyTorch takes any)."""
    dims = weight.ndim - 2
    stride, padding, dilation = resolve(weight.shape, stride, padding, dilation)
    output_padding = _per_dim("output_padding", output_padding, dims)
    if any(side < 0 for side in padding):
        raise RuntimeError("negative padding is not supported")
    if any(side < 0 for side in output_padding):
        raise RuntimeError("negative output_padding is not supported")
    if any(step <= 0 for step in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"dilation should be greater than zero, but got "
                           f"{_per_side('dilation', _two(dilation, 1), ', ')}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    _check_rank_and_groups(x, weight, groups)
    if x.shape[0] and 0 in x.shape[2:]:
        raise RuntimeError(f"Only zero batch or zero channel inputs are supported, but got input "
                           f"shape: {_shape_list(x.shape)}")
    in_channels = weight.shape[0]
    if weight.shape[1] == 0:
        raise RuntimeError(f"non-empty 2D or 4D weight tensor expected, but got: "
                           f"{_shape_list(weight.shape[:2] + _two(weight.shape[2:], 1))}")
    if x.shape[1] != in_channels:
        raise RuntimeError(f"Given transposed=1, weight of size {_shape_list(weight.shape)}, "
                           f"expected input{_shape_list(x.shape)} to have {in_channels} channels, "
                           f"but got {x.shape[1]} channels instead")
    out_channels = weight.shape[1] * groups
    if bias.shape != (0,):
        check_transposed_bias(weight.shape, groups, bias.shape)
    if any(extra >= step and extra >= d for extra, step, d in zip(output_padding, stride, dilation)):
        raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                           f"{_per_side('output_padding', _two(output_padding, 0))} "
                           f"{_per_side('stride', _two(stride, 1))} "
                           f"{_per_side('dilation', _two(dilation, 1))}")
    sizes = tuple((size - 1) * step - 2 * side + d * (k - 1) + extra + 1 for size, step, side, d, k, extra
                  in zip(x.shape[2:], stride, padding, dilation, weight.shape[2:], output_padding))
    if any(size <= 0 for size in sizes):
        raise RuntimeError(f"Given input size per channel: ({' x '.join(map(str, _two(x.shape[2:], 1)))})."
                           f" Calculated output size per channel: "
                           f"({' x '.join(map(str, _two(sizes, 1)))}). Output size is too small")
    _check_dtypes(x, weight)
    return (x.shape[0], out_channels) + sizes, x.dtype


class _Plan:
    """A call's integers, the kernels' `plan` argument: the 4-D geometry (a 1-D convolution
    has H = 1), groups, the chunk of images per GEMM (of at most `budget` columns) and the
    workspace's layout (_layout); the workspace's size; and the kernels' `masks` argument
    (a same convolution's, else empty)."""

    def __init__(self, x_shape, weight_shape, out_shape, stride, padding, dilation, groups,
                 budget, transposed_below):
        stride, padding, dilation = resolve(weight_shape, stride, padding, dilation)

        batch, channels, height, width = x_shape[:2] + _two(x_shape[2:], 1)
        out_channels, group_in, kernel_h, kernel_w = weight_shape[:2] + _two(weight_shape[2:], 1)
        out_h, out_w = _two(out_shape[2:], 1)
        (stride_h, stride_w), (dilation_h, dilation_w) = _two(stride, 1), _two(dilation, 1)
        pad_top, pad_left = _two(padding, 0)
        taps, positions = kernel_h * kernel_w, out_h * out_w
        chunk = max(1, min(batch, budget // max(1, group_in * taps * positions)))
        chunk = -(-batch // -(-batch // chunk)) if batch else 1  # (equal chunks, not 7 + 1)
        geometry = (channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h,
                    stride_w, pad_top, pad_left, dilation_h, dilation_w)
        parts, self.workspace = _layout(geometry, groups, out_channels, chunk, transposed_below)
        self.masks = _masks(geometry, chunk) if parts[0] and taps > 1 else _NO_MASKS
        self.integers = (batch, channels, height, width, out_channels, kernel_h, kernel_w, out_h,
                         out_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                         groups, chunk) + parts
        self._arrays = {}

    def array(self, *needs):
        """The `plan` argument (then `needs` for the backward kernel): read-only, as the
        fused step's constant array is (a writable one is another type: a compilation), and
        so shared by the calls of a plan."""
        array = self._arrays.get(needs)
        if array is None:
            array = self._arrays[needs] = np.array(self.integers + needs, np.int64)
            array.flags.writeable = False
        return array


@functools.lru_cache(maxsize=256)
def _cached_plan(*arguments):
    return _Plan(*arguments)


def _plan(x_shape, weight_shape, out_shape, params):
    """The call's _Plan, made once per shapes and parameters (a network's layers repeat)."""
    return _cached_plan(tuple(x_shape), tuple(weight_shape), tuple(out_shape),
                        tuple(params["stride"]), tuple(params["padding"]),
                        tuple(params["dilation"]), params["groups"], COLUMN_BUDGET,
                        TRANSPOSED_WEIGHT_GRADIENT_BELOW)


_NO_MASKS = np.empty(0, np.uint8)
_NO_MASKS.flags.writeable = False


def _aligned(offset):
    return -(-offset // 16) * 16  # (64 bytes in float32: whole cache lines for BLAS)


class _WinogradPlan:
    """A winograd_kernel call's integers (its `plan` argument, read-only as _Plan's) and
    workspace size: the input's shape (N, C, H, W), the channels and size of the output, the
    padding; the chunk of images (of at most `budget` elements of V or M), the tiles
    (4x4 outputs, over the edge where a size is not a multiple of 4) and the images' padded
    copy (6x6 input blocks at every offset of 4: 4 tiles + 2 a side); the workspace's parts:
    U, V, M, the padded images, the output's scratch rows, gemm's scalars, the transforms'
    6x6 block and the kernels (see _winograd_kernels: `rotated` for an input gradient)."""

    def __init__(self, x_shape, out_channels, out_size, padding, budget, rotated):
        batch, channels, height, width = x_shape
        (out_h, out_w), (pad_top, pad_left) = out_size, padding
        tiles_h, tiles_w = -(-out_h // 4), -(-out_w // 4)
        tiles, padded = tiles_h * tiles_w, (4 * tiles_h + 2) * (4 * tiles_w + 2)
        chunk = max(1, min(batch, budget // (36 * max(channels, out_channels) * tiles)))
        chunk = -(-batch // -(-batch // chunk)) if batch else 1  # (equal chunks)
        # (U at 0; _skewed's Python function: the same distances as the kernel's)
        transformed_at = 36 * _skewed.py_func(channels * out_channels)
        products_at = transformed_at + 36 * _skewed.py_func(channels * chunk * tiles)
        images_at = products_at + 36 * _skewed.py_func(out_channels * chunk * tiles)
        scratch_at = _aligned(images_at + channels * chunk * padded)
        scalars_at = scratch_at + 16 * tiles_w * out_channels
        block_at = _aligned(scalars_at + 2)
        # (a block for each plane and for each output channel)
        kernels_at = _aligned(block_at + 36 * max(channels * chunk, out_channels))
        self.workspace = kernels_at + 9 * channels * out_channels
        self.array = np.array((batch, channels, height, width, out_channels, out_h, out_w,
                               pad_top, pad_left, chunk, tiles_h, tiles_w,
                               4 * tiles_h + 2, 4 * tiles_w + 2, transformed_at, products_at,
                               images_at, scalars_at, scratch_at, block_at, kernels_at,
                               int(rotated)), np.int64)
        self.array.flags.writeable = False


def _winograd_pays(channels, out_channels, batch, out_h, out_w, min_channels, min_tiles,
                   min_size):
    """Whether Winograd F(4x4, 3x3) is chosen for a convolution of `channels` to
    `out_channels` with a (batch, out_h, out_w) output: with at least `min_channels`
    (WINOGRAD_MIN_CHANNELS) in and out, `min_tiles` (WINOGRAD_MIN_TILES) 4x4 output tiles in
    all, and outputs of at least `min_size` (WINOGRAD_MIN_SIZE) a side.

    Measured with F(4x4) and its 36 products in one batched GEMM (float32, two threads, one
    image, ms, im2col -> Winograd): 64 channels at 56x56 1.39 -> 1.07, 128 at 28x28 1.22 ->
    0.97, 256 at 14x14 1.37 -> 1.74 (of which the weights' transform, 36 matrices of
    256 x 256, 1.0); 8 images of 64 channels at 16x16 (ResNet-18's layer1 at 8x3x64x64)
    1.10-1.28 -> 0.54-0.76, and that network's forward and backward best 64.3-69.1 ->
    60.5-65.4 ms (5 processes each, taking turns). So from 16x16 (not 14x14, nor the F(2x2)
    rule below, from 28x28: measured with F(2x2), 16x16 made that network slower).

    Measured with F(2x2), 16 products one GEMM call each (float32, padding 1, ms, forward,
    im2col -> Winograd; batch, channels in and out, size, 2x2 tiles). With one BLAS thread
    (stable figures):
      8  64  64 16 512   1.88 -> 1.26     1  64  64 56 784  2.89 -> 1.78
      8 128 128  8 128   1.64 -> 1.10     1 128 128 28 196  2.48 -> 1.50
      8 256 256  4  32   1.59 -> 1.38     1 256 256 14  49  2.42 -> 1.69
      8 512 512  4  32   6.34 -> 6.31     1 256 256 10  25  1.27 -> 1.20
      8 512 512  2   8   1.98 -> 4.64     1 512 512  7  16  2.84 -> 4.50
      8  32  32 16 512   0.61 -> 0.37     8  32  32  4  32  0.048 -> 0.056
     64  16  32  4 256   0.17 -> 0.28    64   1  16  8 1024 0.043 -> 0.22
    With two BLAS threads (the machine shared: +-5 %) much of the gain goes: the 16 GEMMs
    (only as deep as the channels: 64 x 64 by 64 x 512) thread worse than im2col's one, and
    the transforms are serial:
      8  64  64 16  1.23 -> 1.10     1  64  64 56  1.66 -> 1.53
      8 128 128  8  0.92 -> 0.96     1 128 128 28  1.40 -> 1.22
      8 256 256  4  0.99 -> 1.14     1 256 256 14  1.45 -> 1.31
    so not below 14x14 (min_size: small images carry more padding and shorter loops).
    In whole networks, two threads, best of 3-5 processes each (asv_benchmarks/compare.py's
    workloads), when the input gradient took Winograd too: ResNet-18 inference at
    1x3x224x224 31.7 ms with Winograd from 14x14, 32.0 from 28x28, 34.1 without; but
    ResNet-18 forward and backward at 8x3x64x64, where only layer1 (16x16) qualifies from
    14x14, 87 ms with it against 73.5 without (the isolated layer said otherwise: cause not
    found). So F(2x2) was taken from 28x28; F(4x4), its batched GEMM and threaded
    transforms changed that (above: from 16x16, the input gradient included).
    Few tiles lose: the weights' transform (16 matrices of in x out: 16 MB at 512 channels)
    costs more than the GEMMs save; few channels lose: the GEMMs are small beside the
    transforms of the images (the digits CNN's 1 -> 16 and 16 -> 32 at 8x8 and 4x4)."""
    tiles = batch * -(-out_h // 4) * -(-out_w // 4)
    return (min(channels, out_channels) >= min_channels and tiles >= min_tiles
            and min(out_h, out_w) >= min_size)


@functools.lru_cache(maxsize=256)
def _cached_winograd_plan(x_shape, weight_shape, out_shape, stride, padding, dilation, groups,
                          budget, min_channels, min_tiles, min_size, input_gradient):
    if not (len(weight_shape) == 4 and weight_shape[2:] == (3, 3) and groups == 1
            and stride == (1, 1) and dilation == (1, 1)):
        return None
    if input_gradient:  # the convolution of the output gradient (out_shape) into x_shape
        if max(padding) > 2:
            return None
        x_shape, out_shape, padding = out_shape, x_shape, tuple(2 - p for p in padding)
    if not _winograd_pays(x_shape[1], out_shape[1], x_shape[0], *out_shape[2:], min_channels,
                          min_tiles, min_size):
        return None
    return _WinogradPlan(x_shape, out_shape[1], out_shape[2:], padding, budget, input_gradient)


def _winograd_plan(x_shape, weight_shape, out_shape, params, input_gradient=False):
    """The _WinogradPlan of the convolution's forward, or of its input's gradient, where
    Winograd is chosen for it, else None. The input's gradient of a 3x3 stride-1
    convolution with padding p is the convolution of the output gradient, with padding 2 - p,
    by the transposed kernels turned by 180 degrees (_winograd_kernels)."""
    stride, padding, dilation = resolve(weight_shape, params["stride"], params["padding"],
                                        params["dilation"])
    return _cached_winograd_plan(tuple(x_shape), tuple(weight_shape), tuple(out_shape), stride,
                                 padding, dilation, params["groups"], COLUMN_BUDGET,
                                 WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_TILES, WINOGRAD_MIN_SIZE,
                                 input_gradient)


def _winograd_threaded(size):
    """Whether winograd_kernel runs its transforms over threads for an output of `size`
    elements. NOTE: the pool is started (with its short spin) before the kernel is first
    compiled or loaded, even when it stays serial: the threaded transforms compiled in it
    would otherwise start Numba's pool without that spin."""
    return _threads.start() and size >= _threads.PARALLEL_THRESHOLD


def _flat(array):
    return np.ascontiguousarray(array).reshape(-1)


def forward(x, weight, bias, **params):
    shape, dtype = infer(x, weight, bias, **params)
    out = np.empty(shape, dtype)
    if out.size == 0:
        return out
    winograd = _winograd_plan(x.shape, weight.shape, shape, params)
    if winograd is not None:
        winograd_kernel(_flat(x), _flat(weight), _flat(bias), out.reshape(-1), winograd.array,
                        np.empty(winograd.workspace, dtype), _winograd_threaded(out.size))
        return out
    plan = _plan(x.shape, weight.shape, shape, params)
    conv_forward_kernel(_flat(x), _flat(weight), _flat(bias), out.reshape(-1), plan.array(),
                        plan.masks, np.empty(plan.workspace, dtype))
    return out


def vjp(node, g):
    # What a VJP does not read is not saved (save_for): zero-size stand-ins then, as for the
    # gradients that are not asked for.
    x, weight = node.saved
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    needs = tuple(node.needs)
    dtype = g.dtype
    # NOTE: made in their own shapes and returned as they are: the engine takes a gradient
    # it owns (an array that is not a view) as a leaf's .grad, and copies any other.
    if g.size == 0:  # (no images or no input channels: the kernels are not called)
        return tuple(np.zeros(shape, dtype) if need else None
                     for shape, need in zip((x_shape, weight_shape, weight_shape[:1]), needs))
    grads = [np.empty(shape if need else 0, dtype)
             for shape, need in zip((x_shape, weight_shape, weight_shape[:1]), needs)]
    absent = np.empty(0, dtype)
    winograd = _winograd_plan(x_shape, weight_shape, g.shape, node.params, True) \
        if needs[0] else None
    if winograd is not None:
        winograd_kernel(_flat(g), _flat(weight), absent, grads[0].reshape(-1),
                        winograd.array, np.empty(winograd.workspace, dtype),
                        _winograd_threaded(grads[0].size))
    if needs[1] or needs[2] or winograd is None:
        plan = _plan(x_shape, weight_shape, g.shape, node.params)
        kernel_needs = (int(winograd is None and needs[0]),) + needs[1:]
        conv_backward_kernel(absent if x is None else _flat(x),
                             absent if weight is None else _flat(weight), _flat(g),
                             *[grad.reshape(-1) for grad in grads],
                             plan.array(*kernel_needs), plan.masks,
                             np.empty(plan.workspace, dtype))
    return tuple(grad if need else None for grad, need in zip(grads, needs))


class _ConvolutionFusion:
    """The eager kernels called from the fused step, with the same arguments (so their eager
    compilations are reused) and the same choice of kernel; the workspace is allocated by
    the step at each call, as eager mode does, so that a network's convolutions do not each
    keep one in the step's arena."""

    @staticmethod
    def _zero_gradients(em, input_grads):
        for grad in input_grads:
            if grad is not None:
                em.emit(f"{em.out(grad)}.fill(0)")

    @staticmethod
    def _threaded(em, workspace, size):
        """winograd_kernel's `threaded` argument, chosen as eager mode's (_winograd_threaded:
        its transforms run on Numba's threads between its batched GEMMs, also in a step
        whose own loops stay serial because it calls BLAS), computed in the step: a literal
        argument would compile the kernel again. Measured, ResNet-18's compiled training
        step at 8x3x64x64 (SGD with momentum), best of 20 in each of 4 processes taking
        turns, with the input gradient's Winograd too: 59.7-61.0 -> 57.2-57.3 ms."""
        threaded = em.threaded_helper(_winograd_threaded(size))
        return f"{workspace}.size {'>' if threaded else '<'} 0"

    @staticmethod
    def _workspace(em, size, dtype):
        workspace = em.new_name("workspace")
        em.emit(f"{workspace} = np.empty({size}, np.{np.dtype(dtype).name})")
        return workspace

    def forward(self, em, arrays, params, out):
        x, weight, bias = arrays
        if out.size == 0:  # (as eager: see forward)
            em.out(out)
            return
        em.blas()
        flat = [f"{em.ref(array)}.reshape({array.size})" for array in arrays]
        winograd = _winograd_plan(x.shape, weight.shape, out.shape, params)
        if winograd is not None:
            workspace = self._workspace(em, winograd.workspace, out.dtype)
            em.emit(f"{em.kernel(winograd_kernel)}({', '.join(flat)}, "
                    f"{em.out(out)}.reshape({out.size}), {em.constant(winograd.array)}, "
                    f"{workspace}, {self._threaded(em, workspace, out.size)})")
            return
        plan = _plan(x.shape, weight.shape, out.shape, params)
        workspace = self._workspace(em, plan.workspace, out.dtype)
        em.emit(f"{em.kernel(conv_forward_kernel)}({', '.join(flat)}, "
                f"{em.out(out)}.reshape({out.size}), {em.constant(plan.array())}, "
                f"{em.constant(plan.masks)}, {workspace})")

    def vjp(self, em, node, g, input_grads):
        (x_shape, _), (weight_shape, _) = node.input_meta[:2]
        if g.size == 0:  # (as eager: see vjp)
            self._zero_gradients(em, input_grads)
            return
        needs = [int(grad is not None) for grad in input_grads]
        grads = [em.empty(1, g.dtype) if grad is None else f"{em.out(grad)}.reshape({grad.size})"
                 for grad in input_grads]
        saved = [em.empty(1, g.dtype) if array is None else f"{em.ref(array)}.reshape({array.size})"
                 for array in node.saved]
        em.blas()
        winograd = _winograd_plan(x_shape, weight_shape, g.shape, node.params, True) \
            if needs[0] else None
        if winograd is not None:
            workspace = self._workspace(em, winograd.workspace, g.dtype)
            em.emit(f"{em.kernel(winograd_kernel)}({em.ref(g)}.reshape({g.size}), {saved[1]}, "
                    f"{em.empty(1, g.dtype)}, {grads[0]}, {em.constant(winograd.array)}, "
                    f"{workspace}, {self._threaded(em, workspace, input_grads[0].size)})")
            needs[0] = 0
            if not (needs[1] or needs[2]):
                return
        plan = _plan(x_shape, weight_shape, g.shape, node.params)
        workspace = self._workspace(em, plan.workspace, g.dtype)
        em.emit(f"{em.kernel(conv_backward_kernel)}({', '.join(saved)}, "
                f"{em.ref(g)}.reshape({g.size}), {', '.join(grads)}, "
                f"{em.constant(plan.array(*needs))}, {em.constant(plan.masks)}, {workspace})")


# ---------------------------------------------------------------------------------------
# The transposed convolution (PyTorch's conv_transpose1d/2d, also ConvolutionBackward0) is the
# convolution's input gradient: the same kernels with the roles exchanged. Its output is the
# input of a convolution (weight: in, out/groups, kernel) whose output has x's shape, so one
# _Plan, of that convolution, serves the forward (conv_backward_kernel's input gradient), the
# input's gradient (conv_forward_kernel of g) and the weight's (conv_backward_kernel's weight
# gradient, g as the images and x as their output gradient).
# NOTE: the plan is given x's shape as the convolution's output: output_padding can make the
# convolution of the output one longer than x (by less than a stride or dilation), a row
# that reaches no input.

@calling_unlinked
@_jit
def add_channel_bias_kernel(out, bias, channels, positions):
    """out (flat, N x channels x positions) += bias per channel."""
    for start in range(0, out.shape[0], positions):
        shift = bias[start // positions % channels]
        for p in range(_u(positions)):
            out[_u(start) + p] += shift


@calling_unlinked
@_jit
def channel_sums_kernel(grad, batch, channels, positions, sums):
    """sums[c] = the sum of grad (flat, N x channels x positions) over images and positions."""
    _bias_gradient(grad, batch, channels, positions, sums)


def _transposed_plan(x_shape, weight_shape, out_shape, params):
    return _plan(out_shape, weight_shape, x_shape, params)


def transposed_forward(x, weight, bias, **params):
    shape, dtype = infer_transposed(x, weight, bias, **params)
    out = np.empty(shape, dtype)
    if out.size == 0:
        return out
    plan = _transposed_plan(x.shape, weight.shape, shape, params)
    absent = np.empty(0, dtype)
    conv_backward_kernel(absent, _flat(weight), _flat(x), out.reshape(-1), absent, absent,
                         plan.array(1, 0, 0), plan.masks, np.empty(plan.workspace, dtype))
    if bias.size:
        add_channel_bias_kernel(out.reshape(-1), bias, shape[1], math.prod(out.shape[2:]))
    return out


def transposed_vjp(node, g):
    x, weight = node.saved
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    need_x, need_weight, need_bias = node.needs
    dtype = g.dtype
    # (The kernels write every element: zeros only where no kernel runs, for no images.)
    make = np.zeros if g.size == 0 else np.empty
    grads = [make(shape, dtype) if need else None
             for shape, need in zip((x_shape, weight_shape, g.shape[1:2]), node.needs)]
    if g.size == 0:
        return tuple(grads)
    plan = _transposed_plan(x_shape, weight_shape, g.shape, node.params)
    absent = np.empty(0, dtype)
    workspace = np.empty(plan.workspace, dtype)
    if need_x:
        conv_forward_kernel(_flat(g), _flat(weight), absent, grads[0].reshape(-1), plan.array(),
                            plan.masks, workspace)
    if need_weight:
        conv_backward_kernel(_flat(g), absent, _flat(x), absent, grads[1].reshape(-1), absent,
                             plan.array(0, 1, 0), plan.masks, workspace)
    if need_bias:
        channel_sums_kernel(_flat(g), g.shape[0], g.shape[1], math.prod(g.shape[2:]), grads[2])
    return tuple(grads)


class _TransposedFusion(_ConvolutionFusion):
    """transposed_forward and transposed_vjp's kernel calls, from the fused step."""

    def forward(self, em, arrays, params, out):
        x, weight, bias = arrays
        if out.size == 0:
            em.out(out)
            return
        em.blas()
        plan = _transposed_plan(x.shape, weight.shape, out.shape, params)
        target = f"{em.out(out)}.reshape({out.size})"
        absent = em.empty(1, out.dtype)
        em.emit(f"{em.kernel(conv_backward_kernel)}({absent}, {em.ref(weight)}.reshape({weight.size}), "
                f"{em.ref(x)}.reshape({x.size}), {target}, {absent}, {absent}, "
                f"{em.constant(plan.array(1, 0, 0))}, {em.constant(plan.masks)}, "
                f"{self._workspace(em, plan.workspace, out.dtype)})")
        if bias.size:
            em.emit(f"{em.kernel(add_channel_bias_kernel)}({target}, {em.ref(bias)}, "
                    f"{out.shape[1]}, {math.prod(out.shape[2:])})")

    def vjp(self, em, node, g, input_grads):
        if g.size == 0:  # (as eager: zeros)
            self._zero_gradients(em, input_grads)
            return
        (x_shape, _), (weight_shape, _) = node.input_meta[:2]
        plan = _transposed_plan(x_shape, weight_shape, g.shape, node.params)
        grad_x, grad_weight, grad_bias = input_grads
        x, weight = node.saved
        flat_g = f"{em.ref(g)}.reshape({g.size})"
        absent = em.empty(1, g.dtype)
        em.blas()
        workspace = self._workspace(em, plan.workspace, g.dtype)
        masks = em.constant(plan.masks)
        if grad_x is not None:
            em.emit(f"{em.kernel(conv_forward_kernel)}({flat_g}, "
                    f"{em.ref(weight)}.reshape({weight.size}), {absent}, "
                    f"{em.out(grad_x)}.reshape({grad_x.size}), {em.constant(plan.array())}, "
                    f"{masks}, {workspace})")
        if grad_weight is not None:
            em.emit(f"{em.kernel(conv_backward_kernel)}({flat_g}, {absent}, "
                    f"{em.ref(x)}.reshape({x.size}), {absent}, "
                    f"{em.out(grad_weight)}.reshape({grad_weight.size}), {absent}, "
                    f"{em.constant(plan.array(0, 1, 0))}, {masks}, {workspace})")
        if grad_bias is not None:
            em.emit(f"{em.kernel(channel_sums_kernel)}({flat_g}, {g.shape[0]}, {g.shape[1]}, "
                    f"{math.prod(g.shape[2:])}, {em.out(grad_bias)})")


# ---------------------------------------------------------------------------------------
# The differentiable VJP (create_graph=True): each gradient is itself a convolution, called
# through `Tensor._primitive` so that it is recorded (PyTorch's convolution_backward
# formulas, derivatives.yaml). Spatial dims are handled one by one, for 1-D and 2-D alike.

def _input_gradient(g, weight, x_shape, stride, padding, dilation, groups):
    """The transposed convolution of g, its output padding the rows and columns of x past
    the last window's reach (less than a stride)."""
    extra = tuple(size - ((out - 1) * step - 2 * side + d * (k - 1) + 1) for size, out, step, side, d, k
                  in zip(x_shape[2:], g.shape[2:], stride, padding, dilation, weight.shape[2:]))
    return g._primitive("conv_transpose", weight, g.new_zeros((0,)), stride=stride,
                        padding=padding, output_padding=extra, dilation=dilation, groups=groups)


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


def _zero_gradients(node, g, shapes):
    """As vjp for an empty g: zeros; joined to g's graph (g's empty sum, 0), as PyTorch's node
    is, so that a further backward reaches what g depends on."""
    joined = g.sum() * 0
    return tuple(g.new_zeros(shape) + joined if need else None
                 for shape, need in zip(shapes, node.needs))


def _geometry(node):
    (x_shape, _), (weight_shape, _) = node.input_meta[:2]
    params = node.params
    return (x_shape, weight_shape) + resolve(weight_shape, params["stride"], params["padding"],
                                             params["dilation"]) + (params["groups"],)


def differentiable_vjp(node, g, saved):
    x, weight = saved
    x_shape, weight_shape, stride, padding, dilation, groups = _geometry(node)
    if g.numel() == 0:
        return _zero_gradients(node, g, (x_shape, weight_shape, weight_shape[:1]))
    needs = node.needs
    return (_input_gradient(g, weight, x_shape, stride, padding, dilation, groups)
            if needs[0] else None,
            _weight_gradient(g, x, weight_shape, stride, padding, dilation, groups)
            if needs[1] else None,
            g.sum((0,) + tuple(range(2, g.ndim))) if needs[2] else None)


def transposed_differentiable_vjp(node, g, saved):
    """The convolution's rules read backwards: x's gradient is the convolution of g (cropped
    to x where output_padding made the convolution one longer), the weight's is the
    convolution's weight gradient with g as the images and x as their output gradient."""
    x, weight = saved
    x_shape, weight_shape, stride, padding, dilation, groups = _geometry(node)
    if g.numel() == 0:
        return _zero_gradients(node, g, (x_shape, weight_shape, tuple(g.shape[1:2])))
    needs = node.needs
    grad_x = None
    if needs[0]:
        grad_x = g._primitive("convolution", weight, g.new_zeros((0,)), stride=stride,
                              padding=padding, dilation=dilation, groups=groups)
        if tuple(grad_x.shape) != tuple(x_shape):
            grad_x = grad_x[(slice(None),) * 2 + tuple(slice(0, size) for size in x_shape[2:])]
    return (grad_x,
            _weight_gradient(x, g, weight_shape, stride, padding, dilation, groups)
            if needs[1] else None,
            g.sum((0,) + tuple(range(2, g.ndim))) if needs[2] else None)


PRIMS = {
    "convolution": register(Primitive("convolution", "ConvolutionBackward0", infer, forward, vjp,
                                      save=(0, 1), save_for=((1,), (0,), ()),
                                      differentiable=(0, 1, 2), fuse=_ConvolutionFusion(),
                                      differentiable_vjp=differentiable_vjp)),
    "conv_transpose": register(Primitive(
        "conv_transpose", "ConvolutionBackward0", infer_transposed, transposed_forward,
        transposed_vjp, save=(0, 1), save_for=((1,), (0,), ()), differentiable=(0, 1, 2),
        fuse=_TransposedFusion(), differentiable_vjp=transposed_differentiable_vjp)),
}


# ---------------------------------------------------------------------------------------
# unfold and fold: PyTorch's im2col and col2im (Im2ColBackward0, Col2ImBackward0), each the
# other's adjoint. Primitives for the same reason as the convolution, whose helpers they
# call: one image at a time, one group of all its channels, never a "same" convolution's
# masked path (its masks are per chunk), so the columns are (C * KH * KW, OH * OW) as
# PyTorch's, at the workspace's start.

def _fold_plan(images, channels, height, width, kernel_size, blocks, stride, padding,
               dilation):
    """The kernels' integers (read-only, see _Plan.array): the geometry, then the images,
    the offset of the padded image copy after the columns, and the constants the helpers
    take as arguments (a literal would be another compilation); and the workspace's size."""
    columns = channels * kernel_size[0] * kernel_size[1] * blocks[0] * blocks[1]
    padded = channels * (height + 2 * padding[0]) * (width + 2 * padding[1])
    plan = np.array((channels, height, width, *kernel_size, *blocks, *stride, *padding,
                     *dilation, images, columns, 0, 1), np.int64)
    plan.flags.writeable = False
    return plan, columns + padded


@calling_unlinked
@_jit
def im2col_kernel(x, out, plan, masks, workspace):
    """out (N, C * KH * KW, OH * OW), flat: each image's im2col columns."""
    channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w, pad_top, \
        pad_left, dilation_h, dilation_w, images, columns, zero, one = plan[:17]
    geometry = (channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
                pad_top, pad_left, dilation_h, dilation_w)
    for n in range(images):
        _im2col(x, n, one, zero, channels, geometry, zero > 0, workspace, columns, masks, zero)
        at = _u(n * columns)
        for t in range(_u(columns)):
            out[at + t] = workspace[t]


@calling_unlinked
@_jit
def col2im_kernel(columns_of, out, plan, masks, workspace):
    """out (N, C, H, W), flat: each image's columns (N, C * KH * KW, OH * OW) added back
    where im2col read them."""
    channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w, pad_top, \
        pad_left, dilation_h, dilation_w, images, columns, zero, one = plan[:17]
    geometry = (channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
                pad_top, pad_left, dilation_h, dilation_w)
    for n in range(images):
        at = _u(n * columns)
        for t in range(_u(columns)):
            workspace[t] = columns_of[at + t]
        _col2im(workspace, n, one, zero, channels, geometry, zero > 0, columns, masks, zero, out)


def _fold_sizes(params):
    return tuple(params[name] for name in ("kernel_size", "stride", "padding", "dilation"))


def _check_fold_params(kernel_size, stride, padding, dilation):
    """PyTorch's checks of im2col's and col2im's parameters (2-tuples), in its order."""
    for name, (height, width), what, least in (
            ("kernel size", kernel_size, "kernel", 1), ("dilation", dilation, "dilation", 1),
            ("padding", padding, "pad", 0), ("stride", stride, "stride", 1)):
        if height < least or width < least:
            rule = "non-negative" if least == 0 else "greater than zero"
            raise RuntimeError(f"{name} should be {rule}, but got {what}_height: {height} "
                               f"{what}_width: {width}")


def _blocks(size, kernel_size, stride, padding, dilation):
    """The sliding blocks along each spatial dimension of `size`."""
    return tuple((s + 2 * p - d * (k - 1) - 1) // step + 1
                 for s, k, step, p, d in zip(size, kernel_size, stride, padding, dilation))


def _im2col_infer(x, kernel_size, stride, padding, dilation):
    _check_fold_params(kernel_size, stride, padding, dilation)
    if x.ndim == 0:
        raise IndexError("Dimension specified as 1 but tensor has no dimensions")
    if x.ndim < 3:  # (PyTorch reads the size of dimension ndim)
        raise IndexError(f"Dimension out of range (expected to be in range of [{-x.ndim}, "
                         f"{x.ndim - 1}], but got {x.ndim})")
    if x.ndim not in (3, 4) or 0 in x.shape[-3:]:
        raise RuntimeError("Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and "
                           f"other non-zero dimensions for input, but got: {list(x.shape)}")
    if x.dtype.kind != "f":
        raise NotImplementedError(f'"im2col_out_cpu" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[x.dtype.name]}'")
    blocks = _blocks(x.shape[-2:], kernel_size, stride, padding, dilation)
    if min(blocks) < 1:
        raise RuntimeError(f"Given input with spatial size {tuple(x.shape[-2:])}, kernel_size="
                           f"{kernel_size}, dilation={dilation}, padding={padding}, calculated "
                           f"shape of the array of sliding blocks as {blocks}, but its "
                           "components must be at least one.")
    return (x.shape[:-3] + (x.shape[-3] * kernel_size[0] * kernel_size[1],
                            blocks[0] * blocks[1]), x.dtype)


def _col2im_infer(columns, output_size, kernel_size, stride, padding, dilation):
    _check_fold_params(kernel_size, stride, padding, dilation)
    if columns.ndim not in (2, 3) or 0 in columns.shape[-2:]:
        raise RuntimeError("Expected 2D or 3D (batch mode) tensor for input with possibly 0 "
                           "batch size and non-zero dimensions for input, but got: "
                           f"{list(columns.shape)}")
    taps = kernel_size[0] * kernel_size[1]
    if columns.shape[-2] % taps:
        raise RuntimeError("Expected size of input's dimension 1 to be divisible by the product "
                           f"of kernel_size, but got input.size(1)={columns.shape[-2]} and "
                           f"kernel_size={kernel_size}.")
    blocks = _blocks(output_size, kernel_size, stride, padding, dilation)
    if columns.shape[-1] != blocks[0] * blocks[1]:
        raise RuntimeError(f"Given output_size={output_size}, kernel_size={kernel_size}, "
                           f"dilation={dilation}, padding={padding}, stride={stride}, expected "
                           "size of input's dimension 2 to match the calculated number of "
                           f"sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, "
                           f"but got input.size(2)={columns.shape[-1]}.")
    if columns.dtype.kind != "f":
        raise NotImplementedError(f'"col2im_out_cpu" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[columns.dtype.name]}'")
    return columns.shape[:-2] + (columns.shape[-2] // taps,) + tuple(output_size), columns.dtype


def _run_fold(images, out, kernel_size, stride, padding, dilation, adjoint):
    """Run im2col_kernel (images -> out) or, `adjoint`, col2im_kernel (out -> images) on
    images (N, C, H, W) and columns (N, C * KH * KW, L) of any batch shape; returns the
    result of the two."""
    *_, channels, height, width = images.shape
    count = math.prod(images.shape[:-3])
    blocks = _blocks((height, width), kernel_size, stride, padding, dilation)
    result = images if adjoint else out
    if result.size == 0:
        return result
    plan, workspace = _fold_plan(count, channels, height, width, kernel_size, blocks, stride,
                                 padding, dilation)
    kernel = col2im_kernel if adjoint else im2col_kernel
    source, target = (out, images) if adjoint else (images, out)
    kernel(_flat(source), target.reshape(-1), plan, _NO_MASKS, np.empty(workspace, result.dtype))
    return result


def im2col_forward(x, **params):
    shape, dtype = _im2col_infer(x, **params)
    return _run_fold(x, np.empty(shape, dtype), *_fold_sizes(params), adjoint=False)


def col2im_forward(columns, output_size, **params):
    shape, dtype = _col2im_infer(columns, output_size, **params)
    return _run_fold(np.empty(shape, dtype), columns, *_fold_sizes(params), adjoint=True)


def im2col_vjp(node, g):
    shape = node.input_meta[0][0]
    return (_run_fold(np.empty(shape, g.dtype), g, *_fold_sizes(node.params), adjoint=True),)


def col2im_vjp(node, g):
    shape = node.input_meta[0][0]
    return (_run_fold(g, np.empty(shape, g.dtype), *_fold_sizes(node.params), adjoint=False),)


def im2col_differentiable_vjp(node, g, saved):
    return (g._primitive("col2im", output_size=node.input_meta[0][0][-2:], **node.params),)


def col2im_differentiable_vjp(node, g, saved):
    return (g._primitive("im2col", **{name: node.params[name] for name in
                                      ("kernel_size", "stride", "padding", "dilation")}),)


PRIMS.update({
    "im2col": register(Primitive("im2col", "Im2ColBackward0", _im2col_infer, im2col_forward,
                                 im2col_vjp, differentiable_vjp=im2col_differentiable_vjp)),
    "col2im": register(Primitive("col2im", "Col2ImBackward0", _col2im_infer, col2im_forward,
                                 col2im_vjp, differentiable_vjp=col2im_differentiable_vjp)),
})
