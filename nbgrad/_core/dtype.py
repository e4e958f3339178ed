"""The four dtypes nbgrad supports and PyTorch's type-promotion rules for them."""
import numpy as np


class dtype:
    """A PyTorch-style dtype object (`nbgrad.float32`, ...) wrapping a NumPy dtype."""

    __slots__ = ("name", "np", "is_floating_point", "category")

    def __init__(self, name, np_dtype, category):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = category == 2
        # NOTE: promotion compares categories (bool < integer < floating) before sizes.
        self.category = category

    def __repr__(self):
        return f"nbgrad.{self.name}"

    def __reduce__(self):
        return self.name


bool_ = dtype("bool", np.bool_, 0)
int64 = dtype("int64", np.int64, 1)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)

_BY_NUMPY = {d.np: d for d in (bool_, int64, float32, float64)}
# NumPy dtypes nbgrad does not store are widened to the nearest supported one.
_WIDEN = {"f": float32, "i": int64, "u": int64, "b": bool_}
_PYTHON_TYPES = {float: float64, int: int64, bool: bool_}
_ORDER = (bool_, int64, float32, float64)


def from_numpy_dtype(np_dtype):
    np_dtype = np.dtype(np_dtype)
    found = _BY_NUMPY.get(np_dtype)
    if found is not None:
        return found
    if np_dtype.kind == "f" and np_dtype.itemsize > 4:
        return float64
    if np_dtype.kind in _WIDEN:
        return _WIDEN[np_dtype.kind]
    raise TypeError(f"can't convert np.ndarray of type {np_dtype}. The only supported types are: "
                    "float64, float32, int64 and bool.")


def as_dtype(value):
    """Accept nbgrad dtypes, NumPy dtypes and the Python types `float`, `int`, `bool`."""
    if isinstance(value, dtype):
        return value
    if value in _PYTHON_TYPES:
        return _PYTHON_TYPES[value]
    try:
        return from_numpy_dtype(value)
    except TypeError:
        raise TypeError(f"unsupported dtype {value!r}; nbgrad has float32, float64, int64 and bool") from None


def promote_types(a, b):
    """The smallest dtype both `a` and `b` convert to without losing their category."""
    return a if _ORDER.index(a) >= _ORDER.index(b) else b


def scalar_dtype(value):
    """The dtype PyTorch gives a Python scalar operand ("wrapped number")."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return float32


def _combine(higher, lower):
    # Mirrors c10's combine_categories: a lower-priority operand only matters if it is
    # of a higher category (an int tensor times 2.5 is float, a float32 tensor times a
    # float64 0-d tensor stays float32).
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


# Operands that are Python-scalar-like ("wrapped numbers" in PyTorch, NumPy scalars too).
_SCALARS = (bool, int, float, np.number, np.bool_)


def result_type(*operands):
    """PyTorch's result_type over tensors and Python scalars.

    A tensor operand is anything with `dtype` and `ndim`: a NumPy array (tensor data), or the
    grad_fn node of a deferred tensor, which stands in for the array to come. Tensors with
    dimensions outrank 0-d tensors, which outrank Python scalars; a lower rank only matters
    when it brings a higher category (int tensor * 2.5 is float32).
    """
    dim = zero_dim = wrapped = None
    for x in operands:
        if isinstance(x, _SCALARS):
            d = scalar_dtype(x)
            wrapped = d if wrapped is None else promote_types(wrapped, d)
        else:
            d = from_numpy_dtype(x.dtype)
            if x.ndim:
                dim = d if dim is None else promote_types(dim, d)
            else:
                zero_dim = d if zero_dim is None else promote_types(zero_dim, d)
    return _combine(dim, _combine(zero_dim, wrapped))
