"""nbgrad.linalg, PyTorch's torch.linalg namespace: the norms. (Matrix products are in
`nbgrad`; decompositions, solvers and singular values are not in nbgrad.)"""
from .._tensor.reductions import matrix_norm, vector_norm

__all__ = ["norm", "vector_norm", "matrix_norm"]


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a vector norm over one dim (or, without `ord`, every dim), a matrix
    norm over two; without `dim` but with `ord`, the input must be 1-D or 2-D."""
    if dim is not None:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        if len(dims) not in (1, 2):
            raise RuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. "
                               f"Got {list(dims)}")
    elif ord is not None:
        if A.ndim not in (1, 2):
            raise RuntimeError("linalg.norm: If dim is not specified but ord is, the input must "
                               f"be 1D or 2D. Got {A.ndim}D.")
        dims = tuple(range(A.ndim))
    if ord is None:  # the 2-norm of a vector and the Frobenius norm of a matrix are one norm
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if len(dims) == 2:
        return matrix_norm(A, ord, dims, keepdim, dtype=dtype)
    return vector_norm(A, ord, dims, keepdim, dtype=dtype)
