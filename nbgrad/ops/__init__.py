"""The primitive table. Importing this package declares every primitive (see `PRIMITIVES`)."""
from .primitive import PRIMITIVES, Primitive, register
from . import elementwise, reduction, linalg, shape, nn

__all__ = ["PRIMITIVES", "Primitive", "register", "elementwise", "reduction", "linalg", "shape"]
