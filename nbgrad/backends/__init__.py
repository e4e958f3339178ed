"""nbgrad.backends: the backend flags tutorials read or set (`torch.backends.mps`,
`torch.backends.cudnn`), as a CPU-only PyTorch has them."""
from . import cudnn, mps

__all__ = ["cudnn", "mps"]
