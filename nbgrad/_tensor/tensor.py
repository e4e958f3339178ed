"""The user-facing Tensor: a NumPy array plus what autograd needs to know about it.

Operators and methods that compute something are attached from the explicit table in
`nbgrad._tensor.methods`; an op call goes through `nbgrad._tensor.dispatch`. This module
holds the object itself and its construction.
"""
import math
import operator
import weakref

import numpy as np

from .._core import mode, tracing as _tracing
from .._core.dtype import C_TYPE_NAMES, STORED_NUMPY, as_dtype, from_numpy_dtype, get_default_dtype, is_half
from .._core.mode import run_pending
from .. import autograd
from ..autograd.graph import output_edge
from .format import format_tensor
from . import device as _device

class Size(tuple):
    """torch.Size: a tuple of ints with `numel()`."""

    def numel(self):
        return int(np.prod(self)) if self else 1

    def __repr__(self):
        return f"nbgrad.Size({list(self)})"

    # NOTE: torch.Size's slices and sums are Sizes; here they are tuples. Overriding
    # __getitem__ and __add__ made every `x.shape[i]` a Python call (150 against 20 ns, and
    # library code indexes shapes on every op), and put Sizes into op parameters, which the
    # deferred mode's caches take only as plain tuples.


_DETACH_VIEW = (
    "Can't detach views in-place. Use detach() instead. If you are using "
    "DistributedDataParallel (DDP) for training, and gradient_as_bucket_view is set as True, "
    "gradients are views of DDP buckets, and hence detach_() cannot be called on these "
    "gradients. To fix this error, please refer to the Optimizer.zero_grad() function in "
    "torch/optim/optimizer.py as the solution.")


