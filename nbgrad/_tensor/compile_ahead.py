"""What the compile helper (nbgrad._core.compile_ahead) does for a node: repeat its call on
stand-in arrays and run its backward, so that the VJP kernels are compiled into the cache."""
import numpy as np

from .._core.compile_ahead import stand_in
from ..ops.primitive import PRIMITIVES
from .dispatch import dispatch
from .tensor import Tensor


def compile_backward(prim_name, grad_fn_name, layouts, params, needs):
    """The call of `prim_name` on zeros laid out as `layouts` (inputs `needs` requiring a
    gradient), and its backward."""
    inputs = [Tensor._wrap(stand_in(layout), requires_grad=need)
              for layout, need in zip(layouts, needs)]
    out = dispatch(PRIMITIVES[prim_name], inputs, params, grad_fn_name)
    out.backward(Tensor._wrap(np.zeros(out.shape, out._data.dtype)))
