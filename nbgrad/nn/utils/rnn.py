"""Sequences of different lengths (torch/nn/utils/rnn.py): pad_sequence.

NOTE: PackedSequence (pack_padded_sequence, pad_packed_sequence, pack_sequence) is not here:
nbgrad's RNNs take padded tensors only.
"""
from collections.abc import Iterable

from ..._tensor.factories import full

__all__ = ["pad_sequence"]


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