class Tensor:
    # `_pending`: None, or the record of the op that will make `_data` (deferred mode, see
    # nbgrad.fuse.deferred); `_data` is unset until it runs. `_base` (PyTorch's attribute):
    # for a view made by a view primitive, the tensor at the root of its views, whose memory
    # it shares; `_view_version`: the version its node reads (see dispatch.renew_view). An
    # in-place write into a view rewrites its base's node (`inplace.write_back`).
    __slots__ = ("_data", "_grad", "grad_fn", "_requires_grad", "_version_counter",
                 "_accumulator", "_hooks", "_pending", "_base", "_view_version", "__weakref__")

    # A tensor on the right of a NumPy operator makes NumPy defer to us.
    __array_priority__ = 1000

    def __init__(self, *args):
        """`Tensor(data)` copies data in the default dtype; `Tensor(2, 3)` is an
        uninitialized 2x3."""
        default = get_default_dtype().np
        if all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args) and args:
            shape = checked_shape(args)
            data = allocate(lambda: np.empty(shape, default), shape, default)
        elif len(args) == 1:
            source = args[0]._data if isinstance(args[0], Tensor) else args[0]
            data = np.array(source, dtype=default)
        elif not args:
            data = np.empty((0,), default)
        else:
            raise TypeError(f"Tensor(): invalid arguments {args!r}")
        _init(self, data)

    def __getattr__(self, name):
        # Reached only for an attribute that is not set: the `_data` of a tensor whose op is
        # pending, which the mode that deferred it runs now.
        if name == "_data" and self._pending is not None:
            return mode.active.value(self)
        raise AttributeError(f"'Tensor' object has no attribute '{name}'")

    # --- construction used by the library ------------------------------------------------

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        tensor = cls.__new__(cls)
        _init(tensor, array, requires_grad)
        return tensor

    @staticmethod
    def _new_plain(array):
        """A Tensor on `array` made by a kernel. Autograd, a layer below this class, makes
        gradient tensors through it, from the tensors it is given."""
        return new_tensor(array)

    # --- autograd attributes -------------------------------------------------------------

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of "
                                f"type {type(value).__name__}")
            if value._data.shape != self._data.shape:
                raise RuntimeError(f"attempting to assign a gradient of size "
                                   f"'{list(value._data.shape)}' to a tensor of size "
                                   f"'{list(self._data.shape)}'. Please ensure that the "
                                   f"gradient and the tensor are the same size")
            if value.dtype != self.dtype:
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype "
                    f"'{C_TYPE_NAMES[value.dtype.name]}' to a tensor with grad_dtype "
                    f"'{self.dtype.scalar_type}'. The gradient must "
                    "match the tensor's grad_dtype (defaults to the tensor's dtype). You can "
                    "set the tensor's grad_dtype attribute with a specific dtype, or None to "
                    "allow any dtype. Set grad_dtype with caution. Diverging the dtypes of a "
                    "tensor and its gradient may break downstream systems that assume they "
                    "match.")
        if _tracing.current is not None:
            # Assigning .grad inside a compiled step makes its earlier value irrelevant.
            _tracing.current.touch(self, reads_grad=False)
        self._grad = value

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you "
                               "want to use a computed variable in a subgraph that doesn't require "
                               "differentiation use var_no_grad = var.detach().")
        if value and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if value and is_half(self._data.dtype):
            raise RuntimeError(f"nbgrad computes no gradients in {self.dtype.name}: cast the "
                               f"tensor with .float() first")
        # A pending op links to its inputs' gradients as their flags were when it was called.
        run_pending()
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def retains_grad(self):
        return self.grad_fn is not None and output_edge(self)._retained is not None

    def retain_grad(self):
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        # (PyTorch's is a no-op on a tensor that retains already, also where an in-place
        # view op left the hook on an earlier node: see graph.RetainedEarlier)
        if self.grad_fn is not None and output_edge(self)._retained is None:
            output_edge(self)._retained = weakref.ref(self)

    def register_hook(self, hook):
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            hooks = self._hooks = self._hooks or []
        else:
            node = output_edge(self)
            hooks = node._pre_hooks = node._pre_hooks or []
        hooks.append(hook)
        return autograd.graph.RemovableHandle(hooks, hook)

    @property
    def _version(self):
        return self._version_counter[0]

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self):
        """Same data and version counter, no graph."""
        out = Tensor._wrap(self._data)
        out._version_counter = self._version_counter
        return out

    def detach_(self):
        if self._base is not None:
            raise RuntimeError(_DETACH_VIEW)
        self._data  # noqa: B018  (a deferred forward runs before the tensor leaves its graph)
        if self.grad_fn is not None:
            autograd.graph.drop_retained(self)
        self.grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self):
        """A tensor sharing this one's memory, outside autograd (PyTorch's `.data`)."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        run_pending()  # deferred ops read the array this replaces
        self._data = value._data if isinstance(value, Tensor) else np.asarray(value)

    # --- metadata --------------------------------------------------------------------------

    # NOTE: `_meta` inline in `shape` and `ndim`: API functions read them on every call.
    @property
    def shape(self):
        pending = self._pending
        return Size((self._data if pending is None else pending).shape)

    def size(self, dim=None):
        meta = _meta(self)
        if dim is None:
            return Size(meta.shape)
        if not meta.ndim:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return meta.shape[_check_dim(dim, meta.ndim)]

    @property
    def dtype(self):
        return from_numpy_dtype(_meta(self).dtype)

    @property
    def ndim(self):
        pending = self._pending
        return (self._data if pending is None else pending).ndim

    def dim(self):
        return _meta(self).ndim

    def numel(self):
        return _meta(self).size

    nelement = numel

    def element_size(self):
        return _meta(self).dtype.itemsize

    @property
    def itemsize(self):
        return self.element_size()

    @property
    def nbytes(self):
        """numel() * itemsize, as PyTorch's (an expanded tensor counts every element)."""
        return self.numel() * self.element_size()

    def data_ptr(self):
        """The address of the first element."""
        return self._data.__array_interface__["data"][0]

    def storage_offset(self):
        """The first element's offset, in elements, from the start of the memory it shares
        with the tensors it is a view of."""
        owner = self._data
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        start = np.lib.array_utils.byte_bounds(owner)[0] if owner.size else self.data_ptr()
        return (self.data_ptr() - start) // self.element_size()

    @property
    def device(self):
        return _device.CPU

    is_cuda = False

    def get_device(self):
        """-1: the index PyTorch gives a CPU tensor."""
        return -1

    def is_contiguous(self, memory_format=None):
        return layout(self).flags.c_contiguous

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def stride(self, dim=None):
        array = layout(self)
        strides = tuple(s // array.itemsize for s in array.strides)
        return strides if dim is None else strides[_check_dim(dim, array.ndim)]

    # --- conversion to Python and NumPy ----------------------------------------------------

    def item(self):
        _tracing.graph_break("Tensor.item() reads a value")
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(-1)[0].item()

    def tolist(self):
        _tracing.graph_break("Tensor.tolist() reads values")
        return self._data.tolist()

    def numpy(self, force=False):
        _tracing.graph_break("Tensor.numpy() hands out the data")
        run_pending()  # the caller may write into the array
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        _tracing.graph_break("converting a Tensor to a NumPy array reads its values")
        run_pending()  # the caller may write into the array
        array = self._data if dtype is None else self._data.astype(dtype, copy=False)
        return array.copy() if copy else array

    def __len__(self):
        if not self._data.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if not self._data.ndim:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def _scalar(self, kind):
        _tracing.graph_break(f"{kind.__name__}(tensor) reads a value")
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return kind(self._data.reshape(-1)[0])

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        _tracing.graph_break("Python control flow on a tensor's value (bool(tensor))")
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.reshape(-1)[0])

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.reshape(-1)[0])

    __hash__ = object.__hash__

    def __repr__(self):
        return format_tensor(self)

    def __format__(self, format_spec):
        # As PyTorch: f"{loss}" and f"{loss:.4f}" of a 0-d tensor format its number.
        if self.ndim == 0:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def __reduce__(self):
        return (_rebuild, (self._data, self._requires_grad))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support "
                               "the deepcopy protocol at the moment.")
        copy = Tensor._wrap(self._data.copy(), self._requires_grad)
        if self.grad is not None:
            copy.grad = Tensor._wrap(self.grad._data.copy())
        memo[id(self)] = copy
        return copy


