"""Sampling from tensors of parameters: `multinomial`, `normal`, `bernoulli`, and the in-place
random fills `normal_`, `uniform_`, `bernoulli_`, `random_`, `exponential_`, `geometric_`,
`log_normal_`, `cauchy_`. Values come from the streams of
`nbgrad._tensor.random`, in the order PyTorch's CPU kernels draw them.

Results are outside autograd. PyTorch records these ops with zero gradients; nbgrad records
nothing (a parameter reached only through them gets no `.grad` rather than zeros), and the
in-place fills refuse a tensor in the graph."""
import numpy as np

from .._core import dtype as _dtype, tracing as _tracing
from . import random as _random
from .inplace import check_inplace, check_overlap, is_recording
from .tensor import Tensor, checked_shape, sizes_of

__all__ = ["multinomial", "normal", "bernoulli"]


def _draw_break():
    _tracing.graph_break("random numbers drawn inside the step would be frozen by fusion")


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices drawn from the categories of each row of `input` (1-D or 2-D weights), int64."""
    _draw_break()
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not input.is_floating_point():
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: "
                           f"{input.dtype.scalar_type}")
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    n_categories = input.shape[-1]
    if not replacement and num_samples > n_categories:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without "
                           "replacement")
    weights = input._data if input.ndim == 2 else input._data[None]
    if weights.size == 0:
        return Tensor._wrap(np.empty(input.shape[:-1] + (num_samples,), np.int64))
    if replacement and num_samples > 1:
        rows = _with_replacement(weights, num_samples, generator)
    else:
        rows = _by_exponential_race(weights, num_samples, generator)
    return Tensor._wrap(rows if input.ndim == 2 else rows[0])


def _by_exponential_race(weights, num_samples, generator):
    """PyTorch's draw without replacement (and of one sample): the categories with the
    largest weight / Exponential(1) (the Gumbel-max trick, exponentiated)."""
    if not (weights.max() < np.inf and weights.min() >= 0):  # NaN fails both
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    if (weights.sum(axis=1) == 0).any():
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    # PyTorch draws into `empty_like(weights)`, which keeps the layout of dense weights (a
    # transposed matrix), and fills it in memory order.
    if weights.flags.f_contiguous and not weights.flags.c_contiguous:
        noise = _random.transformed_uniforms("exponential", weights.shape[::-1], weights.dtype,
                                              1.0, generator=generator).T
    else:
        noise = _random.transformed_uniforms("exponential", weights.shape, weights.dtype, 1.0,
                                              generator=generator)
    keys = weights / noise
    if num_samples == 1:
        return keys.argmax(axis=1)[:, None]
    return np.argsort(-keys, axis=1, kind="stable")[:, :num_samples]


def _with_replacement(weights, num_samples, generator):
    """PyTorch's draw with replacement: per row, its cumulative weights (summed in the
    weights' dtype, normalized, the last one set to 1), then for each sample the first
    category whose cumulative weight reaches a float64 uniform draw."""
    bad = ~((weights >= 0) & np.isfinite(weights))
    if bad.any():
        # PyTorch checks entry by entry, `>= 0` first (which NaN fails too).
        first = weights.reshape(-1)[bad.reshape(-1).argmax()]
        if not first >= 0:
            raise RuntimeError("invalid multinomial distribution (encountering probability entry "
                               "< 0)")
        raise RuntimeError("invalid multinomial distribution (encountering probability entry = "
                           "infinity or NaN)")
    cumulative = np.cumsum(weights, axis=1, dtype=weights.dtype)
    totals = cumulative[:, -1:]
    if (totals <= 0).any():
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    cumulative /= totals
    cumulative[:, -1] = 1
    draws = _random.uniform((len(weights), num_samples), _dtype.float64, generator=generator)
    return np.stack([np.searchsorted(row.astype(np.float64), row_draws, side="left")
                     for row, row_draws in zip(cumulative, draws)]).astype(np.int64)


def _float_of(value):
    return value.item() if isinstance(value, Tensor) else value


def _check_std(std):
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, requires_grad=False):
    """`normal(mean, std)` with tensors (broadcast) or a float and a tensor, or
    `normal(mean, std, size)` with floats."""
    _draw_break()
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor):
        if size is None:
            raise TypeError("normal() received an invalid combination of arguments - got (float, "
                            "float): give a size, or a tensor mean or std")
        _check_std(std)
        dtype = _dtype.as_dtype(dtype) if dtype is not None else _dtype.get_default_dtype()
        shape = checked_shape(sizes_of((size,)))
        values = _random.normal(shape, dtype, mean, std, generator=generator)
        result = Tensor._wrap(values)
        return result.requires_grad_(True) if requires_grad else result
    if size is not None:
        raise TypeError("normal(): size is given only with a float mean and a float std")
    tensors = [x for x in (mean, std) if isinstance(x, Tensor)]
    if not tensors[0].is_floating_point():
        raise NotImplementedError(f'"normal_kernel_cpu" not implemented for '
                                  f"'{tensors[0].dtype.scalar_type}'")
    shape = np.broadcast_shapes(*(x.shape for x in tensors))
    if isinstance(std, Tensor):
        if (std._data < 0).any():
            raise RuntimeError("normal expects all elements of std >= 0.0")
        # PyTorch draws N(0, 1), then scales by std and adds mean.
        values = _random.normal(shape, tensors[0].dtype, generator=generator)
        values = values * std._data + (mean._data if isinstance(mean, Tensor) else mean)
    else:
        _check_std(std)
        values = _random.normal(shape, mean.dtype, 0.0, std, generator=generator) + mean._data
    return Tensor._wrap(values.astype(tensors[0].dtype.np, copy=False))


def bernoulli(input, p=None, *, generator=None):
    """0/1 values of `input`'s dtype: each 1 with the probability in `input` (or with `p`)."""
    _draw_break()
    # NOTE: PyTorch draws into a contiguous result, in its order, whatever the layout of
    # `input` (an expanded or transposed one too): not into `empty_like(input)`.
    result = Tensor._wrap(np.empty(input.shape, input._data.dtype))
    return bernoulli_(result, input if p is None else p, generator=generator)


