"""Normalization: batch_norm and group_norm (layer_norm is group_norm's kernels on a view).

Each is a primitive rather than a composite of mean, var, sub and mul:
- numerical stability: the statistics are accumulated in float64 in two passes (the mean,
  then the squared deviations from it), as PyTorch's CPU kernels accumulate float32 in
  double; a composite in float32 would round the variance;
- speed: a forward is three passes over each channel (or group) and a backward two (the
  gradient's sums, then dx), with no full-size temporaries, where the composite makes about
  ten of them and as many kernel calls (ResNet-18 has a BatchNorm after every convolution);
  PyTorch's grad_fn names (NativeBatchNormBackward0, ...) come with it;
- a call that records a node saves the mean and inverse std of each channel (batch_norm in
  training) or group (group_norm, layer_norm) as its `forward_saving`'s extra, (2, count)
  float64, as PyTorch's nodes save save_mean and save_invstd (or mean and rstd): the
  backward reads them instead of computing the statistics again;
- batch_norm's running statistics (and `num_batches_tracked`) are updated in place by its
  forward kernel, from the batch statistics it has just computed. The update is then part of
  the op in every mode: eager calls the kernel at once, and a deferred graph's and
  `nbgrad.compile`'s fused kernels call the same kernel on the buffers' own arrays (the
  buffers are inputs of the op, so the fused step reads and writes them at call time).

Absent optional inputs (weight, bias, running statistics, num_batches_tracked) are
zero-size arrays, so each kernel has one signature per dtype.
"""
import math

import numba
import numpy as np

from .._core.dtype import is_half
from .._core.kernel_support import at1, typed
from .primitive import TORCH_TYPE_NAMES, Primitive, register

# NOTE: `reassoc` lets LLVM vectorize the float64 sums (a sum's order is not kept, as in
# nbgrad's other sums); nothing else of fastmath (NaN and inf must propagate).
_jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
# The backwards also let LLVM fuse a multiply and an add (one rounding instead of two), in
# float64: batch_norm on 8x64x32x32 188 us instead of 220, layer_norm(512) on 8x128x512 335
# instead of 385 (the kernels alone). NOTE: not the forwards, where x == mean must give
# exactly the bias (see _affine), which a fused x * scale + shift does not.
_jit_contracted = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
# batch_norm's helpers (and _affine) are inlined by Numba. NOTE: compiled as functions of
# their own (each linked into its caller and optimized again there), they made batch_norm's
# forward kernel take 3.1 s to compile cold instead of 1.7 s; _affine on its own cost the
# first kernel calling it 0.1 s more (cold, CPU: batch_norm_eval_kernel 0.61 -> 0.51 s,
# batch_norm_forward_kernel 1.67 -> 1.57 s, averages of 2 and 3 runs).
_inline = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"}, inline="always")


@_inline
def _affine(alpha, mean, bias, channel, out):
    """(scale, shift) in `out`'s dtype such that y = x * scale + shift, as PyTorch computes
    them: in the input's dtype, so that x == mean gives exactly `bias`."""
    scale = typed(alpha, out)
    shift = -typed(mean, out) * scale
    if bias.size:
        shift += bias[channel]
    return scale, shift


# ---------------------------------------------------------------------------------------
# batch_norm on x as (N, C, S): statistics per channel over N and S.
#
# The kernels work a block of channels at a time; each pass is a loop over the N samples of
# a contiguous run of the block's positions (its channels' S elements), so that the passes
# after the first over a block read it from cache. A channel of at least _SHORT elements per
# sample is a block of its own, summed into scalars; shorter channels go _BLOCK // S to a
# block, summed into one float64 accumulator per position, then per channel, so that the
# inner loops stay long enough to vectorize (ResNet's last layers have S = 4 or 16).
# NOTE: measured (float32, the kernels alone, forward / backward), channels one by one, each
# row of S on its own: 8x512x2x2 55 / 67 us (each row's float64 sum of 4 is a chain of
# dependent adds); by blocks of 128 channels 17 / 24 us. Per-position accumulators cost
# more per element: on 8x128x16x16 (S = 256) they took 2x the time of channels one by one.
# The loops index with unsigned integers (see nbgrad/ops/conv.py).
_SHORT = 32
_BLOCK = 512
_u = np.uint64


@_inline
def _channel_sum(xf, batch, stride, first, size):
    """The sum over samples n of x[n * stride + first + s], s < size, in float64."""
    total = 0.0
    for n in range(batch):
        row = n * stride + first
        for s in range(size):
            total += xf[_u(row + s)]
    return total


@_inline
def _channel_squares(xf, batch, stride, first, size, centre):
    """As _channel_sum, of the squared deviations from `centre`."""
    total = 0.0
    for n in range(batch):
        row = n * stride + first
        for s in range(size):
            d = xf[_u(row + s)] - centre
            total += d * d
    return total


@_inline
def _position_sums(xf, batch, stride, first, sums):
    """sums[i] = _channel_sum's sum for position i alone, i < sums.size."""
    for i in range(sums.size):
        sums[_u(i)] = 0.0
    for n in range(batch):
        row = n * stride + first
        for i in range(sums.size):
            sums[_u(i)] += xf[_u(row + i)]


