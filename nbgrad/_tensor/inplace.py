"""In-place operations: the checks and the write-back every in-place op goes through, the
in-place form of an out-of-place function (`inplace_form`: `add_` from `add`), `fill_`,
`zero_`, `copy_`, and `transpose_`, `t_`, `squeeze_` and `unsqueeze_`, which change a
tensor's shape in place.

An in-place op computes its result out of place, on a snapshot of the target when autograd
records it, then copies the result into the target's memory and moves the target to the
result's place in the graph. In deferred mode, a target whose value is still to come and
that nothing else reads has no memory to write: it becomes the result (`_rewrite_unread`).
"""
import math

import numpy as np

from .._core import dtype as _dtype, mode as _mode, tracing as _tracing
from ..autograd import graph
from ..autograd.grad_mode import state as _grad_state
from ..ops import PRIMITIVES
from ..ops.elementwise import COPY, run, scalar_param
from ..ops.gradients import copied
from .conversion import to
from .dispatch import dispatch, renew_if_stale, renew_view
from .memory import dense, positions_in
from .factories import tensor
from .._core.mode import run_pending
from .shape import expand, squeeze, t, transpose, unsqueeze
from .tensor import Tensor

__all__ = ["fill_", "zero_"]  # torch.copy_ does not exist: a method only


def check_inplace(target):
    """Run what must happen before `target`'s memory changes, and refuse a leaf that
    requires grad, or a view of one (PyTorch's errors)."""
    # Deferred ops that read this memory run before it changes.
    run_pending()
    if _grad_state.enabled:
        if target._requires_grad and target.grad_fn is None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation.")
        base = target._base  # (its view may not require grad: made before base's requires_grad_())
        if base is not None and base._requires_grad and base.grad_fn is None:
            raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                               "in-place operation.")


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
    if array.size == 0 or target.size == 0 or not (dense(array) and dense(target)):
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
    # NOTE: a view whose base was written since its node was made has a node that leads to
    # the base's old value: the snapshot must take the node of the value it copies (without
    # this, b's gradient in `v = y.view(-1); y.add_(b); v.sub_(v)` missed a term).
    renew_if_stale(target)
    # NOTE: a copy a tracer sees (`copied`): a compiled step must copy anew on every call.
    before = Tensor._wrap(copied(target._data), target._requires_grad)
    before.grad_fn = target.grad_fn
    return before


def check_result(target, result):
    """PyTorch's errors for an in-place result that does not fit its target."""
    if result.shape != target.shape:
        raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the broadcast "
                           f"shape {list(result.shape)}")
    if result.dtype != target.dtype and not _dtype.can_cast(result.dtype, target.dtype):
        raise RuntimeError(f"result type {result.dtype.scalar_type} can't be cast to the "
                           f"desired output type {target.dtype.scalar_type}")


def write_back(target, result):
    """Finish an in-place op: copy `result` into `target`'s memory, adopt its graph node."""
    check_result(target, result)
    base = target._base
    if base is not None and _grad_state.enabled and (base._requires_grad or result._requires_grad):
        positions = positions_in(base._data, target._data)
        if positions is not None:
            return _write_through(base, target, result, positions)
    if _tracing.current is not None:
        _tracing.current.write(target, target._data, result._data)
    if target._data.dtype in _dtype.COMPUTED_NUMPY:
        run(COPY, (read_apart(result._data, target._data),), (), target._data.shape,
            target._data.dtype, out=target._data)
    else:  # float16 or bfloat16 (a result of either has a target of either: promotion)
        target._data[...] = _dtype.cast(result._data, target._data.dtype)
    target._version_counter[0] += 1
    if result.grad_fn is not None:
        graph.adopt(target, result)
    return target


def _write_through(base, target, result, positions):
    """Write `result` into `target`, a view at `positions` of `base`, where a graph is
    recorded: as PyTorch's CopySlices, the base's new value is its old one with `result` put
    where the view lies, and the view's node reads its elements out of that (PyTorch's
    AsStridedBackward0; the base's other views get theirs when next used: renew_view).
    Without this, the base's node would not see the write: a backward through it would use
    the old value's gradient."""
    written = result
    if result._data.dtype != base._data.dtype:
        result = to(result, base.dtype)
    write_back(base, dispatch(PRIMITIVES["index_put"], (snapshot(base), result),
                              {"positions": positions}))
    renew_view(target)
    graph.guard_written_result(written, target)  # (the view shares its base's versions)
    return target


