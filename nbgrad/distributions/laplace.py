"""torch.distributions.Laplace."""
from .._tensor import api as _api
from . import constraints
from .distribution import Distribution
from .utils import _NO_SHAPE

__all__ = ["Laplace"]


class Laplace(Distribution):
    """The Laplace distribution of location `loc` and scale `scale`."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self._set_parameters(validate_args, loc=loc, scale=scale)

    def expand(self, batch_shape, _instance=None):
        return self._expand_parameters(Laplace, batch_shape, _instance, "loc", "scale")

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return 2 * self.scale.pow(2)

    @property
    def stddev(self):
        return (2 ** 0.5) * self.scale

    def rsample(self, sample_shape=_NO_SHAPE):
        shape = self._extended_shape(sample_shape)
        # u in [eps - 1, 1): never -1, whose log1p(-|u|) would be -inf
        u = _api.empty(shape, dtype=self.loc.dtype).uniform_(_api.finfo(self.loc.dtype).eps - 1, 1)
        return self.loc - self.scale * u.sign() * _api.log1p(-u.abs())

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -_api.log(2 * self.scale) - _api.abs(value - self.loc) / self.scale

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 - 0.5 * (value - self.loc).sign() * _api.expm1(
            -(value - self.loc).abs() / self.scale)

    def icdf(self, value):
        term = value - 0.5
        return self.loc - self.scale * term.sign() * _api.log1p(-2 * term.abs())

    def entropy(self):
        return 1 + _api.log(2 * self.scale)