@_inline
def _position_squares(xf, batch, stride, first, centre, sums):
    """sums[i] = _channel_squares's sum for position i alone (centre[i])."""
    for i in range(sums.size):
        sums[_u(i)] = 0.0
    for n in range(batch):
        row = n * stride + first
        for i in range(sums.size):
            d = xf[_u(row + i)] - centre[_u(i)]
            sums[_u(i)] += d * d


@_inline
def _gradient_sums(xf, gf, batch, stride, first, size, mean):
    """(sum of g, sum of g (x - mean)), as _channel_sum sums, in float64, in one pass."""
    sum_g = 0.0
    dot = 0.0
    for n in range(batch):
        row = n * stride + first
        for s in range(size):
            gi = np.float64(gf[_u(row + s)])
            sum_g += gi
            dot += gi * (xf[_u(row + s)] - mean)
    return sum_g, dot


@_inline
def _position_gradient_sums(xf, gf, batch, stride, first, means, sums_g, dots):
    """sums_g[i], dots[i] = _gradient_sums's sums for position i alone (means[i])."""
    for i in range(sums_g.size):
        sums_g[_u(i)] = dots[_u(i)] = 0.0
    for n in range(batch):
        row = n * stride + first
        for i in range(sums_g.size):
            gi = np.float64(gf[_u(row + i)])
            sums_g[_u(i)] += gi
            dots[_u(i)] += gi * (xf[_u(row + i)] - means[_u(i)])


@_inline
def _channel_total(sums, j, size):
    """The sum of the position accumulators of the j-th channel of a block."""
    total = 0.0
    for s in range(j * size, (j + 1) * size):
        total += sums[s]
    return total


@_inline
def _spread(value, j, size, positions):
    """Each position of the j-th channel of a block = value (size 1: a block of one channel,
    one value)."""
    for s in range(j * size, (j + 1) * size):
        positions[s] = value


@_inline
def _block_means(xf, batch, channels, size, c0, block, sums, centre, means):
    """The mean of each channel c0 + j < c0 + block in means[j], and centre = the mean per
    position (blocks of more than one channel)."""
    stride, first, width = channels * size, c0 * size, block * size
    if block == 1:
        means[0] = _channel_sum(xf, batch, stride, first, size) / (batch * size)
        return
    _position_sums(xf, batch, stride, first, sums[:width])
    for j in range(block):
        means[j] = _channel_total(sums, j, size) / (batch * size)
        _spread(means[j], j, size, centre)


@_inline
def _block_statistics(xf, batch, channels, size, c0, block, sums, centre, means, squares):
    """_block_means, and the sum of squared deviations from it of each channel in
    squares[j]: two passes, the mean, then the deviations from it."""
    stride, first, width = channels * size, c0 * size, block * size
    _block_means(xf, batch, channels, size, c0, block, sums, centre, means)
    if block == 1:
        squares[0] = _channel_squares(xf, batch, stride, first, size, means[0])
        return
    _position_squares(xf, batch, stride, first, centre[:width], sums[:width])
    for j in range(block):
        squares[j] = _channel_total(sums, j, size)


@_inline
def _normalize(xf, batch, stride, first, width, scale, shift, of):
    """out = x * scale + shift over a block (scale and shift: per position, or scalars)."""
    for n in range(batch):
        row = n * stride + first
        for i in range(width):
            of[_u(row + i)] = xf[_u(row + i)] * at1(scale, _u(i)) + at1(shift, _u(i))


@_inline
def _input_gradient(xf, gf, batch, stride, first, width, a, b, c, grad_f):
    """dx = g a + x b + c over a block (a, b, c per position, or scalars), in float64: with
    a = invstd * weight, b = -k a and c = (mean k - mean(g)) a, dx is
    (g - mean(g) - (x - mean) k) * invstd * weight. NOTE: x b + c cancels where
    |mean| >> std, which costs float64 nothing a float32 result shows (not in float32: its
    rounding of the mean shows where the variance is small)."""
    for n in range(batch):
        row = n * stride + first
        for i in range(width):
            e = _u(row + i)
            grad_f[e] = gf[e] * at1(a, _u(i)) + xf[e] * at1(b, _u(i)) + at1(c, _u(i))


@_inline
def _blocks(channels, size):
    """(channels per block, the largest block's positions: at least 1, for [0] of a block of
    one channel)."""
    per_block = 1 if size >= _SHORT else _BLOCK // max(size, 1)
    return per_block, max(min(per_block, channels) * size, 1)


@_jit
def batch_norm_eval_kernel(x, weight, bias, running_mean, running_var, eps, out):
    """out = (x - running_mean) / sqrt(running_var + eps) * weight + bias per channel of x
    (N, C, S): one pass, a channel at a time."""
    for c in range(x.shape[1]):
        invstd = 1.0 / np.sqrt(np.float64(running_var[c]) + eps)
        scale, shift = _affine(invstd * weight[c] if weight.size else invstd,
                               np.float64(running_mean[c]), bias, c, out)
        for n in range(x.shape[0]):
            for s in range(x.shape[2]):
                out[n, c, s] = x[n, c, s] * scale + shift


