"""The primitive table. Importing this package declares every primitive (see `PRIMITIVES`),
one module per family."""
from .primitive import PRIMITIVES, Primitive, register
from . import elementwise, reduction, rowwise, linalg, shape, indexing, losses, embedding

__all__ = ["PRIMITIVES", "Primitive", "register", "elementwise", "reduction", "rowwise", "linalg",
           "shape", "indexing", "losses", "embedding"]
