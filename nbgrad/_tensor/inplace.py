"""In-place operations: the checks and the write-back every in-place op goes through, the
in-place form of an out-of-place function (`inplace_form`: `add_` from `add`), and `fill_`,
`zero_`, `copy_`.

An in-place op computes its result out of place, on a snapshot of the target when autograd
records it, then copies the result into the target's memory and moves the target to the
result's place in the graph.
"""
import numpy as np

from .._core import dtype as _dtype, tracing as _tracing
from ..autograd.grad_mode import state as _grad_state
from ..ops.elementwise import COPY, run
from ..ops.gradients import copied
from .conversion import to
from .factories import tensor
from .._core.mode import run_pending
from .shape import expand
from .tensor import Tensor

__all__ = ["fill_", "zero_"]  # torch.copy_ does not exist: a method only


def check_inplace(target):
    """Run what must happen before `target`'s memory changes, and refuse a leaf that
    requires grad (PyTorch's error)."""
    # Deferred ops that read this memory run before it changes.
    run_pending()
    if _grad_state.enabled and target._requires_grad and target.grad_fn is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                           "operation.")


def _dense(array):
    """Whether `array`'s elements fill its span exactly once, in some order of its dims
    (PyTorch's non-overlapping-and-dense)."""
    step = array.itemsize
    for stride, size in sorted((abs(st), n) for st, n in zip(array.strides, array.shape) if n > 1):
        if stride != step:
            return False
        step *= size
    return True


def check_overlap(target, args, kwargs):
    """PyTorch's errors for an in-place write into `target` (an array) that its own elements
    or a Tensor argument's overlap: a target with one element at several positions (an
    expanded tensor), or an operand laid over part of the target's memory (`x[1:] +=
    x[:-1]`, `x += x.t()`). As PyTorch, overlaps it cannot decide cheaply (views with gaps,
    such as x[::2] and x[1::2]) are allowed."""
    if 0 in target.strides and target.size > 1 and any(
            stride == 0 and size > 1 for stride, size in zip(target.strides, target.shape)):
        raise RuntimeError("unsupported operation: more than one element of the written-to "
                           "tensor refers to a single memory location. Please clone() the "
                           "tensor before performing the operation.")
    for operand in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(operand, Tensor) and operand._data is not target \
                and _partly_over(operand._data, target):
            raise RuntimeError("unsupported operation: some elements of the input tensor and "
                               "the written-to tensor refer to a single memory location. "
                               "Please clone() the tensor before performing the operation.")


def _partly_over(array, target):
    """Whether `array` lies over part of `target`'s memory, or over all of it in another
    order; both dense (else, as PyTorch, not decided)."""
    if array.base is None and target.base is None:
        return False  # (two arrays of their own: the common case, decided at once)
    if array.size == 0 or target.size == 0 or not (_dense(array) and _dense(target)):
        return False
    start, begin = array.__array_interface__["data"][0], target.__array_interface__["data"][0]
    if start == begin and array.nbytes == target.nbytes:
        return array.strides != target.strides  # the same elements, in the same places or not
    return start < begin + target.nbytes and begin < start + array.nbytes


def read_apart(array, target):
    """`array`, or a copy of it where it may share memory with `target` (which it is to be
    written into): a write must not read elements it has already written. (NumPy's answer
    for the overlaps that `check_overlap` allows, such as x[2::2] = x[:-2:2].)"""
    if array is target or (array.base is None and target.base is None) \
            or not np.may_share_memory(array, target):
        return array
    return array.copy()


def is_recording(*operands):
    """Whether autograd records an op on `operands` (tensors or Python scalars)."""
    return _grad_state.enabled and any(isinstance(x, Tensor) and x._requires_grad for x in operands)


def snapshot(target):
    """The value `target` has before an in-place write, at the same place in the graph."""
    # NOTE: a copy a tracer sees (`copied`): a compiled step must copy anew on every call.
    before = Tensor._wrap(copied(target._data), target._requires_grad)
    before.grad_fn = target.grad_fn
    return before


def write_back(target, result):
    """Finish an in-place op: copy `result` into `target`'s memory, adopt its graph node."""
    if result.shape != target.shape:
        raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the broadcast "
                           f"shape {list(result.shape)}")
    if result._data.dtype != target._data.dtype and \
            not _dtype.can_cast(result.dtype, target.dtype):
        raise RuntimeError(f"result type {result.dtype.scalar_type} can't be cast to the "
                           f"desired output type {target.dtype.scalar_type}")
    if _tracing.current is not None:
        _tracing.current.write(target, target._data, result._data)
    if target._data.dtype in _dtype.COMPUTED_NUMPY:
        run(COPY, (read_apart(result._data, target._data),), (), target._data.shape,
            target._data.dtype, out=target._data)
    else:  # float16 or bfloat16 (a result of either has a target of either: promotion)
        target._data[...] = _dtype.cast(result._data, target._data.dtype)
    target._version_counter[0] += 1
    if result.grad_fn is not None:
        target.grad_fn = result.grad_fn
        target._requires_grad = True
    return target


def inplace_form(function, saves_input=True):
    """The in-place form of `function(input, *args, **kwargs)`: the method `add_` from
    `add`, `relu_` from `relu`, `scatter_` from `scatter`, and PyTorch's `torch.relu_`.
    `saves_input=False` says that the node of `function` never saves `input` (relu's reads
    its result)."""
    def in_place(input, *args, **kwargs):
        check_inplace(input)
        check_overlap(input._data, args, kwargs)
        # When autograd records the call (any argument requires grad), the function runs on
        # a snapshot: its node may save `input`, whose memory is about to change.
        recording = saves_input and is_recording(input, *args, *kwargs.values())
        source = snapshot(input) if recording else input
        return write_back(input, function(source, *args, **kwargs))
    in_place.__name__ = function.__name__ + "_"
    return in_place


def fill_(input, value):
    check_inplace(input)
    value = value.item() if isinstance(value, Tensor) else value
    if _tracing.current is not None:
        _tracing.current.write(input, input._data, value)
    input._data[...] = value
    input._version_counter[0] += 1
    return input


def zero_(input):
    return fill_(input, 0)


def copy_(input, src, non_blocking=False):
    check_inplace(input)
    src = src if isinstance(src, Tensor) else tensor(src)
    check_overlap(input._data, (src,), None)
    return write_back(input, expand(to(src, input.dtype), input.shape))
