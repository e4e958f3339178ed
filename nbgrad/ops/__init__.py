"""The primitive table. Importing this package declares every primitive (see `PRIMITIVES`),
one module per family."""
from .primitive import PRIMITIVES, Primitive, register
from . import elementwise, reduction, rowwise, linalg, shape, indexing, losses, embedding
from . import sorting, histogram
from . import resample
from . import grid
from . import normalization
from . import pooling
from . import conv
from . import recurrence
from . import decompositions
from . import gradients  # the engine's arithmetic (sum_to), on the families above

__all__ = ["PRIMITIVES", "Primitive", "register", "elementwise", "reduction", "rowwise", "linalg",
           "shape", "indexing", "losses", "embedding", "sorting", "histogram", "resample", "grid",
           "normalization", "pooling", "conv", "recurrence", "decompositions", "gradients"]
