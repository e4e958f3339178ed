"""Shape functions: views (`reshape`, `view`, `permute`, `expand`, `diagonal`, ...), copies
(`clone`, `contiguous`), joining and splitting (`cat`, `stack`, `split`, `chunk`, `unbind`,
`tensor_split`), rearrangements (`repeat`, `tile`, `flip`, `roll`, `rot90`), triangles
(`tril`, `triu`) and diagonals (`diag`, `diag_embed`, `trace`), broadcasting, and the
products of sets and block matrices (`cartesian_prod`, `combinations`, `block_diag`,
`vander`)."""
import builtins
import itertools
import math
import operator
import warnings

import numpy as np

from .._core import dtype as _dtype
from ..ops import PRIMITIVES
from ..ops.reduction import normalize_dims
from ..ops.shape import diagonal_positions
from . import device as _device
from .dispatch import dispatch
from .operands import as_tensor_arg, result_dtype
from .tensor import (Size, Tensor, _check_dim, _meta, checked_shape, layout, resolve_dtype,
                     sizes_of)

__all__ = ["reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze", "permute",
           "transpose", "movedim", "moveaxis", "narrow", "select", "swapaxes", "swapdims", "t",
           "expand", "expand_as", "broadcast_to", "contiguous",
           "clone", "cat", "concat", "concatenate", "stack", "hstack", "vstack", "row_stack",
           "dstack", "column_stack", "meshgrid", "split", "chunk", "unbind", "repeat",
           "tile", "flip", "roll", "tril", "triu"]


def _infer_size(shape, numel):
    """`shape` with its -1, if any, replaced by the size that makes it hold `numel` elements."""
    for position, size in enumerate(shape):
        if size < -1:
            raise RuntimeError(f"invalid shape dimension {size} at index {position} of shape "
                               f"{list(shape)}")
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod([s for s in shape if s != -1])
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _has_view(input, shape):
    """Whether `input` has a view of `shape`: as PyTorch, a strided tensor has one when its
    strides allow it, which is when NumPy's reshape is a view of the same memory."""
    data = layout(input)
    return data.flags.c_contiguous or not data.size or \
        np.may_share_memory(data.reshape(shape), data)


def _reshaped(input, shape):
    """`input` with `shape`: a view where it has one, else (as PyTorch) a view of a copy,
    whose node is UnsafeViewBackward0 after a CloneBackward0."""
    if _has_view(input, shape):
        return dispatch(PRIMITIVES["reshape"], (input,), {"shape": shape})
    return dispatch(PRIMITIVES["reshape"], (clone(input),), {"shape": shape},
                    grad_fn_name="UnsafeViewBackward0")


def reshape(input, *shape):
    if not shape:
        raise TypeError('reshape() missing 1 required positional arguments: "shape"')
    return _reshaped(input, _infer_size(sizes_of(shape), input.numel()))


def view(input, *shape):
    if not shape:
        raise TypeError("view() received an invalid combination of arguments - got (), but "
                        "expected one of:\n * (torch.dtype dtype)\n * (tuple of ints size)\n")
    shape = _infer_size(sizes_of(shape), input.numel())
    if not _has_view(input, shape):
        raise RuntimeError("view size is not compatible with input tensor's size and stride "
                           "(at least one dimension spans across two contiguous subspaces). "
                           "Use .reshape(...) instead.")
    return dispatch(PRIMITIVES["reshape"], (input,), {"shape": shape})


def flatten(input, start_dim=0, end_dim=-1):
    ndim = input.ndim
    start, end = _check_dim(start_dim, ndim), _check_dim(end_dim, ndim)
    if ndim == 0:
        return reshape(input, 1)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = _meta(input).shape
    # (No _infer_size: this shape holds the input's elements.)
    return _reshaped(input, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def view_as(input, other):
    return view(input, other.shape)


def _needs_a_dimension(input, message, error=RuntimeError):
    """PyTorch's error for an op along a dimension of a 0-d tensor, which has none."""
    if input.ndim == 0:
        raise error(message)


def unflatten(input, dim, sizes):
    d = _check_dim(dim, input.ndim)
    _needs_a_dimension(input, "unflatten got an unexpected error:\nDimension specified as 0 but "
                              "tensor has no dimensions")
    sizes = tuple(int(s) for s in sizes)
    size = input.shape[d]
    try:
        sizes = _infer_size(sizes, size)
    except RuntimeError as error:
        if sizes.count(-1) > 1:
            raise RuntimeError(f"unflatten got an unexpected error:\n{error}") from None
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the "
                           f"size of dim {dim} ({size}) in the input tensor") from None
    return dispatch(PRIMITIVES["reshape"], (input,),
                    {"shape": input.shape[:d] + sizes + input.shape[d + 1:]})