@_jit
def batch_norm_eval_backward_kernel(x, g, weight, running_mean, running_var, eps, grad_x,
                                    grad_weight, grad_bias):
    """The gradients of batch_norm_eval_kernel's output (dx = g * invstd * weight: the
    statistics are constants); each grad_* is written only if it is not empty."""
    batch, channels, size = x.shape
    xf, gf = x.reshape(-1), g.reshape(-1)
    for c in range(channels):
        invstd = 1.0 / np.sqrt(np.float64(running_var[c]) + eps)
        if grad_weight.size or grad_bias.size:
            sum_g, dot = _gradient_sums(xf, gf, batch, channels * size, c * size, size,
                                        np.float64(running_mean[c]))
            if grad_weight.size:
                grad_weight[c] = dot * invstd
            if grad_bias.size:
                grad_bias[c] = sum_g
        scale = typed(invstd * weight[c] if weight.size else invstd, grad_x)
        for n in range(batch if grad_x.size else 0):
            for s in range(size):
                grad_x[n, c, s] = g[n, c, s] * scale


@_jit
def batch_norm_forward_kernel(x, weight, bias, running_mean, running_var, batches, momentum,
                              cumulative, eps, out, statistics):
    """out = (x - mean) / sqrt(var + eps) * weight + bias per channel of x (N, C, S), with
    the batch's biased statistics; the running ones, if given, move towards the batch's mean
    and unbiased variance by `momentum`, or by 1 / batches when `cumulative`. `statistics`
    (2, C) float64, if not empty, gets each channel's mean and 1 / sqrt(var + eps), which
    batch_norm_backward_kernel reads."""
    batch, channels, size = x.shape
    xf, of = x.reshape(-1), out.reshape(-1)
    count = batch * size
    # As PyTorch: an empty batch leaves the running statistics as they are.
    update = running_mean.size > 0 and count > 0
    factor = momentum
    if batches.size > 0:
        batches[0] += 1
        if cumulative:
            factor = 1.0 / batches[0]
    per_block, span = _blocks(channels, size)
    sums, centre = np.empty(span), np.empty(span)
    means, squares = np.empty(per_block), np.empty(per_block)
    scales, shifts = np.empty(span, out.dtype), np.empty(span, out.dtype)
    for c0 in range(0, channels, per_block):
        block = min(per_block, channels - c0)
        _block_statistics(xf, batch, channels, size, c0, block, sums, centre, means, squares)
        for j in range(block):
            c = c0 + j
            invstd = 1.0 / np.sqrt(squares[j] / count + eps)
            if statistics.size:
                statistics[0, c] = means[j]
                statistics[1, c] = invstd
            if update:
                running_mean[c] = factor * means[j] + (1.0 - factor) * running_mean[c]
                running_var[c] = (factor * squares[j] / (count - 1)
                                  + (1.0 - factor) * running_var[c])
            scale, shift = _affine(invstd * weight[c] if weight.size else invstd, means[j],
                                   bias, c, out)
            _spread(scale, j, size if block > 1 else 1, scales)
            _spread(shift, j, size if block > 1 else 1, shifts)
        if block == 1:
            _normalize(xf, batch, channels * size, c0 * size, size, scales[0], shifts[0], of)
        else:
            _normalize(xf, batch, channels * size, c0 * size, block * size, scales, shifts, of)


@_jit_contracted
def batch_norm_backward_kernel(x, g, weight, statistics, grad_x, grad_weight, grad_bias):
    """The gradients of batch_norm_forward_kernel's output, from the mean and inverse std
    per channel it saved in `statistics`; each grad_* is written only if it is not empty (a
    gradient not asked for). Two passes over each block: the gradient's sums (of g and of
    g (x - mean)), then dx.
    NOTE: measured (float32, the kernel alone, one thread): 8x64x32x32 187 us, 8x64x16x16
    51, 8x512x2x2 17; with the statistics found again here in the first pass (sums of
    x - x[0], its squares, g and g (x - x[0])) 209, 59 and 25; with a pass for the mean
    first, dx as (g - mean(g) - (x - mean) k) a and no `contract`, 296 and 80 on the first
    two."""
    batch, channels, size = x.shape
    xf, gf, grad_f = x.reshape(-1), g.reshape(-1), grad_x.reshape(-1)
    count = batch * size
    per_block, span = _blocks(channels, size)
    # Per position (or [0] for a block of one channel): the mean and sums, then the a, b, c
    # of _input_gradient.
    means, sums_g, dots = np.empty(span), np.empty(span), np.empty(span)
    a, b, c = np.empty(span), np.empty(span), np.empty(span)
    for c0 in range(0, channels, per_block):
        block = min(per_block, channels - c0)
        stride, first, width = channels * size, c0 * size, block * size
        if block == 1:
            sums_g[0], dots[0] = _gradient_sums(xf, gf, batch, stride, first, size,
                                                statistics[0, c0])
        else:
            for j in range(block):
                _spread(statistics[0, c0 + j], j, size, means)
            _position_gradient_sums(xf, gf, batch, stride, first, means[:width],
                                    sums_g[:width], dots[:width])
        for j in range(block):
            channel = c0 + j
            sum_g, dot = sums_g[0], dots[0]
            if block > 1:
                sum_g, dot = _channel_total(sums_g, j, size), _channel_total(dots, j, size)
            mean, invstd = statistics[0, channel], statistics[1, channel]
            if grad_weight.size:
                # An empty batch (invstd NaN: a variance of 0 / 0) gives 0, as PyTorch's.
                grad_weight[channel] = dot * invstd if count else 0.0
            if grad_bias.size:
                grad_bias[channel] = sum_g
            scale = invstd * weight[channel] if weight.size else invstd
            k = dot * invstd * invstd / count
            spread = size if block > 1 else 1
            _spread(scale, j, spread, a)
            _spread(-k * scale, j, spread, b)
            _spread((mean * k - sum_g / count) * scale, j, spread, c)
        if not grad_x.size:
            continue
        if block == 1:
            _input_gradient(xf, gf, batch, stride, first, size, a[0], b[0], c[0], grad_f)
        else:
            _input_gradient(xf, gf, batch, stride, first, width, a, b, c, grad_f)


