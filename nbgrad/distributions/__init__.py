"""torch.distributions: parameterized probability distributions (sampling from PyTorch's
random streams, differentiable `log_prob`, `entropy`, reparameterized `rsample`) and
`kl_divergence`, made of Tensor operations. The score-function estimator (REINFORCE:
`-dist.log_prob(action) * reward`) and the pathwise one (`dist.rsample()`, as in VAEs)
both differentiate through them."""
from . import constraints
from .bernoulli import Bernoulli
from .categorical import Categorical
from .distribution import Distribution, ExponentialFamily
from .exponential import Exponential
from .independent import Independent
from .kl import kl_divergence, register_kl
from .laplace import Laplace
from .normal import Normal
from .one_hot_categorical import OneHotCategorical, OneHotCategoricalStraightThrough
from .uniform import Uniform

__all__ = ["Bernoulli", "Categorical", "Distribution", "Exponential", "ExponentialFamily",
           "Independent", "Laplace", "Normal", "OneHotCategorical",
           "OneHotCategoricalStraightThrough", "Uniform", "kl_divergence", "register_kl"]
