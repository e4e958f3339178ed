"""nbgrad.data: datasets, samplers, collation and batching (PyTorch's torch.utils.data API,
which `nbgrad.utils.data` names), and the digits set."""
from .collate import default_collate, default_convert
from .dataset import (Dataset, IterableDataset, TensorDataset, Subset, ConcatDataset,
                      random_split)
from .digits import load_digits
from .loader import DataLoader
from .workers import get_worker_info
from .sampler import (Sampler, SequentialSampler, RandomSampler, SubsetRandomSampler,
                      WeightedRandomSampler, BatchSampler)

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
           "random_split", "DataLoader", "default_collate", "default_convert", "Sampler",
           "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "get_worker_info", "load_digits"]
