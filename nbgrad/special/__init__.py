"""nbgrad.special, PyTorch's torch.special namespace: the functions of it that nbgrad has,
which are nbgrad's functions under torch.special's names (`expit` is `sigmoid`), or thin
forms of them where torch.special's differ (a required `dim`, `round`'s overload).

Not here, as nbgrad has no kernel for them: airy_ai, the Bessel functions (bessel_*,
modified_bessel_*, scaled_modified_bessel_*, spherical_bessel_j0, i0, i0e, i1, i1e), the
orthogonal polynomials (chebyshev_*, shifted_chebyshev_*, hermite_*, laguerre_polynomial_l,
legendre_polynomial_p), digamma/psi, polygamma, gammaln, multigammaln, gammainc, gammaincc,
zeta, entr, erfcx, erfinv, ndtr, ndtri, log_ndtr and xlog1py."""
from .._tensor import reductions as _reductions
from .._tensor.api import (erf, erfc, exp2, expm1, log1p, logit, round as _round,
                           sigmoid as expit, sinc, xlogy)

__all__ = ["expit", "erf", "erfc", "exp2", "expm1", "log1p", "logit", "xlogy", "sinc", "round",
           "softmax", "log_softmax", "logsumexp"]

# torch.special's forms of these take `dim` as required: its name in their TypeError.
_REQUIRED = object()


def _dim_required(name, dim):
    if dim is _REQUIRED:
        raise TypeError(f'special_{name}() missing 1 required positional arguments: "dim"')


def softmax(input, dim=_REQUIRED, dtype=None):
    _dim_required("softmax", dim)
    return _reductions.softmax(input, dim, dtype)


def log_softmax(input, dim=_REQUIRED, dtype=None):
    _dim_required("log_softmax", dim)
    return _reductions.log_softmax(input, dim, dtype)


def logsumexp(input, dim=_REQUIRED, keepdim=False):
    _dim_required("logsumexp", dim)
    return _reductions.logsumexp(input, dim, keepdim)


def round(input, *, decimals=0):
    """torch.special.round: torch.round's overload with `decimals` (RoundBackward1), even
    when none are given."""
    return _round(input, decimals=decimals)
