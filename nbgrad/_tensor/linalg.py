"""Matrix products: `matmul` and its fixed-rank forms `mm`, `mv`, `dot`, `bmm`; `outer`, and
`einsum` (a composite of diagonals, sums, products and matmuls, as PyTorch's)."""
import numpy as np

from ..ops import PRIMITIVES
from ..ops.linalg import grad_fn_name as matmul_grad_fn_name
from ..ops.primitive import TORCH_TYPE_NAMES
from .indexing import getitem
from .operands import array_like_operand
from .dispatch import dispatch
from .tensor import Tensor

__all__ = ["matmul", "mm", "mv", "dot", "bmm", "outer", "ger", "einsum"]


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
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input.ndim}, {vec.ndim}")
    if input.shape[1] != vec.shape[0]:
        raise RuntimeError(f"size mismatch, got input ({input.shape[0]}), mat "
                           f"({input.shape[0]}x{input.shape[1]}), vec ({vec.shape[0]})")
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def bmm(input, mat2):
    for name, x in (("batch1", input), ("batch2", mat2)):
        if x.ndim != 3:
            raise RuntimeError(f"{name} must be a 3D tensor")
    # (No broadcasting, unlike matmul.)
    if input.dtype != mat2.dtype:
        raise RuntimeError(f"expected scalar type {input.dtype.scalar_type} but found "
                           f"{mat2.dtype.scalar_type}")
    expected = [input.shape[0], input.shape[2]]
    if list(mat2.shape[:2]) != expected:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"{expected} but got: {list(mat2.shape[:2])}.")
    return matmul(input, mat2)


def outer(input, vec2):
    for name, x in (("self", input), ("vec2", vec2)):
        if x.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {x.ndim}-D")
    return input.reshape(-1, 1) * vec2


ger = outer


# --- einsum ----------------------------------------------------------------------------------

def _parse_einsum(equation, shapes):
    """The subscripts of each operand and of the output, as strings, with PyTorch's checks.
    An ellipsis becomes upper-case letters the equation does not use (right-aligned, as
    broadcasting is)."""
    for i, c in enumerate(equation):
        if not (c.isascii() and c.isalpha()) and c not in " ,->.":
            raise RuntimeError(f"einsum(): invalid subscript given at index {i} in the equation "
                               "string, subscripts must be in [a-zA-Z]")
    equation = equation.replace(" ", "")
    lhs, arrow, output = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(shapes):
        fewer_or_more = "fewer" if len(shapes) < len(inputs) else "more"
        raise RuntimeError(f"einsum(): {fewer_or_more} operands were provided than specified in "
                           "the equation")
    spare = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in equation]
    ellipsis_rank = 0
    for k, (subscripts, shape) in enumerate(zip(inputs, shapes)):
        named = subscripts.replace("...", "", 1)
        if "." in named:
            raise RuntimeError(f"einsum(): found '.' for operand {k} that is not part of any "
                               "ellipsis")
        if "..." not in subscripts and len(named) != len(shape):
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(named)}) "
                               f"does not match the number of dimensions ({len(shape)}) for "
                               f"operand {k} and no ellipsis was given")
        if len(named) > len(shape):
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(named)}) "
                               f"is more than the number of dimensions ({len(shape)}) for operand {k}")
        if "..." in subscripts:
            ellipsis_rank = max(ellipsis_rank, len(shape) - len(named))
    broadcast = "".join(spare[:ellipsis_rank][::-1])
    inputs = [s.replace("...", broadcast[len(broadcast) - (len(shape) - len(s) + 3):])
              for s, shape in zip(inputs, shapes)]
    if not arrow:  # implicit output: the broadcast dimensions, then the letters used once
        letters = "".join(inputs)
        output = "..." * bool(broadcast) + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1 and c not in broadcast))
    output = output.replace("...", broadcast)
    for c in output:
        if output.count(c) > 1:
            raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
        if not any(c in s for s in inputs):
            raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation "
                               "for any input operand")
    return inputs, output


