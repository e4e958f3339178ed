"""nbgrad.data: datasets and batching (PyTorch's torch.utils.data API), and the digits set."""
from .loader import Dataset, TensorDataset, DataLoader
from .digits import load_digits

__all__ = ["Dataset", "TensorDataset", "DataLoader", "load_digits"]
