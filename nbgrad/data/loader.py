"""Dataset, TensorDataset and DataLoader."""
import numpy as np

from .._tensor import factories
from .._tensor.tensor import Tensor


class Dataset:
    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given tensors (all of one length)."""

    def __init__(self, *tensors):
        if any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("Size mismatch between tensors")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


class DataLoader:
    """Batches of a dataset, reshuffled every epoch with nbgrad's generator (`manual_seed`).

    A TensorDataset is batched by indexing its tensors with the batch's indices at once; any
    other dataset is read sample by sample and the samples stacked.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None):
        if batch_size is None or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = ((self.generator or factories.generator()).permutation(n) if self.shuffle
                 else np.arange(n))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])

    def _batch(self, indices):
        if isinstance(self.dataset, TensorDataset):
            return [Tensor._wrap(np.ascontiguousarray(t._data[indices]))
                    for t in self.dataset.tensors]
        samples = [self.dataset[int(i)] for i in indices]
        return _collate(samples)


def _collate(samples):
    """Stack a list of samples (tensors, arrays, numbers, or tuples of them) into a batch."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return [_collate([s[i] for s in samples]) for i in range(len(first))]
    arrays = [s._data if isinstance(s, Tensor) else np.asarray(s) for s in samples]
    return Tensor._wrap(np.stack(arrays))
