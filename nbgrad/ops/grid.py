"""Spatial transformers: `affine_grid` (a sampling grid from a batch of affine matrices) and
`grid_sampler` (the input read at the grid's points, bilinearly or at the nearest pixel).

`affine_grid` is base @ theta^T, with `base` the output's pixel centres in [-1, 1] and a
column of ones (P, k + 1) (k = 2 or 3 spatial dimensions), the same for every matrix. A
primitive because PyTorch's node is one AffineGridGeneratorBackward0 linked to theta, which
no composite of nbgrad's products records (bmm of a constant by theta.mT links a transpose
node, and the result's view a ViewBackward0); its kernels are two short loops.

`grid_sampler` reads input (N, C, H, W) at grid (N, H_out, W_out, 2) points (x, y) in
[-1, 1]: a primitive because each output element reads four taps at data-dependent
positions (the input's gradient is a scatter there, the grid's a sum over channels of the
taps' differences); as gathers (`take`) it would be a dozen nodes and full-size passes. One
forward and one VJP kernel serve every mode, padding and align_corners: they are runtime
arguments, so a dtype compiles each kernel once. Locations, taps and their rounding follow
PyTorch's vectorized CPU kernels (ATen's GridSamplerKernel.cpp: ComputeLocation and
ApplyGridSample), operation for operation in the data's dtype.

NOTE: Numba does not bounds-check, and the positions come from user data. A kernel reads or
writes a tap only after checking it lies inside the input (`_taps`: comparisons that NaN
fails); border and reflection padding clamp the location into [0, size - 1] first, NaN to 0.
PyTorch's forward does the same; its backward clamps with a NaN-propagating maximum and
writes out of bounds (a segmentation fault for a NaN grid point with border padding, or an
infinite one with reflection, in torch 2.13). nbgrad's backward takes the forward's
location there: the input's gradient goes to the tap the forward read, the grid's is 0
(the clamped location does not move with the grid point).

Neither has a fused rule yet: a deferred graph or an `nbgrad.compile` step that reaches one
runs eagerly (a spatial transformer's training loop runs its kernels one by one). A rule
would call these kernels by symbol, as resample's does; it was left out for the test suite's
time (each row that fuses compiles about four fused kernels).
"""
import functools
from fractions import Fraction

import numba
import numpy as np

from . import indexing
from .primitive import TORCH_TYPE_NAMES, Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")

# --- affine_grid -----------------------------------------------------------------------------


@_jit
def affine_grid_kernel(theta, base, out):
    """out[n, p, i] = sum_j base[p, j] * theta[n, i, j]."""
    for n in range(out.shape[0]):
        for p in range(out.shape[1]):
            for i in range(out.shape[2]):
                total = base[p, 0] * theta[n, i, 0]
                for j in range(1, base.shape[1]):
                    total += base[p, j] * theta[n, i, j]
                out[n, p, i] = total


@_jit
def affine_grid_vjp_kernel(g, base, grad):
    """grad[n, i, j] = sum_p base[p, j] * g[n, p, i]."""
    grad[:] = 0.0
    for n in range(g.shape[0]):
        for p in range(g.shape[1]):
            for i in range(g.shape[2]):
                for j in range(base.shape[1]):
                    grad[n, i, j] += base[p, j] * g[n, p, i]


def _linspace(steps, dtype):
    """torch.linspace(-1, 1, steps) bit for bit: its kernel computes -1 + step * i in the first
    half and 1 - step * (steps - 1 - i) in the second, each a fused multiply-add (one rounding,
    done exactly here in rationals)."""
    step = Fraction(float((dtype.type(1) - dtype.type(-1)) / dtype.type(steps - 1)))
    return np.array([float(step * i - 1 if i < steps // 2 else 1 - step * (steps - 1 - i))
                     for i in range(steps)]).astype(dtype)


def _axis_points(steps, align_corners, dtype):
    """PyTorch's linspace_from_neg_one: the pixel centres along one axis."""
    if steps <= 1:
        return np.zeros(1, dtype)
    points = _linspace(steps, dtype)
    if not align_corners:
        points = points * dtype.type(steps - 1) / dtype.type(steps)
    return points


@functools.lru_cache(maxsize=32)
def base_grid(spatial, align_corners, dtype):
    """(prod(spatial), k + 1): each output pixel's (x, y[, z], 1), x along the last dimension,
    as PyTorch's make_base_grid_4D/5D; read-only (shared by every call of these sizes)."""
    axes = [_axis_points(size, align_corners, dtype) for size in spatial[::-1]]
    mesh = np.meshgrid(*axes[::-1], indexing="ij")[::-1]
    base = np.stack([*mesh, np.ones(tuple(spatial), dtype)], -1).reshape(-1, len(spatial) + 1)
    base.flags.writeable = False
    return base


def _affine_grid_infer(theta, size, align_corners):
    if theta.shape[0] != size[0]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{size[0]}, {theta.shape[2]}] but got: [{theta.shape[0]}, "
                           f"{theta.shape[2]}].")
    return (size[0], *size[2:], len(size) - 2), theta.dtype


