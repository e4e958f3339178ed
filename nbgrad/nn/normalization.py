"""Normalization layers: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, as PyTorch's
(arguments, parameters, buffers, state_dict keys and dtypes, initialisation, reprs)."""
import numbers

from .._core import dtype as _dtype
from .._tensor.factories import empty, ones, tensor, zeros
from .._tensor.normalization import (functional_group_norm, functional_layer_norm,
                                     tracked_batch_norm)
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
