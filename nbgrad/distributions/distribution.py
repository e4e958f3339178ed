"""torch.distributions.Distribution: the base class (shapes, validation, repr, sampling
through `rsample`), and ExponentialFamily, whose entropy and KL divergence come from its log
normalizer (Bregman divergences, by autograd)."""
import warnings

from .. import autograd as _autograd
from .._tensor import api as _api
from .._tensor.tensor import Size, Tensor
from ..autograd.grad_mode import no_grad
from . import constraints
from .utils import _NO_SHAPE, _NUMBER, _extended, broadcast_all, lazy_property

__all__ = ["Distribution", "ExponentialFamily"]


class Distribution:
    """A batch of distributions of shape `batch_shape`, each over events of `event_shape`.

    Validation (`validate_args`, on by default as in PyTorch: `python -O` turns it off)
    checks the parameters against `arg_constraints` when made, and the values given to
    `log_prob` against `support`."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args = __debug__

    @staticmethod
    def set_default_validate_args(value):
        if value not in [True, False]:
            raise ValueError
        Distribution._validate_args = value

    def __init__(self, batch_shape=_NO_SHAPE, event_shape=_NO_SHAPE, validate_args=None):
        self._batch_shape = Size(batch_shape)
        self._event_shape = Size(event_shape)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            self._check_parameters()

    def _check_parameters(self):
        try:
            arg_constraints = self.arg_constraints
        except NotImplementedError:
            arg_constraints = {}
            warnings.warn(f"{self.__class__} does not define `arg_constraints`. Please set "
                          f"`arg_constraints = {{}}` or initialize the distribution with "
                          f"`validate_args=False` to turn off validation.", stacklevel=3)
        for param, constraint in arg_constraints.items():
            if constraints.is_dependent(constraint):
                continue
            if param not in self.__dict__ and isinstance(getattr(type(self), param),
                                                         lazy_property):
                continue  # not given: computed from the other parametrization when asked
            value = getattr(self, param)
            if not constraint.check(value).all():
                raise ValueError(f"Expected parameter {param} ({type(value).__name__} of shape "
                                 f"{tuple(value.shape)}) of distribution {self!r} to satisfy "
                                 f"the constraint {constraint!r}, but found invalid "
                                 f"values:\n{value}")

    def _set_parameters(self, validate_args, **parameters):
        """Parameters (numbers or tensors) broadcast together as attributes, the batch shape
        theirs (() when all are numbers), then validated."""
        tensors = broadcast_all(*parameters.values())
        self.__dict__.update(zip(parameters, tensors))
        numbers = all(isinstance(value, _NUMBER) for value in parameters.values())
        Distribution.__init__(self, Size() if numbers else tensors[0].size(),
                              validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        raise NotImplementedError

    def _expand_parameters(self, cls, batch_shape, _instance, *names):
        """`expand` of a distribution whose parameters `names` have the batch shape."""
        batch_shape = Size(batch_shape)
        return self._expanded(cls, batch_shape, _instance,
                              **{name: getattr(self, name).expand(batch_shape) for name in names})

    def _expanded(self, cls, batch_shape, _instance, **parameters):
        """A new instance of this class with batch shape `batch_shape` and the given
        parameters (expanded views), not validated again (PyTorch's `expand`)."""
        new = self._get_checked_instance(cls, _instance)
        new.__dict__.update(parameters)
        Distribution.__init__(new, batch_shape, self._event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _get_checked_instance(self, cls, _instance=None):
        if _instance is None and type(self).__init__ != cls.__init__:
            raise NotImplementedError(
                f"Subclass {self.__class__.__name__} of {cls.__name__} that defines a custom "
                f"__init__ method must also define a custom .expand() method.")
        return self.__new__(type(self)) if _instance is None else _instance

    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def event_shape(self):
        return self._event_shape

    @property
    def arg_constraints(self):
        raise NotImplementedError

    @property
    def support(self):
        raise NotImplementedError

    @property
    def mean(self):
        raise NotImplementedError

    @property
    def mode(self):
        raise NotImplementedError(f"{self.__class__} does not implement mode")

    @property
    def variance(self):
        raise NotImplementedError

    @property
    def stddev(self):
        return self.variance.sqrt()

    def sample(self, sample_shape=_NO_SHAPE):
        with no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=_NO_SHAPE):
        raise NotImplementedError

    def sample_n(self, n):
        warnings.warn("`sample_n(n)` will be deprecated. Use `sample((n,))` instead.",
                      FutureWarning, stacklevel=2)
        return self.sample(Size((n,)))

    def log_prob(self, value):
        raise NotImplementedError

    def cdf(self, value):
        raise NotImplementedError

    def icdf(self, value):
        raise NotImplementedError

    def enumerate_support(self, expand=True):
        raise NotImplementedError

    def entropy(self):
        raise NotImplementedError

    def perplexity(self):
        return _api.exp(self.entropy())

    def _extended_shape(self, sample_shape=_NO_SHAPE):
        return _extended(sample_shape, self._batch_shape, self._event_shape)

    def _validate_sample(self, value):
        """PyTorch's checks of a value given to log_prob: a tensor, its rightmost dimensions
        the event shape, broadcastable with the batch, inside the support."""
        if not isinstance(value, Tensor):
            raise ValueError("The value argument to log_prob must be a Tensor")
        shape = Size(value.shape)
        event_start = len(shape) - len(self._event_shape)
        if shape[event_start:] != self._event_shape:
            raise ValueError(f"The right-most size of value must match event_shape: {shape} vs "
                             f"{self._event_shape}.")
        expected = _extended(self._batch_shape, self._event_shape)
        for i, j in zip(reversed(shape), reversed(expected)):
            if i != 1 and j != 1 and i != j:
                raise ValueError(f"Value is not broadcastable with batch_shape+event_shape: "
                                 f"{shape} vs {expected}.")
        try:
            support = self.support
        except NotImplementedError:
            warnings.warn(f"{self.__class__} does not define `support` to enable sample "
                          f"validation. Please initialize the distribution with "
                          f"`validate_args=False` to turn off validation.", stacklevel=3)
            return
        if not support.check(value).all():
            raise ValueError(f"Expected value argument ({type(value).__name__} of shape "
                             f"{tuple(value.shape)}) to be within the support ({support!r}) "
                             f"of the distribution {self!r}, but found invalid values:\n{value}")

    def __repr__(self):
        # A parameter of one element shows its value, a larger one its size.
        params = [name for name in self.arg_constraints if name in self.__dict__]
        shown = ", ".join(
            f"{name}: {value if value.numel() == 1 else value.size()}"
            for name, value in ((name, self.__dict__[name]) for name in params))
        return f"{type(self).__name__}({shown})"


class ExponentialFamily(Distribution):
    """A distribution of an exponential family: p(x) = exp(<t(x), theta> - F(theta) + k(x)).
    Subclasses give `_natural_params` (theta), `_log_normalizer` (F) and
    `_mean_carrier_measure` (E[k(x)]); the entropy comes from F and its gradient."""

    @property
    def _natural_params(self):
        raise NotImplementedError

    def _log_normalizer(self, *natural_params):
        raise NotImplementedError

    @property
    def _mean_carrier_measure(self):
        raise NotImplementedError

    def entropy(self):
        params = [p.detach().requires_grad_() for p in self._natural_params]
        log_normalizer = self._log_normalizer(*params)
        gradients = _autograd.grad(log_normalizer.sum(), params, create_graph=True)
        result = -self._mean_carrier_measure + log_normalizer
        for param, gradient in zip(params, gradients):
            result = result - (param * gradient).reshape(tuple(self._batch_shape) + (-1,)).sum(-1)
        return result
