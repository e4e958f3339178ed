"""Matrix products: `matmul` and its fixed-rank forms `mm`, `mv`, `dot`, `bmm`; `outer`, and
`einsum` (a composite of diagonals, sums, products and matmuls, as PyTorch's); the products
with an added term (`addmm`, `baddbmm`, ...) and contractions (`tensordot`, `kron`, `cross`)."""
import math
import warnings

import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.linalg import grad_fn_name as matmul_grad_fn_name
from ..ops.primitive import TORCH_TYPE_NAMES
from .arithmetic import logical_or, masked_fill
from .factories import zeros_like
from .indexing import getitem
from .inplace import inplace_form
from .operands import array_operand, not_a_tensor, result_dtype
from .dispatch import dispatch
from .shape import broadcast_shapes
from .tensor import Tensor, _check_dim

__all__ = ["matmul", "mm", "mv", "dot", "bmm", "outer", "ger", "einsum"]


def matmul(input, other):
    if not isinstance(input, Tensor):
        raise not_a_tensor("matmul", input, "input", 1)
    if not isinstance(other, Tensor):
        other = array_operand(other, "matmul")
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
    return dispatch(PRIMITIVES["matmul"], (input, mat2), grad_fn_name="BmmBackward0")


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


# --- products with an added term, contractions ------------------------------------------------
# NOTE: composites of matmul, mul, add and sum: their nodes are those of the parts
# (AddBackward0 where PyTorch records AddmmBackward0, ...).

def _check_same_dtype(message, *tensors, names=None):
    """PyTorch's error `message` (formatted with the dtypes' names: `names` by NumPy name,
    or the scalar types) where `tensors` differ in dtype."""
    if len({x.dtype for x in tensors}) > 1:
        raise RuntimeError(message.format(*(x.dtype.scalar_type if names is None else
                                            names[x.dtype.name] for x in tensors)))


def _plus_scaled(input, product, beta, alpha):
    """`beta * input + alpha * product`, `input` broadcast to the product's shape, as
    PyTorch's addmm family: integer results take beta and alpha as integers, and beta = 0
    ignores input's values (NaN too) but still gives it a (zero) gradient."""
    if not product.dtype.is_floating_point:
        beta, alpha = int(beta), int(alpha)
    input = input.expand(product.shape)
    if alpha != 1:
        product = product * alpha
    if beta == 0:
        return product + masked_fill(input, Tensor._wrap(np.ones((), bool)), 0)
    return (input if beta == 1 else input * beta) + product


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    for name, x in (("mat1", mat1), ("mat2", mat2)):
        if x.ndim != 2:
            raise RuntimeError(f"{name} must be a matrix, got {x.ndim}-D tensor")
    _check_same_dtype("self and mat2 must have the same dtype, but got {} and {}", input, mat2)
    _check_same_dtype("mat1 and mat2 must have the same dtype, but got {} and {}", mat1, mat2)
    if mat1.shape[1] != mat2.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({mat1.shape[0]}x"
                           f"{mat1.shape[1]} and {mat2.shape[0]}x{mat2.shape[1]})")
    return _plus_scaled(input, matmul(mat1, mat2), beta, alpha)


def addmv(input, mat, vec, *, beta=1, alpha=1):
    if mat.ndim != 2 or vec.ndim != 1 or input.ndim > 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {mat.ndim}, "
                           f"{vec.ndim}")
    if mat.shape[1] != vec.shape[0] or input.numel() not in (1, mat.shape[0]):
        raise RuntimeError(f"size mismatch, got input ({input.shape[0] if input.ndim else 1}), "
                           f"mat ({mat.shape[0]}x{mat.shape[1]}), vec ({vec.shape[0]})")
    _check_same_dtype("addmv input tensors must have the same dtype, but got {}, {}, and {}",
                      input, mat, vec)
    return _plus_scaled(input, matmul(mat, vec), beta, alpha)


def addr(input, vec1, vec2, *, beta=1, alpha=1):
    """`beta * input + alpha * outer(vec1, vec2)`, with type promotion (unlike addmm); of
    booleans, `(beta and input) or (alpha and outer)`."""
    for name, x in (("vec1", vec1), ("vec2", vec2)):
        if x.ndim != 1:
            raise RuntimeError(f"addr: Expected 1-D argument {name}, but got {x.ndim}-D")
    product = outer(vec1, vec2)
    dtype = result_dtype(input, product)
    for name, value in (("beta", beta), ("alpha", alpha)):
        if dtype.name == "bool":
            continue
        if isinstance(value, bool):
            raise RuntimeError(f"Boolean {name} only supported for Boolean results.")
        if not dtype.is_floating_point and isinstance(value, float):
            raise RuntimeError(f"For integral input tensors, argument {name} must not be a "
                               "floating point number.")
    input = input.expand(product.shape)
    if dtype.name == "bool":
        result = product if alpha else zeros_like(product)
        return logical_or(result, input) if beta else result
    return _plus_scaled(input.to(dtype), product.to(dtype), beta, alpha)


def _check_batches(batch1, batch2):
    for name, x in (("batch1", batch1), ("batch2", batch2)):
        if x.ndim != 3:
            raise RuntimeError(f"{name} must be a 3D tensor")


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    _check_batches(batch1, batch2)
    _check_same_dtype("Input dtypes must be the same, got: input {}, batch1: {}, batch2: {}",
                      input, batch1, batch2, names=_dtype.C_TYPE_NAMES)
    return _plus_scaled(input, bmm(batch1, batch2), beta, alpha)


