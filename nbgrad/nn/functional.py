"""nbgrad.nn.functional: layers and losses as functions, named as in torch.nn.functional.

Losses and `linear` call the primitives of `nbgrad.ops.losses` and `nbgrad.ops.linalg`; the
rest are composites of Tensor operations.
"""
import warnings

import numpy as np

from .._core import tracing as _tracing
from ..autograd.grad_mode import no_grad, state as _grad_state
from .._tensor import api as _api
from .._tensor import random as _random
from .._tensor.inplace import inplace_form
from .._tensor.indexing import one_hot  # noqa: F401  (F.one_hot, an indexing function)
from .._tensor.pooling import (  # noqa: F401  (F's pooling functions)
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d,
    avg_pool2d, max_pool1d, max_pool2d, adaptive_max_pool1d_with_indices,
    adaptive_max_pool2d_with_indices, max_pool1d_with_indices, max_pool2d_with_indices)
from .._tensor.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: F401  (F's convolutions)
from .._tensor.resample import (pad, interpolate, upsample, upsample_nearest,  # noqa: F401
                                upsample_bilinear, dropout1d, dropout2d)  # (resample.py)
from .._tensor.normalization import (functional_batch_norm as batch_norm,  # noqa: F401
                                     functional_layer_norm as layer_norm,
                                     functional_group_norm as group_norm)
from ..ops import PRIMITIVES as P
from ..ops.primitive import TORCH_TYPE_NAMES
from .._tensor.dispatch import dispatch
from .._tensor.operands import absent as _absent
from .._tensor.tensor import Tensor
# Attention. attention.py imports this module back and reads its functions only when called,
# so importing it from here, half-initialised, is safe.
from .attention import (scaled_dot_product_attention, multi_head_attention_forward,  # noqa: F401
                        _canonical_mask, _none_or_dtype)

sigmoid = _api.sigmoid
tanh = _api.tanh
softmax = _api.softmax
log_softmax = _api.log_softmax


def linear(input, weight, bias=None):
    """input @ weight.T + bias: one fused `AddmmBackward0` primitive for a 2-D input."""
    if bias is not None and input.ndim == 2:
        return dispatch(P["linear"], (input, weight, bias))
    # Other ranks (and no bias) are a matmul with the transposed weight, as PyTorch does.
    out = _api.matmul(input, _api.t(weight))
    return out if bias is None else out + bias


def dropout(input, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    _tracing.graph_break("dropout draws random numbers, which fusion would freeze")
    keep = _random.bernoulli_mask(input.shape, 1.0 - p)
    scale = (keep * (1.0 / (1.0 - p))).astype(input.dtype.np)
    return input * Tensor._wrap(scale)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    if sparse:
        raise NotImplementedError("embedding(sparse=True): nbgrad has no sparse tensors")
    if padding_idx is None:
        padding_idx = -1  # never matches: indices are checked to lie in [0, num_embeddings)
    else:
        if not -weight.shape[0] <= padding_idx < weight.shape[0]:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx %= weight.shape[0]
    if max_norm is not None:
        _renormalize_rows(weight, input, max_norm, norm_type)
    return dispatch(P["embedding"], (weight, input),
                    {"padding_idx": padding_idx, "by_frequency": bool(scale_grad_by_freq)})


def _renormalize_rows(weight, input, max_norm, norm_type):
    """PyTorch's embedding_renorm_: the rows of `weight` that `input` reads, scaled in place
    (outside autograd) to a `norm_type` norm of at most `max_norm`."""
    _tracing.graph_break("embedding's max_norm rescales the rows its indices read, in place")
    rows = Tensor._wrap(np.unique(input._data))
    with no_grad():
        picked = weight[rows]
        norms = picked.norm(norm_type, dim=1, keepdim=True)
        weight[rows] = _api.where(norms > max_norm, picked * (max_norm / (norms + 1e-7)), picked)


# --- losses ----------------------------------------------------------------------------


def _array(value):
    return None if value is None else (value._data if isinstance(value, Tensor) else np.asarray(value))


def _warn_if_broadcast(input, target):
    """mse/l1 broadcast different shapes, with PyTorch's warning; the primitive gets equal
    shapes (the engine sums the gradient back through `expand`)."""
    if input.shape == target.shape:
        return input, target
    warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                  f"({input.shape}). This will likely lead to incorrect results due to "
                  "broadcasting. Please ensure they have the same size.", stacklevel=3)
    shape = tuple(np.broadcast_shapes(input.shape, target.shape)) if _broadcastable(
        input.shape, target.shape) else None
    if shape is None:
        # Let the elementwise machinery raise PyTorch's own message.
        input + target
    return _api.expand(input, shape), _api.expand(target, shape)


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _broadcasts_to(shape, target_shape):
    return _broadcastable(shape, target_shape) and \
        np.broadcast_shapes(shape, target_shape) == tuple(target_shape)


def _loss_operands(name, input, target):
    """input and target in one dtype, as PyTorch: promoted (float32 with float64 computes
    in float64), except binary_cross_entropy's, which must match; no integer mse."""
    if name == "mse_loss" and not input.dtype.is_floating_point:
        raise NotImplementedError(f'"mse_cpu" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[input.dtype.name]}'")
    if target.dtype == input.dtype:
        return input, target
    if name == "binary_cross_entropy":
        raise RuntimeError(f"Found dtype {TORCH_TYPE_NAMES[target.dtype.name]} but expected "
                           f"{TORCH_TYPE_NAMES[input.dtype.name]}")
    dtype = _api.result_type(input, target)
    return (input if input.dtype == dtype else _api.to(input, dtype),
            target if target.dtype == dtype else _api.to(target, dtype))


def _pointwise_loss(name, input, target, reduction, weight=None, pos_weight=None,
                    grad_fn_name=None):
    params = {"weight": _array(weight), "pos_weight": _array(pos_weight), "reduction": reduction}
    for what in ("weight", "pos_weight"):
        given = params[what]
        if given is not None and not _broadcasts_to(given.shape, input.shape):
            raise RuntimeError(f"{what} of shape {list(given.shape)} does not broadcast to the "
                               f"input's shape {list(input.shape)}")
    return dispatch(P[name], _loss_operands(name, input, target), params,
                    grad_fn_name=grad_fn_name)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    input, target = _warn_if_broadcast(input, target)
    return _pointwise_loss("mse_loss", input, target, reduction, weight)


# PyTorch computes l1_loss as a composite, so its grad_fn is named after the last step.
_L1_NAMES = {"mean": "MeanBackward0", "sum": "SumBackward0", "none": "AbsBackward0"}


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    input, target = _warn_if_broadcast(input, target)
    return _pointwise_loss("l1_loss", input, target, reduction, weight,
                           grad_fn_name=_L1_NAMES.get(reduction))


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input "
                         f"size ({input.shape}) is deprecated. Please ensure they have the same "
                         "size.")
    return _pointwise_loss("binary_cross_entropy", input, target, reduction, weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    return _pointwise_loss("binary_cross_entropy_with_logits", input, target, reduction,
                           weight, pos_weight)


def _class_last(input, target):
    """(N, C, d1, ...) scores and (N, d1, ...) targets as (N*d1*..., C) and (N*d1*...,)."""
    if input.ndim == 1:
        return _api.unsqueeze(input, 0), _api.reshape(target, 1)
    if input.ndim == 2:
        return input, target
    if target.shape[:1] + target.shape[1:] != input.shape[:1] + input.shape[2:]:
        raise RuntimeError(f"Expected target size {[input.shape[0]] + list(input.shape[2:])}, got "
                           f"{list(target.shape)}")
    order = (0,) + tuple(range(2, input.ndim)) + (1,)
    # (Rows counted, not inferred: -1 is ambiguous when C is 0.)
    rows = target.numel()
    return (_api.reshape(_api.permute(input, order), rows, input.shape[1]),
            _api.reshape(target, rows))


def _restore_shape(losses, input, target, reduction):
    return _api.reshape(losses, target.shape) if reduction == "none" and input.ndim != 2 else losses


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    ndim, target_ndim = input.ndim, target.ndim
    if ndim == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    # NOTE: a 0-d target has batch size 0 in PyTorch's message.
    batch = target.shape[0] if target_ndim else 0
    if ndim >= 2 and input.shape[0] != batch:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target "
                         f"batch_size ({batch}).")
    if ndim <= 2 and target_ndim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if ndim == 1 and target_ndim == 1 and target.shape[0] != 1:
        raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: "
                         f"{target.shape[0]}")
    scores, classes = _class_last(input, target)
    params = {"ignore_index": int(ignore_index), "reduction": reduction}
    # (PyTorch's name: its scores of more than two dims go through nll_loss2d.)
    losses = dispatch(P["nll_loss"], (scores, classes, _class_weight_input(weight, input)), params,
                      grad_fn_name="NllLoss2DBackward0" if ndim > 2 else None)
    return _restore_shape(losses, input, target, reduction)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """log_softmax over the class dim, then nll_loss; class indices or class probabilities
    (PyTorch's rule: a target of the input's shape holds probabilities)."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    probabilities = target.shape == input.shape
    if probabilities:
        if not target.is_floating_point():
            raise RuntimeError(f"Expected floating point type for target with class "
                               f"probabilities, got {TORCH_TYPE_NAMES[target.dtype.name]}")
        if ignore_index >= 0:
            raise RuntimeError("ignore_index is not supported for floating point target")
    log_probs = log_softmax(input, class_dim)
    if probabilities:
        return _soft_cross_entropy(log_probs, target, weight, class_dim, reduction, label_smoothing)
    loss = nll_loss(log_probs, target, weight, ignore_index=ignore_index, reduction=reduction)
    if not label_smoothing:
        return loss
    return _label_smoothing(loss, log_probs, target, weight, ignore_index, reduction,
                            label_smoothing, class_dim)


def _class_weight_input(weight, input):
    """nll_loss's class weight input: `weight` as a Tensor, or the zero-size stand-in of
    none; PyTorch's error for one that requires grad (there is no gradient for it)."""
    if weight is None:
        return _absent(input.dtype.np)
    weight = weight if isinstance(weight, Tensor) else Tensor._wrap(_array(weight))
    if weight.requires_grad and _grad_state.enabled:
        raise RuntimeError("The function 'nll_loss_forward' is not differentiable with respect "
                           "to argument 'weight'. This input cannot have requires_grad True.")
    return weight