def narrow(input, dim, start, length):
    _needs_a_dimension(input, "narrow() cannot be applied to a 0-dim tensor.")
    d = _check_dim(dim, input.ndim)
    size = input.shape[d]
    if not -size <= start <= size:
        raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], but "
                         f"got {start})")
    start = start + size if start < 0 else start
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if start + length > size:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    return input[(slice(None),) * d + (slice(start, start + length),)]


def select(input, dim, index):
    _needs_a_dimension(input, "select() cannot be applied to a 0-dim tensor.", IndexError)
    d = _check_dim(dim, input.ndim)
    size = input.shape[d]
    if not -size <= index < size:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input.shape)} at dimension {d}")
    return input[(slice(None),) * d + (index,)]


def squeeze(input, dim=None, *, grad_fn_names=("SqueezeBackward0", "SqueezeBackward1",
                                                "SqueezeBackward2")):
    """`input` without its size-1 dimensions (those of `dim`); `grad_fn_names` for no dim, an
    int and a sequence of dims (squeeze_ has its own)."""
    shape = input.shape
    if dim is None:
        dims = [d for d, s in enumerate(shape) if s == 1]
    else:
        given = (dim,) if isinstance(dim, int) else tuple(dim)
        # (The reductions' check of dims: range, repeats; a 0-d tensor's one dim is none.)
        dims = [d for d in normalize_dims(given, input.ndim) if shape[d] == 1] if given else []
    new_shape = tuple(s for d, s in enumerate(shape) if d not in dims)
    form = 0 if dim is None else 1 if isinstance(dim, int) else 2
    return dispatch(PRIMITIVES["reshape"], (input,), {"shape": new_shape},
                    grad_fn_name=grad_fn_names[form])


def unsqueeze(input, dim, *, grad_fn_name="UnsqueezeBackward0"):
    d = _check_dim(dim, input.ndim + 1)
    shape = input.shape
    return dispatch(PRIMITIVES["reshape"], (input,), {"shape": shape[:d] + (1,) + shape[d:]},
                    grad_fn_name=grad_fn_name)


def permute(input, *dims):
    if not dims:
        raise TypeError('permute() missing 1 required positional arguments: "dims"')
    dims = sizes_of(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {input.ndim} is not equal to len(dims) = {len(dims)}")
    dims = tuple(_check_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return dispatch(PRIMITIVES["permute"], (input,), {"dims": dims})


def transpose(input, dim0, dim1, *, grad_fn_name="TransposeBackward0"):
    order = list(range(input.ndim))
    d0, d1 = _check_dim(dim0, input.ndim), _check_dim(dim1, input.ndim)
    if input.ndim:
        order[d0], order[d1] = order[d1], order[d0]
    return dispatch(PRIMITIVES["permute"], (input,), {"dims": tuple(order)},
                    grad_fn_name=grad_fn_name)


swapaxes = swapdims = transpose


def movedim(input, source, destination):
    """`input` with the dims `source` moved to positions `destination` (ints or sequences),
    the others in their order."""
    ndim = input.ndim
    if isinstance(source, (tuple, list)) != isinstance(destination, (tuple, list)):
        raise TypeError(f"movedim() received an invalid combination of arguments - got "
                        f"({type(source).__name__}, {type(destination).__name__}), but expected "
                        "(int source, int destination) or (tuple of ints source, tuple of ints "
                        "destination)")
    sources = list(source) if isinstance(source, (tuple, list)) else [source]
    targets = list(destination) if isinstance(destination, (tuple, list)) else [destination]
    if len(sources) != len(targets):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({sources} dims) "
                           f"should contain the same number of dims as destination ({targets} "
                           "dims)")
    moved = [_check_dim(d, ndim) for d in sources]
    placed = [_check_dim(d, ndim) for d in targets]
    for name, dims, given in (("source", moved, sources), ("destination", placed, targets)):
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"movedim: repeated dim in `{name}` ({given})")
    if ndim == 0:  # (its one dimension, as PyTorch counts, moves onto itself)
        return permute(input, ())
    order = [None] * ndim
    for s, d in zip(moved, placed):
        order[d] = s
    rest = iter(d for d in range(ndim) if d not in moved)
    return permute(input, *[next(rest) if d is None else d for d in order])


