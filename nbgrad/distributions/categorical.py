"""torch.distributions.Categorical."""
import math

from .._tensor import api as _api
from .._tensor.tensor import Size
from .._core.dtype import int64
from . import constraints
from .distribution import Distribution
from .utils import _NO_SHAPE, lazy_property, logits_to_probs, probs_to_logits

__all__ = ["Categorical"]


def _either(probs, logits):
    if (probs is None) == (logits is None):
        raise ValueError("Either `probs` or `logits` must be specified, but not both.")


def _expanded_parameters(distribution, shape):
    """The parameters computed so far (`probs`, `logits` or both) expanded to `shape`, and
    `_param`, the logits when known, as PyTorch's `expand`."""
    given = {name: distribution.__dict__[name].expand(shape)
             for name in ("probs", "logits") if name in distribution.__dict__}
    given["_param"] = given["logits"] if "logits" in given else given["probs"]
    return given


class Categorical(Distribution):
    """Integers 0..K-1 with the probabilities `probs` (normalized over the last dimension) or
    the log-probabilities `logits` (normalized likewise); the other dimensions are the batch."""

    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args=None):
        _either(probs, logits)
        if probs is not None:
            if probs.dim() < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self.probs = probs / probs.sum(-1, keepdim=True)
        else:
            if logits.dim() < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self.logits = logits - logits.logsumexp(dim=-1, keepdim=True)
        self._param = self.probs if probs is not None else self.logits
        self._num_events = self._param.size()[-1]
        batch_shape = self._param.size()[:-1] if self._param.ndim > 1 else Size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = Size(batch_shape)
        param_shape = tuple(batch_shape) + (self._num_events,)
        given = _expanded_parameters(self, param_shape)
        return self._expanded(Categorical, batch_shape, _instance, **given,
                              _num_events=self._num_events)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self._num_events - 1)

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits)

    @property
    def param_shape(self):
        return self._param.size()

    @property
    def mean(self):
        return _api.full(self._extended_shape(), math.nan, dtype=self.probs.dtype)

    @property
    def mode(self):
        return self.probs.argmax(dim=-1)

    @property
    def variance(self):
        return _api.full(self._extended_shape(), math.nan, dtype=self.probs.dtype)

    def sample(self, sample_shape=_NO_SHAPE):
        sample_shape = Size(sample_shape)
        # one draw with replacement per sample from each row, as PyTorch: the same stream
        probs_2d = self.probs.reshape(-1, self._num_events)
        samples_2d = _api.multinomial(probs_2d, sample_shape.numel(), True).T
        return samples_2d.reshape(self._extended_shape(sample_shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value = value.long().unsqueeze(-1)
        value, log_pmf = _api.broadcast_tensors(value, self.logits)
        return log_pmf.gather(-1, value[..., :1]).squeeze(-1)

    def entropy(self):
        # -inf logits (probability 0) count as the dtype's lowest number: 0 * -inf is NaN
        logits = _api.clamp(self.logits, min=_api.finfo(self.logits.dtype).min)
        return -(logits * self.probs).sum(-1)

    def enumerate_support(self, expand=True):
        values = _api.arange(self._num_events, dtype=int64)
        values = values.view((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + tuple(self._batch_shape))
        return values