def _take_diagonals(x, letters, k):
    """`x` with each repeated subscript reduced to its diagonal (`ii->i`), and its letters."""
    for c in dict.fromkeys(letters):
        where = [d for d, letter in enumerate(letters) if letter == c]
        if len(where) > 1:
            sizes = {x.shape[d] for d in where}
            if len(sizes) > 1:
                raise RuntimeError(f"einsum(): subscript {c} is repeated for operand {k} but the "
                                   f"sizes don't match, {max(sizes)} != {min(sizes)}")
            rest = [d for d in range(x.ndim) if d not in where]
            x = getitem(x.permute(where + rest), (np.arange(x.shape[where[0]]),) * len(where))
            letters = c + "".join(letters[d] for d in rest)
    return x, letters


def _contract(a, la, b, lb, keep):
    """The product of `a` and `b` (subscripts `la`, `lb`) summed over their shared subscripts
    that are not in `keep`: a broadcast multiply, or a batched matmul when there is a sum."""
    batch = [c for c in la if c in lb and c in keep]
    summed = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    size = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))
    if not summed:
        b = _permuted(b, lb, [c for c in la if c in lb] + right)
        b = b.reshape([size[c] if c in lb else 1 for c in la] + [size[c] for c in right])
        return a.reshape(a.shape + (1,) * len(right)) * b, la + "".join(right)
    a = _permuted(a, la, batch + left + summed)
    b = _permuted(b, lb, batch + summed + right)
    n = {name: int(np.prod([size[c] for c in group], dtype=np.int64))
         for name, group in (("batch", batch), ("left", left), ("summed", summed), ("right", right))}
    # Without batch subscripts, a 2-D matmul (which fuses; batched ones run eagerly).
    lead = (n["batch"],) if batch else ()
    product = (a.reshape(lead + (n["left"], n["summed"]))
               @ b.reshape(lead + (n["summed"], n["right"])))
    letters = batch + left + right
    return product.reshape([size[c] for c in letters]), "".join(letters)


def _permuted(x, letters, order):
    order = [letters.index(c) for c in order]
    return x if order == list(range(x.ndim)) else x.permute(order)


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs, output = _parse_einsum(equation, [x.shape for x in operands])
    for x in operands[1:]:
        if x.dtype is not operands[0].dtype:
            raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[operands[0].dtype.name]} "
                               f"but found {TORCH_TYPE_NAMES[x.dtype.name]}")
    operands = [_take_diagonals(x, letters, k) for k, (x, letters) in enumerate(zip(operands, inputs))]
    size = {}
    for k, (x, letters) in enumerate(operands):
        for c, n in zip(letters, x.shape):
            if size.get(c, 1) not in (1, n) and n != 1:
                raise RuntimeError(f"einsum(): subscript {c} has size {n} for operand {k} which "
                                   f"does not broadcast with previously seen size {size[c]}")
            # (A size of 1 broadcasts to any other, 0 included.)
            size[c] = size.get(c, 1) if n == 1 else n
    result, letters = None, ""
    for k, (x, lx) in enumerate(operands):
        if any(x.shape[d] != size[c] for d, c in enumerate(lx)):
            x = x.expand([size[c] for c in lx])  # size-1 dimensions broadcast, as in PyTorch
        needed = set(output).union(*(later for _, later in operands[k + 1:]))
        # Subscripts that no later operand and not the output has are summed out first.
        gone = [d for d, c in enumerate(lx) if c not in needed and c not in letters]
        if gone:
            x, lx = x.sum(tuple(gone)), "".join(c for d, c in enumerate(lx) if d not in gone)
        result, letters = (x, lx) if result is None else _contract(result, letters, x, lx, needed)
    if len(operands) == 1 and result is operands[0][0]:
        # As PyTorch: a lone operand that nothing summed comes back as a permuted view (of
        # itself or its diagonal), never as the argument itself.
        return result.permute([letters.index(c) for c in output])
    return _permuted(result, letters, list(output))
