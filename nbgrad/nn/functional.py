"""nbgrad.nn.functional: layers and losses as functions, named as in torch.nn.functional.

Losses and `linear` call the primitives of `nbgrad.ops.losses` and `nbgrad.ops.linalg`; the
rest are composites of Tensor operations.
"""
import builtins
import math
import warnings

import numpy as np

from .._core import tracing as _tracing
from ..autograd.grad_mode import no_grad, state as _grad_state
from .._tensor import api as _api
from .._tensor import distance as _distance
from .._tensor import random as _random
from .._tensor import activation as _activations
from .._tensor.activation import activation
from .._tensor.indexing import one_hot  # noqa: F401  (F.one_hot, an indexing function)
from .._tensor.pooling import (  # noqa: F401  (F's pooling functions)
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d,
    avg_pool2d, max_pool1d, max_pool2d, adaptive_max_pool1d_with_indices,
    adaptive_max_pool2d_with_indices, max_pool1d_with_indices, max_pool2d_with_indices)
from .._tensor.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: F401  (F's convolutions)
from .._tensor.conv import fold, unfold  # noqa: F401  (im2col and col2im)
from .._tensor.shape import pixel_shuffle, pixel_unshuffle  # noqa: F401
from .._tensor.resample import (pad, interpolate, upsample, upsample_nearest,  # noqa: F401
                                upsample_bilinear, dropout1d, dropout2d, dropout3d,
                                alpha_dropout, feature_alpha_dropout)  # (resample.py)
from .._tensor.grid import affine_grid, grid_sample  # noqa: F401  (grid.py)
from .._tensor.normalization import (functional_batch_norm as batch_norm,  # noqa: F401
                                     functional_layer_norm as layer_norm,
                                     functional_group_norm as group_norm,
                                     functional_instance_norm as instance_norm)
from ..ops import PRIMITIVES as P
from ..ops.primitive import TORCH_TYPE_NAMES
from .._tensor.dispatch import dispatch
from .._tensor.operands import absent as _absent
from .._tensor.tensor import Tensor, _check_dim
from .._core.dtype import finfo, int64 as _int64

sigmoid = _api.sigmoid
tanh = _api.tanh


def linear(input, weight, bias=None):
    """input @ weight.T + bias: one fused `AddmmBackward0` primitive for a 2-D input.
    NOTE: PyTorch views a contiguous input of more dimensions as 2-D for that product too
    (ViewBackward0 of AddmmBackward0); here it is a batched matmul and an add. Done as
    PyTorch, a one-block GPT's fused step got slower (933-999 against 881-907 us a step,
    quiet machine; 13-17 ms against 0.9 under load): the one larger GEMM is past OpenBLAS's
    threading threshold, where the batch's GEMMs took its single-threaded small-matrix path."""
    if bias is not None and input.ndim == 2:
        return dispatch(P["linear"], (input, weight, bias))
    # Other ranks (and no bias) are a matmul with the transposed weight, as PyTorch does.
    out = _api.matmul(input, _api.t(weight))
    return out if bias is None else out + bias


# The names of dtypes in bilinear's error (C++'s).
_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
                "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int"}