def new_tensor(array):
    """A Tensor on `array`, made by a kernel (so of a supported dtype): `_init` without its
    dtype check, for the hot paths."""
    tensor = Tensor.__new__(Tensor)
    _set(tensor, array, False)
    return tensor


def _rebuild(data, requires_grad):
    return Tensor._wrap(data, requires_grad)


def _init(tensor, array, requires_grad=False):
    if array.dtype not in STORED_NUMPY:
        array = array.astype(from_numpy_dtype(array.dtype).np, copy=False)
    _set(tensor, array, requires_grad)


def _set(tensor, array, requires_grad):
    tensor._data = array
    tensor._grad = None
    tensor.grad_fn = None
    tensor._requires_grad = requires_grad
    tensor._version_counter = [0]
    tensor._accumulator = None
    tensor._hooks = None
    tensor._pending = None
    tensor._base = None


def remember_view(view, of):
    """Note that `view`, which shares of's version counter, is a view of tensor `of` (a view
    primitive's result): its `_base` is of's root, and its node reads the current version."""
    base = of._base
    view._base = of if base is None else base
    view._view_version = view._version_counter[0]


def sizes_of(sizes):
    """Sizes given one by one (`x.view(2, 3)`, `zeros(2, 3)`) or as one sequence
    (`x.view((2, 3))`), as a tuple of ints."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    for position, s in enumerate(sizes):
        # As PyTorch: an integer (NumPy's, an integer tensor of one element), not a float or
        # a bool (which int() would take).
        if isinstance(s, bool) or not hasattr(type(s), "__index__"):
            raise TypeError(f"argument 'size' must be tuple of ints, but found element of type "
                            f"{type(s).__name__} at pos {position}")
    return tuple(operator.index(s) for s in sizes)


def checked_shape(size):
    """Sizes as a shape, with PyTorch's error for a negative one."""
    shape = tuple(int(s) for s in size)
    for s in shape:
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: "
                               f"{list(shape)}")
    return shape


_MAX_BYTES = 2 ** 63 - 1


def allocate(make, shape, np_dtype):
    """`make()`, which allocates an array of `shape` and `np_dtype`, with PyTorch's errors
    (RuntimeError) where NumPy raises ValueError or MemoryError: sizes whose byte count
    overflows, and memory that cannot be had."""
    if math.prod(shape) * np.dtype(np_dtype).itemsize > _MAX_BYTES:
        raise RuntimeError(f"Storage size calculation overflowed with sizes={list(shape)}")
    try:
        return make()
    except MemoryError:
        raise cannot_allocate(shape, np_dtype) from None


def cannot_allocate(shape, np_dtype):
    """PyTorch's error (a RuntimeError, where NumPy raises MemoryError) for an array of
    `shape` and `np_dtype` that does not fit in memory."""
    return RuntimeError(f"DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                        f"{math.prod(shape) * np.dtype(np_dtype).itemsize} bytes.")


def _check_dim(dim, ndim):
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-rank}, "
                         f"{rank - 1}], but got {dim})")
    return dim % rank


def _meta(tensor):
    """The tensor's array, or for a tensor whose op is pending the record of that op, which
    has the shape, dtype, ndim and size of the array to come."""
    pending = tensor._pending
    return tensor._data if pending is None else pending


def layout(tensor):
    """An array with the tensor's shape, dtype and strides, for reading its layout; its
    values are the tensor's only when no op is pending. A pending op does not run for it:
    reading `is_contiguous()` or `stride()` between ops (`x.transpose(1, 2).contiguous()`,
    `.view` of a slice) would otherwise run a deferred graph mid-step, which then never
    fuses."""
    pending = tensor._pending
    if pending is None:
        return tensor._data
    array = getattr(pending, "array", None)  # (an input that a pending op writes in place)
    if array is not None:
        return array
    if not pending.prim.view:
        # A result of its own: a new C-contiguous array. (np.empty touches no memory.)
        return np.empty(pending.shape, pending.dtype)
    # A view: its input's layout, viewed as the op views it. (A view's forward is NumPy's
    # view of its input, which reads no values.)
    return pending.prim.forward(layout(pending.inputs[0]), **pending.params)


def resolve_dtype(dtype):
    return None if dtype is None else as_dtype(dtype)