def _class_weight_view(weight, log_probs, class_dim):
    shape = [1] * log_probs.ndim
    shape[class_dim] = -1
    return _api.reshape(_class_weight_input(weight, log_probs), shape)


def _label_smoothing(loss, log_probs, target, weight, ignore_index, reduction, smoothing,
                     class_dim):
    # PyTorch's formula (LossNLL.cpp, cross_entropy_loss_label_smoothing):
    # (1 - s) * nll + s / C * smooth, smooth = -sum_c w_c log p_c over non-ignored targets.
    n_classes = log_probs.shape[class_dim]
    weighted = log_probs if weight is None else log_probs * _class_weight_view(weight, log_probs,
                                                                               class_dim)
    smooth = -_api.sum(weighted, class_dim)
    # NOTE: Tensor operations on the target, not its array: a compiled step reads new targets
    # at every call (which are ignored, and so the mean's denominator, change).
    smooth = _api.where(target == ignore_index, 0.0, smooth)
    if reduction == "mean":
        # The summed weights of the kept targets (their count without weights): nll_loss's
        # own sum, of log-probabilities of -1.
        denominator = nll_loss(_api.full(log_probs.shape, -1.0, dtype=log_probs.dtype), target,
                               weight, ignore_index=ignore_index, reduction="sum")
        smooth = _api.sum(smooth) / denominator
    elif reduction == "sum":
        smooth = _api.sum(smooth)
    return loss * (1.0 - smoothing) + smooth * (smoothing / n_classes)