# ---------------------------------------------------------------------------------------
# group_norm on x as (N, G, K), K = channels per group * S: statistics per (n, g) over K;
# weight and bias per channel (g * channels per group + k // S). The kernels read each group
# as a flat run of K elements (batch_norm's helpers, a batch of one), indexed unsigned.
# NOTE: measured (float32, eager, one thread, forward without a node / forward+backward):
# group_norm(32) on 8x64x32x32 141 / 418 us, layer_norm(512) on 8x128x512 176 / 534,
# layer_norm(64) on 64x16x64 45 / 118 (torch 143 / 357, 168 / 414, 49 / 110); before, with
# x[n, g, k] indexed signed (not vectorized) and the backward finding the statistics again
# (a pass for the mean), 564 / 2071, 628 / 1816 and 144 / 351.


@_inline
def _affine_elements(xf, first, size, mean, invstd, weight, bias, channel, of):
    """out[first + k] = (x[first + k] - mean) * invstd * weight[channel + k] + bias[channel + k]
    (the affine parts only if given), k < size, in the input's dtype as PyTorch's layer_norm
    (x == mean gives exactly the bias); a loop per case, so that each vectorizes."""
    if weight.size and bias.size:
        for k in range(size):
            e, c = _u(first + k), _u(channel + k)
            of[e] = (xf[e] - mean) * invstd * weight[c] + bias[c]
    elif weight.size:
        for k in range(size):
            e = _u(first + k)
            of[e] = (xf[e] - mean) * invstd * weight[_u(channel + k)]
    elif bias.size:
        for k in range(size):
            e = _u(first + k)
            of[e] = (xf[e] - mean) * invstd + bias[_u(channel + k)]
    else:
        for k in range(size):
            e = _u(first + k)
            of[e] = (xf[e] - mean) * invstd


@_jit
def group_norm_forward_kernel(x, weight, bias, per_group, eps, out, statistics):
    """out = (x - mean) / sqrt(var + eps) * weight + bias per group of x (N, G, K), with the
    group's biased statistics; `statistics` (2, N * G) float64, if not empty, gets each
    group's mean and 1 / sqrt(var + eps), which group_norm_backward_kernel reads."""
    batch, groups, count = x.shape
    size = count // per_group if per_group else 0
    xf, of = x.reshape(-1), out.reshape(-1)
    for group in range(batch * groups):
        first, g = group * count, group % groups
        mean = _channel_sum(xf, 1, 0, first, count) / count
        invstd = 1.0 / np.sqrt(_channel_squares(xf, 1, 0, first, count, mean) / count + eps)
        if statistics.size:
            statistics[0, group] = mean
            statistics[1, group] = invstd
        if size == 1:
            # layer_norm (a channel per element): one loop for the group
            _affine_elements(xf, first, count, typed(mean, out), typed(invstd, out), weight,
                             bias, g * per_group, of)
            continue
        for j in range(per_group):
            channel = g * per_group + j
            scale, shift = _affine(invstd * weight[channel] if weight.size else invstd, mean,
                                   bias, channel, out)
            _normalize(xf, 1, 0, first + j * size, size, scale, shift, of)


@_inline
def _element_gradient_sums(xf, gf, first, size, mean, invstd, weight, channel, sums_w,
                           sums_b):
    """For a group of a channel per element (weight[channel + k]): adds g (x - mean) invstd
    to sums_w and g to sums_b; (sum of g w, sum of g w (x - mean)), in float64."""
    sum_gw = 0.0
    dot = 0.0
    for k in range(size):
        e, c = _u(first + k), _u(channel + k)
        d = xf[e] - mean
        gi = np.float64(gf[e])
        w = np.float64(weight[c]) if weight.size else 1.0
        sums_b[c] += gi
        sums_w[c] += gi * d * invstd
        sum_gw += gi * w
        dot += gi * d * w
    return sum_gw, dot


@_inline
def _element_input_gradient(xf, gf, first, size, mean, invstd, mean_gw, k, weight, channel,
                            grad_f):
    """dx = (g w - mean(g w) - (x - mean) k) * invstd over a group of a channel per element,
    in float64."""
    for i in range(size):
        e = _u(first + i)
        w = np.float64(weight[_u(channel + i)]) if weight.size else 1.0
        grad_f[e] = (gf[e] * w - mean_gw - (xf[e] - mean) * k) * invstd


@_inline
def _centered_input_gradient(xf, gf, first, size, mean, a, b, c, grad_f):
    """dx = g a + (x - mean) b + c over a run of one channel, in float64."""
    for i in range(size):
        e = _u(first + i)
        grad_f[e] = gf[e] * a + (xf[e] - mean) * b + c