moveaxis = movedim


def t(input, *, grad_fn_name="TBackward0"):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return dispatch(PRIMITIVES["permute"], (input,), {"dims": tuple(range(input.ndim))[::-1]},
                    grad_fn_name=grad_fn_name)


def reverse_dims(input):
    """`Tensor.T`: all dimensions in reverse order."""
    return dispatch(PRIMITIVES["permute"], (input,), {"dims": tuple(range(input.ndim))[::-1]})


def matrix_transpose(input):
    """`Tensor.mT`: the last two dimensions swapped."""
    return transpose(input, -2, -1)


def expand(input, *sizes):
    if not sizes:
        raise TypeError('expand() missing 1 required positional arguments: "size"')
    sizes = sizes_of(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(f"expand(nbgrad.{input.dtype.name}{{{list(input.shape)}}}, size={list(sizes)}): "
                           "the number of sizes provided must be greater or equal to the number "
                           "of dimensions in the tensor")
    shape = tuple(input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return dispatch(PRIMITIVES["expand"], (input,), {"shape": shape})


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, size):
    return expand(input, size)


def contiguous(input, memory_format=None):
    if input.is_contiguous():
        return input
    return clone(input)


def clone(input, *, memory_format=None):
    return dispatch(PRIMITIVES["to_copy"], (input,), {"dtype": _meta(input).dtype},
                    grad_fn_name="CloneBackward0")


def _is_legacy_empty(x):
    return x.ndim == 1 and x.numel() == 0


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    # PyTorch lets 1-D empty tensors join tensors of any shape (a legacy rule kept for
    # compatibility), and still gives them their empty gradient: each joins as an empty
    # block of the others' shape, so it stays in the graph.
    shaped = next((x for x in tensors if not _is_legacy_empty(x)), tensors[0])
    d = _check_dim(dim, shaped.ndim)
    empty_block = shaped.shape[:d] + (0,) + shaped.shape[d + 1:]
    blocks = tuple(reshape(x, empty_block) if _is_legacy_empty(x) and x.shape != empty_block else x
                   for x in tensors)
    return dispatch(PRIMITIVES["concat"], blocks, {"dim": d, "stack": False})


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    d = _check_dim(dim, tensors[0].ndim + 1)
    return dispatch(PRIMITIVES["concat"], tuple(tensors), {"dim": d, "stack": True},
                    grad_fn_name="StackBackward0")


def _joined(name, tensors, least_ndim, dim):
    """cat of `tensors` along `dim`, each given at least `least_ndim` dims as PyTorch's
    atleast_1d/2d/3d do (a 1-D (n,) is (1, n) in 2-D, (1, n, 1) in 3-D)."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{name} expects a non-empty TensorList")
    lifted = []
    for x in tensors:
        shape = x.shape
        if len(shape) < least_ndim:
            shape = {0: (1,) * least_ndim, 1: (1, *shape, 1)[:least_ndim],
                     2: (*shape, 1)}[len(shape)]
            x = reshape(x, shape)
        lifted.append(x)
    return cat(lifted, dim)


def hstack(tensors):
    tensors = list(tensors)
    one_d = bool(tensors) and all(x.ndim <= 1 for x in tensors)
    return _joined("hstack", tensors, 1, 0 if one_d else 1)


def vstack(tensors):
    return _joined("vstack", tensors, 2, 0)


row_stack = vstack


def dstack(tensors):
    return _joined("dstack", tensors, 3, 2)


def column_stack(tensors):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("column_stack expects a non-empty TensorList")
    return cat([reshape(x, (x.numel(), 1)) if x.ndim <= 1 else x for x in tensors], 1)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids: output i holds tensor i (0-d or 1-D) along dim i ("ij"), with the
    first two dims swapped for "xy"; each an expanded view."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the "
                      "indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("xy", "ij"):
        raise RuntimeError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: '
                           f"{indexing}")
    for x in tensors:
        if x.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but "
                               f"got a tensor of size {list(x.shape)}")
        if x.dtype != tensors[0].dtype:
            raise RuntimeError("meshgrid expects all tensors to have the same dtype")
    sizes = [x.numel() for x in tensors]
    swap = indexing == "xy" and len(tensors) >= 2
    if swap:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for i, x in enumerate(tensors):
        axis = {0: 1, 1: 0}.get(i, i) if swap else i
        shape = [1] * len(tensors)
        shape[axis] = sizes[axis]
        grids.append(expand(reshape(x, tuple(shape)), tuple(sizes)))
    return tuple(grids)


def split(input, split_size_or_sections, dim=0):
    _needs_a_dimension(input, "split expects at least a 1-dimensional tensor")
    d = _check_dim(dim, input.ndim)
    size = input.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step < 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got split_size={step}")
        if step == 0 and size:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got "
                               f"dimension size of {size}")
        sections = [step] * (size // step) + [size % step] if step else [0]
        if len(sections) > 1 and not sections[-1]:
            sections.pop()  # no empty remainder, unless the dimension is empty
    else:
        sections = [int(n) for n in split_size_or_sections]
        if any(n < 0 for n in sections):
            raise RuntimeError(f"split_with_sizes expects split_sizes have only non-negative "
                               f"entries, but got split_sizes={sections}")
        if sum(sections) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} "
                               f"(input tensor's size at dimension {d}), but got "
                               f"split_sizes={sections}")
    starts = np.cumsum([0] + sections[:-1])
    lead = (slice(None),) * d
    return tuple(input[lead + (slice(int(s), int(s) + n),)] for s, n in zip(starts, sections))


def chunk(input, chunks, dim=0):
    _needs_a_dimension(input, "chunk expects at least a 1-dimensional tensor")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = input.shape[_check_dim(dim, input.ndim)]
    if not size:
        return split(input, [0] * chunks, dim)  # as PyTorch: `chunks` empty pieces
    return split(input, -(-size // chunks), dim)


def unbind(input, dim=0):
    _needs_a_dimension(input, f"Dimension specified as {dim} but tensor has no dimensions",
                       IndexError)
    d = _check_dim(dim, input.ndim)
    lead = (slice(None),) * d
    return tuple(input[lead + (i,)] for i in range(input.shape[d]))


# --- rearrangements: a `take` of positions that NumPy moves ---------------------------------
# NOTE: not views: PyTorch's repeat, flip and roll copy, and so does `take`. Its gradient, a
# scatter-add of the positions, sums the copies of an element (repeat) or moves it back.

def _rearranged(input, rearrange, grad_fn_name):
    """`input` with its elements where `rearrange` (a NumPy function) puts those of an array
    of the same shape."""
    positions = rearrange(np.arange(input.numel(), dtype=np.int64).reshape(input.shape))
    positions = np.array(positions, order="C", copy=None)  # (ascontiguousarray makes 0-d 1-d)
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name=grad_fn_name)


def repeat(input, *repeats):
    if not repeats:
        raise TypeError('repeat() missing 1 required positional arguments: "repeats"')
    repeats = sizes_of(repeats)
    lead = len(repeats) - input.ndim
    if lead < 0:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    checked_shape(n * s for n, s in zip(repeats, (1,) * lead + input.shape))
    return _rearranged(input, lambda a: np.tile(a, repeats), "RepeatBackward0")


def tile(input, *dims):
    dims = sizes_of(dims)
    # As PyTorch: fewer dims than the tensor has are padded with leading 1s.
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


def flip(input, *dims):
    dims = [_check_dim(d, input.ndim) for d in sizes_of(dims)]
    for d in dims:
        if dims.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
    # (A 0-d tensor, whose one dimension NumPy does not see, flips to itself.)
    return _rearranged(input, lambda a: np.flip(a, dims) if a.ndim else a, "FlipBackward0")


def roll(input, shifts, dims=None):
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = () if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims) and (dims or len(shifts) != 1):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    if dims:
        _needs_a_dimension(input, f"Dimension specified as {dims[0]} but tensor has no "
                                  "dimensions", IndexError)
    if not dims:  # the flattened tensor rolls, then takes back its shape
        return _rearranged(input, lambda a: np.roll(a.reshape(-1), shifts[0]).reshape(a.shape),
                           "RollBackward0")
    dims = tuple(_check_dim(d, input.ndim) for d in dims)
    return _rearranged(input, lambda a: np.roll(a, shifts, dims), "RollBackward0")


def _pixel_rearrangement(name, factor_name, shuffle):
    """pixel_shuffle (`shuffle`: (*, C * r * r, H, W) -> (*, C, H * r, W * r)) or
    pixel_unshuffle (its inverse), with PyTorch's checks: a `take` of positions that NumPy
    moves, under PyTorch's grad_fn name (whose node's gradient is the other's: a take's)."""
    def function(input, factor):
        if type(factor) is not int:
            raise TypeError(f"{name}(): argument '{factor_name}' (position 2) must be int, not "
                            f"{type(factor).__name__}")
        if input.ndim < 3:
            raise RuntimeError(f"{name} expects input to have at least 3 dimensions, but got "
                               f"input with {input.ndim} dimension(s)")
        if factor <= 0:
            raise RuntimeError(f"{name} expects a positive {factor_name}, but got {factor}")
        *batch, channels, height, width = input.shape
        if shuffle and channels % (factor * factor):
            raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be "
                               f"divisible by the square of upscale_factor, but "
                               f"input.size(-3)={channels} is not divisible by {factor * factor}")
        for dim, what, size in ((-2, "height", height), (-1, "width", width)):
            if not shuffle and size % factor:
                raise RuntimeError(f"pixel_unshuffle expects {what} to be divisible by "
                                   f"downscale_factor, but input.size({dim})={size} is not "
                                   f"divisible by {factor}")
        lead = len(batch)
        if shuffle:
            blocks = (*batch, channels // factor ** 2, factor, factor, height, width)
            order, shape = (1, 4, 2, 5, 3), (*batch, channels // factor ** 2, height * factor,
                                             width * factor)
        else:
            blocks = (*batch, channels, height // factor, factor, width // factor, factor)
            order, shape = (1, 3, 5, 2, 4), (*batch, channels * factor ** 2, height // factor,
                                             width // factor)
        axes = (*range(lead), *(lead + a - 1 for a in order))
        return _rearranged(input, lambda a: a.reshape(blocks).transpose(axes).reshape(shape),
                           name.title().replace("_", "") + "Backward0")
    function.__name__ = name
    return function


pixel_shuffle = _pixel_rearrangement("pixel_shuffle", "upscale_factor", shuffle=True)
pixel_unshuffle = _pixel_rearrangement("pixel_unshuffle", "downscale_factor", shuffle=False)
__all__ += ["pixel_shuffle", "pixel_unshuffle"]


# --- triangles ------------------------------------------------------------------------------

def _triangle(name, keep):
    """`tril` or `triu`: `where(mask, input, 0)` with the (broadcast) mask `keep(rows, cols,
    diagonal)` over the last two dimensions."""
    def function(input, diagonal=0):
        if input.ndim < 2:
            raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
        mask = Tensor._wrap(keep(*input.shape[-2:], diagonal))
        zero = as_tensor_arg(0, _meta(input).dtype)
        return dispatch(PRIMITIVES["where"], (mask, input, zero),
                        grad_fn_name=name.capitalize() + "Backward0")
    function.__name__ = name
    return function


tril = _triangle("tril", lambda n, m, k: np.tri(n, m, k, dtype=bool))
triu = _triangle("triu", lambda n, m, k: ~np.tri(n, m, k - 1, dtype=bool))


# --- broadcasting, more views and splits, diagonals ------------------------------------------

def broadcast_shapes(*shapes):
    """The shape that `shapes` (sequences of sizes, or ints) broadcast to, as a Size."""
    shapes = [(s,) if isinstance(s, int) else tuple(s) for s in shapes]
    for shape in shapes:
        if any(size < 0 for size in shape):
            raise ValueError("Attempting to broadcast a dimension with negative length!")
    result = [1] * max(map(len, shapes), default=0)
    for position, shape in enumerate(shapes):
        for d in range(-1, -len(shape) - 1, -1):
            size = shape[d]
            if size != 1 and result[d] not in (1, size):
                raise RuntimeError(f"Attempting to broadcast a dimension of length {size} at {d}! "
                                   f"Mismatching argument at index {position} had {shape}; but "
                                   f"expected shape should be broadcastable to {result}")
            if size != 1:
                result[d] = size
    return Size(result)


def broadcast_tensors(*tensors):
    """Each tensor expanded to the shape they broadcast to (a tensor of that shape already
    is itself)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    shape = ()
    for x in tensors:
        for d in range(-1, -min(len(shape), x.ndim) - 1, -1):
            if x.shape[d] != shape[d] and 1 not in (x.shape[d], shape[d]):
                raise RuntimeError(f"The size of tensor a ({shape[d]}) must match the size of "
                                   f"tensor b ({x.shape[d]}) at non-singleton dimension "
                                   f"{max(len(shape), x.ndim) + d}")
        shape = tuple(broadcast_shapes(shape, x.shape))
    return tuple(x if x.shape == shape else expand(x, shape) for x in tensors)


