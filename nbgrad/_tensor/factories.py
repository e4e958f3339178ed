"""Tensor factories (`tensor`, `zeros`, `randn`, ...); the random ones draw from
`nbgrad._tensor.random`, every one checks its `device=` (`nbgrad._tensor.device`)."""
import math

import numpy as np

from .._core import dtype as _dtype, tracing as _tracing
from . import device as _device, random as _random
from .tensor import Tensor, resolve_dtype, checked_shape, allocate, sizes_of

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "eye", "arange",
           "linspace", "rand", "randn", "randint", "randperm", "zeros_like", "ones_like",
           "empty_like", "full_like", "rand_like", "randn_like", "randint_like"]


def _new_leaf(array, dtype, requires_grad):
    """A leaf tensor on `array` (cast to `dtype` unless None), requiring grad if asked."""
    if dtype is not None:
        array = array.astype(dtype.np, copy=False)
    result = Tensor._wrap(array)
    if requires_grad:
        result.requires_grad_(True)
    return result


def _default_dtype_of(array):
    """PyTorch's dtype for data given without one: floats have the default dtype."""
    kind = array.dtype.kind
    if kind == "f":
        return _dtype.get_default_dtype()
    return _dtype.from_numpy_dtype(array.dtype)


def tensor(data, *, dtype=None, device=None, requires_grad=False):
    """Copy `data` (nested lists, scalars, arrays or tensors) into a new leaf tensor."""
    _device.checked(device, creating=False)
    dtype = resolve_dtype(dtype)
    if isinstance(data, Tensor):
        _tracing.graph_break(_COPIES_VALUES)
        array = data._data.copy()
    elif isinstance(data, np.ndarray):
        array = data.copy()
        dtype = dtype or _dtype.from_numpy_dtype(array.dtype)
    else:
        array = np.array(_arrays_inside(data))
        if array.dtype == object:
            raise TypeError(f"Could not infer dtype of {type(data).__name__}")
        dtype = dtype or _default_dtype_of(array)
    return _new_leaf(array, dtype, requires_grad)


# NOTE: a compiled step would keep the array copied when it was traced, on every call.
_COPIES_VALUES = "nbgrad.tensor() copies a tensor's values outside the traced ops (use .clone() or stack)"


def _arrays_inside(data):
    """`data` with each tensor inside its lists and tuples replaced by the tensor's array."""
    if isinstance(data, Tensor):
        _tracing.graph_break(_COPIES_VALUES)
        return data._data
    if isinstance(data, (list, tuple)):
        return [_arrays_inside(x) for x in data]
    return data


def as_tensor(data, dtype=None, device=None):
    _device.checked(device, creating=False)
    if isinstance(data, Tensor) and (dtype is None or resolve_dtype(dtype) == data.dtype):
        return data
    if isinstance(data, np.ndarray):
        return _new_leaf(data, resolve_dtype(dtype), False)
    return tensor(data, dtype=dtype)


