"""Activations that PyTorch has at the top level (`torch.selu`, `torch.celu_`, `torch.prelu`,
`torch.rrelu`, `torch.threshold`, `torch.hardshrink`), and the one way every activation of
`nn.functional` runs a primitive in place: `activation`."""
import numpy as np

from .._core import dtype as _dtype
from .._core import tracing as _tracing
from ..ops import PRIMITIVES as P
from ..ops.primitive import TORCH_TYPE_NAMES
from . import random as _random
from .dispatch import dispatch
from .inplace import inplace_form
from .shape import reshape
from .tensor import Tensor

__all__ = ["selu", "selu_", "celu", "celu_", "threshold", "threshold_", "rrelu", "rrelu_",
           "prelu", "hardshrink"]

# PyTorch's nodes of the in-place forms, by the node of the out-of-place call: the same
# gradient. All but threshold_'s save the result (a copy of the input is gone): nbgrad's
# read the input's snapshot and keep the result's version (the rows' `result_overloads`).
_IN_PLACE_NODES = {name + "0": name + "1" for name in (
    "LeakyReluBackward", "EluBackward", "CeluBackward", "ThresholdBackward",
    "RreluWithNoiseBackward")}


def activation(name, input, inplace, *others, grad_fn_name=None, **params):
    """Primitive `name` on `input` (and the Tensors `others`), or with `inplace` written into
    `input`; `grad_fn_name` names the node where PyTorch's differs from the primitive's."""
    if inplace:
        # A node that saves only the result (relu's) needs no snapshot of the input.
        form = _apply_in_place if any(key != "out" for key in P[name].save) else \
            _apply_in_place_keeping_result
        node = grad_fn_name or P[name].grad_fn
        return form(input, *others, name=name, grad_fn_name=_IN_PLACE_NODES.get(node, grad_fn_name),
                    **params)
    return _apply(input, *others, name=name, grad_fn_name=grad_fn_name, **params)


def _apply(input, *others, name, grad_fn_name=None, into=None, **params):
    return dispatch(P[name], (input, *others), params, grad_fn_name=grad_fn_name, into=into)


_apply_in_place = inplace_form(_apply, writes_into=_apply)
_apply_in_place_keeping_result = inplace_form(_apply, saves_input=False, writes_into=_apply)


# SELU's constants (PyTorch's, from Klambauer et al. 2017).
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def elu(input, alpha=1.0, inplace=False):
    return activation("elu", input, inplace, alpha=alpha, scale=1.0, input_scale=1.0)


def selu(input, inplace=False):
    return activation("elu", input, inplace, alpha=_SELU_ALPHA, scale=_SELU_SCALE,
                      input_scale=1.0)


def celu(input, alpha=1.0, inplace=False):
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return activation("celu", input, inplace, alpha=alpha, scale=1.0, input_scale=1.0 / alpha)


def _threshold(input, threshold, value, inplace=False):
    return activation("threshold", input, inplace, threshold=threshold, value=value)


threshold = _threshold  # (PyTorch's F.threshold is `_threshold` too: a parameter has its name)


def hardshrink(input, lambd=0.5):
    return activation("hardshrink", input, False, lambd=lambd)


def prelu(input, weight):
    """PyTorch's prelu: its checks, then the weight viewed along dim 1 of the input (a 1-D
    weight of one element broadcasts as it is) and the _prelu_kernel primitive."""
    if input.dtype != weight.dtype:
        raise RuntimeError(f"prelu: Type promoting not supported. Got "
                           f"{TORCH_TYPE_NAMES[input.dtype.name]} and "
                           f"{TORCH_TYPE_NAMES[weight.dtype.name]}")
    if weight.numel() != 1:
        if input.ndim == 0:
            raise RuntimeError("Not allow zero-dim input tensor.")
        channels = input.shape[1] if input.ndim > 1 else 1
        if channels != weight.numel():
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                               f"parameter numbers = {weight.numel()} and channel size = "
                               f"{channels}.")
    if weight.ndim > 1:
        raise RuntimeError(f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: "
                           f"ndim = {weight.ndim}")
    if input.ndim != weight.ndim:
        shape = [1] * input.ndim
        if input.ndim > 1:
            shape[1] = weight.numel()
        weight = reshape(weight, shape)
    return dispatch(P["prelu"], (input, weight))


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None, inplace=False):
    """Leaky ReLU with a random slope in [lower, upper] for each element at or below 0 while
    training (drawn as PyTorch draws them: one uniform double per such element, in order,
    from `generator`), and the mean slope otherwise; PyTorch's node either way."""
    if lower > upper:
        raise RuntimeError("Lower bound should be less than or equal to the upper bound")
    if not training:
        return activation("leaky_relu", input, inplace, grad_fn_name="RreluWithNoiseBackward0",
                          negative_slope=(lower + upper) / 2)
    # (Refused before any number is drawn; PyTorch's CPU kernel has no float16 form.)
    if not input.dtype.is_floating_point or input.dtype == _dtype.float16:
        raise NotImplementedError(f'"rrelu_with_noise_out_cpu" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[input.dtype.name]}'")
    _tracing.graph_break("rrelu draws random slopes for the input's non-positive elements, "
                         "which fusion would freeze")
    values = np.ascontiguousarray(input._data)
    non_positive = values <= 0
    noise = np.ones(values.shape, values.dtype)
    # (PyTorch's bounds are of the input's compute type, float32 below float64, before the
    # float64 draw.)
    bound = np.float64 if values.dtype == np.float64 else np.float32
    noise[non_positive] = _random.uniform((int(non_positive.sum()),), _dtype.float64,
                                          bound(lower), bound(upper), generator)
    return activation("rrelu_with_noise", input, inplace, Tensor._wrap(noise))


def selu_(input):
    return selu(input, inplace=True)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


def threshold_(input, threshold, value):
    return _threshold(input, threshold, value, inplace=True)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    return rrelu(input, lower, upper, training, generator, inplace=True)
