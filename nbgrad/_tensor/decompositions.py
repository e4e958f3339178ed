"""torch.linalg's solvers and decompositions of square matrices (the primitives of
nbgrad.ops.decompositions), and their torch-level and method forms (`torch.inverse`,
`torch.det`, `torch.logdet`, `Tensor.inverse`, ...)."""
from ..ops import PRIMITIVES
from ..ops.decompositions import LinAlgError, check_not_half
from .arithmetic import where
from .dispatch import dispatch
from .reductions import _return_type
from .tensor import Tensor, _meta

__all__ = ["inverse", "det", "logdet", "slogdet"]

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


METHODS = {"inverse": inverse, "det": det, "slogdet": slogdet, "logdet": logdet}
