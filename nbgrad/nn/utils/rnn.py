"""Sequences of different lengths (torch/nn/utils/rnn.py): padded into one tensor
(pad_sequence), or packed (PackedSequence: the steps' rows of the sequences still running,
one step after the other, with the batch size of each step), which the RNNs take, and back
into a list (unpad_sequence, unpack_sequence).
"""
from collections import namedtuple
from collections.abc import Iterable

import numpy as np

from ..._core import dtype as _dtype
from ..._tensor import api as _api
from ..._tensor.factories import full
from ..._tensor.tensor import Tensor

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence", "pad_packed_sequence",
           "pad_sequence", "unpad_sequence", "pack_sequence", "unpack_sequence"]


class PackedSequence(namedtuple("PackedSequence_", ["data", "batch_sizes", "sorted_indices",
                                                    "unsorted_indices"])):
    """`data`: the rows of every time step, step after step (only the sequences that reach the
    step, longest first); `batch_sizes`: how many rows each step has (int64); the sequences'
    order was sorted by length with `sorted_indices` (None if it was not changed), and
    `unsorted_indices` restores it."""
    __slots__ = ()

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs):
        """The data converted (`Tensor.to`'s arguments); the sizes and indices kept."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        return type(self)(data, self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def cpu(self):
        return self

    @property
    def is_cuda(self):
        return self.data.is_cuda


def _converter(dtype_name):
    def convert(self):
        return self.to(dtype=getattr(_dtype, dtype_name))
    convert.__name__ = convert.__qualname__ = {"float64": "double", "float32": "float",
                                               "float16": "half", "int64": "long", "int32": "int",
                                               "int16": "short", "int8": "char",
                                               "uint8": "byte"}[dtype_name]
    return convert


for _dtype_name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8"):
    _method = _converter(_dtype_name)
    setattr(PackedSequence, _method.__name__, _method)
del _dtype_name, _method


def invert_permutation(permutation):
    """The permutation that undoes `permutation` (None for None)."""
    if permutation is None:
        return None
    return _api.tensor(np.argsort(permutation.numpy(), kind="stable"), dtype=permutation.dtype)


def _checked_lengths(lengths, batch_size):
    """The lengths as a list, after the checks of PyTorch's _pack_padded_sequence."""
    if lengths.dim() != 1 or lengths.dtype != _dtype.int64:
        raise RuntimeError(f"'lengths' argument should be a 1D CPU int64 tensor, but got "
                           f"{lengths.dim()}D cpu {lengths.dtype.scalar_type} tensor")
    lengths = lengths.tolist()
    if len(lengths) != batch_size:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got "
                           f"{len(lengths)} (batch_size={batch_size})")
    if lengths[-1] <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    if any(later > earlier for earlier, later in zip(lengths, lengths[1:])):
        raise RuntimeError("`lengths` array must be sorted in decreasing order when "
                           "`enforce_sorted` is True. You can pass `enforce_sorted=False` to "
                           "pack_padded_sequence and/or pack_sequence to sidestep this "
                           "requirement if you do not need ONNX exportability.")
    return lengths


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """A padded batch (T, B, *) (or (B, T, *)) whose sequence b has lengths[b] steps, packed.
    Unless `enforce_sorted`, the sequences are sorted by decreasing length first (and
    `sorted_indices` says how); else they must come sorted."""
    if isinstance(lengths, Tensor):
        lengths = lengths.to(dtype=_dtype.int64)
    else:
        lengths = _api.as_tensor(lengths, dtype=_dtype.int64)
    sorted_indices = None
    if not enforce_sorted:
        lengths, sorted_indices = _api.sort(lengths, descending=True)
        input = input.index_select(0 if batch_first else 1, sorted_indices)
    if input.numel() == 0:
        raise RuntimeError("Cannot pack empty tensors.")
    if batch_first:
        input = input.transpose(0, 1)
    lengths = _checked_lengths(lengths, input.size(1))
    if lengths[0] > input.size(0):
        # (PyTorch reads past the end of the input there)
        raise RuntimeError(f"pack_padded_sequence: a length ({lengths[0]}) is more than the "
                           f"input's {input.size(0)} steps")
    batch_sizes = [sum(length > t for length in lengths) for t in range(lengths[0])]
    data = _api.cat([input[t, :size] for t, size in enumerate(batch_sizes)])
    return PackedSequence(data, _api.tensor(batch_sizes, dtype=_dtype.int64), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The padded batch (T, B, *) (or (B, T, *)) of a packed one, in the sequences' original
    order, with their lengths; `total_length` pads to that many steps."""
    batch_sizes = sequence.batch_sizes.tolist()
    max_seq_length = len(batch_sizes)
    if total_length is not None:
        if total_length < max_seq_length:
            raise ValueError("Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {max_seq_length}")
        max_seq_length = total_length
    data = sequence.data
    padded = full((max_seq_length, batch_sizes[0]) + tuple(data.shape[1:]), padding_value,
                  dtype=data.dtype)
    start = 0
    for t, size in enumerate(batch_sizes):
        padded[t, :size] = data[start:start + size]
        start += size
    lengths = _api.tensor([sum(size > b for size in batch_sizes) for b in range(batch_sizes[0])],
                          dtype=_dtype.int64)
    if batch_first:
        padded = padded.transpose(0, 1)
    unsorted_indices = sequence.unsorted_indices
    if unsorted_indices is not None:
        return (padded.index_select(0 if batch_first else 1, unsorted_indices),
                lengths[unsorted_indices])
    return padded, lengths


def pack_sequence(sequences, enforce_sorted=True):
    """Sequences (L_i, *) packed: pad_sequence, then pack_padded_sequence."""
    lengths = _api.as_tensor([v.size(0) for v in sequences], dtype=_dtype.int64)
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def _check_fits(block, sequence):
    """PyTorch's errors (copy_'s) where `sequence` does not broadcast to the `block` it is
    copied into."""
    ndim = max(len(block), len(sequence))
    a, b = ((1,) * (ndim - len(s)) + tuple(s) for s in (block, sequence))
    for dim in reversed(range(ndim)):  # (the last mismatch, counted in the longer shape)
        if a[dim] != b[dim] and 1 not in (a[dim], b[dim]):
            raise RuntimeError(f"The size of tensor a ({a[dim]}) must match the size of tensor b "
                               f"({b[dim]}) at non-singleton dimension {dim}")
    broadcast = [max(x, y) if 0 not in (x, y) else 0 for x, y in zip(a, b)]
    if tuple(broadcast) != tuple(block):
        raise RuntimeError(f"output with shape {list(block)} doesn't match the broadcast shape "
                           f"{broadcast}")


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Sequences of shapes (L_i, *) stacked along a new batch dimension and padded with
    `padding_value` to the longest length (on `padding_side`): (max L, B, *), or (B, max L, *)
    if `batch_first`. The shape after L and the dtype are the first sequence's; the others are
    copied in (broadcast and cast), differentiably (CopySlices, as PyTorch)."""
    if not isinstance(sequences, Iterable):
        raise RuntimeError("pad_sequence: Expected iterable for input sequences, but got arg of "
                           f"type: {type(sequences)}")
    sequences = tuple(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    first = sequences[0]
    if first.dim() == 0:
        raise RuntimeError("ArrayRef: invalid slice, N = 1; size = 0")
    trailing = tuple(first.shape[1:])
    for sequence in sequences:
        if sequence.dim() == 0:
            raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    max_len = max(sequence.size(0) for sequence in sequences)
    if padding_side not in ("left", "right"):
        raise RuntimeError(f"Expected padding_side to be one of left or right, but got "
                           f"{padding_side}.")
    shape = (len(sequences), max_len) if batch_first else (max_len, len(sequences))
    out = full(shape + trailing, padding_value, dtype=first.dtype)
    for i, sequence in enumerate(sequences):
        length = sequence.size(0)
        _check_fits((length,) + trailing, tuple(sequence.shape))
        start = max_len - length if padding_side == "left" else 0
        steps = slice(start, start + length)
        out[(i, steps) if batch_first else (steps, i)] = sequence
    return out


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The padded batch (T, B, *) (or (B, T, *)) as a list of the sequences' first `lengths`
    steps, as PyTorch's.
    NOTE: as PyTorch's, a batch that is not batch_first is transposed in place (transpose_):
    the caller's tensor is (B, T, *) afterwards."""
    unpadded_sequences = []
    if not batch_first:
        padded_sequences.transpose_(0, 1)
    steps = _api.arange(padded_sequences.shape[1], device=lengths.device)
    for sequence, length in zip(padded_sequences, lengths, strict=True):
        unpadded_sequences.append(sequence[steps < length])
    return unpadded_sequences


def unpack_sequence(packed_sequences):
    """A PackedSequence as the list of its sequences, in their original order."""
    padded_sequences, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded_sequences, lengths, batch_first=True)