@_jit_contracted
def group_norm_backward_kernel(x, g, weight, per_group, statistics, grad_x, grad_weight,
                               grad_bias):
    """The gradients of group_norm_forward_kernel's output, from the mean and inverse std
    per group it saved in `statistics`; each grad_* is written only if it is not empty. Two
    passes over each group: the gradient's sums (per channel), then dx = (g w - mean(g w)
    - (x - mean) k) * invstd, k = mean(g w (x - mean)) invstd^2, in float64."""
    batch, groups, count = x.shape
    size = count // per_group if per_group else 0
    xf, gf, grad_f = x.reshape(-1), g.reshape(-1), grad_x.reshape(-1)
    channels = groups * per_group
    sums_w = np.zeros(channels)  # float64 sums over the batch
    sums_b = np.zeros(channels)
    for group in range(batch * groups):
        first, gr = group * count, group % groups
        mean, invstd = statistics[0, group], statistics[1, group]
        if size == 1:  # layer_norm: see the forward
            sum_gw, dot = _element_gradient_sums(xf, gf, first, count, mean, invstd, weight,
                                                 gr * per_group, sums_w, sums_b)
            if grad_x.size:
                _element_input_gradient(xf, gf, first, count, mean, invstd, sum_gw / count,
                                        dot * invstd * invstd / count, weight,
                                        gr * per_group, grad_f)
            continue
        sum_gw = 0.0  # sums of g * weight, and of g * weight * (x - mean)
        dot = 0.0
        for j in range(per_group):
            channel = gr * per_group + j
            w = np.float64(weight[channel]) if weight.size else 1.0
            part_g, part_dot = _gradient_sums(xf, gf, 1, 0, first + j * size, size, mean)
            sums_b[channel] += part_g
            sums_w[channel] += part_dot * invstd
            sum_gw += part_g * w
            dot += part_dot * w
        if grad_x.size:
            mean_gw = sum_gw / count
            k = dot * invstd * invstd / count
            for j in range(per_group):
                w = np.float64(weight[gr * per_group + j]) if weight.size else 1.0
                _centered_input_gradient(xf, gf, first + j * size, size, mean, w * invstd,
                                         -k * invstd, -mean_gw * invstd, grad_f)
    for channel in range(channels if grad_weight.size else 0):
        grad_weight[channel] = sums_w[channel]
    for channel in range(channels if grad_bias.size else 0):
        grad_bias[channel] = sums_b[channel]


# ---------------------------------------------------------------------------------------
# Shape rules: PyTorch's errors.

def _check_floating(x, kernel):
    if x.dtype.kind != "f" and not is_half(x.dtype):
        raise NotImplementedError(f'"{kernel}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES.get(x.dtype.name, x.dtype.name)}'")


def _check_same_dtype(x, *others):
    """PyTorch's rule: parameters of the input's dtype, or float32 for a float16 or bfloat16
    input."""
    for other in others:
        if other.size and other.dtype != x.dtype and \
                not (is_half(x.dtype) and other.dtype == np.float32):
            if x.dtype == np.float32:
                raise RuntimeError("mixed dtype (CPU): expect parameter to have scalar type of "
                                   "Float")
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")


def _batch_norm_infer(x, weight, bias, running_mean, running_var, batches, training, momentum,
                      cumulative, eps):
    if x.ndim < 2:
        bound = max(x.ndim, 1)
        raise IndexError(f"Dimension out of range (expected to be in range of [{-bound}, "
                         f"{bound - 1}], but got 1)")
    channels = x.shape[1]
    for name, array in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if array.size and array.shape != (channels,):
            raise RuntimeError(f"{name} should contain {channels} elements not {array.size}")
    if not training and not running_mean.size:
        raise RuntimeError("running_mean must be defined in evaluation mode")
    _check_floating(x, "batch_norm")
    _check_same_dtype(x, weight, bias, running_mean, running_var)
    return x.shape, x.dtype


def _group_norm_infer(x, weight, bias, num_groups, eps):
    if x.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received "
                           f"{x.ndim}")
    channels = x.shape[1]
    if num_groups < 0 or channels % num_groups:  # NOTE: 0 groups: ZeroDivisionError, as PyTorch
        raise RuntimeError(f"Expected number of channels in input to be divisible by "
                           f"num_groups, but got input of shape {list(x.shape)} and "
                           f"num_groups={num_groups}")
    for name, array in (("weight", weight), ("bias", bias)):
        if array.size and array.shape != (channels,):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of "
                               f"channels in input, but got {name} of shape "
                               f"{list(array.shape)} and input of shape "
                               f"{list(x.shape)}")
    _check_floating(x, "GroupNormKernelImpl")
    _check_same_dtype(x, weight, bias)
    return x.shape, x.dtype


