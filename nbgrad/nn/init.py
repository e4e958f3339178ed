"""nbgrad.nn.init: in-place initializers, drawing from the default generator (`manual_seed`) or
the one given, as PyTorch's do (the same values for the same seed)."""
import math
import warnings

import numpy as np

from .._tensor import sampling
from ..autograd import no_grad
from .._core import tracing as _tracing
from .._core.mode import run_pending
from .._tensor import api as _tensor_api


def _fill(tensor, values):
    # Initializers run outside autograd, as PyTorch's do under no_grad.
    # NOTE: a trace does not see this write (nor draws from a generator): eager.
    _tracing.graph_break("an nn.init initializer writes into a tensor")
    run_pending()  # deferred ops read the values as they are now
    tensor._data[...] = np.asarray(values).astype(tensor._data.dtype, copy=False)
    tensor._version_counter[0] += 1
    return tensor


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         "dimensions")
    receptive_field = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    with no_grad():
        return sampling.uniform_(tensor, a, b, generator=generator)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    with no_grad():
        return sampling.normal_(tensor, mean, std, generator=generator)


def constant_(tensor, val):
    return _fill(tensor, val)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _no_elements(tensor):
    """PyTorch's kaiming initializers leave a zero-element tensor as it is, with a warning."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if _no_elements(tensor):
        return tensor
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if _no_elements(tensor):
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)),
                   generator)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal values redrawn until they fall in [a, b], drawn as PyTorch 2.13 draws them: while
    most of the mass lies in [a, b], normal draws and redraws of those outside; otherwise
    uniform candidates in [a, b], each accepted with probability pdf / pdf at the mode."""
    def norm_cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    if (mean < a - 2 * std) or (mean > b + 2 * std):
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. The "
                      "distribution of values may be incorrect.", stacklevel=2)
    with no_grad():
        if norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std) > 0.3:
            # The bounds in the tensor's dtype: the rejection agrees with the values it keeps.
            low, high = tensor.new_tensor(a).item(), tensor.new_tensor(b).item()
            result = tensor.normal_(mean, std, generator=generator)
            while True:
                outside = (result < low) | (result > high)
                if not outside.any():
                    break
                redrawn = _empty_like(tensor).normal_(mean, std, generator=generator)
                result = _tensor_api.where(outside, redrawn, result)
            if result is not tensor:
                tensor.copy_(result)
            return tensor
        mode = max(a, min(mean, b))
        log_peak = -0.5 * ((mode - mean) / std) ** 2

        def rejected(candidates):
            log_density = candidates.sub_(mean).div_(std).pow_(2).mul_(-0.5).sub_(log_peak)
            return _empty_like(tensor).uniform_(generator=generator).log_().gt(log_density)

        tensor.uniform_(a, b, generator=generator)
        pending = rejected(tensor.clone())
        result = tensor
        while pending.any():
            candidates = _empty_like(tensor).uniform_(a, b, generator=generator)
            result = _tensor_api.where(pending, candidates, result)
            pending = _tensor_api.where(pending, rejected(candidates), pending)
        if result is not tensor:
            tensor.copy_(result)
        return tensor


def _empty_like(tensor):
    """An empty tensor laid out as PyTorch's `empty_like(tensor)`: a dense tensor's strides in
    the same order (its random fills then visit elements in the same order), else contiguous."""
    strides, shape = tensor.stride(), tensor.shape
    axes = sorted(range(tensor.ndim), key=lambda axis: -strides[axis])
    expected = 1
    for axis in reversed(axes):
        if shape[axis] != 1 and strides[axis] != expected:
            return tensor.new_empty(shape)
        expected *= shape[axis]
    inverse = sorted(range(tensor.ndim), key=axes.__getitem__)
    return tensor.new_empty(tuple(shape[axis] for axis in axes)).permute(*inverse)


def orthogonal_(tensor, gain=1, generator=None):
    """A (semi-)orthogonal matrix, the dimensions after the first flattened: Q of the QR of a
    normal matrix (of its transpose when it is wide), its columns' signs those of R's
    diagonal, as PyTorch's."""
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with no_grad():
        flattened = tensor.new_empty((rows, cols)).normal_(0, 1, generator=generator)._data
    if rows < cols:
        flattened = flattened.T
    # NOTE: not differentiated and run once: NumPy's QR (LAPACK's geqrf, as PyTorch's).
    q, r = np.linalg.qr(flattened)
    q = q * np.sign(np.diagonal(r))
    if rows < cols:
        q = q.T
    dtype = tensor._data.dtype
    return _fill(tensor, q.astype(dtype).reshape(tensor.shape) * dtype.type(gain))


def eye_(tensor):
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return _fill(tensor, np.eye(*tensor.shape))


def dirac_(tensor, groups=1):
    """A convolution weight that passes each of its first input channels (of each group)
    through unchanged: 1 at the centre of the kernel of output channel d for input channel d."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if tensor.shape[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    out_per_group = tensor.shape[0] // groups
    values = np.zeros(tensor.shape)
    centre = tuple(size // 2 for size in tensor.shape[2:])
    for group in range(groups):
        for d in range(min(out_per_group, tensor.shape[1])):
            values[(group * out_per_group + d, d) + centre] = 1
    return _fill(tensor, values)


def sparse_(tensor, sparsity, std=0.01, generator=None):
    """Normal values with ceil(sparsity * rows) of each column zeroed, the rows chosen by the
    default generator's `randperm` (as PyTorch's, whatever `generator` is)."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    with no_grad():
        tensor.normal_(0, std, generator=generator)
        for col in range(cols):
            tensor[_tensor_api.randperm(rows)[:num_zeros], col] = 0
    return tensor
