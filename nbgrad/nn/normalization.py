"""Normalization layers: BatchNorm1d, BatchNorm2d, InstanceNorm1d/2d/3d, LayerNorm, GroupNorm,
LocalResponseNorm, as PyTorch's (arguments, parameters, buffers, state_dict keys and dtypes,
initialisation, reprs)."""
import numbers
import warnings

from .._core import dtype as _dtype
from .._tensor.factories import empty, ones, tensor, zeros
from .._tensor.normalization import (functional_group_norm, functional_instance_norm,
                                     functional_layer_norm, tracked_batch_norm)
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _register_affine(module, shape, affine, bias, dtype):
    """The parameters weight and bias of `shape` (bias only if `bias`), or None, as
    PyTorch registers them (initialised by `_reset_affine`)."""
    module.register_parameter("weight", Parameter(empty(*shape, dtype=dtype)) if affine else None)
    module.register_parameter("bias", Parameter(empty(*shape, dtype=dtype))
                              if affine and bias else None)


def _reset_affine(module):
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class _BatchNorm(Module):
    """PyTorch's _NormBase and _BatchNorm: affine weight and bias (ones and zeros), and
    the buffers running_mean, running_var and num_batches_tracked (int64) when
    `track_running_stats`. In training the batch's statistics normalize, and the running
    ones move towards them by `momentum` (None: a cumulative average over the batches
    counted); in eval the running ones normalize (the batch's if there are none)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _register_affine(self, (num_features,), affine, bias, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=_dtype.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _older_state_entries(self, prefix, version):
        # As PyTorch: num_batches_tracked came with version 2 (torchvision's ResNet
        # checkpoints have none); an older state dict keeps the module's own count.
        if (version is None or version < 2) and self.track_running_stats:
            return ((prefix + "num_batches_tracked", self.num_batches_tracked),)
        return ()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self)

    def forward(self, input):
        self._check_input_dim(input)
        # The registries, not attributes: see Linear.forward.
        buffers, parameters = self._buffers, self._parameters
        running_mean = buffers["running_mean"]
        # As PyTorch: the batch's statistics normalize in training, and in eval when there
        # are no running ones; these are updated only in training.
        batch_statistics = self.training or running_mean is None
        tracked = not self.training or self.track_running_stats
        return tracked_batch_norm(
            input, running_mean if tracked else None,
            buffers["running_var"] if tracked else None, parameters["weight"],
            parameters["bias"], batch_statistics, self.momentum, self.eps,
            buffers["num_batches_tracked"] if self.training and self.track_running_stats
            else None)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    def _check_input_dim(self, input):
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNorm2d(_BatchNorm):
    def _check_input_dim(self, input):
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        parameters = self._parameters
        return functional_layer_norm(input, self.normalized_shape, parameters["weight"],
                                     parameters["bias"], self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, (num_channels,), affine, bias, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        parameters = self._parameters
        return functional_group_norm(input, self.num_groups, parameters["weight"],
                                     parameters["bias"], self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}, bias={self.bias is not None}")


class _InstanceNorm(_BatchNorm):
    """PyTorch's _InstanceNorm: _NormBase's parameters and buffers (without affine parameters
    or running statistics by default); each sample's channels normalized by their own
    statistics, or in eval by the running ones where they are tracked. An input without a
    batch dimension is one sample."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, device=None, dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def _apply_instance_norm(self, input):
        return functional_instance_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias,
            self.training or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0, self.eps)

    def forward(self, input):
        if input.dim() not in (self._no_batch_dim, self._no_batch_dim + 1):
            raise ValueError(f"expected {self._no_batch_dim}D or {self._no_batch_dim + 1}D input "
                             f"(got {input.dim()}D input)")
        feature_dim = input.dim() - self._no_batch_dim
        if input.size(feature_dim) != self.num_features:
            if self.affine:
                raise ValueError(f"expected input's size at dim={feature_dim} to match "
                                 f"num_features ({self.num_features}), but got: "
                                 f"{input.size(feature_dim)}.")
            warnings.warn(f"input's size at dim={feature_dim} does not match num_features. You "
                          "can silence this warning by not passing in num_features, which is not "
                          "used because affine=False", stacklevel=2)
        if input.dim() == self._no_batch_dim:
            return self._apply_instance_norm(input.unsqueeze(0)).squeeze(0)
        return self._apply_instance_norm(input)


class InstanceNorm1d(_InstanceNorm):
    _no_batch_dim = 2


class InstanceNorm2d(_InstanceNorm):
    _no_batch_dim = 3


class InstanceNorm3d(_InstanceNorm):
    _no_batch_dim = 4


class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
