"""torch.linalg's solvers and decompositions of square matrices (the primitives of
nbgrad.ops.decompositions), and their torch-level and method forms (`torch.inverse`,
`torch.det`, `torch.logdet`, `Tensor.inverse`, ...)."""
import math

import numpy as np

from .._core import dtype as _dtype
from ..autograd.grad_mode import no_grad
from ..ops import PRIMITIVES
from ..ops.decompositions import (QR_MODES, check_not_half, eigh_shapes, pinv_tolerances,
                                  qr_shapes, svd_shapes)
from .arithmetic import masked_fill, where
from .factories import eye
from .linalg import cross
from .dispatch import dispatch
from .reductions import _return_type
from .tensor import Tensor, _meta

__all__ = ["inverse", "det", "logdet", "slogdet", "svd", "qr", "pinverse", "matrix_power"]

_SlogdetLinalg = _return_type("linalg_slogdet", ("sign", "logabsdet"))
_Slogdet = _return_type("slogdet", ("sign", "logabsdet"))


def _check_tensor(name, A):
    """`A` is a Tensor of a dtype with a LAPACK kernel. NOTE: checked before dispatch, which
    would run a float16 call again in float32 after the primitive's own check refused it."""
    if not isinstance(A, Tensor):
        raise TypeError(f"{name.replace('.', '_')}(): argument 'A' (position 1) must be Tensor, "
                        f"not {type(A).__name__}")
    check_not_half(name, _meta(A))


def inv(A):
    _check_tensor("linalg.inv", A)
    return dispatch(PRIMITIVES["linalg_inv"], (A,))


def inverse(input):
    return inv(input)


def solve(A, B, *, left=True):
    """X with A X = B (left) or X A = B; B is a vector, or a batch of them, where it is 1-D
    or has A's shape without the last dim."""
    _check_tensor("linalg.solve", A)
    return dispatch(PRIMITIVES["linalg_solve"], (A, B), {"left": bool(left)})


def det(A):
    _check_tensor("linalg.det", A)
    return dispatch(PRIMITIVES["linalg_det"], (A,))


def _slogdet_parts(A):
    _check_tensor("linalg.slogdet", A)
    return (dispatch(PRIMITIVES["linalg_slogdet_sign"], (A,)),
            dispatch(PRIMITIVES["linalg_slogdet"], (A,)))


def linalg_slogdet(A):
    """(sign, log|det A|). NOTE: the sign carries no node (PyTorch's shares logabsdet's, and
    gives it no gradient)."""
    return _SlogdetLinalg(_slogdet_parts(A))


def slogdet(input):
    return _Slogdet(_slogdet_parts(input))


def logdet(input):
    """log det: NaN where the determinant is negative (-inf where it is 0)."""
    sign, logabsdet = _slogdet_parts(input)
    return where(sign < 0, float("nan"), logabsdet)


def cholesky(A, *, upper=False):
    _check_tensor("linalg.cholesky", A)
    return dispatch(PRIMITIVES["linalg_cholesky"], (A,),
                    {"upper": bool(upper), "errors": "linalg.cholesky"})


_CholeskyEx = _return_type("linalg_cholesky_ex", ("L", "info"))


def cholesky_ex(A, *, upper=False, check_errors=False):
    """(L, info): where a matrix is not positive-definite, info is the order of the leading
    minor that is not, and L what LAPACK's potrf left (unless check_errors, which raises)."""
    _check_tensor("linalg.cholesky_ex", A)
    factor = dispatch(PRIMITIVES["linalg_cholesky"], (A,), {
        "upper": bool(upper), "errors": "linalg.cholesky_ex" if check_errors else None})
    return _CholeskyEx((factor, dispatch(PRIMITIVES["linalg_cholesky_info"], (A,))))




def _parts(packed, shapes, grad_fn):
    """The parts of a packed decomposition (nbgrad.ops.decompositions), each (*batch,
    *shape), under the decomposition's grad_fn name."""
    batch, total = packed.shape[:-1], packed.shape[-1]
    starts = np.arange(math.prod(batch), dtype=np.int64) * total
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        positions = (starts.reshape(batch + (1,) * len(shape))
                     + (offset + np.arange(size, dtype=np.int64)).reshape(shape))
        parts.append(dispatch(PRIMITIVES["take"], (packed,), {"positions": positions},
                              grad_fn_name=grad_fn))
        offset += size
    return parts


def _check_uplo(UPLO):
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")


_Eigh = _return_type("linalg_eigh", ("eigenvalues", "eigenvectors"))


def eigh(A, UPLO="L"):
    """The eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices, from
    their lower (UPLO="L") or upper triangle."""
    _check_tensor("linalg.eigh", A)
    _check_uplo(UPLO)
    packed = dispatch(PRIMITIVES["linalg_eigh"], (A,), {"UPLO": UPLO})
    return _Eigh(_parts(packed, eigh_shapes(*A.shape[-2:]), "LinalgEighBackward0"))


def eigvalsh(A, UPLO="L"):
    return eigh(A, UPLO).eigenvalues


