"""What the compile helper (nbgrad._core.compile_ahead) does for a node: record it again on
stand-in arrays and run its backward, so that the VJP kernels are compiled into the cache."""
import numpy as np

from .._core.compile_ahead import stand_in
from ..autograd import graph
from ..ops.primitive import PRIMITIVES
from .tensor import Tensor, new_tensor


def compile_backward(prim_name, grad_fn_name, layouts, needs, params, out_layout,
                     extra_layout):
    """The backward of a node of `prim_name` whose inputs (`needs`: those requiring a
    gradient), result and `forward_saving` extra (or None) were laid out as given: zeros
    stand in for all of them. The forward does not run: its kernel is this process's parent's
    to compile, and (when cached) loading it would cost the helper time."""
    arrays = [stand_in(layout) for layout in layouts]
    inputs = [Tensor._wrap(array, requires_grad=need) for array, need in zip(arrays, needs)]
    out = stand_in(out_layout)
    extra = None if extra_layout is None else stand_in(extra_layout)
    result = new_tensor(out)
    result.grad_fn = graph.record(PRIMITIVES[prim_name], inputs, arrays, out, result, params,
                                  grad_fn_name, extra)
    result._requires_grad = True
    result.backward(Tensor._wrap(np.zeros(out.shape, out.dtype)))