def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    if batch1.ndim >= 2 and batch2.ndim >= 3:  # (PyTorch expands input first)
        input.expand(batch1.shape[1], batch2.shape[2])
    _check_batches(batch1, batch2)
    _check_same_dtype("self and mat2 must have the same dtype, but got {} and {}", input, batch2)
    if batch1.shape[0] != batch2.shape[0]:
        raise RuntimeError(f"batch1 and batch2 must have same number of batches, got "
                           f"{batch1.shape[0]} and {batch2.shape[0]}")
    if batch1.shape[2] != batch2.shape[1]:
        raise RuntimeError(f"Incompatible matrix sizes for bmm ({batch1.shape[1]}x"
                           f"{batch1.shape[2]} and {batch2.shape[1]}x{batch2.shape[2]})")
    return _plus_scaled(input, bmm(batch1, batch2).sum(0), beta, alpha)


def tensordot(a, b, dims=2, out=None):
    """The sum over dims `dims` of a (its last `dims` ones if an int) of the products with
    the matching dims of b (its first ones): a's other dims, then b's."""
    if out is not None:
        raise TypeError("tensordot(): nbgrad takes no out=")
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > a.ndim or dims > b.ndim:
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        dims_a, dims_b = list(range(-dims, 0)), list(range(dims))
    else:
        dims_a, dims_b = ([d] if isinstance(d, int) else list(d) for d in dims)
    if len(dims_a) != len(dims_b):
        raise RuntimeError("both dimension lists should have same length")
    if a.dtype != b.dtype:
        raise RuntimeError("both inputs should have same dtype")
    for da, db in zip(dims_a, dims_b):
        if a.shape[_check_dim(da, a.ndim)] != b.shape[_check_dim(db, b.ndim)]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[da]} in dim {da} and second has size {b.shape[db]} "
                               f"in dim {db}")
    dims_a = [_check_dim(d, a.ndim) for d in dims_a]
    dims_b = [_check_dim(d, b.ndim) for d in dims_b]
    free_a = [d for d in range(a.ndim) if d not in dims_a]
    free_b = [d for d in range(b.ndim) if d not in dims_b]
    summed = math.prod(a.shape[d] for d in dims_a)
    left = a.permute(free_a + dims_a).reshape(-1, summed)
    right = b.permute(dims_b + free_b).reshape(summed, -1)
    return (left @ right).reshape([a.shape[d] for d in free_a] + [b.shape[d] for d in free_b])


def inner(input, other):
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    if input.shape[-1] != other.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but "
                           f"got shapes {list(input.shape)} and {list(other.shape)}")
    return tensordot(input, other, ([-1], [-1]))


def kron(input, other):
    """The Kronecker product: each element of input times all of other, in blocks."""
    ndim = max(input.ndim, other.ndim)
    a_shape = (1,) * (ndim - input.ndim) + tuple(input.shape)
    b_shape = (1,) * (ndim - other.ndim) + tuple(other.shape)
    a = input.reshape([n for size in a_shape for n in (size, 1)])
    b = other.reshape([n for size in b_shape for n in (1, size)])
    # (PyTorch's last node is the reshape of the product, an _unsafe_view.)
    return dispatch(PRIMITIVES["reshape"], (a * b,),
                    {"shape": tuple(m * n for m, n in zip(a_shape, b_shape))},
                    grad_fn_name="UnsafeViewBackward0")


_CROSS_WITHOUT_DIM = (
    "Using torch.cross without specifying the dim arg is deprecated.\nPlease either pass the "
    "dim explicitly or simply use torch.linalg.cross.\nThe default value of dim will change to "
    "agree with that of linalg.cross in a future release.")


def cross(input, other, dim=None):
    """The cross product of the 3-vectors along `dim` (broadcast); without `dim`, as
    PyTorch (with its deprecation warning), along the first dimension of size 3."""
    if input.ndim != other.ndim:
        raise RuntimeError("linalg.cross: inputs must have the same number of dimensions.")
    if input.dtype != other.dtype:
        raise RuntimeError(f"expected scalar type {input.dtype.scalar_type} but found "
                           f"{other.dtype.scalar_type}")
    if dim is None:
        warnings.warn(_CROSS_WITHOUT_DIM, UserWarning, stacklevel=2)
        dim = next((d for d, n in enumerate(broadcast_shapes(input.shape, other.shape))
                    if n == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    d = _check_dim(dim, input.ndim)
    if input.shape[d] != 3 or other.shape[d] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got "
                           f"{input.shape[d]} and {other.shape[d]}")
    shape = tuple(broadcast_shapes(input.shape, other.shape))
    a, b = input.expand(shape), other.expand(shape)
    # component i is a[i+1] b[i+2] - a[i+2] b[i+1]
    return a.roll(-1, d) * b.roll(-2, d) - a.roll(-2, d) * b.roll(-1, d)


def vdot(input, other):
    """`dot` of real vectors (the conjugate of input, for complex ones, is input)."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    if input.shape != other.shape:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{input.shape[0]}] and src "
                           f"[{other.shape[0]}] to have the same number of elements, but got "
                           f"{input.shape[0]} and {other.shape[0]} elements respectively")
    if input.dtype != other.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{input.dtype.scalar_type} and {other.dtype.scalar_type}")
    return dispatch(PRIMITIVES["matmul"], (input, other), grad_fn_name="VdotBackward0")


# (PyTorch has torch.addmv_ as a function too.)
addmv_ = inplace_form(addmv)

__all__ += ["addmm", "addmv", "addmv_", "addr", "baddbmm", "addbmm", "tensordot", "inner", "kron",
            "cross", "vdot"]
