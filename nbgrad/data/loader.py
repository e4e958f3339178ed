"""DataLoader: batches of a dataset, as PyTorch's (torch.utils.data.DataLoader), made in the
main process or by worker processes (`num_workers`, see `workers`). It draws from the
generators as PyTorch does (a base seed per epoch, then the sampler's permutation), so a
seeded shuffle gives PyTorch's batches."""
import itertools
import warnings

from . import workers
from .collate import default_collate, default_convert
from .dataset import IterableDataset, TensorDataset
from .fetch import IterableFetcher, MapFetcher, TensorRows
from .sampler import BatchSampler, RandomSampler, SequentialSampler, draw_seed

__all__ = ["DataLoader"]


class DataLoader:
    """Batches of `dataset` (map-style or iterable), collated by `collate_fn`, made in the main
    process (`num_workers=0`) or by `num_workers` worker processes."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device=""):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if persistent_workers:
            raise NotImplementedError("nbgrad's DataLoader starts its workers each epoch: "
                                      "persistent_workers=True is not supported")
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = 2 if num_workers and prefetch_factor is None else prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator

        if isinstance(dataset, IterableDataset):
            for name, value in (("shuffle", shuffle), ("sampler", sampler),
                                ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                     f"{name} option, but got {name}={value}")
        elif shuffle not in {False, None} and sampler is not None:
            raise ValueError("sampler option is mutually exclusive with shuffle")

        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None and not isinstance(dataset, IterableDataset):
            sampler = (RandomSampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None and sampler is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn or (default_collate if self._auto_collation
                                         else default_convert)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None or (
            isinstance(self.dataset, IterableDataset) and self.batch_size is not None)

    def __len__(self):
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def __iter__(self):
        if self.pin_memory:
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=2)
        # PyTorch draws a base seed (its workers' seeds) each epoch, before any index: drawing
        # it here keeps the streams PyTorch's.
        base_seed = draw_seed(self.generator)
        fetch, tasks = self._fetcher()
        if self.num_workers:
            return workers.batches(self, fetch, tasks, base_seed)
        return _batches(fetch, tasks)

    def _fetcher(self):
        """What makes a batch, and what each batch is made from (lists of indices, single
        indices without batching, nothing for an iterable dataset)."""
        if isinstance(self.dataset, IterableDataset):
            return (IterableFetcher(self.dataset, self.collate_fn, self.batch_size,
                                    self.drop_last), itertools.repeat(None))
        if self.batch_sampler is None:
            return MapFetcher(self.dataset, self.collate_fn, batched=False), self.sampler
        if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate and \
                not any(t.requires_grad for t in self.dataset.tensors):
            # Stacking samples of a tensor that requires grad records the stack: not here.
            return TensorRows(self.dataset), self.batch_sampler
        return MapFetcher(self.dataset, self.collate_fn, batched=True), self.batch_sampler


def _batches(fetch, tasks):
    for task in tasks:
        try:
            batch = fetch(task)
        except StopIteration:  # an iterable dataset ran out
            return
        yield batch