def bilinear(input1, input2, weight, bias=None):
    """y[..., o] = input1[..., i] weight[o, i, j] input2[..., j] + bias[o], composed as a
    matrix product with the weight, a product with input2 and a sum (PyTorch's checks)."""
    operands = [("input1", input1), ("input2", input2), ("weight", weight)]
    if bias is not None:
        operands.append(("bias", bias))
    if len({t.dtype for _, t in operands}) > 1:
        raise RuntimeError("All tensors must have the same dtype, got " + ", ".join(
            f"{name}: {_DTYPE_NAMES.get(t.dtype.name, t.dtype.name)}" for name, t in operands))
    if input1.ndim != input2.ndim:
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {input1.ndim} and "
                           f"{input2.ndim}")
    for d in range(input1.ndim - 1):
        if input1.shape[d] != input2.shape[d]:
            raise RuntimeError(f"bilinear(): input batch dimensions do not match at dim {d}: got "
                               f"{input1.shape[d]} and {input2.shape[d]}")
    out_features, in1, in2 = weight.shape
    if input1.shape[-1] != in1:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got "
                           f"{input1.shape[-1]} but expected {in1}")
    if input2.shape[-1] != in2:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got "
                           f"{input2.shape[-1]} but expected {in2}")
    if bias is not None and bias.shape[0] != out_features:
        raise RuntimeError(f"bilinear(): bias size does not match weight size: got "
                           f"{bias.shape[0]} but expected {out_features}")
    batch = tuple(input1.shape[:-1])
    left = input1.reshape(-1, in1) @ weight.permute(1, 0, 2).reshape(in1, out_features * in2)
    products = left.view(-1, out_features, in2) * input2.reshape(-1, 1, in2)
    out = products.sum(-1).view(batch + (out_features,))
    return out if bias is None else out + bias


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """input / (k + alpha * mean of squares over `size` neighbouring channels) ** beta, as
    PyTorch composes it (its 3-D pooling over channels is a 2-D pooling over the channels
    and the flattened spatial dimensions here: the same windows)."""
    dim = input.ndim
    if dim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality                          input "
                         f"(got {dim} dimensions)")
    if input.numel() == 0:
        return input
    squares = input.mul(input)
    sizes = tuple(input.shape)
    squares = squares.unsqueeze(1) if dim == 3 else squares.view(sizes[0], 1, sizes[1], -1)
    squares = pad(squares, (0, 0, size // 2, (size - 1) // 2))
    div = avg_pool2d(squares, (size, 1), stride=1).squeeze(1)
    if dim > 3:
        div = div.view(sizes)
    return input / div.mul(alpha).add(k).pow(beta)


def dropout(input, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        scale = 0.0
    else:
        _tracing.graph_break("dropout draws random numbers, which fusion would freeze")
        keep = _random.bernoulli_mask(input.shape, 1.0 - p)
        scale = Tensor._wrap((keep * (1.0 / (1.0 - p))).astype(input.dtype.np))
    return input.mul_(scale) if inplace else input * scale


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


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                  mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                  padding_idx=None):
    """PyTorch's checks in its order, then the `embedding_bag` primitive on the ids as one
    1-D tensor with their bags' offsets (a 2-D input's rows are bags of equal length)."""
    if weight.dtype == _int64 and input.is_floating_point():
        warnings.warn("Argument order of nn.functional.embedding_bag was changed. Usage "
                      "`embedding_bag(weight, input, ...)` is deprecated, and should now be "
                      "`embedding_bag(input, weight, ...)`.", stacklevel=2)
        weight, input = input, weight
    if per_sample_weights is not None and input.shape != per_sample_weights.shape:
        raise ValueError(f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) is "
                         f"not None, then it must have the same shape as the input ({input.shape})")
    if weight.ndim != 2:
        raise ValueError(f"weight has to be a 2D Tensor, but got Tensor of dimension {weight.ndim}")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated is "
                             "a mini-batch of fixed length sequences. However, found offsets of "
                             f"type {type(offsets)}")
        offsets = _api.arange(0, input.numel(), input.shape[1], dtype=input.dtype)
        include_last_offset = False
        input = input.reshape(-1)
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights.reshape(-1)
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    if mode not in ("sum", "mean", "max"):
        raise ValueError("mode has to be one of sum, mean or max")
    if mode == "max" and scale_grad_by_freq:
        raise ValueError("max mode does not support scaling the gradient by the frequency")
    if mode == "max" and sparse:
        raise ValueError("max mode does not support sparse weights")
    if sparse:  # (before max_norm writes into the weight)
        raise NotImplementedError("embedding_bag(sparse=True): nbgrad has no sparse tensors")
    if max_norm is not None:
        _renormalize_rows(weight, input, max_norm, norm_type)
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError("embedding_bag: per_sample_weights was not None. "
                                  "per_sample_weights is only supported for mode='sum' "
                                  f"(got mode='{mode}'). Please open a feature request on GitHub.")
    rows = weight.shape[0]
    if padding_idx is None:
        padding_idx = -1  # never matches: the ids are checked to lie in [0, num_embeddings)
    elif not -rows <= padding_idx < rows:
        raise RuntimeError(f"padding_idx must be within the number of embeddings, -{rows} "
                           f"through {rows - 1}, but got {padding_idx}")
    else:
        padding_idx %= rows
    if per_sample_weights is None:
        per_sample_weights = _absent(weight.dtype.np)
    return dispatch(P["embedding_bag"], (weight, input, offsets, per_sample_weights),
                    {"mode": mode, "padding_idx": padding_idx,
                     "by_frequency": bool(scale_grad_by_freq),
                     "include_last_offset": bool(include_last_offset)})


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
    shape = _distance.broadcast_shape(input, target)
    # (as torch.broadcast_tensors: a tensor of the broadcast shape is itself, no node)
    return tuple(t if tuple(t.shape) == shape else _api.expand(t, shape) for t in (input, target))


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _broadcasts_to(shape, target_shape):
    return _broadcastable(shape, target_shape) and \
        np.broadcast_shapes(shape, target_shape) == tuple(target_shape)