def _affine_grid_forward(theta, size, align_corners):
    shape, dtype = _affine_grid_infer(theta, size, align_corners)
    out = np.empty(shape, dtype)
    base = base_grid(size[2:], align_corners, dtype)
    affine_grid_kernel(np.ascontiguousarray(theta), base, out.reshape(size[0], len(base), len(size) - 2))
    return out


def _affine_grid_vjp(node, g):
    size, align_corners = node.params["size"], node.params["align_corners"]
    grad = np.empty(node.input_meta[0][0], g.dtype)
    base = base_grid(size[2:], align_corners, g.dtype)
    affine_grid_vjp_kernel(np.ascontiguousarray(g).reshape(size[0], len(base), len(size) - 2), base,
                           grad)
    return (grad,)


def _affine_grid_differentiable_vjp(node, g, saved):
    size, align_corners = node.params["size"], node.params["align_corners"]
    base = g.new_tensor(base_grid(size[2:], align_corners, np.dtype(g.dtype.np)))
    return (g.reshape(size[0], len(base), len(size) - 2).mT @ base,)


# --- grid_sampler ----------------------------------------------------------------------------

PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}
_ZEROS, _REFLECTION = PADDING_MODES["zeros"], PADDING_MODES["reflection"]


def _axis_constants(size, align_corners, dtype):
    """One axis's constants in the data's dtype, as PyTorch's ComputeLocationBase: the
    unnormalizing scale, the last index, the reflection's low end and twice its span, and 1
    (Numba types an untyped 1 as float64, which would promote float32 arithmetic)."""
    t = dtype.type
    if align_corners:
        return (t(size - 1) / t(2), t(size - 1), t(0), t(size - 1) * t(2), t(1))
    return (t(size) / t(2), t(size - 1), t(-0.5), t(size) * t(2), t(1))


@_jit
def _source(coordinate, axis, padding):
    """The input location a grid coordinate points at along one axis, and its derivative
    (0 where padding clamps it), as PyTorch's ComputeLocation::apply_get_grad."""
    scale, last, low, twice_span, one = axis[0], axis[1], axis[2], axis[3], axis[4]
    zero = one - one
    location = (coordinate + one) * scale + low
    slope = scale
    if padding == _ZEROS:
        return location, slope
    if padding == _REFLECTION:
        if twice_span == zero:  # a single pixel with align_corners
            return zero, zero
        shifted = location - low
        magnitude = abs(shifted)
        extra = magnitude - np.trunc(magnitude / twice_span) * twice_span
        reflected = twice_span - extra
        flipped = extra > reflected
        location = (reflected if flipped else extra) + low
        if flipped != (shifted < zero):
            slope = -slope
    # Clipped into [0, last], NaN to 0; the ends count as outside (zero slope), as PyTorch's.
    if not location > zero:
        return zero, zero
    if not location < last:
        return last, zero
    return location, slope


@_jit
def _taps(x, y, height, width, nearest, one):
    """The taps of location (x, y): up to four positions in the (H * W) plane with their
    weights and whether each lies inside the input (only those are read or written), how
    many there are, and the bilinear distances (n, s, w, e) the grid's gradient needs."""
    zero = one - one
    if nearest:
        # (np.rint rounds half to even, as PyTorch's Vectorized::round)
        row, col = np.rint(y), np.rint(x)
        inside = row > -1 and row < height and col > -1 and col < width
        # NOTE: int() only of a location inside: of NaN or a huge float it is undefined.
        index = int(row) * width + int(col) if inside else 0
        return ((index, 0, 0, 0), (one, zero, zero, zero), (inside, False, False, False), 1,
                (zero, zero, zero, zero))
    west, north = np.floor(x), np.floor(y)
    w = x - west
    e = one - w
    n = y - north
    s = one - n
    east, south = west + one, north + one
    west_in, east_in = west > -1 and west < width, east > -1 and east < width
    north_in, south_in = north > -1 and north < height, south > -1 and south < height
    inside = (north_in and west_in, north_in and east_in, south_in and west_in,
              south_in and east_in)
    index = (int(north) * width + int(west) if inside[0] else 0,
             int(north) * width + int(east) if inside[1] else 0,
             int(south) * width + int(west) if inside[2] else 0,
             int(south) * width + int(east) if inside[3] else 0)
    return index, (s * e, s * w, n * e, n * w), inside, 4, (n, s, w, e)