def inplace_form(function, saves_input=True, writes_into=None):
    """The in-place form of `function(input, *args, **kwargs)`: the method `add_` from
    `add`, `relu_` from `relu`, `scatter_` from `scatter`, and PyTorch's `torch.relu_`.
    `saves_input=False` says that the node of `function` never saves `input` (relu's reads
    its result). `writes_into` (optional) is `function` with a keyword argument `into`, an
    array that its one elementwise primitive writes the result into where the result has
    the array's shape and dtype: a call that records nothing then makes one pass over the
    target's memory, not a new result and a copy of it."""
    def in_place(input, *args, **kwargs):
        if input._pending is not None and _grad_state.enabled:
            written = _rewrite_unread(input, function, args, kwargs)
            if written is not None:
                return written
        check_inplace(input)
        target = input._data
        check_overlap(target, args, kwargs)
        recording = is_recording(input, *args, *kwargs.values())
        if writes_into is not None and not recording and _tracing.current is None \
                and _read_apart_from(target, args, kwargs):
            result = writes_into(input, *args, into=target, **kwargs)
            if result._data is not target:  # (another shape or dtype: cast, or an error)
                return write_back(input, result)
            input._version_counter[0] += 1
            return input
        # When autograd records the call (any argument requires grad), the function runs on
        # a snapshot: its node may save `input`, whose memory is about to change.
        source = snapshot(input) if recording and saves_input else input
        return write_back(input, function(source, *args, **kwargs))
    in_place.__name__ = function.__name__ + "_"
    return in_place


def _read_apart_from(target, args, kwargs):
    """Whether no Tensor argument other than the target's own array shares its memory (a
    kernel that writes the target as it reads them could read a written element)."""
    for operand in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(operand, Tensor) and operand._data is not target \
                and np.may_share_memory(operand._data, target):
            return False
    return True


def _rewrite_unread(target, function, args, kwargs):
    """Deferred mode's in-place op on a tensor whose value is still to come and that nothing
    else reads (`mode.active.take_unread`), such as the convolution's output that
    `nn.ReLU(inplace=True)` rectifies or a residual block's `out += identity`. No memory is
    written: `target` becomes the result of `function` on its old value, an op that defers
    too, so that a training step with such writes stays one graph, which can be fused. None
    where the write must go into memory (the caller then makes it)."""
    if any(arg is target for arg in args) or any(arg is target for arg in kwargs.values()):
        return None  # (x += x: the operand is the target)
    before = _mode.active.take_unread(target)
    if before is None:
        return None
    try:
        result = function(before, *args, **kwargs)
        check_result(before, result)
    except BaseException:
        _mode.active.give(before, target)  # nothing is lost: the target keeps its value
        raise
    if result.dtype != before.dtype:
        # A result cast into the target keeps its own node (AddBackward0, not a cast's):
        # the write goes into memory, and this result is dropped (nothing has read it).
        _mode.active.give(before, target)
        return None
    _mode.active.give(result, target)
    target._version_counter[0] += 1
    if result.grad_fn is not None:
        graph.adopt(target, result)
    return target


def fill_(input, value, grad_fn_name=None):
    check_inplace(input)
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.ndim} dimensions.")
        if is_recording(input, value):
            return write_back(input, dispatch(PRIMITIVES["fill"], (input, to(value, input.dtype)),
                                              grad_fn_name=grad_fn_name))
        value = value.item()
    value = checked_fill_value(value, input._data.dtype)
    if is_recording(input):
        return write_back(input, dispatch(PRIMITIVES["fill"],
                                          (input, tensor(value, dtype=input.dtype)),
                                          grad_fn_name=grad_fn_name or "FillBackward2"))
    if _tracing.current is not None:
        _tracing.current.write(input, input._data, value)
    # An expanded tensor (PyTorch allows a fill there: every copy of an element gets the
    # same value) is a read-only NumPy broadcast view: its distinct elements are written
    # through a writeable view of them (NumPy allows it where the memory is writeable).
    target = input._data
    if not target.flags.writeable and 0 in target.strides:
        target = target[tuple(slice(0, 1) if stride == 0 else slice(None)
                              for stride in target.strides)].view()
        target.setflags(write=True)
    target[...] = value
    input._version_counter[0] += 1
    return input


