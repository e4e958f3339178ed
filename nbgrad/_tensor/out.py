"""PyTorch's `out=` argument (`torch.mul(a, b, out=c)`), given once for the functions that
tutorials call with it: the result is computed as usual, then written into `out`."""
import functools
import warnings

import numpy as np

from .._core.dtype import can_cast
from .._core.mode import run_pending
from .inplace import copy_
from .tensor import Tensor


def write_out(name, result, out):
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if result.requires_grad:
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic "
                           "differentiation, but one of the arguments requires grad.")
    if not can_cast(result.dtype, out.dtype):
        raise RuntimeError(f"result type {result.dtype.scalar_type} can't be cast to the desired output "
                           f"type {out.dtype.scalar_type}")
    if out.shape != result.shape:
        if out.numel():
            warnings.warn(f"An output with one or more elements was resized since it had shape "
                          f"{list(out.shape)}, which does not match the required output shape "
                          f"{list(result.shape)}. This behavior is deprecated, and in a future PyTorch "
                          "release outputs will not be resized unless they have zero elements. You can "
                          "explicitly reuse an out tensor t by resizing it, inplace, to zero elements "
                          "with t.resize_(0).", UserWarning, stacklevel=3)
        # NOTE: a resize gives `out` new storage: views taken of it before keep the old one,
        # as in PyTorch when the storage has to grow.
        run_pending()
        out._data = np.empty(tuple(result.shape), out.dtype.np)
        out._version_counter[0] += 1
    return copy_(out, result)



def with_out(function, name):
    """`function` (public name `name`) with PyTorch's keyword-only `out=` argument."""

    @functools.wraps(function)
    def function_with_out(*args, out=None, **kwargs):
        result = function(*args, **kwargs)
        return result if out is None else write_out(name, result, out)

    return function_with_out