def _layer_norm_infer(x, weight, bias, normalized_shape, eps):
    rank = len(normalized_shape)
    if not rank:
        raise RuntimeError("Expected normalized_shape to be at least 1-dimensional, i.e., "
                           "containing at least one element, but got normalized_shape = []")
    if x.ndim < rank or tuple(x.shape[x.ndim - rank:]) != tuple(normalized_shape):
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input "
                           f"with shape [*, {', '.join(map(str, normalized_shape))}], but got "
                           f"input of size{list(x.shape)}")
    for name, array in (("weight", weight), ("bias", bias)):
        if array.size and array.shape != tuple(normalized_shape):
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but "
                               f"got {name} of shape {list(array.shape)} and "
                               f"normalized_shape = {list(normalized_shape)}")
    _check_floating(x, "LayerNormKernelImpl")
    _check_same_dtype(x, weight, bias)
    return x.shape, x.dtype


# ---------------------------------------------------------------------------------------
# The kernels' views: batch_norm's (N, C, S), group_norm's (N, G, K) and the channels per
# group; layer_norm is group_norm with one group and one channel per normalized element.
# NOTE: math.prod of the shape's ints (0.2 us), not np.prod (3 us a call: a call of each
# forward and backward).

def _batch_norm_view(shape):
    return (shape[0], shape[1], math.prod(shape[2:]))