@_jit
def grid_sampler_kernel(x, grid, axes, height, width, nearest, padding, out):
    """x (N, C, H * W), grid (N, P, 2) -> out (N, C, P)."""
    one = axes[0, 4]
    for b in range(out.shape[0]):
        for p in range(out.shape[2]):
            col = _source(grid[b, p, 0], axes[0], padding)[0]
            row = _source(grid[b, p, 1], axes[1], padding)[0]
            index, weight, inside, count, _ = _taps(col, row, height, width, nearest, one)
            for c in range(out.shape[1]):
                plane = x[b, c]
                # Outside taps read 0 and keep their weight: a NaN weight makes a NaN
                # (PyTorch's masked gather times the weight).
                total = (plane[index[0]] if inside[0] else one - one) * weight[0]
                for t in range(1, count):
                    total += (plane[index[t]] if inside[t] else one - one) * weight[t]
                out[b, c, p] = total


@_jit
def grid_sampler_vjp_kernel(g, x, grid, axes, height, width, nearest, padding, grad_input,
                            grad_grid):
    """The gradients of input (N, C, H * W) and grid (N, P, 2) from g (N, C, P); a
    zero-size stand-in for either is not computed."""
    one = axes[0, 4]
    zero = one - one
    need_input, need_grid = grad_input.size > 0, grad_grid.size > 0
    if need_input:
        grad_input[:] = 0.0
    for b in range(g.shape[0]):
        for p in range(g.shape[2]):
            col, col_slope = _source(grid[b, p, 0], axes[0], padding)
            row, row_slope = _source(grid[b, p, 1], axes[1], padding)
            index, weight, inside, count, (n, s, w, e) = _taps(col, row, height, width,
                                                               nearest, one)
            d_col = d_row = zero
            for c in range(g.shape[1]):
                go = g[b, c, p]
                if need_input:
                    for t in range(count):
                        if inside[t]:
                            grad_input[b, c, index[t]] += weight[t] * go
                if need_grid and not nearest:
                    plane = x[b, c]
                    nw = plane[index[0]] if inside[0] else zero
                    ne = plane[index[1]] if inside[1] else zero
                    sw = plane[index[2]] if inside[2] else zero
                    se = plane[index[3]] if inside[3] else zero
                    d_col = d_col + ((ne - nw) * s + (se - sw) * n) * go
                    d_row = d_row + ((sw - nw) * e + (se - ne) * w) * go
            if need_grid:
                # (nearest: zero, as PyTorch's: the grid does not move a rounded location)
                grad_grid[b, p, 0] = zero if nearest else d_col * col_slope
                grad_grid[b, p, 1] = zero if nearest else d_row * row_slope


@_jit
def grid_sampler_taps_kernel(grid, axes, height, width, nearest, padding, index, inside,
                             location, slope):
    """Each grid point's taps (index and inside: (N, P, 4), unused taps outside), location
    and its slope along each axis ((N, P, 2)): what the differentiable VJP is built on."""
    one = axes[0, 4]
    for b in range(grid.shape[0]):
        for p in range(grid.shape[1]):
            col, col_slope = _source(grid[b, p, 0], axes[0], padding)
            row, row_slope = _source(grid[b, p, 1], axes[1], padding)
            taps, _, tap_inside, count, _ = _taps(col, row, height, width, nearest, one)
            for t in range(4):
                index[b, p, t] = taps[t]
                inside[b, p, t] = tap_inside[t] and t < count
            location[b, p, 0], location[b, p, 1] = col, row
            slope[b, p, 0], slope[b, p, 1] = col_slope, row_slope


