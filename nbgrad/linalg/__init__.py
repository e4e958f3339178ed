"""nbgrad.linalg, PyTorch's torch.linalg namespace: the norms (defined with the other
reductions, `nbgrad._tensor.reductions`). Matrix products are in `nbgrad`; decompositions,
solvers and singular values are not in nbgrad."""
from .._tensor.reductions import linalg_norm as norm, matrix_norm, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm"]
