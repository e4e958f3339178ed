"""Normalization functions over the primitives of `nbgrad.ops.normalization`.

`torch.batch_norm`, `torch.layer_norm`, `torch.group_norm` and `torch.instance_norm` (in
`__all__`: nbgrad's top level) take PyTorch's top-level signatures; `functional_batch_norm`,
`functional_layer_norm`, `functional_group_norm` and `functional_instance_norm` are
`torch.nn.functional`'s forms, with its Python-side checks
(`nbgrad.nn.functional` exports them under their PyTorch names); `tracked_batch_norm` is
what the BatchNorm modules call: it also counts `num_batches_tracked`, and with
`momentum=None` averages cumulatively over the batches counted.

NOTE on deferred mode (nbgrad.fuse.deferred): a training call whose result needs a gradient
is deferred like any op, and its running statistics are written when its forward runs: at
`backward()` (in the fused kernel) or when a value is read. The row's `writes` marks the
statistics meanwhile, so that reading them in any way runs the pending ops first.

An absent weight, bias or running statistic is a zero-size stand-in (`operands.absent`),
so that each primitive has one signature.
"""
import numbers

import numpy as np

from .._core import mode
from .._core.dtype import is_half
from ..autograd.grad_mode import no_grad, state as _grad_state
from ..ops import PRIMITIVES
from .dispatch import dispatch
from .operands import absent

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm"]

def _or_absent(tensor, dtype):
    return absent(dtype) if tensor is None else tensor


def _verify_batch_size(size):
    """PyTorch's check that training statistics have more than one value per channel."""
    values = size[0]
    for extent in size[2:]:
        values *= extent
    if values == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {size}")


def tracked_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps,
                       num_batches_tracked=None):
    """batch_norm that, when training with running statistics, also adds one to
    `num_batches_tracked` (if given), and with `momentum=None` moves the running statistics
    by 1 / num_batches_tracked (a cumulative average), as the BatchNorm modules do. The
    count and the statistics are written by the primitive's forward, so that a fused step
    writes them on every call."""
    if training:
        _verify_batch_size(input.shape)
        if eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must either both be None or neither "
                         "be None")
    updates = training and running_mean is not None
    if updates and is_half(running_mean._data.dtype):
        raise NotImplementedError("nbgrad updates running statistics in float32 and float64 "
                                  f"only, not {running_mean.dtype}")
    dtype = input.dtype.np
    cumulative = momentum is None and num_batches_tracked is not None
    inputs = (input, _or_absent(weight, dtype), _or_absent(bias, dtype),
              _or_absent(running_mean, dtype), _or_absent(running_var, dtype),
              _or_absent(num_batches_tracked if updates else None, np.dtype(np.int64)))
    if running_mean is not None and \
            not (_grad_state.enabled and any(t._requires_grad for t in inputs)):
        # This call runs at once (nothing to differentiate): calls deferred before it, which
        # may update the statistics it reads or updates, run first.
        mode.run_pending()
    params = {"training": bool(training), "momentum": float(momentum or 0.0),
              "cumulative": cumulative, "eps": float(eps)}
    # NOTE: in deferred mode the statistics are written when the op runs; until then
    # reading them runs it (the row's `writes`), and it runs even if nothing holds its result.
    return dispatch(PRIMITIVES["batch_norm"], inputs, params)


def functional_batch_norm(input, running_mean, running_var, weight=None, bias=None,
                          training=False, momentum=0.1, eps=1e-05):
    """torch.nn.functional.batch_norm."""
    if not isinstance(momentum, numbers.Real):
        raise TypeError(f"batch_norm(): argument 'momentum' (position 7) must be float, not "
                        f"{type(momentum).__name__}")
    return tracked_batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                              eps)


def batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
               cudnn_enabled):
    """torch.batch_norm (cudnn_enabled has no effect on the CPU, as in PyTorch)."""
    return functional_batch_norm(input, running_mean, running_var, weight, bias, training,
                                 momentum, eps)


def functional_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """torch.nn.functional.layer_norm."""
    if not isinstance(normalized_shape, (tuple, list)):
        raise TypeError(f"layer_norm(): argument 'normalized_shape' (position 2) must be tuple "
                        f"of ints, not {type(normalized_shape).__name__}")
    shape = tuple(int(extent) for extent in normalized_shape)
    dtype = input.dtype.np
    return dispatch(PRIMITIVES["layer_norm"],
                    (input, _or_absent(weight, dtype), _or_absent(bias, dtype)),
                    {"normalized_shape": shape, "eps": float(eps)})


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05, cudnn_enable=True):
    """torch.layer_norm."""
    return functional_layer_norm(input, normalized_shape, weight, bias, eps)


def functional_group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):
    """torch.nn.functional.group_norm."""
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received "
                           f"{input.ndim}")
    shape = input.shape
    _verify_batch_size([shape[0] * shape[1] // num_groups, num_groups] + list(shape[2:]))
    dtype = input.dtype.np
    return dispatch(PRIMITIVES["group_norm"],
                    (input, _or_absent(weight, dtype), _or_absent(bias, dtype)),
                    {"num_groups": int(num_groups), "eps": float(eps)})


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05, cudnn_enabled=True):
    """torch.group_norm."""
    return functional_group_norm(input, num_groups, weight, bias, eps)


def instance_norm(input, weight, bias, running_mean, running_var, use_input_stats, momentum, eps,
                  cudnn_enabled):
    """torch.instance_norm, composed as PyTorch's: batch_norm of the input viewed as one sample
    of N * C channels, with the weight, bias and running statistics repeated N times; the
    running statistics then become the mean over the samples of their updated copies."""
    if not use_input_stats and (running_mean is None or running_var is None):
        raise RuntimeError("Expected running_mean and running_var to be defined when "
                           "use_input_stats is false")
    samples, channels = input.shape[:2]

    def repeated(tensor):
        return None if tensor is None else tensor.repeat(samples)

    mean_copies, var_copies = repeated(running_mean), repeated(running_var)
    out = tracked_batch_norm(
        input.contiguous().view((1, samples * channels) + tuple(input.shape[2:])), mean_copies,
        var_copies, repeated(weight), repeated(bias), use_input_stats, momentum, eps)
    with no_grad():
        for statistic, copies in ((running_mean, mean_copies), (running_var, var_copies)):
            if statistic is not None:
                statistic.copy_(copies.view(samples, channels).mean(0))
    return out.view(input.shape)


def _verify_spatial_size(size):
    values = 1
    for extent in size[2:]:
        values *= extent
    if values == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size "
                         f"torch.Size({list(size)})")


def functional_instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                             use_input_stats=True, momentum=0.1, eps=1e-05):
    """torch.nn.functional.instance_norm: each sample's channels normalized by their own
    statistics (or by the running ones with use_input_stats=False)."""
    if use_input_stats:
        _verify_spatial_size(input.shape)
    return instance_norm(input, weight, bias, running_mean, running_var, use_input_stats,
                         momentum, eps, True)
