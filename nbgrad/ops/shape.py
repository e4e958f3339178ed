"""Shape primitives: the views reshape, permute, expand and diagonal, which share memory and PyTorch's
version counter with their input, and cat/stack. (Indexing, `x[index]` and its writes, is
`indexing`.)
"""
import functools
import math

import numpy as np

from .._core.dtype import from_numpy_dtype, promote_types
from .primitive import EVERY_POSITION, Primitive, register
from . import elementwise


def copy_into(target, source):
    """Write `source` (broadcast) into the array or view `target`."""
    elementwise.run(elementwise.COPY, (source,), (), target.shape, target.dtype, out=target)


def flat_contiguous(x):
    """`x` as a 1-D C-contiguous array: a view when it already is contiguous, else a copy."""
    return x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)


# --- views ------------------------------------------------------------------------------

def view_primitive(name, grad_fn, make, undo, fuse=None, differentiable_undo=None):
    """A view primitive: `make(x, **params)` gives the view, `undo(g, node)` the VJP, and
    `differentiable_undo(g, node)` the VJP of a Tensor `g` by Tensor methods (for
    create_graph=True; `undo` itself where it is made only of methods Tensors share with
    arrays)."""
    def infer(x, **params):
        # A zero-strided stand-in has the right shape without touching (or allocating) data.
        return make(np.broadcast_to(np.zeros((), x.dtype), x.shape), **params).shape, x.dtype

    differentiable_undo = differentiable_undo or undo
    return register(Primitive(name, grad_fn, infer, make, lambda node, g: (undo(g, node),),
                              view=True, fuse=fuse,
                              differentiable_vjp=lambda node, g, saved: (
                                  differentiable_undo(g, node),)))


class _ReshapeFusion:
    """reshape/view/squeeze/unsqueeze/flatten: a view inside the fused step too."""

    def forward(self, em, arrays, params, out):
        em.define(out, f"{em.ref(arrays[0])}.reshape({out.shape!r})")

    def vjp(self, em, node, g, input_grads):
        em.define(input_grads[0], f"{em.ref(g)}.reshape({input_grads[0].shape!r})")


def index_source(index, shape):
    """A basic index (ints, slices of positive step, None, Ellipsis) of an array of `shape`,
    as source of the same index in generated Numba code: bounds made concrete, no Ellipsis."""
    consumed = sum(part is not None and part is not Ellipsis for part in index)
    parts, dim = [], 0
    for part in index:
        if part is None:
            parts.append("None")
            continue
        if part is Ellipsis:
            parts += [":"] * (len(shape) - consumed)
            dim += len(shape) - consumed
            continue
        if isinstance(part, slice):
            start, stop, step = part.indices(shape[dim])
            parts.append(f"{start}:{max(start, stop)}:{step}")
        else:
            parts.append(str(int(part) % shape[dim]))
        dim += 1
    return ", ".join(parts) or "..."


class _CopiedViewFusion:
    """permute (transpose, .T, .mT) and expand: a copy in the fused step, where fused rules
    read C-contiguous arrays. NOTE: a copy does not see a later write into the memory it
    was copied from, as eager's view does: the code generator refuses a step that reads
    such a view after a write into its memory (`codegen`: `copies_view`)."""
    copies_view = True

    def __init__(self, permutes):
        self.permutes = permutes

    def forward(self, em, arrays, params, out):
        x = arrays[0]
        if self.permutes and x.ndim > 1:
            view = em.local_view(f"permuted({em.ref(x)}, {tuple(params['dims'])!r})")
            em.copy((view, out.shape), em.out(out), out.shape)
        else:  # (elementwise broadcasts x)
            em.copy((em.ref(x), x.shape), em.out(out), out.shape)

    def vjp(self, em, node, g, input_grads):
        # expand's gradient is g (the engine sums it back to the input's shape); permute's is
        # g in the inverse order.
        if input_grads[0] is None or input_grads[0] is g:
            return
        if g.ndim < 2:
            em.copy((em.ref(g), g.shape), em.out(input_grads[0]), g.shape)
            return
        inverse = tuple(int(d) for d in np.argsort(node.params["dims"]))
        view = em.local_view(f"permuted({em.ref(g)}, {inverse!r})")
        em.copy((view, input_grads[0].shape), em.out(input_grads[0]), input_grads[0].shape)