def _grid_sampler_infer(x, grid, mode, padding_mode, align_corners):
    """PyTorch's checks (grid_sampler and its 2-D CPU kernel), in its order."""
    if x.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    if grid.ndim == 0 or x.shape[0] != grid.shape[0]:
        raise RuntimeError(f"grid_sampler(): expected grid and input to have same batch size, but "
                           f"got input with sizes {list(x.shape)} and grid with sizes "
                           f"{list(grid.shape)}")
    if grid.shape[-1] != x.ndim - 2:
        raise RuntimeError(f"grid_sampler(): expected grid to have size {x.ndim - 2} in last "
                           f"dimension, but got grid with sizes {list(grid.shape)}")
    for dim in range(2, x.ndim):
        if x.shape[dim] == 0:
            raise RuntimeError(f"grid_sampler(): expected input to have non-empty spatial "
                               f"dimensions, but input has sizes {list(x.shape)} with dimension "
                               f"{dim} being empty")
    if x.ndim != 4 and mode == "bicubic":
        raise RuntimeError("grid_sampler(): bicubic interpolation only supports 4D input")
    if x.ndim != grid.ndim or x.ndim not in (4, 5):
        rank = 4 if x.ndim == 4 else 5
        raise RuntimeError(f"grid_sampler(): expected {rank}D input and grid with same number of "
                           f"dimensions, but got input with sizes {list(x.shape)} and grid with "
                           f"sizes {list(grid.shape)}")
    if x.ndim == 5:
        raise NotImplementedError("grid_sample of a 5-D input (PyTorch's grid_sampler_3d) is not "
                                  "supported by nbgrad")
    if mode == "bicubic":
        raise NotImplementedError("grid_sample(mode='bicubic') is not supported by nbgrad")
    shape = (x.shape[0], x.shape[1], grid.shape[1], grid.shape[2])
    if 0 in shape:  # PyTorch returns before its kernel's dtype checks
        return shape, x.dtype
    if x.dtype.kind != "f" and x.dtype.name not in ("float16", "bfloat16"):
        raise NotImplementedError(f'"grid_sampler_2d_cpu_kernel_impl" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[x.dtype.name]}'")
    if grid.dtype != x.dtype:
        raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[x.dtype.name]} but found "
                           f"{TORCH_TYPE_NAMES[grid.dtype.name]}")
    return shape, x.dtype


def _grid_sampler_arguments(x, grid, padding_mode, align_corners, dtype):
    """The kernels' views ((N, C, H * W), (N, P, 2)), axis constants (x's, then y's) and the
    input's height and width."""
    height, width = x.shape[2], x.shape[3]
    axes = np.array([_axis_constants(width, align_corners, dtype),
                     _axis_constants(height, align_corners, dtype)], dtype)
    return (np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1),
            np.ascontiguousarray(grid).reshape(grid.shape[0], -1, 2), axes, height, width)


def _grid_sampler_forward(x, grid, mode, padding_mode, align_corners):
    shape, dtype = _grid_sampler_infer(x, grid, mode, padding_mode, align_corners)
    out = np.empty(shape, dtype)
    if out.size:  # (an empty result may be of any dtype: PyTorch checks none then)
        grid_sampler_kernel(*_grid_sampler_arguments(x, grid, padding_mode, align_corners, dtype),
                            mode == "nearest", PADDING_MODES[padding_mode],
                            out.reshape(shape[0], shape[1], -1))
    return out


def _grid_sampler_vjp(node, g):
    x, grid = node.saved
    need_input, need_grid = node.needs
    flat_x, flat_grid, axes, height, width = _grid_sampler_arguments(
        x, grid, node.params["padding_mode"], node.params["align_corners"], g.dtype)
    # Gradients not asked for: zero-size stand-ins (one kernel signature).
    grad_input = np.empty(flat_x.shape if need_input else (0, 0, 0), g.dtype)
    grad_grid = np.empty(flat_grid.shape if need_grid else (0, 0, 0), g.dtype)
    grid_sampler_vjp_kernel(np.ascontiguousarray(g).reshape(g.shape[0], g.shape[1], -1), flat_x,
                            flat_grid, axes, height, width, node.params["mode"] == "nearest",
                            PADDING_MODES[node.params["padding_mode"]], grad_input, grad_grid)
    return (grad_input.reshape(x.shape) if need_input else None,
            grad_grid.reshape(grid.shape) if need_grid else None)


def _padded(t):
    """Tensor `t` flat with a zero after it, which positions past its end pick."""
    flat = t.reshape(-1)
    padded = t.new_zeros((flat.shape[0] + 1,))
    padded[:flat.shape[0]] = flat
    return padded


