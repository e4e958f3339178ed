"""Spatial transformers: `nn.functional.affine_grid` and `grid_sample`, with PyTorch's
argument checks and warnings; the `affine_grid` and `grid_sampler` primitives
(ops/grid.py) do the rest."""
import operator
import warnings

import numpy as np

from ..ops import PRIMITIVES
from .dispatch import dispatch
from .tensor import Tensor

__all__ = []

_DEFAULT_CHANGED = ("Default grid_sample and affine_grid behavior has changed to align_corners=False "
                    "since 1.3.0. Please specify align_corners=True if the old behavior is desired. "
                    "See the documentation of grid_sample for details.")


def _default(align_corners):
    """PyTorch's default align_corners (False), with its warning."""
    if align_corners is None:
        warnings.warn(_DEFAULT_CHANGED, stacklevel=3)
        return False
    return align_corners


def _check_bool(align_corners, function, position):
    """PyTorch's argument parser's check of a bool argument (at the C++ call)."""
    if not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"{function}(): argument 'align_corners' (position {position}) must be "
                        f"bool, not {type(align_corners).__name__}")
    return bool(align_corners)


def _check_size_element(position, value):
    """PyTorch's argument parser on affine_grid_generator's `size`: its first element is
    checked as an int (not a bool), the others unpacked as ints (a bool is 1), each with its
    own message."""
    integer = isinstance(value, (int, np.integer)) or (
        isinstance(value, Tensor) and value.ndim == 0 and not value.is_floating_point()
        and value.dtype.name != "bool")
    if position == 0 and (isinstance(value, bool) or not integer):
        raise TypeError(f"affine_grid_generator(): argument 'size' (position 2) must be tuple of "
                        f"ints, but found element of type {type(value).__name__} at pos 0")
    if not integer:
        raise TypeError(f"affine_grid_generator(): argument 'size' failed to unpack the object at "
                        f"pos {position + 1} with error \"type must be tuple of ints,but got "
                        f"{type(value).__name__}\"")


def affine_grid(theta, size, align_corners=None):
    """PyTorch's `F.affine_grid`: the sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) of the
    affine matrices theta (N, 2, 3) (or (N, 3, 4)) for an output of `size` (N, C, H, W) (or
    (N, C, D, H, W))."""
    align_corners = _default(align_corners)
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    if len(size) in (4, 5):
        rows = len(size) - 2
        if theta.dim() != 3 or theta.shape[-2] != rows or theta.shape[-1] != rows + 1:
            raise ValueError(f"Expected a batch of {rows}D affine matrices of shape "
                             f"Nx{rows}x{rows + 1} for size {size}. Got {theta.shape}.")
        spatial = size[2:]
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D "
                                  f"affine transforms, respectively. Got size {size}.")
    if align_corners and min(spatial) == 1:
        warnings.warn("Since version 1.3.0, affine_grid behavior has changed for unit-size grids "
                      "when align_corners=True. This is not an intended use case of affine_grid. "
                      "See the documentation of affine_grid for details.", stacklevel=2)
    elif min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    for position, value in enumerate(size):
        _check_size_element(position, value)
    align_corners = _check_bool(align_corners, "affine_grid_generator", 3)
    return dispatch(PRIMITIVES["affine_grid"], (theta,), {
        "size": tuple(operator.index(value) for value in size), "align_corners": align_corners})


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """PyTorch's `F.grid_sample` of a 4-D input: input (N, C, H, W) read at grid
    (N, H_out, W_out, 2) points (x, y), each in [-1, 1] inside the input."""
    if mode != "bilinear" and mode != "nearest" and mode != "bicubic":
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' "
                         f"or 'bicubic', but got: '{mode}'")
    if padding_mode != "zeros" and padding_mode != "border" and padding_mode != "reflection":
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
                         f"'border', or 'reflection', but got: '{padding_mode}'")
    align_corners = _default(align_corners)
    for position, (name, value) in enumerate((("input", input), ("grid", grid)), 1):
        if not isinstance(value, Tensor):
            raise TypeError(f"grid_sampler(): argument '{name}' (position {position}) must be "
                            f"Tensor, not {type(value).__name__}")
    align_corners = _check_bool(align_corners, "grid_sampler", 5)
    return dispatch(PRIMITIVES["grid_sampler"], (input, grid), {
        "mode": mode, "padding_mode": padding_mode, "align_corners": align_corners})
