"""nbgrad.cuda: what torch.cuda answers on a machine without CUDA, so that
`device = "cuda" if torch.cuda.is_available() else "cpu"` picks the CPU."""
from .._tensor.device import checked as _checked

__all__ = ["is_available", "device_count", "current_device", "manual_seed", "manual_seed_all"]


def is_available():
    return False


def device_count():
    return 0


def current_device():
    _checked("cuda")


def manual_seed(seed):
    """A no-op without CUDA, as in PyTorch (which seeds CUDA generators lazily)."""


def manual_seed_all(seed):
    """A no-op without CUDA, as in PyTorch."""