def _soft_cross_entropy(log_probs, target, weight, class_dim, reduction, smoothing):
    n_classes = log_probs.shape[class_dim]
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / n_classes
    if weight is not None:
        log_probs = log_probs * _class_weight_view(weight, log_probs, class_dim)
    if reduction == "none":
        return -_api.sum(log_probs * target, class_dim)
    total = -_api.sum(log_probs * target)
    return total / float(log_probs.numel() // n_classes) if reduction == "mean" else total


def softplus(input, beta=1.0, threshold=20.0):
    return dispatch(P["softplus"], (input,), {"beta": beta, "threshold": threshold})


# --- activations: elementwise primitives (they fuse), with PyTorch's in-place forms --------


# In-place forms whose PyTorch node reads the result, not the input (the same gradient).
_IN_PLACE_GRAD_FN = {"leaky_relu": "LeakyReluBackward1", "elu": "EluBackward1"}


def _activation(name, input, inplace, **params):
    """Primitive `name` on `input`, or with `inplace` written into `input`."""
    if inplace:
        # A node that saves only the result (relu's) needs no snapshot of the input.
        form = _apply_in_place if any(key != "out" for key in P[name].save) else \
            _apply_in_place_keeping_result
        return form(input, name=name, grad_fn_name=_IN_PLACE_GRAD_FN.get(name), **params)
    return _apply(input, name, **params)


def _apply(input, name, grad_fn_name=None, **params):
    return dispatch(P[name], (input,), params, grad_fn_name=grad_fn_name)


_apply_in_place = inplace_form(_apply)
_apply_in_place_keeping_result = inplace_form(_apply, saves_input=False)


def relu(input, inplace=False):
    # The out-of-place call goes straight to the function (the common case in a model).
    return _activation("relu", input, True) if inplace else _api.relu(input)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return dispatch(P["gelu" if approximate == "none" else "gelu_tanh"], (input,))


def silu(input, inplace=False):
    return _activation("silu", input, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _activation("leaky_relu", input, inplace, negative_slope=negative_slope)


def elu(input, alpha=1.0, inplace=False):
    return _activation("elu", input, inplace, alpha=alpha)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _activation("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


# The in-place forms PyTorch names with a trailing underscore.
def relu_(input):
    return relu(input, inplace=True)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)
