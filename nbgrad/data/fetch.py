"""Fetchers: what makes one batch of a DataLoader, in the main process or in a worker (they
are picklable, for workers that are spawned rather than forked)."""
import itertools

import numpy as np

from .._tensor.tensor import Tensor

__all__ = ["MapFetcher", "TensorRows", "IterableFetcher"]


class MapFetcher:
    """The collated samples of a list of indices (one index's sample, without batching)."""

    def __init__(self, dataset, collate_fn, batched):
        self.dataset, self.collate_fn, self.batched = dataset, collate_fn, batched

    def __call__(self, indices):
        if not self.batched:
            return self.collate_fn(self.dataset[indices])
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.collate_fn(self.dataset.__getitems__(indices))
        return self.collate_fn([self.dataset[i] for i in indices])


class TensorRows:
    """The batch of a TensorDataset cut from its tensors at once: what default_collate makes
    of its samples, without the per-sample loop."""

    def __init__(self, dataset):
        self.tensors = dataset.tensors

    def __call__(self, indices):
        return [Tensor._wrap(np.ascontiguousarray(t._data[indices])) for t in self.tensors]


class IterableFetcher:
    """The next batch of an iterable dataset (the next sample, without batching); raises
    StopIteration when there is none (or only a short one, with `drop_last`)."""

    def __init__(self, dataset, collate_fn, batch_size, drop_last):
        self.dataset, self.collate_fn = dataset, collate_fn
        self.batch_size, self.drop_last = batch_size, drop_last
        self.samples = None

    def __call__(self, _):
        if self.samples is None:
            self.samples = iter(self.dataset)
        if self.batch_size is None:
            return self.collate_fn(next(self.samples))
        batch = list(itertools.islice(self.samples, self.batch_size))
        if not batch or (self.drop_last and len(batch) < self.batch_size):
            raise StopIteration
        return self.collate_fn(batch)