def reshape_as(input, other):
    return reshape(input, other.shape)


def ravel(input):
    return view(contiguous(input), -1)  # (PyTorch's nodes: ViewBackward0 after a clone)


def _at_least(least_ndim):
    """atleast_1d/2d/3d: each tensor given with fewer dims viewed with more, as `_joined`
    lifts them (a 0-d through view, others through unsqueeze, as PyTorch's nodes)."""
    def function(*tensors):
        if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
            tensors = tuple(tensors[0])
        lifted = []
        for x in tensors:
            if x.ndim == 0:
                x = reshape(x, (1,) * least_ndim)
            elif x.ndim == 1 and least_ndim > 1:
                x = unsqueeze(x, 0) if least_ndim == 2 else unsqueeze(unsqueeze(x, 0), -1)
            elif x.ndim == 2 and least_ndim == 3:
                x = unsqueeze(x, -1)
            lifted.append(x)
        return lifted[0] if len(tensors) == 1 else tuple(lifted)
    function.__name__ = f"atleast_{least_ndim}d"
    return function


atleast_1d, atleast_2d, atleast_3d = (_at_least(n) for n in (1, 2, 3))


def fliplr(input):
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, 1)


def flipud(input):
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, 0)


def rot90(input, k=1, dims=(0, 1)):
    dims = list(dims)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if input.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {input.ndim}")
    if dims[0] == dims[1] or abs(dims[0] - dims[1]) == input.ndim:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {dims[0]} "
                           f"and dim1 = {dims[1]}")
    dims = [_check_dim(d, input.ndim) for d in dims]
    # (NumPy's rot90 turns the same way: from the first dim towards the second.)
    return _rearranged(input, lambda a: np.rot90(a, k, dims), "Rot90Backward0")


