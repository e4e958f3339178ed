"""nbgrad's dtypes and PyTorch's type-promotion rules for them.

Kernels compute in bool, the integer dtypes, float32 and float64. float16 and bfloat16 are
stored (NumPy's float16, ml_dtypes' bfloat16), cast, saved and loaded; ops on them compute in
float32 and round back (`run_in_float32`), as PyTorch's CPU kernels do.
"""
import importlib

import numpy as np

# Promotion compares categories (bool < integer < floating) before sizes.
_BOOL, _INTEGER, _FLOATING = 0, 1, 2


class dtype:
    """A PyTorch-style dtype object (`nbgrad.float32`, ...) wrapping a NumPy dtype."""

    __slots__ = ("name", "np", "category", "is_floating_point", "is_signed", "itemsize",
                 "scalar_type")
    is_complex = False

    def __init__(self, name, np_dtype, category, itemsize, is_signed, scalar_type):
        self.name = name
        if np_dtype is not None:  # a _LazyDtype's comes from its property
            self.np = np.dtype(np_dtype)
        self.category = category
        self.is_floating_point = category == _FLOATING
        self.is_signed = is_signed
        self.itemsize = itemsize
        # PyTorch's ScalarType name, which its messages use ("Long", "Float", "BFloat16").
        self.scalar_type = scalar_type

    def __repr__(self):
        return f"nbgrad.{self.name}"

    def __reduce__(self):
        return (by_name, (self.name,))


class _LazyDtype(dtype):
    """A dtype whose NumPy dtype comes from a module imported on first use: ml_dtypes takes
    most of a second to import, which only programs that use bfloat16 should pay."""

    __slots__ = ("_module",)

    def __init__(self, name, module, *args):
        super().__init__(name, None, *args)
        self._module = module

    @property
    def np(self):
        return np.dtype(getattr(importlib.import_module(self._module), self.name))


bool_ = dtype("bool", np.bool_, _BOOL, 1, False, "Bool")
uint8 = dtype("uint8", np.uint8, _INTEGER, 1, False, "Byte")
int8 = dtype("int8", np.int8, _INTEGER, 1, True, "Char")
int16 = dtype("int16", np.int16, _INTEGER, 2, True, "Short")
int32 = dtype("int32", np.int32, _INTEGER, 4, True, "Int")
int64 = dtype("int64", np.int64, _INTEGER, 8, True, "Long")
float16 = dtype("float16", np.float16, _FLOATING, 2, True, "Half")
bfloat16 = _LazyDtype("bfloat16", "ml_dtypes", _FLOATING, 2, True, "BFloat16")
float32 = dtype("float32", np.float32, _FLOATING, 4, True, "Float")
float64 = dtype("float64", np.float64, _FLOATING, 8, True, "Double")

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
# The C++ type names some of PyTorch's messages use ("unsigned char", "c10::Half").
C_TYPE_NAMES = {"float32": "float", "float64": "double", "int64": "long int", "int32": "int",
                "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
                "bool": "bool", "float16": "c10::Half", "bfloat16": "c10::BFloat16"}
# Stored, not computed in: ops on them run in float32 (see run_in_float32).
HALF = (float16, bfloat16)
# The NumPy dtypes kernels compute in.
COMPUTED_NUMPY = frozenset(d.np for d in ALL if d not in HALF)
_BY_NAME = {d.name: d for d in ALL}
_BY_NUMPY = {d.np: d for d in ALL if d is not bfloat16}
# The NumPy dtypes a tensor's array may have as it is (bfloat16's too, once imported).
STORED_NUMPY = set(_BY_NUMPY)
# (Python types as dtypes: `float` is float64 whatever the default dtype, as in PyTorch)
_PYTHON_TYPES = {float: float64, int: int64, bool: bool_}


def by_name(name):
    """The dtype called `name` ("int32"): how pickled dtypes come back."""
    return _BY_NAME[name]