def _reshape(x, shape):
    try:
        return x.reshape(shape)
    except ValueError:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {x.size}") from None


def _expand(x, shape):
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        refuse_expand(x.shape, shape)


def refuse_expand(from_shape, shape):
    """PyTorch's error for expanding a tensor of `from_shape` to `shape`, which cannot be."""
    lead = len(shape) - len(from_shape)
    for d in reversed(range(len(shape))):  # (from the last, as PyTorch reports)
        size = shape[d]
        if d < lead and size < 0:
            raise RuntimeError(f"The expanded size of the tensor ({size}) isn't allowed in a "
                               f"leading, non-existing dimension {d}")
        if d >= lead and size != from_shape[d - lead] != 1:
            raise RuntimeError(f"The expanded size of the tensor ({size}) must match the "
                               f"existing size ({from_shape[d - lead]}) at non-singleton dimension "
                               f"{d}.  Target sizes: {list(shape)}.  Tensor sizes: "
                               f"{list(from_shape)}")
    raise RuntimeError(f"expand: invalid size {list(shape)} for a tensor of size {list(from_shape)}")


PRIMS = {
    "reshape": view_primitive("reshape", "ViewBackward0", _reshape,
                              lambda g, node: g.reshape(node.input_meta[0][0]),
                              fuse=_ReshapeFusion()),
    "permute": view_primitive("permute", "PermuteBackward0", lambda x, dims: x.transpose(dims),
                              lambda g, node: g.transpose(np.argsort(node.params["dims"])),
                              fuse=_CopiedViewFusion(permutes=True),
                              differentiable_undo=lambda g, node: g.permute(
                                  tuple(np.argsort(node.params["dims"])))),
    # The engine sums a gradient back to the input's shape, so expand's VJP is the identity.
    "expand": view_primitive("expand", "ExpandBackward0", _expand, lambda g, node: g,
                             fuse=_CopiedViewFusion(permutes=False)),
}


# --- diagonal: a view (PyTorch's is one: writes through it reach its base) -------------------

def diagonal_view(x, offset, dim1, dim2):
    """The diagonal `offset` of the planes (dim1, dim2) of array `x`, as a strided view of
    its memory: the other dimensions in order, then the diagonal. NumPy's own `diagonal`
    is read-only; `as_strided` stays writable where `x` is."""
    start1, start2 = max(-offset, 0), max(offset, 0)
    length = max(min(x.shape[dim1] - start1, x.shape[dim2] - start2), 0)
    first = [slice(None)] * x.ndim
    if length:  # (else the start may lie outside x, and the view holds nothing)
        first[dim1], first[dim2] = slice(start1, None), slice(start2, None)
    rest = [d for d in range(x.ndim) if d not in (dim1, dim2)]
    return np.lib.stride_tricks.as_strided(
        x[tuple(first)], tuple(x.shape[d] for d in rest) + (length,),
        tuple(x.strides[d] for d in rest) + (x.strides[dim1] + x.strides[dim2],))


def diagonal_positions(shape, offset, dim1, dim2):
    """The flat C-order positions, in an array of `shape`, of the elements of its diagonal."""
    positions = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    return np.ascontiguousarray(diagonal_view(positions, offset, dim1, dim2))


def _diagonal_undo(g, node):
    result = np.zeros(node.input_meta[0][0], g.dtype)
    copy_into(diagonal_view(result, **node.params), g)
    return result


def _diagonal_differentiable_undo(g, node):
    shape = node.input_meta[0][0]
    result = g.new_zeros((math.prod(shape),))
    result[diagonal_positions(shape, **node.params).reshape(-1)] = g.reshape(-1)
    return result.reshape(shape)


# No fused rule: a step that takes a diagonal runs it eagerly.
PRIMS["diagonal"] = view_primitive("diagonal", "DiagonalBackward0", diagonal_view, _diagonal_undo,
                                   differentiable_undo=_diagonal_differentiable_undo)


# --- cat / stack ---------------------------------------------------------------------------