# The C++ type names of PyTorch's checked conversion (c10's checked_convert).
_CHECKED_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
                       "bfloat16": "c10::BFloat16", "int64": "int64_t", "int32": "int",
                       "int16": "int16_t", "int8": "int8_t", "uint8": "uint8_t"}


def checked_fill_value(value, np_dtype):
    """Python number `value` as PyTorch's fill_ converts it to `np_dtype`: checked, with
    its error for a value that does not fit (an integer out of range, a NaN into an integer
    type, a complex number with an imaginary part)."""
    if isinstance(value, (int, np.integer)) and not -2**63 <= value < 2**63:
        raise OverflowError("int too big to convert")
    if np_dtype.kind == "b":
        return bool(value)
    c_type = _CHECKED_TYPE_NAMES[np_dtype.name]
    if isinstance(value, complex):
        if value.imag != 0:
            raise RuntimeError(f"value cannot be converted to type {c_type} without overflow")
        value = value.real
    if np_dtype.kind in "iu" and isinstance(value, (float, np.floating)):
        info = np.iinfo(np_dtype)
        if not (math.isfinite(value) and info.min - 1 < value < info.max + 1):
            raise RuntimeError(f"value cannot be converted to type {c_type} without overflow")
        value = int(value)
    floating = np_dtype.kind == "f" or _dtype.is_half(np_dtype)  # (bfloat16's kind is "V")
    if floating and math.isfinite(value) and abs(value) > float(np.finfo(np_dtype).max):
        raise RuntimeError(f"value cannot be converted to type {c_type} without overflow")
    return scalar_param(value, np_dtype)


def _reshaped_in_place(function, grad_fn_name, *names):
    """The in-place form of view `function` (transpose_ from transpose): `input` becomes the
    view, a view of the same memory (under PyTorch's in-place grad_fn name where autograd
    records it), at a new version. `names` (several: squeeze_'s three overloads) replace
    `grad_fn_name` as the keyword `grad_fn_names`."""
    def in_place(input, *args, **kwargs):
        _tracing.graph_break(f"{in_place.__name__} changes a tensor's shape in place")
        check_inplace(input)
        named = {"grad_fn_names": names} if names else {"grad_fn_name": grad_fn_name}
        result = function(input, *args, **kwargs, **named)
        input._data = result._data
        input._version_counter[0] += 1
        if result.grad_fn is not None:
            graph.adopt(input, result, moves_retained=False)
        if input._base is not None:
            # Its new node reads the value as it is now: a view is not renewed for its own
            # in-place view op (PyTorch keeps SqueezeBackward4 ... as its grad_fn).
            input._view_version = input._version_counter[0]
        return input
    in_place.__name__ = function.__name__ + "_"
    return in_place


transpose_ = _reshaped_in_place(transpose, "TransposeBackward1")


def _t(input, *, grad_fn_name):
    """t, with t_'s name in its error."""
    if input.ndim > 2:
        raise RuntimeError(f"t_() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return t(input, grad_fn_name=grad_fn_name)


_t.__name__ = "t"
t_ = _reshaped_in_place(_t, "TBackward1")
unsqueeze_ = _reshaped_in_place(unsqueeze, "UnsqueezeBackward1")
squeeze_ = _reshaped_in_place(squeeze, None, "SqueezeBackward3", "SqueezeBackward4",
                              "SqueezeBackward5")


def zero_(input):
    return fill_(input, 0, grad_fn_name="ZeroBackward0")


def copy_(input, src, non_blocking=False):
    check_inplace(input)
    src = src if isinstance(src, Tensor) else tensor(src)
    check_overlap(input._data, (src,), None)
    value = to(src, input.dtype)
    if is_recording(input, src):
        # A node of its own: the old value gets zeros (else its node would keep getting the
        # gradient of a value that is gone), src the gradient (summed where it broadcast).
        return write_back(input, dispatch(PRIMITIVES["fill"], (input, value),
                                          grad_fn_name="CopyBackwards"))
    return write_back(input, expand(value, input.shape))