def from_numpy_dtype(np_dtype):
    # An array's dtype is found at once (Tensor.dtype); np.dtype() would add 0.2 us.
    found = _BY_NUMPY.get(np_dtype)
    if found is not None:
        return found
    np_dtype = np.dtype(np_dtype)
    found = _BY_NUMPY.get(np_dtype)
    if found is not None:
        return found
    if np_dtype.kind == "V" and np_dtype.name == "bfloat16":  # so ml_dtypes is imported
        _BY_NUMPY[np_dtype] = bfloat16
        STORED_NUMPY.add(np_dtype)
        return bfloat16
    # NumPy dtypes PyTorch does not have are widened to the nearest one nbgrad has.
    if np_dtype.kind == "f" and np_dtype.itemsize > 8:
        return float64
    if np_dtype.kind in "iu":
        return int64
    raise TypeError(f"can't convert np.ndarray of type {np_dtype}. The only supported types are: "
                    "float64, float32, float16, int64, int32, int16, int8, uint8, and bool.")


def as_dtype(value):
    """Accept nbgrad dtypes, NumPy dtypes and the Python types `float`, `int`, `bool`."""
    if isinstance(value, dtype):
        return value
    if value in _PYTHON_TYPES:
        return _PYTHON_TYPES[value]
    try:
        return from_numpy_dtype(value)
    except TypeError:
        raise TypeError(f"unsupported dtype {value!r}; nbgrad has "
                        f"{', '.join(d.name for d in ALL)}") from None


def _promote(a, b):
    """PyTorch's promote_types, by rule: the higher category wins; two integers give the
    smallest integer holding both ranges (uint8 and int8 give int16); float16 and bfloat16
    give float32."""
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.category == _INTEGER and a.is_signed != b.is_signed:
        signed, unsigned = (a, b) if a.is_signed else (b, a)
        size = max(signed.itemsize, 2 * unsigned.itemsize)
    elif {a, b} == set(HALF):
        size = 4
    else:
        return a if a.itemsize >= b.itemsize else b
    return next(d for d in ALL if d.category == a.category and d.is_signed and d.itemsize == size)


_PROMOTED = {(a, b): _promote(a, b) for a in ALL for b in ALL}


def promote_types(type1, type2):
    """The smallest dtype both convert to without losing their category (PyTorch's table)."""
    return _PROMOTED[type1, type2]


def can_cast(from_, to):
    """PyTorch's can_cast: no cast to a lower category (float to integer, number to bool)."""
    return from_.category <= to.category


# torch.set_default_dtype's: the dtype of floats given without one (tensor(1.5), zeros(2),
# rand, a module's parameters) and of integers made floating (int_tensor / 2, sin).
# NOTE: a deferred graph needs no key of it: the ops it records take a float tensor with a
# gradient, and their result dtypes do not depend on it (int_tensor / 2 runs before, and its
# result is read as an input of the graph, of its dtype). A compiled step's call checks it.
_default = float32


def get_default_dtype():
    return _default


def set_default_dtype(d):
    global _default
    if not isinstance(d, dtype) or not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    if d in HALF:
        # (nbgrad stores them but computes in float32: int_tensor / 2 would need a kernel
        # computing in float32 into a half result)
        raise NotImplementedError(f"nbgrad: {d!r} as the default dtype is not supported; "
                                  "float32 and float64 are")
    _default = d