_LinalgSvd = _return_type("linalg_svd", ("U", "S", "Vh"))
_Svd = _return_type("svd", ("U", "S", "V"))


def _svd_parts(A, full_matrices):
    _check_tensor("linalg.svd", A)
    full_matrices = bool(full_matrices)
    packed = dispatch(PRIMITIVES["linalg_svd"], (A,), {"full_matrices": full_matrices})
    return _parts(packed, svd_shapes(*A.shape[-2:], full_matrices), "LinalgSvdBackward0")


def linalg_svd(A, full_matrices=True):
    """A = U diag(S) Vh, the singular values S descending."""
    return _LinalgSvd(_svd_parts(A, full_matrices))


def svdvals(A):
    return _svd_parts(A, False)[1]


def svd(input, some=True, compute_uv=True):
    """torch.svd: V (not Vh), reduced unless some=False; without compute_uv, zeros for U
    and V (full-size, as PyTorch's)."""
    if not compute_uv:
        s = svdvals(input)
        batch, (m, n) = tuple(input.shape[:-2]), input.shape[-2:]
        return _Svd((s.new_zeros(batch + (m, m)), s, s.new_zeros(batch + (n, n))))
    u, s, vh = _svd_parts(input, not some)
    return _Svd((u, s, vh.mT))


_Qr = _return_type("linalg_qr", ("Q", "R"))


def qr(A, mode="reduced"):
    """A = Q R, Q with orthonormal columns, R upper triangular; mode "complete" gives a
    square Q, mode "r" only R (and an empty Q)."""
    _check_tensor("linalg.qr", A)
    if mode not in QR_MODES:
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           "'reduced' (default), 'r', or 'complete'")
    packed = dispatch(PRIMITIVES["linalg_qr"], (A,), {"mode": mode})
    q_shape, r_shape = qr_shapes(*A.shape[-2:], mode)
    if mode == "r":  # (an empty Q without the batch dims, as PyTorch's)
        return _Qr((_parts(packed[(0,) * (A.ndim - 2)], [q_shape], "LinalgQrBackward0")[0],
                    _parts(packed, [q_shape, r_shape], "LinalgQrBackward0")[1]))
    return _Qr(_parts(packed, [q_shape, r_shape], "LinalgQrBackward0"))


def _tolerance(value, name):
    """A tolerance as a number (PyTorch also takes a tensor: a 0-d one is its number)."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise NotImplementedError(f"linalg.pinv: nbgrad takes {name} as a number or a 0-d "
                                      "tensor")
        return value.item()
    return None if value is None else float(value)


def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """The pseudo-inverse, from the singular values (eigenvalues where `hermitian`) above
    max(atol, rtol * the largest); rtol defaults to eps * max(m, n) (0 where atol > 0)."""
    _check_tensor("linalg.pinv", A)
    return dispatch(PRIMITIVES["linalg_pinv"], (A,), {
        "atol": _tolerance(atol, "atol"), "rtol": _tolerance(rtol, "rtol"),
        "hermitian": bool(hermitian)})


def pinverse(input, rcond=1e-15):
    return pinv(input, rtol=rcond)


# --- composites -------------------------------------------------------------------------------

def _singular_value_threshold(A, atol, rtol, hermitian):
    """The singular values (|eigenvalues| where hermitian) of A, no gradient, and the
    threshold above which pinv and matrix_rank keep them (pinv_tolerances)."""
    with no_grad():
        values = eigvalsh(A).abs() if hermitian else svdvals(A)
    atol, rtol = pinv_tolerances(_meta(A).dtype, *A.shape[-2:], _tolerance(atol, "atol"),
                                 _tolerance(rtol, "rtol"))
    if values.shape[-1] == 0:
        return values, atol
    return values, (values.amax(-1, keepdim=True) * rtol).clamp(min=atol)


def _check_lapack_dtype(*tensors):
    for A in tensors:
        if not A.dtype.is_floating_point:
            raise RuntimeError("This function doesn't handle types other than float and double")


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False):
    """The number of singular values above max(atol, rtol * the largest), as pinv's."""
    if A.ndim < 2:
        raise RuntimeError("torch.linalg.matrix_rank: The input tensor input must have at least 2 "
                           "dimensions.")
    _check_lapack_dtype(A)
    values, threshold = _singular_value_threshold(A, atol, rtol, hermitian)
    return (values > threshold).sum(-1)


_Lstsq = _return_type("linalg_lstsq", ("solution", "residuals", "rank", "singular_values"))
_LSTSQ_DRIVERS = ("gels", "gelsy", "gelsd", "gelss")