def from_numpy(array):
    """Share memory with `array` (NumPy dtypes nbgrad does not store are converted)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    return Tensor._wrap(array)


def _sizes(name, positional, keywords):
    """The sizes of `zeros(2, 3)`, `zeros((2, 3))` or `zeros(size=(2, 3))`."""
    if set(keywords) - {"size"}:
        raise TypeError(f"{name}() got an unexpected keyword argument "
                        f"'{next(iter(set(keywords) - {'size'}))}'")
    if "size" not in keywords:
        if not positional:
            raise TypeError(f'{name}() missing 1 required positional arguments: "size"')
        return positional
    if positional:
        raise TypeError(f"{name}() got multiple values for argument 'size'")
    return (keywords["size"],)


def _allocated_leaf(fill, size, dtype, device, requires_grad):
    """A leaf tensor of sizes `size` made by `fill(shape, np_dtype)` (np.zeros, ...)."""
    _device.checked(device)
    dtype = resolve_dtype(dtype) or _dtype.get_default_dtype()
    shape = checked_shape(sizes_of(size))
    return _new_leaf(allocate(lambda: fill(shape, dtype.np), shape, dtype.np), None, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, **keywords):
    return _allocated_leaf(np.zeros, _sizes("zeros", size, keywords), dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **keywords):
    return _allocated_leaf(np.ones, _sizes("ones", size, keywords), dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False, **keywords):
    return _allocated_leaf(np.empty, _sizes("empty", size, keywords), dtype, device, requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = _dtype.scalar_dtype(fill_value)
    return _allocated_leaf(lambda shape, d: np.full(shape, fill_value, d), (size,), dtype, device,
                           requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    _device.checked(device)
    dtype = resolve_dtype(dtype) or _dtype.get_default_dtype()
    m = n if m is None else m
    for name, value in (("n", n), ("m", m)):
        if value < 0:
            raise RuntimeError(f"{name} must be greater or equal to 0, got {value}")
    return _new_leaf(allocate(lambda: np.eye(n, m, dtype=dtype.np), (n, m), dtype.np), None,
                 requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    _device.checked(device)
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    values = (start, end, step)
    default = _dtype.int64 if all(isinstance(v, (int, np.integer)) for v in values) else \
        _dtype.get_default_dtype()
    dtype = resolve_dtype(dtype) or default
    work = np.float64 if dtype.is_floating_point else np.int64
    shape = (math.ceil((end - start) / step),)
    return _new_leaf(allocate(lambda: np.arange(start, end, step, dtype=work), shape, work),
                 dtype, requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    _device.checked(device)
    dtype = resolve_dtype(dtype) or _dtype.get_default_dtype()
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _new_leaf(allocate(lambda: np.linspace(start, end, steps), (steps,), np.float64), dtype,
                 requires_grad)


def _random_break():
    _tracing.graph_break("random numbers drawn inside the step would be frozen by fusion")


def _random_leaf(draw, size, dtype, default, device, requires_grad, kernel):
    """A leaf of sizes `size` filled by `draw(shape, dtype)`; `kernel` names PyTorch's kernel
    in its error for a dtype the distribution does not have."""
    _device.checked(device)
    _random_break()
    dtype = resolve_dtype(dtype) or default or _dtype.get_default_dtype()
    if kernel and not dtype.is_floating_point:
        raise NotImplementedError(f'"{kernel}" not implemented for \'{dtype.scalar_type}\'')
    shape = checked_shape(sizes_of(size))
    return _new_leaf(allocate(lambda: draw(shape, dtype), shape, dtype.np), None, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, **keywords):
    return _random_leaf(lambda shape, dtype: _random.uniform(shape, dtype, generator=generator),
                        _sizes("rand", size, keywords), dtype, None, device,
                        requires_grad, "check_uniform_bounds")


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, **keywords):
    return _random_leaf(lambda shape, dtype: _random.normal(shape, dtype, generator=generator),
                        _sizes("randn", size, keywords), dtype, None, device,
                        requires_grad, "normal_kernel_cpu")


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False):
    """`randint(high, size)`, `randint(low, high, size)` or `randint(high=, size=)`."""
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= "
                           f"to={high}")
    return _random_leaf(
        lambda shape, dtype: _random.integers(shape, low, high, generator).astype(dtype.np),
        (size,), dtype, _dtype.int64, device, requires_grad, None)


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    _device.checked(device)
    _random_break()
    dtype = resolve_dtype(dtype) or _dtype.int64
    shape = checked_shape((n,))
    return _new_leaf(allocate(lambda: _random.permutation(n, generator), shape, np.int64), dtype,
                     requires_grad)


def _like(factory):
    """`zeros_like` from `zeros`: the factory at another tensor's shape and dtype."""
    def like(input, *, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(input.shape, dtype=dtype or input.dtype, device=device,
                       requires_grad=requires_grad, **kwargs)
    like.__name__ = factory.__name__ + "_like"
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device,
                requires_grad=requires_grad)


def randint_like(input, low, high=None, *, generator=None, dtype=None, device=None,
                 requires_grad=False):
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, generator=generator, dtype=dtype or input.dtype,
                   device=device, requires_grad=requires_grad)


def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False):
    """`steps` powers of `base`, their exponents evenly spaced from `start` to `end`
    (computed in float64, then in `dtype`)."""
    _device.checked(device)
    dtype = resolve_dtype(dtype) or _dtype.float32
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _new_leaf(allocate(lambda: np.power(float(base), np.linspace(start, end, steps)),
                              (steps,), np.float64), dtype, requires_grad)


__all__ += ["logspace"]
