"""torch.linalg's solvers and decompositions of square matrices (the primitives of
nbgrad.ops.decompositions), and their torch-level and method forms (`torch.inverse`,
`torch.det`, `torch.logdet`, `Tensor.inverse`, ...)."""
import math

import numpy as np

from ..ops import PRIMITIVES
from ..ops.decompositions import (QR_MODES, LinAlgError, check_not_half, eigh_shapes, qr_shapes,
                                  svd_shapes)
from .arithmetic import where
from .dispatch import dispatch
from .reductions import _return_type
from .tensor import Tensor, _meta

__all__ = ["inverse", "det", "logdet", "slogdet", "svd", "qr", "pinverse"]

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
    return dispatch(PRIMITIVES["linalg_cholesky"], (A,), {"upper": bool(upper)})




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


METHODS = {"inverse": inverse, "det": det, "slogdet": slogdet, "logdet": logdet, "svd": svd,
           "qr": qr, "pinverse": pinverse}
