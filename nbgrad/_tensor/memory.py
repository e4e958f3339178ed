"""Where an array's elements lie in memory: NumPy views over one block (a tensor and its
views), for the overlap checks of in-place writes and the positions of a view in its base."""
import numpy as np


def dense(array):
    """Whether `array`'s elements fill its span exactly once, in some order of its dims
    (PyTorch's non-overlapping-and-dense)."""
    step = array.itemsize
    for stride, size in sorted((abs(st), n) for st, n in zip(array.strides, array.shape) if n > 1):
        if stride != step:
            return False
        step *= size
    return True


def positions_in(base, view):
    """The flat (C-order) positions in array `base` of the elements of array `view`, which
    lies in base's memory: an int64 array of view's shape. None where it does not (a
    reshape that copied), or where base's elements do not fill its memory once (then
    nothing says which element a byte is)."""
    item = base.itemsize
    if view.itemsize != item or not dense(base) or not np.may_share_memory(base, view) \
            or any(stride % item for stride in view.strides):
        return None
    # Offsets in bytes from the lowest byte of base's memory (strides may be negative).
    lowest = sum(min(0, stride * (size - 1)) for stride, size in zip(base.strides, base.shape))
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0] - lowest
    reach = [stride * (size - 1) for stride, size in zip(view.strides, view.shape)]
    if view.size == 0 or offset % item or offset + sum(min(0, r) for r in reach) < 0 \
            or offset + sum(max(0, r) for r in reach) + item > base.nbytes:
        return None
    # NOTE: as_strided checks no bounds: the offsets above keep both inside `memory`.
    memory = np.empty(base.size, np.int64)
    laid_out = np.lib.stride_tricks.as_strided(
        memory[-lowest // item:], base.shape, [stride // item * 8 for stride in base.strides])
    laid_out[...] = np.arange(base.size).reshape(base.shape)
    return np.lib.stride_tricks.as_strided(
        memory[offset // item:], view.shape, [stride // item * 8 for stride in view.strides]).copy()
