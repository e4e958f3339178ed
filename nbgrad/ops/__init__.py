"""The primitive table. Importing this package declares every primitive (see `PRIMITIVES`)."""
from .primitive import PRIMITIVES, Primitive, register
from . import elementwise, reduction, linalg, shape, nn

# Eager mode may defer a call (nbgrad.autograd.deferred) that has a gradient and a fused rule,
# unless its output is a view: a copy made by a fused kernel would not share its memory.
for _prim in PRIMITIVES.values():
    _prim.deferrable = _prim.vjp is not None and _prim.fuse is not None and not _prim.view

__all__ = ["PRIMITIVES", "Primitive", "register", "elementwise", "reduction", "linalg", "shape"]