def tensor_split(input, indices_or_sections, dim=0):
    """Pieces of `input` along `dim`: `sections` pieces as even as can be (the first ones one
    longer), or the pieces between the split `indices` (slices: negative ones count from
    the end, out-of-range ones are clamped)."""
    if input.ndim == 0:
        raise RuntimeError("tensor_split expected at least a 1-dimensional tensor, but got a "
                           "tensor with 0 dims")
    if isinstance(indices_or_sections, Tensor):
        given = indices_or_sections
        if given.ndim > 1:
            raise RuntimeError("tensor_split expected tensor_indices_or_sections to be a "
                               "zero-dimensional or one-dimensional tensor, but got a tensor "
                               f"with {given.ndim} dims")
        if given.dtype.name != "int64":
            raise RuntimeError("tensor_split expected tensor_indices_or_sections to have dtype "
                               f"of long, but got {given.dtype.scalar_type}")
        indices_or_sections = int(given.item()) if given.ndim == 0 else given.tolist()
    d = _check_dim(dim, input.ndim)
    size = input.shape[d]
    if isinstance(indices_or_sections, int):
        sections = indices_or_sections
        if sections <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {sections}")
        lengths = [size // sections + (i < size % sections) for i in range(sections)]
        indices = np.cumsum(lengths)[:-1].tolist()
    else:
        indices = [operator.index(i) for i in indices_or_sections]
    lead = (slice(None),) * d
    bounds = [0, *indices, size]
    # (Each piece starts where the last ended, as PyTorch's: [5, 2] gives x[:5], x[5:2], x[2:].)
    return tuple(input[lead + (slice(start, stop),)] for start, stop in zip(bounds, bounds[1:]))


def _split_along(name, dim, least_ndim):
    """hsplit/vsplit/dsplit: tensor_split along `dim`, where a number of sections must
    divide the dimension."""
    def function(input, indices_or_sections):
        if input.ndim < least_ndim:
            raise RuntimeError(f"torch.{name} requires a tensor with at least {least_ndim} "
                               f"dimension, but got a tensor with {input.ndim} dimensions!")
        d = 0 if name == "hsplit" and input.ndim == 1 else dim
        if isinstance(indices_or_sections, int):
            sections = indices_or_sections
            if sections == 0 or input.shape[d] % sections:
                raise RuntimeError(f"torch.{name} attempted to split along dimension {d}, but "
                                   f"the size of the dimension {input.shape[d]} is not divisible "
                                   f"by the split_size {sections}!")
        return tensor_split(input, indices_or_sections, d)
    function.__name__ = name
    return function


hsplit, vsplit, dsplit = (_split_along(name, dim, least) for name, dim, least in
                          (("hsplit", 1, 1), ("vsplit", 0, 2), ("dsplit", 2, 3)))


def _diagonal_dims(ndim, dim1, dim2):
    d1, d2 = _check_dim(dim1, ndim), _check_dim(dim2, ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return d1, d2


def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal `offset` of the planes (dim1, dim2), as the last dimension: a view."""
    d1, d2 = _diagonal_dims(input.ndim, dim1, dim2)
    return dispatch(PRIMITIVES["diagonal"], (input,),
                    {"offset": operator.index(offset), "dim1": d1, "dim2": d2})


def unfold(input, dimension, size, step):
    """Tensor.unfold: the windows of `size` elements, one every `step`, along `dimension`
    (counted there), each window's elements in a new last dimension: a view."""
    for position, (name, value) in enumerate((("dimension", dimension), ("size", size),
                                              ("step", step)), 1):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"unfold(): argument '{name}' (position {position}) must be int, "
                            f"not {type(value).__name__}")
    dim = _check_dim(dimension, input.ndim)
    length = input.shape[dim] if input.ndim else 1
    if size > length:
        raise RuntimeError(f"maximum size for tensor at dimension {dim} is {length} but size "
                           f"is {size}")
    if size < 0:
        raise RuntimeError(f"size is {size} but must be >= 0")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    return dispatch(PRIMITIVES["unfold"], (input,),
                    {"dimension": dim, "size": int(size), "step": int(step)})


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Zeros with input's last dimension on the diagonal `offset` of the planes (dim1,
    dim2) of a result with one more dimension."""
    d1, d2 = _diagonal_dims(input.ndim + 1, dim1, dim2)
    offset = operator.index(offset)
    length = (input.shape[-1] if input.ndim else 1) + abs(offset)
    others = iter(input.shape[:-1])
    shape = tuple(length if d in (d1, d2) else next(others) for d in range(input.ndim + 1))
    return _on_diagonal(input, shape, offset, d1, d2, "DiagEmbedBackward0")


def _on_diagonal(values, shape, offset, dim1, dim2, grad_fn_name):
    """Zeros of `shape` with `values` written on its diagonal (index_put, no gradient for
    the zeros)."""
    zeros = Tensor._wrap(np.zeros(shape, _meta(values).dtype))
    positions = diagonal_positions(shape, offset, dim1, dim2)
    return dispatch(PRIMITIVES["index_put"], (zeros, values), {"positions": positions},
                    grad_fn_name=grad_fn_name)


def diag(input, diagonal=0):
    """A 1-D input on the diagonal `diagonal` of a square matrix; a 2-D input's diagonal
    `diagonal`, copied (PyTorch's diag is no view)."""
    if input.ndim not in (1, 2):
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    offset = operator.index(diagonal)
    if input.ndim == 1:
        n = input.shape[0] + abs(offset)
        return _on_diagonal(input, (n, n), offset, 0, 1, "DiagEmbedBackward0")
    positions = diagonal_positions(input.shape, offset, 0, 1)
    return dispatch(PRIMITIVES["take"], (input,), {"positions": positions},
                    grad_fn_name="DiagonalBackward0_copy")


def trace(input):
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    if input.dtype.name == "bool":
        raise NotImplementedError("\"trace\" not implemented for 'Bool'")
    return diagonal(input).sum()


def _triangle_indices(name, upper):
    """tril_indices/triu_indices: the (2, n) row and column indices of the lower (upper)
    triangle of a row x col matrix from diagonal `offset`, in row-major order."""
    def function(row, col, offset=0, *, dtype=None, device=None, layout=None):
        for argument, value in (("row", row), ("col", col)):
            if value < 0:
                raise RuntimeError(f"{argument} must be non-negative, got{value}")
        dtype = resolve_dtype(dtype) or _dtype.int64
        if dtype.is_floating_point or dtype.name == "bool":
            raise NotImplementedError(f"\"{name}\" not implemented for '{dtype.scalar_type}'")
        _device.checked(device)
        keep = np.tri(row, col, offset - upper, dtype=bool)
        rows, cols = np.nonzero(~keep if upper else keep)
        return Tensor._wrap(np.stack([rows, cols]).astype(dtype.np).reshape(2, -1))
    function.__name__ = name
    return function


tril_indices, triu_indices = _triangle_indices("tril_indices", False), \
    _triangle_indices("triu_indices", True)

__all__ += ["broadcast_shapes", "broadcast_tensors", "ravel", "atleast_1d", "atleast_2d",
            "atleast_3d", "fliplr", "flipud", "rot90", "tensor_split", "hsplit", "vsplit",
            "dsplit", "diagonal", "diag_embed", "diag", "trace", "tril_indices", "triu_indices"]


# --- products of sets, block matrices, Vandermonde matrices -----------------------------------

def _one_dimensional(tensors):
    for x in tensors:
        if x.ndim != 1:
            raise RuntimeError(f"Expect a 1D vector, but got shape {list(x.shape)}")


def cartesian_prod(*tensors):
    """Every tuple of one element of each 1-D tensor, in order, as the rows of a matrix (a
    lone tensor is itself): PyTorch's composite of meshgrid and stack."""
    _one_dimensional(tensors)
    if len(tensors) == 1:
        return tensors[0]
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    return stack([grid.reshape(-1) for grid in meshgrid(*tensors, indexing="ij")], 1)


def combinations(input, r=2, with_replacement=False):
    """The r-element combinations of a 1-D tensor's elements (with repeats if
    `with_replacement`), in lexicographic order of their positions, as rows."""
    _one_dimensional((input,))
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    if r == 0:
        return input.new_empty(0)
    choose = itertools.combinations_with_replacement if with_replacement else \
        itertools.combinations
    picks = np.array(list(choose(range(input.shape[0]), r)), np.int64).reshape(-1, r)
    # As PyTorch, the columns stacked (StackBackward0).
    return stack([input[picks[:, k]] for k in range(r)], 1)


def block_diag(*tensors):
    """The tensors (0-d, 1-D as one row, 2-D) along the diagonal of a zero matrix, in their
    promoted dtype."""
    for i, x in enumerate(tensors):
        if x.ndim > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer dimensions. "
                               f"Input {i} has {x.ndim} dimensions")
    if not tensors:
        return Tensor._wrap(np.zeros((1, 0), np.float32))
    dtype = result_dtype(*tensors)
    blocks = [x.reshape((1,) * (2 - x.ndim) + tuple(x.shape)).to(dtype) for x in tensors]
    width = builtins.sum(b.shape[1] for b in blocks)
    rows, left = [], 0
    for b in blocks:
        height, right = b.shape[0], width - left - b.shape[1]
        rows.append(cat([Tensor._wrap(np.zeros((height, left), dtype.np)), b,
                         Tensor._wrap(np.zeros((height, right), dtype.np))], 1))
        left += b.shape[1]
    return cat(rows, 0)


def vander(x, N=None, increasing=False):
    """The powers x**0 .. x**(N-1) of a 1-D tensor as columns (decreasing unless
    `increasing`), as PyTorch's composite: ones, x written into columns 1.., their cumprod,
    flipped; integers and bools in int64."""
    if x.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    n = x.shape[0] if N is None else N
    if n < 0:
        raise RuntimeError("N must be non-negative.")
    dtype = x.dtype if x.dtype.is_floating_point else _dtype.int64
    result = Tensor._wrap(np.ones((x.shape[0], n), dtype.np))
    if n > 1:
        result[:, 1:] = x.unsqueeze(1).to(dtype)
        result = result.cumprod(1)
    return result if increasing else flip(result, 1)


def detach(input):
    """torch.detach: `input.detach()`, the same data without a graph."""
    return input.detach()


__all__ += ["cartesian_prod", "combinations", "block_diag", "vander", "detach"]