# The kernels PyTorch names in its errors for a loss of integers.
_LOSS_KERNELS = {"mse_loss": "mse_cpu", "smooth_l1_loss": "smooth_l1_cpu", "huber_loss": "huber_cpu"}
# Losses whose result has the input's dtype (PyTorch writes them into a tensor like the
# input): the target is read in it.
_INPUT_DTYPE_LOSSES = ("huber_loss", "soft_margin_loss")


def _loss_operands(name, input, target):
    """input and target in one dtype, as PyTorch: promoted (float32 with float64 computes
    in float64), except binary_cross_entropy's, which must match, and the losses of
    `_INPUT_DTYPE_LOSSES`, computed in the input's; no loss of integers."""
    dtype = _api.result_type(input, target)
    if name in _LOSS_KERNELS and not dtype.is_floating_point:
        raise NotImplementedError(f'"{_LOSS_KERNELS[name]}" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[dtype.name]}'")
    if name in _INPUT_DTYPE_LOSSES and not input.dtype.is_floating_point:
        # (soft margin's exp of integers is a float32: that result's type then)
        result = dtype.name if dtype.is_floating_point else "float32"
        raise RuntimeError(f"result type {TORCH_TYPE_NAMES[result]} can't be cast to the "
                           f"desired output type {TORCH_TYPE_NAMES[input.dtype.name]}")
    if target.dtype == input.dtype or name in _INPUT_DTYPE_LOSSES:
        return input, target
    if name == "binary_cross_entropy":
        raise RuntimeError(f"Found dtype {TORCH_TYPE_NAMES[target.dtype.name]} but expected "
                           f"{TORCH_TYPE_NAMES[input.dtype.name]}")
    return (input if input.dtype == dtype else _api.to(input, dtype),
            target if target.dtype == dtype else _api.to(target, dtype))


def _pointwise_loss(name, input, target, reduction, weight=None, pos_weight=None,
                    grad_fn_name=None, **values):
    params = {"weight": _array(weight), "pos_weight": _array(pos_weight), "reduction": reduction,
              **values}
    for what in ("weight", "pos_weight"):
        given = params[what]
        if given is not None and not _broadcasts_to(given.shape, input.shape):
            raise RuntimeError(f"{what} of shape {list(given.shape)} does not broadcast to the "
                               f"input's shape {list(input.shape)}")
    return dispatch(P[name], _loss_operands(name, input, target), params,
                    grad_fn_name=grad_fn_name)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    input, target = _warn_if_broadcast(input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if weight is not None:
        _check_loss_weight(weight, input)
        return _weighted(_api.pow(input - target, 2), weight, reduction, by_weights=True)
    return _pointwise_loss("mse_loss", input, target, reduction)


def _check_loss_weight(weight, input):
    if tuple(weight.shape) != tuple(input.shape):
        raise ValueError("Weights and input must have the same size.")


def _weighted(unreduced, weight, reduction, by_weights):
    """PyTorch's weighted mse/l1/huber losses: the unreduced loss times the weight, then
    reduced; the mean divides by the weights' sum (`by_weights`, mse and l1) or by the
    element count (huber)."""
    weighted = unreduced * weight
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return _api.sum(weighted)
    if reduction == "mean":
        return _api.sum(weighted) / _api.sum(weight) if by_weights else weighted.mean()
    raise ValueError(f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', "
                     "'sum'.")


# PyTorch computes l1_loss as a composite, so its grad_fn is named after the last step.
_L1_NAMES = {"mean": "MeanBackward0", "sum": "SumBackward0", "none": "AbsBackward0"}


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    input, target = _warn_if_broadcast(input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if weight is not None:
        _check_loss_weight(weight, input)
        return _weighted(_api.abs(input - target), weight, reduction, by_weights=True)
    return _pointwise_loss("l1_loss", input, target, reduction,
                           grad_fn_name=_L1_NAMES.get(reduction))


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input "
                         f"size ({input.shape}) is deprecated. Please ensure they have the same "
                         "size.")
    return _pointwise_loss("binary_cross_entropy", input, target, reduction, weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
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
    reduction = _legacy_reduction(size_average, reduce, reduction)
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
    reduction = _legacy_reduction(size_average, reduce, reduction)
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
    _refuse_gradient("nll_loss_forward", "weight", weight)
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
    if reduction == "sum":
        return total
    return _scalar_operation("div", total, float(log_probs.numel() // n_classes))


# --- more losses and distances (PyTorch's F): the pointwise-loss rows smooth_l1_loss,
# huber_loss and soft_margin_loss, and composites written as PyTorch composes the others
# (its C++ in ATen's Loss.cpp, or its Python in torch.nn.functional), so that values,
# gradients and the nodes they record are its own. multi_margin_loss is a node of its own
# in PyTorch (MultiMarginLossBackward0), not pointwise: a composite here, whose last node
# is named after its reduction.

_REDUCTION_ENUM = ("none", "mean", "sum")


def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average and reduce: either one given replaces `reduction`,
    with PyTorch's warning."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    legacy = "mean" if size_average and reduce else ("sum" if reduce else "none")
    warnings.warn(f"size_average and reduce args will be deprecated, please use "
                  f"reduction='{legacy}' instead.", stacklevel=3)
    return legacy


def _reduction_enum(reduction):
    """PyTorch's _Reduction.get_enum, which the losses implemented in C++ pass through:
    'elementwise_mean' is 'mean' (with a warning), anything else unknown an error."""
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' "
                      "instead.", stacklevel=3)
        return "mean"
    if reduction not in _REDUCTION_ENUM:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduced(loss, reduction):
    return loss.mean() if reduction == "mean" else (loss.sum() if reduction == "sum" else loss)


def _refuse_gradient(function, argument, tensor):
    """PyTorch's error for an argument its function has no derivative for."""
    if isinstance(tensor, Tensor) and tensor.requires_grad and _grad_state.enabled:
        raise RuntimeError(f"The function '{function}' is not differentiable with respect to "
                           f"argument '{argument}'. This input cannot have requires_grad True.")


def _scalar_minus(number, tensor):
    """ATen's `number - tensor`: a tensor like `tensor` filled with `number` (truncated for
    integers), minus `tensor` (SubBackward0)."""
    return _api.full_like(tensor, number) - tensor


_scalar_operation = _distance.scalar_operation


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    input, target = _warn_if_broadcast(input, target)
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    if beta == 0.0:  # PyTorch's l1_loss then
        return _pointwise_loss("l1_loss", input, target, reduction,
                               grad_fn_name=_L1_NAMES.get(reduction))
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    return _pointwise_loss("smooth_l1_loss", input, target, reduction, beta=float(beta))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    input, target = _warn_if_broadcast(input, target)
    if weight is None:
        reduction = _reduction_enum(reduction)
    else:
        _check_loss_weight(weight, input)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    if weight is None:
        return _pointwise_loss("huber_loss", input, target, reduction, delta=float(delta))
    return _weighted(_pointwise_loss("huber_loss", input, target, "none", delta=float(delta)),
                     weight, reduction, by_weights=False)


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    _refuse_gradient("soft_margin_loss", "target", target)
    if input.dtype.name == "bool":
        _api.neg(input)  # PyTorch negates the input first: its error for a bool
    if target.shape != input.shape:
        # PyTorch writes the loss into a tensor of the input's shape: the target broadcasts
        # to it, never the other way
        shape = _distance.broadcast_shape(input, target)
        if shape != tuple(input.shape):
            raise RuntimeError(f"output with shape {list(input.shape)} doesn't match the "
                               f"broadcast shape {list(shape)}")
        target = _api.expand(target, input.shape)
    return _pointwise_loss("soft_margin_loss", input, target, reduction)


_KL_MEAN_WARNING = ("reduction: 'mean' divides the total loss by both the batch size and the "
                    "support size.'batchmean' divides only by the batch size, and aligns with the "
                    "KL div math definition.'mean' will be changed to behave the same as "
                    "'batchmean' in the next major release.")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    if size_average is not None or reduce is not None:
        summed = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    else:
        if reduction == "mean":
            warnings.warn(_KL_MEAN_WARNING, stacklevel=2)
        summed = "sum" if reduction == "batchmean" else _reduction_enum(reduction)
    if not (input.dtype.is_floating_point and target.dtype.is_floating_point):
        raise RuntimeError("kl_div: Integral inputs not supported.")
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = _api.xlogy(target, target) - target * input
    loss = _reduced(loss, summed)
    # (as PyTorch: 'batchmean' divides also when size_average or reduce chose the sum)
    if reduction == "batchmean" and input.ndim != 0:
        loss = loss / input.shape[0]
    return loss


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * _scalar_operation("add", input, eps).log()
    if full:
        stirling = (target * target.log() - target
                    + _scalar_operation("mul", _scalar_operation("mul", target, 2 * math.pi).log(),
                                        0.5))
        loss = loss + stirling.masked_fill(target <= 1, 0)
    return _reduced(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    if isinstance(var, float):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = var * _api.ones_like(input)
    elif not isinstance(var, Tensor):  # (PyTorch's any() of a bool: its TypeError)
        raise TypeError(f"any() received an invalid combination of arguments - got "
                        f"({type(var < 0).__name__}), but expected one of: (Tensor input)")
    elif _api.any(var < 0):
        raise ValueError("var has negative entry/entries")
    if var.shape != input.shape:
        # one variance per row of the last dimension, or one dimension of size 1 to broadcast
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = _api.unsqueeze(var, -1)
        elif not (input.ndim == var.ndim and builtins.sum(
                v for i, v in zip(input.shape, var.shape) if i != v) == 1):
            raise ValueError("var is of incorrect size")
    if reduction not in _REDUCTION_ENUM:
        raise ValueError(reduction + " is not valid")
    # The variance clamped outside autograd: its gradient is taken at the clamped value.
    var = _api.clone(var)
    with no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduced(loss, reduction)


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                        reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension "
                           f"but got sizes: input1: {input1.shape}, input2: {input2.shape}, "
                           f"target: {target.shape} ")
    loss = _scalar_operation("add", -target * (input1 - input2), float(margin)).clamp_min(0)
    return _reduced(loss, reduction)


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    zeros = _api.zeros_like(input)
    beyond_margin = _api.where(target != 1, _scalar_minus(margin, input).clamp_min(0), zeros)
    return _reduced(beyond_margin + _api.where(target != -1, input, zeros), reduction)


# ATen's EPSILON, added to each squared magnitude: a C++ float, 1e-12 rounded to float32
_COSINE_EPSILON = float(np.float32(1e-12))


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                          reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    dim = target.ndim
    if dim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if input1.ndim != dim + 1 or input2.ndim != dim + 1:
        raise RuntimeError(f"{dim}D target tensor expects {dim + 1}D input tensors, but found "
                           f"inputs with sizes {list(input1.shape)} and {list(input2.shape)}.")
    products = _api.sum(input1 * input2, dim)
    squares1, squares2 = (_scalar_operation("add", _api.sum(x * x, dim), _COSINE_EPSILON)
                          for x in (input1, input2))
    cosine = products / (squares1 * squares2).sqrt()
    zeros = _api.zeros_like(cosine)
    similar = _api.where(target == 1, _scalar_minus(1, cosine), zeros)
    dissimilar = _api.where(target == -1,
                            _scalar_operation("sub", cosine, float(margin)).clamp_min(0), zeros)
    return _reduced(similar + dissimilar, reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the "
                           f"same number of dimensions, but got: anchor {anchor.ndim}D, positive "
                           f"{positive.ndim}D, and negative {negative.ndim}D inputs")
    to_positive = pairwise_distance(anchor, positive, p, eps)
    to_negative = pairwise_distance(anchor, negative, p, eps)
    if swap:
        to_negative = _api.minimum(to_negative, pairwise_distance(positive, negative, p, eps))
    loss = (_scalar_operation("add", to_positive, float(margin)) - to_negative).clamp_min(0)
    return _reduced(loss, reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    class_dim = input.ndim - 1
    if class_dim < 0:
        raise IndexError("Dimension specified as -1 but tensor has no dimensions")
    classes = input.shape[class_dim]
    loss = _api.sum(loss, class_dim) / classes
    if reduction not in _REDUCTION_ENUM:
        raise ValueError(reduction + " is not valid")
    return _reduced(loss, reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    reduction = _reduction_enum(_legacy_reduction(size_average, reduce, reduction))
    if p != 1 and p != 2:
        raise ValueError("only p == 1 and p == 2 supported")
    if weight is not None and weight.ndim != 1:
        raise ValueError("weight must be one-dimensional")
    _refuse_gradient("multi_margin_loss", "weight", weight)
    rows, classes = _multi_margin_shape(input, target, weight)
    # hinge_j = max(0, margin - x_target + x_j) (to the power p) for each class j but the
    # target, times the target's weight, averaged over the classes
    scores = _api.reshape(input, rows, classes)
    targets = _api.reshape(target, rows)
    target_scores = _api.gather(scores, 1, _api.unsqueeze(targets, 1))
    z = _scalar_minus(margin, target_scores) + scores
    # NOTE: squared after the where: where(z > 0, z * z, 0) would send NaN into the
    # gradient (2 z times 0) where z is NaN or -inf, whose loss and gradient are 0.
    z = _api.where(z > 0, z, 0.0)
    hinge = z if p == 1 else z * z
    if weight is not None:
        hinge = hinge * _api.unsqueeze(weight[targets], 1)
    hinge = hinge.masked_fill(one_hot(targets, classes) == 1, 0.0)
    losses = _api.sum(hinge, 1) / classes
    if reduction == "none" and not target.ndim:
        return _api.reshape(losses, ())  # one sample's loss, as its 0-d target
    return _reduced(losses, reduction)


def _multi_margin_shape(input, target, weight):
    """(rows, classes) of multi_margin_loss's input, after PyTorch's checks."""
    classes = 1 if input.ndim == 0 else input.shape[-1]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise RuntimeError(f"inconsistent weight size, expected {classes} but got "
                           f"{list(weight.shape)}")
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f'"multi_margin_loss_cpu_kernel" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[input.dtype.name]}'")
    if input.ndim > 2 or (input.ndim and input.shape[-1] == 0):
        raise RuntimeError(f"Expected non-empty vector or matrix with optional 0-dim batch size, "
                           f"but got: {list(input.shape)}")
    rows = input.shape[0] if input.ndim == 2 else 1
    if target.ndim > 1 or target.numel() != rows:
        raise RuntimeError(f"multi_margin_loss: target tensor should be 1-D with size equal to "
                           f"the number of input samples (batch size). Expected target size "
                           f"[{rows}], but got {list(target.shape)}. Input has shape "
                           f"{list(input.shape)}.")
    for expected, given in ((np.int64, target), (input.dtype.np, weight)):
        if given is not None and given.dtype.np != np.dtype(expected):
            raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[np.dtype(expected).name]} "
                               f"but found {TORCH_TYPE_NAMES[given.dtype.name]}")
    if target.numel() and bool(((target < 0) | (target >= classes)).any()):
        raise RuntimeError("target out of range")
    return rows, classes


cosine_similarity = _distance.cosine_similarity
pairwise_distance = _distance.pairwise_distance


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    if out is None:
        denominator = _api.expand_as(input.norm(p, dim, keepdim=True).clamp_min(eps), input)
        return input / denominator
    denominator = _api.expand_as(input.norm(p, dim, keepdim=True).clamp_min_(eps), input)
    return _api.div(input, denominator, out=out)


def softplus(input, beta=1.0, threshold=20.0):
    return dispatch(P["softplus"], (input,), {"beta": beta, "threshold": threshold})


# --- activations: elementwise primitives (they fuse), with PyTorch's in-place forms --------

# (Those PyTorch also has at the top level are made in _tensor.activation.)
elu, selu, selu_, celu, celu_, prelu, hardshrink, threshold_ = (
    _activations.elu, _activations.selu, _activations.selu_, _activations.celu,
    _activations.celu_, _activations.prelu, _activations.hardshrink, _activations.threshold_)
_threshold = threshold = _activations.threshold


def relu(input, inplace=False):
    # The out-of-place call goes straight to the function (the common case in a model).
    return activation("relu", input, True) if inplace else _api.relu(input)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return dispatch(P["gelu" if approximate == "none" else "gelu_tanh"], (input,))


def silu(input, inplace=False):
    return activation("silu", input, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return activation("leaky_relu", input, inplace, negative_slope=negative_slope)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return activation("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


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


def mish(input, inplace=False):
    return activation("mish", input, inplace)


def hardswish(input, inplace=False):
    return activation("hardswish", input, inplace)


def hardsigmoid(input, inplace=False):
    return activation("hardsigmoid", input, inplace)


def logsigmoid(input):
    return activation("logsigmoid", input, False)


def softshrink(input, lambd=0.5):
    if input.dtype.is_floating_point:
        limit = finfo(input.dtype).max
        if not 0 <= lambd <= limit:
            raise RuntimeError(f"lambda must be in range [0, {limit:g}] for input dtype "
                               f"{TORCH_TYPE_NAMES[input.dtype.name]}, but found {lambd:g}")
    return activation("softshrink", input, False, lambd=lambd)


# PyTorch composes these two (their nodes are DivBackward0 and SubBackward0).
def softsign(input):
    return input / (input.abs() + 1)


def tanhshrink(input):
    return input - input.tanh()


def _implicit_softmax_dim(name, ndim, stacklevel):
    """PyTorch's dimension for a softmax-like call without `dim`, with its warning."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _implicit_softmax_dim("softmin", input.ndim, _stacklevel)
    return softmax(-input, dim, dtype=dtype)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _implicit_softmax_dim("softmax", input.ndim, _stacklevel)
    return _api.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _implicit_softmax_dim("log_softmax", input.ndim, _stacklevel)
    return _api.log_softmax(input, dim, dtype=dtype)


def glu(input, dim=-1):
    """a * sigmoid(b) for the halves a, b of `input` along `dim`: one GluBackward0 node (on
    the halves, where PyTorch's links the input itself)."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    dim = _check_dim(dim, input.ndim)
    size = input.shape[dim]
    if size % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim} is size {size}")
    half = size // 2
    return dispatch(P["glu"], (_api.narrow(input, dim, 0, half), _api.narrow(input, dim, half, half)))


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    return _activations.rrelu(input, lower, upper, training, inplace=inplace)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    return _activations.rrelu(input, lower, upper, training, inplace=True)


# Attention, last: attention.py imports nn.layers, which reads this module's functions when it
# is imported, and this module back (reading its functions only when called).
from .attention import (scaled_dot_product_attention, multi_head_attention_forward,  # noqa: E402,F401
                        _canonical_mask, _none_or_dtype)
