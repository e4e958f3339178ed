"""nbgrad.backends: the backend flags tutorials read or set (`torch.backends.mps`,
`torch.backends.cudnn`, `torch.backends.cuda`), as a CPU-only PyTorch has them."""
from . import cuda, cudnn, mps

__all__ = ["cuda", "cudnn", "mps"]