def scalar_dtype(value):
    """The dtype PyTorch gives a Python scalar operand ("wrapped number")."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return _default


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
    when it brings a higher category (int tensor * 2.5 is float32, the default dtype).
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


def out_of_range_integer(value, np_dtype, checked):
    """Python integer `value`, out of the range of integer NumPy dtype `np_dtype` (where NumPy
    raises OverflowError), as PyTorch converts it: wrapped around as C converts, for an
    operand of arithmetic (`int8_tensor + 1000`); with `checked`, for a value PyTorch checks (a
    clamp bound), its RuntimeError, except for negative values down to -max for an unsigned
    dtype, which wrap (c10's checked_convert)."""
    info = np.iinfo(np_dtype)
    if checked and not (info.min == 0 and -info.max <= value < 0):
        c_type = f"{'u' if info.min == 0 else ''}int{info.bits}_t"
        raise RuntimeError(f"value cannot be converted to type {c_type} without overflow")
    return np_dtype.type((int(value) - info.min) % (1 << info.bits) + info.min)


def is_half(np_dtype):
    """Whether NumPy dtype `np_dtype` is float16 or bfloat16 (stored, computed in float32).
    NOTE: without reading `np_dtype.name`, which NumPy makes anew each time (4 us)."""
    return np_dtype not in COMPUTED_NUMPY and (np_dtype == float16.np or np_dtype.kind == "V"
                                               and np_dtype.name == "bfloat16")


def cast(array, np_dtype):
    """`array` as `np_dtype` where either is float16 or bfloat16, as PyTorch casts: through
    float32. NOTE: so a float64 or int64 value is rounded twice, to float32 and then to
    float16 (NumPy's direct rounding differs at some ties)."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are the results, as there
        return array.astype(np.float32, copy=False).astype(np_dtype)


def run_in_float32(forward, arrays, params):
    """`forward(*arrays, **params)` where some arrays, or the result's dtype parameter
    (`to_copy(dtype=)`, `sum(dtype=)`), are float16 or bfloat16, which Numba cannot compute
    in: they compute in float32, and a float32 result is rounded to the dtype parameter, or
    without one to the arrays' promoted dtype, if that is float16 or bfloat16, as PyTorch's
    CPU kernels compute such ops. None if nothing is float16 or bfloat16."""
    dtype_params = {name: value for name, value in params.items() if isinstance(value, np.dtype)}
    half_params = [name for name, value in dtype_params.items() if is_half(value)]
    if not half_params and not any(is_half(a.dtype) for a in arrays):
        return None
    result = next(iter(dtype_params.values())) if dtype_params else result_type(*arrays).np
    out = forward(*(a.astype(np.float32) if is_half(a.dtype) else a for a in arrays),
                  **{**params, **dict.fromkeys(half_params, float32.np)})
    if is_half(result) and out.dtype == np.float32:
        out = out.astype(result)
    return out


class finfo:
    """PyTorch's finfo: the limits of a floating dtype, as Python floats."""

    def __init__(self, type=None):
        type = float32 if type is None else as_dtype(type)
        if not type.is_floating_point:
            raise TypeError("torch.finfo() requires a floating point input type. Use "
                            "torch.iinfo to handle 'torch.finfo'")
        info = _numpy_finfo(type)
        self.bits = type.itemsize * 8
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        # NOTE: PyTorch's resolution is 10 ** -digits10 exactly; NumPy's for bfloat16 is not.
        self.resolution = 10.0 ** -int(info.precision)
        self.dtype = type.name

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
                f"tiny={self.tiny:g}, dtype={self.dtype})")


def _numpy_finfo(type):
    if type is bfloat16:
        return importlib.import_module("ml_dtypes").finfo(bfloat16.np)
    return np.finfo(type.np)


class iinfo:
    """PyTorch's iinfo: the limits of an integer dtype, as Python ints."""

    def __init__(self, type):
        type = as_dtype(type)
        if type is bool_:
            raise TypeError("torch.bool is not supported by torch.iinfo")
        if type.is_floating_point:
            raise TypeError("torch.iinfo() requires an integer input type. Use torch.finfo to "
                            "handle 'torch.iinfo'")
        info = np.iinfo(type.np)
        self.bits = type.itemsize * 8
        self.max = int(info.max)
        self.min = int(info.min)
        self.dtype = type.name

    def __repr__(self):
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"
