"""`nbgrad.save` and `nbgrad.load`: PyTorch's checkpoint format (the zip archive `torch.save`
writes) without PyTorch, both ways: a checkpoint saved by torch loads in nbgrad, and one saved
by nbgrad loads with `torch.load(weights_only=True)`. `format` describes the archive, `writer`
writes it and `reader` reads it without running code from the file."""
from .reader import load
from .writer import save

__all__ = ["save", "load"]