def lstsq(A, B, rcond=None, *, driver=None):
    """The least-squares solution X of A X = B (minimum-norm where A is rank deficient, as
    through pinv with rtol=rcond), with the other fields as PyTorch's CPU drivers give them:
    gelsy (the default) the rank only; gelsd and gelss the rank, the singular values, and
    the squared residuals of full-rank tall A; gels the residuals.
    NOTE: a composite (nbgrad's nodes, not LinalgLstsqBackward0); ranks come from the
    singular values, where gelsy estimates them from a pivoted QR (they agree but at the
    threshold)."""
    driver = "gelsy" if driver is None else driver
    if driver not in _LSTSQ_DRIVERS:
        raise RuntimeError("torch.linalg.lstsq: parameter `driver` should be one of "
                           "(gels, gelsy, gelsd, gelss)")
    if not (A.ndim >= B.ndim and A.ndim - B.ndim <= 1):
        raise RuntimeError("torch.linalg.lstsq: input.dim() must be greater or equal to "
                           "other.dim() and (input.dim() - other.dim()) <= 1")
    _check_lapack_dtype(A, B)
    if A.dtype != B.dtype:
        raise RuntimeError(f"torch.linalg.lstsq: Expected input and other to have the same dtype, "
                           f"but got input's dtype {A.dtype.scalar_type} and other's dtype "
                           f"{B.dtype.scalar_type}")
    vector = B.ndim == A.ndim - 1
    columns = B.unsqueeze(-1) if vector else B
    if columns.shape[-2] != A.shape[-2]:
        raise RuntimeError("torch.linalg.lstsq: input.size(-2) should match other.size(-2)")
    m, n = A.shape[-2:]
    solution = pinv(A, rtol=rcond) @ columns
    empty = A.new_zeros((0,))
    rank = matrix_rank(A, rtol=rcond) if driver != "gels" else \
        empty.to(dtype=_dtype.int64)
    residuals = empty
    if driver != "gelsy" and m > n and bool((matrix_rank(A, rtol=rcond) == n).all()):
        residuals = ((A @ solution - columns) ** 2).sum(-2)
    with no_grad():
        singular_values = svdvals(A) if driver in ("gelsd", "gelss") else empty
    return _Lstsq((solution[..., 0] if vector else solution, residuals, rank, singular_values))


def multi_dot(tensors):
    """The product of a chain of matrices (the first may be a row vector, the last a column
    vector), in the order of fewest multiplications."""
    count = len(tensors)
    if count < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {count}")
    for i, (position, tensor) in enumerate(zip(("first", *["middle"] * (count - 2), "last"),
                                               tensors)):
        if position != "middle" and tensor.ndim not in (1, 2):
            raise RuntimeError(f"multi_dot(): the {position} tensor must be 1D or 2D but got "
                               f"{tensor.ndim}D")
        if position == "middle" and tensor.ndim != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {tensor.ndim}D")
    first, last = tensors[0], tensors[-1]
    chain = [first.unsqueeze(0) if first.ndim == 1 else first, *tensors[1:-1],
             last.unsqueeze(-1) if last.ndim == 1 else last]
    for i in range(count - 1):
        if chain[i].shape[1] != chain[i + 1].shape[0]:
            raise RuntimeError(f"multi_dot(): tensors {i} and {i + 1} with shapes "
                               f"{list(tensors[i].shape)} and {list(tensors[i + 1].shape)} "
                               "cannot be multiplied")
    sizes = [chain[0].shape[0]] + [x.shape[1] for x in chain]
    split = _chain_order(sizes)

    def product(i, j):
        if i == j:
            return chain[i]
        k = split[i][j]
        return product(i, k) @ product(k + 1, j)

    result = product(0, count - 1)
    if first.ndim == 1:
        result = result.squeeze(0)
    return result.squeeze(-1) if last.ndim == 1 else result


def _chain_order(sizes):
    """split[i][j]: where the product of matrices i..j (sizes[i] x sizes[i + 1], ...) splits
    in the order of fewest multiplications (the textbook dynamic programme)."""
    count = len(sizes) - 1
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for length in range(1, count):
        for i in range(count - length):
            j = i + length
            cost[i][j], split[i][j] = min(
                (cost[i][k] + cost[k + 1][j] + sizes[i] * sizes[k + 1] * sizes[j + 1], k)
                for k in range(i, j))
    return split


def linalg_cross(input, other, *, dim=-1):
    return cross(input, other, dim=dim)


def matrix_power(A, n):
    """A @ A @ ... (n times) by repeated squaring; the inverse's powers where n < 0; the
    identity (with a zero gradient) where n = 0."""
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_power: The input tensor A must have at least 2 "
                           "dimensions.")
    if A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.matrix_power: A must be batches of square matrices, but they "
                           f"are {A.shape[-2]} by {A.shape[-1]} matrices")
    if n == 0:
        identity = eye(A.shape[-1], dtype=A.dtype)
        return masked_fill(A, Tensor._wrap(np.ones((), bool)), 0) + identity
    if n == 1:
        return A.clone()
    power, base, result = abs(n), (inv(A) if n < 0 else A), None
    while True:
        if power & 1:
            result = base if result is None else result @ base
        power >>= 1
        if not power:
            return result
        base = base @ base


METHODS = {"inverse": inverse, "det": det, "slogdet": slogdet, "logdet": logdet, "svd": svd,
           "qr": qr, "pinverse": pinverse, "matrix_power": matrix_power}