def _fill(target, draw):
    """Fill `target`, a tensor outside autograd's graph, with `draw(shape, axes)`: values drawn
    for `target` with its axes in `axes` order, that of its memory (largest stride first), in
    which PyTorch's kernels visit the elements of a tensor that is not contiguous."""
    check_inplace(target)
    check_overlap(target._data, (), None)  # (an expanded tensor: PyTorch's error)
    if is_recording(target):
        # PyTorch would record a node with zero gradients; keeping the old node would send
        # gradients through values that are gone.
        raise NotImplementedError("nbgrad does not record random in-place fills in the graph: "
                                  "fill a tensor that does not require grad, or under "
                                  "nbgrad.no_grad()")
    _draw_break()
    strides = target._data.strides
    axes = tuple(sorted(range(target.ndim), key=lambda axis: -abs(strides[axis])))
    values = draw(tuple(target.shape[axis] for axis in axes), axes)
    target._data[...] = np.transpose(values, np.argsort(axes))
    target._version_counter[0] += 1
    return target


def bernoulli_(input, p=0.5, *, generator=None):
    if isinstance(p, Tensor):
        if not p.is_floating_point():
            raise NotImplementedError(f'"bernoulli_tensor_cpu_p_" not implemented for '
                                      f"'{p.dtype.scalar_type}'")
        probabilities = np.broadcast_to(p._data, input.shape)
        if not ((probabilities >= 0) & (probabilities <= 1)).all():
            raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.  "
                               "(Could this error message be improved?  If so, please report an "
                               "enhancement request to PyTorch.)")
        return _fill(input, lambda shape, axes: _random.bernoulli_of(
            np.transpose(probabilities, axes), generator))
    if not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p:g}")
    return _fill(input, lambda shape, axes: _random.bernoulli_mask(shape, p, generator))


def _floating_target(input, kernel):
    if not input.is_floating_point():
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{input.dtype.scalar_type}'")


def normal_(input, mean=0.0, std=1.0, *, generator=None):
    _floating_target(input, "normal_kernel_cpu")
    mean, std = _float_of(mean), _float_of(std)
    _check_std(std)
    return _fill(input, lambda shape, axes: _random.normal(
        shape, input.dtype, mean, std, contiguous=input.is_contiguous(), generator=generator))


def uniform_(input, from_=0.0, to=1.0, *, generator=None):
    _floating_target(input, "check_uniform_bounds")
    if from_ > to:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found "
                           f"from={from_:g} > to={to:g}")
    return _fill(input, lambda shape, axes: _random.uniform(shape, input.dtype, from_, to,
                                                            generator=generator))


def random_(input, *bounds, generator=None):
    """`random_(from, to)`: integers in [from, to); `random_(to)`: in [0, to); `random_()`: in
    [0, 2**mantissa digits] for a floating dtype, [0, max] for an integer one."""
    if not bounds:
        return _fill(input, lambda shape, axes: _random.full_range(shape, input.dtype, generator))
    from_, to = (0, bounds[0]) if len(bounds) == 1 else bounds
    if from_ >= to:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={from_} >= "
                           f"to={to}")
    return _fill(input, lambda shape, axes: _random.integers(shape, from_, to, generator))


# The C++ type names PyTorch's continuous distributions name in their dtype error.
_C_TYPE_NAMES = {"int64": "long int", "int32": "int", "int16": "short int", "int8": "signed char",
                 "uint8": "unsigned char", "bool": "bool"}


def _continuous_target(input, distribution, c_type_names):
    if not input.is_floating_point():
        name = input.dtype.name
        raise RuntimeError(f"{distribution} distribution is a continuous probability distribution. "
                           f"dtype must be a floating point but you specified "
                           f"{_C_TYPE_NAMES[name] if c_type_names else input.dtype.scalar_type}")


def exponential_(input, lambd=1.0, *, generator=None):
    lambd = _float_of(lambd)
    if not lambd > 0.0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd:g}")
    _continuous_target(input, "Exponential", c_type_names=False)
    return _fill(input, lambda shape, axes: _random.transformed_uniforms(
        "exponential", shape, input._data.dtype, lambd, generator=generator))


def geometric_(input, p, *, generator=None):
    """The number of Bernoulli(p) trials up to the first success, in any dtype but bool."""
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p:g}")
    if input.dtype.name == "bool":
        raise NotImplementedError("\"geometric_cpu\" not implemented for 'Bool'")
    return _fill(input, lambda shape, axes: _random.transformed_uniforms(
        "geometric", shape, input._data.dtype, p, generator=generator))


def log_normal_(input, mean=1.0, std=2.0, *, generator=None):
    if not std > 0.0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std:g}")
    _floating_target(input, "log_normal_cpu")
    return _fill(input, lambda shape, axes: _random.log_normal(
        shape, input._data.dtype, mean, std, generator=generator))


def cauchy_(input, median=0.0, sigma=1.0, *, generator=None):
    if not sigma > 0.0:
        raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={sigma:g}")
    _continuous_target(input, "Cauchy", c_type_names=True)
    return _fill(input, lambda shape, axes: _random.transformed_uniforms(
        "cauchy", shape, input._data.dtype, median, sigma, generator=generator))