def _group_norm_view(shape, params):
    groups = params["num_groups"]
    return (shape[0], groups, math.prod(shape[1:]) // groups), shape[1] // groups


def _layer_norm_view(shape, params):
    width = len(params["normalized_shape"])
    size = math.prod(shape[len(shape) - width:])
    return (math.prod(shape[:len(shape) - width]), 1, size), size


def _contiguous(x, shape):
    return np.ascontiguousarray(x).reshape(shape)


def _computed(array):
    """`array` as the kernels take it: float16 and bfloat16 (stored only, see
    nbgrad._core.dtype) as float32, like PyTorch's CPU kernels compute them. NOTE: a copy,
    so running statistics written in place must not be half (the API refuses them)."""
    return array.astype(np.float32) if is_half(array.dtype) else array


def _flat(array):
    return array.reshape(-1)


# The stand-in for the statistics a forward without a node does not save (writable: the same
# argument types as a saving call's, so one compilation of each kernel).
_NOT_SAVED = np.empty((0, 0))


def _batch_norm_run(x, weight, bias, running_mean, running_var, batches, training, momentum,
                    cumulative, eps, saving):
    """(out, the batch's mean and inverse std per channel, (2, C) float64, when `saving` in
    training, else None)."""
    _batch_norm_infer(x, weight, bias, running_mean, running_var, batches, training, momentum,
                      cumulative, eps)
    view = _batch_norm_view(x.shape)
    computed = _computed(x)
    # NOTE: results are made in their own shapes (the kernels write views of them), so that
    # their `base` is None: the engine then owns a gradient instead of copying it.
    out = np.empty(x.shape, computed.dtype)
    running = (_computed(running_mean), _computed(running_var))
    statistics = None
    if training:
        statistics = np.empty((2, view[1])) if saving else None
        batch_norm_forward_kernel(_contiguous(computed, view), _computed(weight), _computed(bias),
                                  *running, _flat(batches), momentum, cumulative, eps,
                                  out.reshape(view), _NOT_SAVED if statistics is None else statistics)
    else:
        batch_norm_eval_kernel(_contiguous(computed, view), _computed(weight), _computed(bias),
                               *running, eps, out.reshape(view))
    return out.astype(x.dtype, copy=False), statistics


def _batch_norm_forward(*arrays, **params):
    return _batch_norm_run(*arrays, **params, saving=False)[0]


def _batch_norm_forward_saving(*arrays, **params):
    return _batch_norm_run(*arrays, **params, saving=True)


def _batch_norm_backward(node):
    """(the backward kernel, the arrays it reads after x, g and weight, the numbers after
    them): the saved batch statistics, or the running ones and eps (eval)."""
    _, _, running_mean, running_var, statistics = node.saved
    if node.params["training"]:
        return batch_norm_backward_kernel, (statistics,), ()
    return batch_norm_eval_backward_kernel, (running_mean, running_var), (node.params["eps"],)


def _batch_norm_vjp(node, g):
    x, weight = node.saved[:2]
    view = _batch_norm_view(x.shape)
    need_x, need_weight, need_bias = node.needs[:3]
    grad_x = np.empty(x.shape if need_x else (0, 0, 0), g.dtype)
    grad_weight = np.empty(view[1] if need_weight else 0, g.dtype)
    grad_bias = np.empty(view[1] if need_bias else 0, g.dtype)
    kernel, reads, numbers = _batch_norm_backward(node)
    kernel(_contiguous(x, view), _contiguous(g, view), weight, *reads, *numbers,
           grad_x.reshape(view if need_x else (0, 0, 0)), grad_weight, grad_bias)
    return (grad_x if need_x else None,
            grad_weight if need_weight else None, grad_bias if need_bias else None,
            None, None, None)


def _group_norm_family(view_of, infer):
    """forward, forward_saving and VJP of group_norm's kernels on the view `view_of(shape, params)` gives
    (layer_norm's weight and bias are flattened to its channels)."""
    def run(x, weight, bias, eps, params, saving):
        """(out, the mean and inverse std per group, (2, N * G) float64, when `saving`)."""
        infer(x, weight, bias, eps=eps, **params)
        view, per_group = view_of(x.shape, params)
        computed = _computed(x)
        out = np.empty(x.shape, computed.dtype)  # in its own shape: see _batch_norm_forward
        statistics = np.empty((2, view[0] * view[1])) if saving else None
        group_norm_forward_kernel(_contiguous(computed, view), _computed(_flat(weight)),
                                  _computed(_flat(bias)), per_group, eps, out.reshape(view),
                                  _NOT_SAVED if statistics is None else statistics)
        return out.astype(x.dtype, copy=False), statistics

    def forward(x, weight, bias, eps, **params):
        return run(x, weight, bias, eps, params, False)[0]

    def forward_saving(x, weight, bias, eps, **params):
        return run(x, weight, bias, eps, params, True)

    def vjp(node, g):
        x, weight, statistics = node.saved
        view, per_group = view_of(x.shape, node.params)
        need_x, need_weight, need_bias = node.needs
        # In their own shapes, as the forward's result.
        grad_x = np.empty(x.shape if need_x else (0, 0, 0), g.dtype)
        grad_weight = np.empty(node.input_meta[1][0] if need_weight else 0, g.dtype)
        grad_bias = np.empty(node.input_meta[2][0] if need_bias else 0, g.dtype)
        group_norm_backward_kernel(_contiguous(x, view), _contiguous(g, view), _flat(weight),
                                   per_group, statistics,
                                   grad_x.reshape(view if need_x else (0, 0, 0)),
                                   _flat(grad_weight), _flat(grad_bias))
        return (grad_x if need_x else None, grad_weight if need_weight else None,
                grad_bias if need_bias else None)

    return forward, forward_saving, vjp


# ---------------------------------------------------------------------------------------
# Fused rules: the same kernels on views of the fused step's arrays.

def _fused_view(em, array, shape):
    return f"{em.ref(array)}.reshape({shape!r})"


def _fused_grads(em, input_grads, shapes, dtype):
    """The kernel's gradient arguments: each asked-for gradient's buffer viewed as the kernel
    takes it, else a zero-size stand-in (as eager passes)."""
    return [f"{em.out(grad)}.reshape({shape!r})" if grad is not None else
            em.empty(len(shape), dtype) for grad, shape in zip(input_grads, shapes)]


class _BatchNormFusion:
    def forward(self, em, arrays, params, out):
        x, weight, bias, running_mean, running_var, batches = arrays
        view = _batch_norm_view(x.shape)
        # The running statistics and num_batches_tracked are the step's arguments, written
        # in place by the kernel on every call, as eager writes them.
        reads = ", ".join(em.ref(a) for a in (weight, bias, running_mean, running_var))
        if params["training"]:
            # (out, statistics) where the call saved the batch statistics (forward_saving)
            out, statistics = out if type(out) is tuple else (out, None)
            em.emit(f"{em.kernel(batch_norm_forward_kernel)}({_fused_view(em, x, view)}, "
                    f"{reads}, {_fused_view(em, batches, (batches.size,))}, "
                    f"{em.scalar(params['momentum'])}, {em.scalar(params['cumulative'])}, "
                    f"{em.scalar(params['eps'])}, {em.out(out)}.reshape({view!r}), "
                    f"{em.empty(2, np.float64) if statistics is None else em.out(statistics)})")
        else:
            em.emit(f"{em.kernel(batch_norm_eval_kernel)}({_fused_view(em, x, view)}, {reads}, "
                    f"{em.scalar(params['eps'])}, {em.out(out)}.reshape({view!r}))")

    def vjp(self, em, node, g, input_grads):
        x, weight = node.saved[:2]
        view = _batch_norm_view(x.shape)
        grads = _fused_grads(em, input_grads[:3], (view, view[1:2], view[1:2]), g.dtype)
        kernel, reads, numbers = _batch_norm_backward(node)
        em.emit(f"{em.kernel(kernel)}({_fused_view(em, x, view)}, {_fused_view(em, g, view)}, "
                f"{', '.join([em.ref(a) for a in (weight, *reads)] + [em.scalar(v) for v in numbers])}, "
                f"{', '.join(grads)})")


class _GroupNormFusion:
    def __init__(self, view_of):
        self.view_of = view_of

    def forward(self, em, arrays, params, out):
        x, weight, bias = arrays
        view, per_group = self.view_of(x.shape, params)
        out, statistics = out if type(out) is tuple else (out, None)  # see _BatchNormFusion
        em.emit(f"{em.kernel(group_norm_forward_kernel)}({_fused_view(em, x, view)}, "
                f"{_fused_view(em, weight, (weight.size,))}, "
                f"{_fused_view(em, bias, (bias.size,))}, {em.scalar(per_group)}, "
                f"{em.scalar(params['eps'])}, {em.out(out)}.reshape({view!r}), "
                f"{em.empty(2, np.float64) if statistics is None else em.out(statistics)})")

    def vjp(self, em, node, g, input_grads):
        x, weight, statistics = node.saved
        view, per_group = self.view_of(x.shape, node.params)
        channels = (view[1] * per_group,)
        grads = _fused_grads(em, input_grads, (view, channels, channels), g.dtype)
        em.emit(f"{em.kernel(group_norm_backward_kernel)}({_fused_view(em, x, view)}, "
                f"{_fused_view(em, g, view)}, {_fused_view(em, weight, (weight.size,))}, "
                f"{em.scalar(per_group)}, {em.ref(statistics)}, {', '.join(grads)})")


# ---------------------------------------------------------------------------------------
# Differentiable VJPs (create_graph=True): the backward kernels' formulas as Tensor
# operations on the kernels' views, so that they can be differentiated again (PyTorch's
# batchnorm_double_backward and layer_norm_double_backward differentiate the same formulas).
# The batch statistics are computed again from the saved input (not read from the saved
# ones): they depend on x, and their gradients are part of the second derivative; in eval mode
# the running statistics are constants.

def _normalized_gradient(g, centered, invstd, dim):
    """dx of (x - mean) * invstd over `dim` for upstream g (weight folded into g or after):
    (g - mean(g) - (x - mean) mean(g (x - mean)) invstd^2) invstd, as the kernels."""
    return (g - g.mean(dim, keepdim=True)
            - centered * ((g * centered).mean(dim, keepdim=True) * invstd * invstd)) * invstd


def _has(node, position):
    """Whether optional input `position` was given (absent ones are zero-size)."""
    return math.prod(node.input_meta[position][0]) > 0


def _batch_norm_differentiable_vjp(node, g, saved):
    x, weight, running_mean, running_var = saved[:4]
    shape = node.input_meta[0][0]
    view = _batch_norm_view(shape)
    x, g, dims, eps = x.reshape(view), g.reshape(view), (0, 2), node.params["eps"]
    if node.params["training"]:
        centered = x - x.mean(dims, keepdim=True)
        invstd = ((centered * centered).mean(dims, keepdim=True) + eps).sqrt().reciprocal()
    else:
        centered = x - running_mean.reshape(1, -1, 1)
        invstd = (running_var.reshape(1, -1, 1) + eps).sqrt().reciprocal()
    grad_x = None
    if node.needs[0]:
        grad_x = _normalized_gradient(g, centered, invstd, dims) if node.params["training"] \
            else g * invstd
        grad_x = (grad_x * weight.reshape(1, -1, 1) if _has(node, 1) else grad_x).reshape(shape)
    return (grad_x, (g * centered).sum(dims) * invstd.reshape(-1) if node.needs[1] else None,
            g.sum(dims) if node.needs[2] else None, None, None, None)


def _group_norm_differentiable_vjp(view_of):
    """group_norm's and layer_norm's on the view `view_of(shape, params)` gives."""
    def differentiable_vjp(node, g, saved):
        x, weight = saved[:2]
        shape = node.input_meta[0][0]
        view, per_group = view_of(shape, node.params)
        batch, groups, count = view
        by_channel = (batch, groups, per_group, count // per_group if per_group else 0)
        x, g = x.reshape(view), g.reshape(view)
        centered = x - x.mean(2, keepdim=True)
        invstd = ((centered * centered).mean(2, keepdim=True) + node.params["eps"]).sqrt() \
            .reciprocal()
        grad_x = None
        if node.needs[0]:
            weighted = (g.reshape(by_channel) * weight.reshape(groups, per_group, 1)).reshape(view) \
                if _has(node, 1) else g
            grad_x = _normalized_gradient(weighted, centered, invstd, 2).reshape(shape)
        return (grad_x,
                (g * centered * invstd).reshape(by_channel).sum((0, 3)).reshape(
                    node.input_meta[1][0]) if node.needs[1] else None,
                g.reshape(by_channel).sum((0, 3)).reshape(node.input_meta[2][0])
                if node.needs[2] else None)

    return differentiable_vjp


# ---------------------------------------------------------------------------------------
# Rows. Inputs: x, weight, bias (zero-size when absent), and batch_norm's running_mean,
# running_var, num_batches_tracked (zero-size when absent; written by its forward).

_group_norm_forward, _group_norm_forward_saving, _group_norm_vjp = _group_norm_family(
    _group_norm_view, _group_norm_infer)
_layer_norm_forward, _layer_norm_forward_saving, _layer_norm_vjp = _group_norm_family(
    _layer_norm_view, _layer_norm_infer)

PRIMS = {
    "batch_norm": register(Primitive(
        "batch_norm", "NativeBatchNormBackward0", _batch_norm_infer, _batch_norm_forward,
        _batch_norm_vjp, save=(0, 1, 3, 4, "extra"), differentiable=(0, 1, 2), writes=(3, 4, 5),
        forward_saving=_batch_norm_forward_saving,
        fuse=_BatchNormFusion(), differentiable_vjp=_batch_norm_differentiable_vjp)),
    "group_norm": register(Primitive(
        "group_norm", "NativeGroupNormBackward0", _group_norm_infer, _group_norm_forward,
        _group_norm_vjp, save=(0, 1, "extra"), differentiable=(0, 1, 2),
        forward_saving=_group_norm_forward_saving, fuse=_GroupNormFusion(_group_norm_view),
        differentiable_vjp=_group_norm_differentiable_vjp(_group_norm_view))),
    "layer_norm": register(Primitive(
        "layer_norm", "NativeLayerNormBackward0", _layer_norm_infer, _layer_norm_forward,
        _layer_norm_vjp, save=(0, 1, "extra"), differentiable=(0, 1, 2),
        forward_saving=_layer_norm_forward_saving, fuse=_GroupNormFusion(_layer_norm_view),
        differentiable_vjp=_group_norm_differentiable_vjp(_layer_norm_view))),
}
