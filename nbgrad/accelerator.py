"""nbgrad.accelerator: torch.accelerator on a CPU-only machine (no accelerator)."""

__all__ = ["is_available", "current_accelerator", "device_count"]


def is_available():
    return False


def current_accelerator(check_available=False):
    """None: there is no accelerator (with `check_available` or without)."""
    return None


def device_count():
    return 0
