"""nbgrad.linalg, PyTorch's torch.linalg namespace: the norms (defined with the other
reductions, `nbgrad._tensor.reductions`), and the solvers and decompositions
(`nbgrad._tensor.decompositions`). Matrix products are in `nbgrad`."""
from .._tensor.decompositions import (cholesky, cholesky_ex, det, eigh, eigvalsh, inv,
                                      linalg_cross as cross, linalg_slogdet as slogdet,
                                      linalg_svd as svd, lstsq, matrix_power, matrix_rank,
                                      multi_dot, pinv, qr, solve, svdvals)
from ..ops.decompositions import LinAlgError
from .._tensor.reductions import linalg_norm as norm, matrix_norm, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm", "LinAlgError", "inv", "solve", "det", "slogdet",
           "cholesky", "cholesky_ex", "eigh", "eigvalsh", "svd", "svdvals", "qr", "pinv", "lstsq",
           "matrix_rank", "multi_dot", "cross", "matrix_power"]