def _concat_plan(shapes, dim, stack):
    first = shapes[0]
    if stack:
        for i, s in enumerate(shapes):
            if s != first:
                raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                                   f"{list(first)} at entry 0 and {list(s)} at entry {i}")
        return first[:dim] + (len(shapes),) + first[dim:]
    for i, s in enumerate(shapes):
        if len(s) != len(first):
            raise RuntimeError(f"Tensors must have same number of dimensions: got {len(first)} "
                               f"and {len(s)}")
        for d, (a, b) in enumerate(zip(first, s)):
            if d != dim and a != b:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. "
                                   f"Expected size {a} but got size {b} for tensor number {i} "
                                   "in the list.")
    return first[:dim] + (sum(s[dim] for s in shapes),) + first[dim + 1:]


def _pieces(dim, sizes, stack):
    """The index of each input's block inside the output."""
    start = 0
    for size in sizes:
        lead = (slice(None),) * dim
        # The trailing Ellipsis keeps 0-d blocks as views rather than NumPy scalars.
        yield lead + ((start,) if stack else (slice(start, start + size),)) + (Ellipsis,)
        start += 1 if stack else size


def _concat_dtype(arrays):
    # PyTorch's promotion, not NumPy's: cat of int64 and float32 is float32.
    return functools.reduce(promote_types, [from_numpy_dtype(a.dtype) for a in arrays]).np


def _concat_infer(*arrays, dim, stack):
    return _concat_plan([a.shape for a in arrays], dim, stack), _concat_dtype(arrays)


def _concat_forward(*arrays, dim, stack):
    shape = _concat_plan([a.shape for a in arrays], dim, stack)
    out = np.empty(shape, _concat_dtype(arrays))
    sizes = [1 if stack else a.shape[dim] for a in arrays]
    for array, where in zip(arrays, _pieces(dim, sizes, stack)):
        if array.size:
            copy_into(out[where], array)
    return out


def _concat_vjp(node, g):
    dim, stack = node.params["dim"], node.params["stack"]
    sizes = [1 if stack else shape[dim] for shape, _ in node.input_meta]
    return tuple(g[where] if needed else None
                 for where, needed in zip(_pieces(dim, sizes, stack), node.needs))


class _ConcatFusion:
    """cat/stack: each input copied into its block of the output buffer (a slice of it, in a
    loop of its own), and each gradient copied out of its block of g."""

    @staticmethod
    def _blocks(arrays_shapes, dim, stack, out_shape):
        """Per input, the source of its block's index into the output, and the block's
        shape (stacked 0-d inputs: a block of one element)."""
        sizes = [1 if stack else shape[dim] for shape in arrays_shapes]
        for shape, where in zip(arrays_shapes, _pieces(dim, sizes, stack)):
            if stack and not shape:  # (an int index of a 1-D buffer is a number)
                start = where[0]
                yield f"{start}:{start + 1}", (1,)
            else:
                yield index_source(where, out_shape), shape

    def forward(self, em, arrays, params, out):
        name = em.out(out)
        for array, (where, shape) in zip(arrays, self._blocks(
                [a.shape for a in arrays], params["dim"], params["stack"], out.shape)):
            if array.size:
                block = em.local_view(f"{name}[{where}]")
                source = (em.ref(array), array.shape) if array.dtype == out.dtype else \
                    (em.ref(array), array.shape, out.dtype.name)  # (promoted: cat of int, float)
                em.copy(source, block, shape)

    def vjp(self, em, node, g, input_grads):
        shapes = [shape for shape, _ in node.input_meta]
        for grad, (where, shape) in zip(input_grads, self._blocks(
                shapes, node.params["dim"], node.params["stack"], g.shape)):
            if grad is None:
                continue
            name = em.out(grad)
            if grad.size:
                block = em.local_view(f"{em.ref(g)}[{where}]")
                em.copy((block, shape), name, grad.shape)


# (`_concat_vjp` is made of indexing alone, so on a Tensor `g` it is the differentiable VJP.)
PRIMS["concat"] = register(Primitive("concat", "CatBackward0", _concat_infer, _concat_forward,
                                     _concat_vjp, differentiable=EVERY_POSITION,
                                     differentiable_vjp=lambda node, g, saved: _concat_vjp(node, g),
                                     fuse=_ConcatFusion()))
