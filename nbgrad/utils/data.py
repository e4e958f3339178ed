"""nbgrad.utils.data: PyTorch's import path (torch.utils.data) for `nbgrad.data`."""
from ..data import (Dataset, IterableDataset, TensorDataset, Subset, ConcatDataset,  # noqa: F401
                    random_split, DataLoader, default_collate, default_convert, Sampler,
                    SequentialSampler, RandomSampler, SubsetRandomSampler,
                    WeightedRandomSampler, BatchSampler, get_worker_info)
from ..data import __all__ as _data_names

__all__ = [name for name in _data_names if name != "load_digits"]