def _grid_sampler_differentiable_vjp(node, g, saved):
    """The kernels' VJP as Tensor operations on the taps of the grid's values: each point's
    location moves with its grid coordinate at the slope the padding gives it (0 where
    clamped), so the bilinear weights are differentiable in the grid, the taps read from
    the input (outside ones a zero past its end) differentiable in it, and the input's
    gradient a differentiable scatter."""
    x, grid = saved
    x_array, grid_array = node.saved
    nearest = node.params["mode"] == "nearest"
    flat_x, flat_grid, axes, height, width = _grid_sampler_arguments(
        x_array, grid_array, node.params["padding_mode"], node.params["align_corners"],
        x_array.dtype)
    (batch, points), channels, plane = flat_grid.shape[:2], flat_x.shape[1], flat_x.shape[2]
    index, inside = np.zeros((batch, points, 4), np.int64), np.zeros((batch, points, 4), bool)
    location, slope = np.empty((batch, points, 2), x_array.dtype), np.empty_like(flat_grid)
    grid_sampler_taps_kernel(flat_grid, axes, height, width, nearest,
                             PADDING_MODES[node.params["padding_mode"]], index, inside,
                             location, slope)
    g = g.reshape(batch, channels, points)
    # where each (n, c, p) and each tap of it reads in input (N, C, H * W) and writes in g
    planes = np.arange(batch * channels).reshape(batch, channels, 1, 1) * plane
    source = planes + index[:, None]
    target = (np.arange(batch * channels * points).reshape(batch, channels, points, 1)
              + np.zeros(4, np.int64))
    tap_inside = np.broadcast_to(inside[:, None], source.shape)
    # Locations differentiable in the grid, of the value the kernels computed: the grid's
    # change from its value times the slope (clamped coordinates pick a zero instead).
    moving = slope != 0
    moved = _padded(grid).reshape(-1)[np.where(moving.reshape(-1), np.arange(moving.size),
                                                moving.size)].reshape(batch, points, 2)
    with np.errstate(invalid="ignore"):  # (infinite locations: NaN, as the kernels' weights)
        fraction = location - np.floor(location)
    offset = g.new_tensor(np.where(moving, flat_grid, 0))
    fraction = g.new_tensor(fraction) + g.new_tensor(slope) * (moved - offset)
    w, n = fraction[..., 0].reshape(batch, 1, points), fraction[..., 1].reshape(batch, 1, points)
    e, s = 1 - w, 1 - n
    weights = [None] if nearest else [s * e, s * w, n * e, n * w]
    grad_input = grad_grid = None
    if node.needs[0]:
        grad_input = g.new_zeros((batch * channels * plane,))
        for t, weight in enumerate(weights):
            contribution = g if weight is None else g * weight
            chosen = tap_inside[..., t]
            grad_input = grad_input + indexing.scattered(
                contribution.reshape(-1)[target[..., t][chosen]], source[..., t][chosen],
                (batch * channels * plane,))
        grad_input = grad_input.reshape(x_array.shape)
    if node.needs[1]:
        grad_grid = g.new_zeros((batch, points, 2))
        if not nearest:
            padded_x = _padded(x)
            nw, ne, sw, se = (padded_x[np.where(tap_inside[..., t], source[..., t], x_array.size)]
                              for t in range(4))
            slopes = g.new_tensor(slope)
            grad_grid[..., 0] = (((ne - nw) * s + (se - sw) * n) * g).sum(1) * slopes[..., 0]
            grad_grid[..., 1] = (((sw - nw) * e + (se - ne) * w) * g).sum(1) * slopes[..., 1]
        grad_grid = grad_grid.reshape(grid_array.shape)
    return grad_input, grad_grid


PRIMS = {
    # `size`: the output's (N, C, H, W) or (N, C, D, H, W), checked by the API function.
    "affine_grid": register(Primitive(
        "affine_grid", "AffineGridGeneratorBackward0", _affine_grid_infer, _affine_grid_forward,
        _affine_grid_vjp, differentiable_vjp=_affine_grid_differentiable_vjp)),
    # `mode` "bilinear" or "nearest", `padding_mode` a key of PADDING_MODES.
    "grid_sampler": register(Primitive(
        "grid_sampler", "GridSampler2DBackward0", _grid_sampler_infer, _grid_sampler_forward,
        _grid_sampler_vjp, save=(0, 1), differentiable=(0, 1),
        differentiable_vjp=_grid_sampler_differentiable_vjp)),
}

