"""Matrix products: `matmul` and its fixed-rank forms `mm`, `mv`, `dot`, `bmm`."""
from ..ops import PRIMITIVES
from ..ops.linalg import grad_fn_name as matmul_grad_fn_name
from .operands import array_like_operand
from .dispatch import dispatch
from .tensor import Tensor

__all__ = ["matmul", "mm", "mv", "dot", "bmm"]


def matmul(input, other):
    if not isinstance(other, Tensor):
        other = array_like_operand(other)
    return dispatch(PRIMITIVES["matmul"], (input, other),
                    grad_fn_name=matmul_grad_fn_name(input.ndim, other.ndim))


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError("self must be a matrix")
    return matmul(input, mat2)


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    return matmul(input, mat2)
