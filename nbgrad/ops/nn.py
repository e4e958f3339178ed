"""Fused primitives for neural networks, each a primitive for speed or numerical stability:

- `linear` (x @ W.T + b for a 2-D x): one BLAS call plus the bias in the same kernel, and
  PyTorch's `AddmmBackward0`; the backward needs no transposed copies.
- `pointwise losses` (mse, l1, binary cross entropy, with and without logits): generated
  from one table of scalar expressions, with the reduction done inside the kernel, so a loss
  is one kernel forward and one backward. BCE with logits uses the log-sum-exp form
  `max(-x, 0) + log1p(exp(-|x|))`, which never overflows.
- `nll_loss`: gathers the target class of each row of log-probabilities (cross entropy is
  log_softmax followed by this), with class weights and `ignore_index`.
- `embedding`: a row gather whose backward scatter-adds into a (num_embeddings, dim) array
  instead of the full-size positions `take` would compute.

NOTE: Numba does not bounds-check. Every index (targets, embedding ids) is validated in
Python (with a small njit scan) before a kernel uses it, at forward and again at backward:
the saved indices may share memory with a NumPy array (`from_numpy`) that the user changed
in between, which no version counter sees. (PyTorch, too, reads them as they are then.)
"""
import functools
import re

import numba
import numpy as np

from .._core import modules as _codegen
from .linalg import blas_ready
from .shape import flat_contiguous
from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register

_jit = numba.njit(cache=True, error_model="numpy")

REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------
# linear: x (N, in) @ weight (out, in).T + bias (out,)

@_jit
def linear_kernel(x, weight, bias, out):
    np.dot(x, weight.T, out)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += bias[j]


@_jit
def linear_vjp_kernel(g, x, weight, grad_x, grad_weight, grad_bias, need_x, need_weight,
                      need_bias):
    if need_x:
        np.dot(g, weight, grad_x)
    if need_weight:
        np.dot(g.T, x, grad_weight)
    if need_bias:
        for j in range(g.shape[1]):
            grad_bias[j] = 0.0
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                grad_bias[j] += g[i, j]


def _linear_infer(x, weight, bias):
    if x.ndim != 2 or weight.ndim != 2 or bias.shape != weight.shape[:1]:
        raise RuntimeError(f"linear: expected a 2-D input, a 2-D weight and a matching bias; got "
                           f"shapes {tuple(x.shape)}, {tuple(weight.shape)}, {tuple(bias.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({x.shape[0]}x{x.shape[1]} "
                           f"and {weight.shape[1]}x{weight.shape[0]})")
    if not x.dtype == weight.dtype == bias.dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {x.dtype} and "
                           f"{weight.dtype}")
    if x.dtype.kind == "b":
        raise NotImplementedError('"addmm_impl_cpu_" not implemented for \'Bool\'')
    if x.dtype.kind != "f":
        raise RuntimeError(f"linear is implemented for floating point tensors only, got {x.dtype}")
    return (x.shape[0], weight.shape[0]), x.dtype


# NOTE: Numba's np.dot handles empty operands (an empty inner dimension gives zeros), so
# the kernels need no special case for in_features, out_features or the batch being 0.
def _linear_forward(x, weight, bias):
    shape, dtype = _linear_infer(x, weight, bias)
    out = np.empty(shape, dtype)
    linear_kernel(blas_ready(x), blas_ready(weight), bias, out)
    return out


def _linear_vjp(node, g):
    x, weight = node.saved
    need_x, need_weight, need_bias = node.needs
    # Arrays not asked for are zero-size stand-ins, so the kernel keeps one signature.
    grad_x = np.empty(x.shape if need_x else (0, 0), g.dtype)
    grad_weight = np.empty(weight.shape if need_weight else (0, 0), g.dtype)
    grad_bias = np.empty(weight.shape[0] if need_bias else 0, g.dtype)
    linear_vjp_kernel(blas_ready(g), blas_ready(x), blas_ready(weight), grad_x, grad_weight,
                      grad_bias, need_x, need_weight, need_bias)
    return (grad_x if need_x else None, grad_weight if need_weight else None,
            grad_bias if need_bias else None)


# ---------------------------------------------------------------------------------------
# Pointwise losses: loss(x, y) per element, times an optional weight, then reduced.
# Names: x (prediction), y (target), pw (BCE's pos_weight), and the typed constants
# one, two, eps, floor. d_x / d_y are the derivatives of the per-element loss.

class PointwiseLoss:
    def __init__(self, name, grad_fn, loss, d_x, d_y, pos_weight=False, domain="True"):
        self.name, self.grad_fn = name, grad_fn
        self.loss, self.d_x, self.d_y = loss, d_x, d_y
        self.pos_weight = pos_weight
        # A condition every x must meet, checked by the forward kernel (eager and fused) as
        # it reads x: it needs the values, which a deferred input has only when it runs.
        self.domain = domain


# NOTE: the message is PyTorch's; `not (0 <= x <= 1)` also refuses NaN, as PyTorch does.
DOMAIN_ERROR = "all elements of input should be between 0 and 1"


_SOFTPLUS_NEG_X = "(max(-x, zero) + np.log1p(np.exp(-abs(x))))"  # log(1 + exp(-x)), stably
POINTWISE_LOSSES = [
    PointwiseLoss("mse_loss", "MseLossBackward0", "(x - y) * (x - y)",
                  "two * (x - y)", "-two * (x - y)"),
    PointwiseLoss("l1_loss", "L1LossBackward0", "abs(x - y)",
                  "np.sign(x - y)", "-np.sign(x - y)"),
    # PyTorch clamps each log at -100 so that x = 0 or 1 gives a finite loss, and divides the
    # gradient by max(x (1 - x), 1e-12).
    PointwiseLoss("binary_cross_entropy", "BinaryCrossEntropyBackward0",
                  "-(y * max(np.log(x), floor) + (one - y) * max(np.log(one - x), floor))",
                  "(x - y) / max((one - x) * x, eps)",
                  "max(np.log(one - x), floor) - max(np.log(x), floor)",
                  domain="x >= zero and x <= one"),
    PointwiseLoss("binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsBackward0",
                  f"(one - y) * x + (one + (pw - one) * y) * {_SOFTPLUS_NEG_X}",
                  "(one + (pw - one) * y) / (one + np.exp(-x)) - pw * y",
                  f"-x + (pw - one) * {_SOFTPLUS_NEG_X}", pos_weight=True),
]

_HEADER = '''"""Generated by nbgrad.ops.nn from POINTWISE_LOSSES; do not edit."""
import numba
import numpy as np
from nbgrad._core.kernel_support import typed

_jit = numba.njit(cache=True, error_model="numpy")
'''

# x, y: flat arrays of one shape. weight, pw: flat arrays read at [i * step] (step 0 means
# a single broadcast value). g is read the same way: one value for 'mean'/'sum'.
_LOSS_TEMPLATE = '''
@_jit
def {name}_forward(x, y, weight, weight_step, pw, pw_step, out, reduce):
{constants}
    total = 0.0
    for i in range(x.shape[0]):
        xi, yi, pwi = x[i], y[i], pw[i * pw_step]
        if not ({domain}):
            raise RuntimeError("{domain_error}")
        value = weight[i * weight_step] * ({loss})
        if reduce:
            total += value
        else:
            out[i] = value
    return total


@_jit
def {name}_backward(x, y, weight, weight_step, pw, pw_step, g, g_step, scale, grad_x, grad_y,
                    need_x, need_y):
{constants}
    for i in range(x.shape[0]):
        xi, yi, pwi = x[i], y[i], pw[i * pw_step]
        gi = g[i * g_step] * scale * weight[i * weight_step]
        if need_x:
            grad_x[i] = gi * ({d_x})
        if need_y:
            grad_y[i] = gi * ({d_y})
'''
_CONSTANTS = {"zero": 0.0, "one": 1.0, "two": 2.0, "eps": 1e-12, "floor": -100.0}


def _loss_source(row):
    def per_element(expr):
        return re.sub(r"\b(x|y|pw)\b", r"\1i", expr)

    constants = "\n".join(f"    {name} = typed({value!r}, x)" for name, value in _CONSTANTS.items())
    return _LOSS_TEMPLATE.format(name=row.name, constants=constants, loss=per_element(row.loss),
                                 domain=per_element(row.domain), domain_error=DOMAIN_ERROR,
                                 d_x=per_element(row.d_x), d_y=per_element(row.d_y))


_loss_kernels = _codegen.load_module(
    "nn_losses", _HEADER + "\n".join(_loss_source(row) for row in POINTWISE_LOSSES))


_shared_ones = {}


def _ones(size, dtype):
    """A read-only ones array shared by every call (the default weights: kernels only read
    them, and fused steps write such small read-only arrays into their source)."""
    key = (size, dtype)
    ones = _shared_ones.get(key)
    if ones is None:
        ones = np.ones(size, dtype)
        ones.flags.writeable = False
        if len(_shared_ones) < 256:
            _shared_ones[key] = ones
    return ones


def _flat_operand(value, shape, dtype):
    """(flat array, step) for an optional weight broadcast against `shape`."""
    if value is None:
        return _ones(1, dtype), 0
    if value.size == 1:
        return value.astype(dtype, copy=False).reshape(1), 0
    return np.ascontiguousarray(np.broadcast_to(value.astype(dtype, copy=False), shape)).reshape(-1), 1


def _pointwise_loss(row):
    forward_kernel = getattr(_loss_kernels, row.name + "_forward")
    backward_kernel = getattr(_loss_kernels, row.name + "_backward")

    def infer(x, y, weight, pos_weight, reduction):
        if reduction not in REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        if x.shape != y.shape:
            raise ValueError(f"{row.name}: target shape {tuple(y.shape)} differs from input shape "
                             f"{tuple(x.shape)}")
        return (x.shape if reduction == "none" else ()), x.dtype

    def operands(x, y, weight, pos_weight):
        """Flat contiguous x and y, then (array, step) for weight and pos_weight."""
        dtype = x.dtype
        return ((flat_contiguous(x), flat_contiguous(y if y.dtype == dtype else y.astype(dtype)))
                + _flat_operand(weight, x.shape, dtype) + _flat_operand(pos_weight, x.shape, dtype))

    def forward(x, y, weight=None, pos_weight=None, reduction="mean"):
        shape, dtype = infer(x, y, weight, pos_weight, reduction)
        reduce = reduction != "none"
        out = np.empty(x.size if not reduce else 0, dtype)
        total = forward_kernel(*operands(x, y, weight, pos_weight), out, reduce)
        if not reduce:
            return out.reshape(shape)
        if reduction == "mean":
            # NOTE: an empty input gives NaN, as in PyTorch (0 / 0 under error_model="numpy").
            total = total / x.size if x.size else np.nan
        return np.array(total, dtype)

    def vjp(node, g):
        x, y = node.saved
        params = node.params
        weight, pos_weight, reduction = params["weight"], params["pos_weight"], params["reduction"]
        scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
        g_flat = flat_contiguous(g)
        need_x, need_y = node.needs[0], node.needs[1]
        # Made in the inputs' shapes (the kernel writes flat views), so the engine owns them.
        grad_x = np.empty(x.shape if need_x else 0, g.dtype)
        grad_y = np.empty(y.shape if need_y else 0, g.dtype)
        backward_kernel(*operands(x, y, weight, pos_weight), g_flat, int(g_flat.size > 1),
                        g.dtype.type(scale), grad_x.reshape(-1), grad_y.reshape(-1), need_x,
                        need_y)
        return (grad_x if need_x else None, grad_y if need_y else None)

    return register(Primitive(row.name, row.grad_fn, infer, forward, vjp, save=(0, 1),
                              differentiable=(0, 1), meta=row))


# ---------------------------------------------------------------------------------------
# nll_loss: log-probabilities (N, C), int64 targets (N,), class weights (C,).

@_jit
def first_out_of_range(indices, size, ignore_index):
    """Position of the first index outside [0, size) that is not `ignore_index`; -1 if none."""
    for i in range(indices.shape[0]):
        t = indices[i]
        if (t < 0 or t >= size) and t != ignore_index:
            return i
    return -1


@_jit
def nll_forward_kernel(logp, target, weight, ignore_index, losses, reduce):
    """Per-row losses (when not `reduce`); returns (sum of losses, sum of weights used)."""
    total = 0.0
    total_weight = 0.0
    for i in range(logp.shape[0]):
        t = target[i]
        if t == ignore_index:
            if not reduce:
                losses[i] = 0.0
            continue
        w = weight[t]
        value = -w * logp[i, t]
        total += value
        total_weight += w
        if not reduce:
            losses[i] = value
    return total, total_weight


@_jit
def nll_total_weight(target, weight, ignore_index):
    """The denominator of 'mean': the summed class weights of the targets not ignored."""
    total_weight = 0.0
    for i in range(target.shape[0]):
        if target[i] != ignore_index:
            total_weight += weight[target[i]]
    return total_weight


@_jit
def nll_backward_kernel(target, weight, ignore_index, g, g_step, scale, grad):
    grad[:] = 0.0
    for i in range(target.shape[0]):
        t = target[i]
        if t != ignore_index:
            grad[i, t] = -weight[t] * g[i * g_step] * scale


def check_targets(target, n_classes, ignore_index):
    """PyTorch's IndexError for a class index outside [0, n_classes)."""
    bad = first_out_of_range(target, n_classes, ignore_index)
    if bad >= 0:
        raise IndexError(f"Target {target[bad]} is out of bounds.")


@functools.lru_cache(maxsize=256)
def _target_check(n_classes, ignore_index):
    """`check_targets` for one class count and ignore_index, as one object per pair: a fused
    step's forward and backward rules add it once."""
    return lambda target: check_targets(target, n_classes, ignore_index)


def _class_weight(weight, n_classes, dtype):
    return _ones(n_classes, dtype) if weight is None else weight.astype(dtype, copy=False)


def _nll_infer(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if logp.ndim != 2:
        raise ValueError(f"nll_loss: expected a 2-D input, got {logp.ndim}-D")
    if target.ndim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if target.dtype.kind not in "iu":
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got "
                           f"{TORCH_TYPE_NAMES.get(target.dtype.name, target.dtype.name)}")
    # NOTE: a 0-d target has batch size 0 in PyTorch's message.
    if target.ndim != 1 or logp.shape[0] != target.shape[0]:
        raise ValueError(f"Expected input batch_size ({logp.shape[0]}) to match target "
                         f"batch_size ({target.shape[0] if target.ndim else 0}).")
    if weight is not None and weight.shape != (logp.shape[1],):
        raise RuntimeError(f"weight tensor should be defined either for all {logp.shape[1]} "
                           f"classes or no classes but got weight tensor of shape: "
                           f"{list(weight.shape)}")
    return (target.shape if reduction == "none" else ()), logp.dtype


def _nll_check(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    # NOTE: deferral runs this before the shape rule, which refuses the other targets.
    if target.ndim == 1 and target.dtype.kind in "iu" and logp.ndim == 2:
        check_targets(target, logp.shape[1], ignore_index)


def _nll_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    shape, dtype = _nll_infer(logp, target, weight, ignore_index, reduction)
    _nll_check(logp, target, weight, ignore_index, reduction)
    reduce = reduction != "none"
    losses = np.empty(0 if reduce else target.shape[0], dtype)
    total, total_weight = nll_forward_kernel(logp, target, _class_weight(weight, logp.shape[1], dtype),
                                             ignore_index, losses, reduce)
    if not reduce:
        return losses
    if reduction == "mean":
        # All targets ignored: 0 / 0 = NaN, as in PyTorch.
        total = total / total_weight if total_weight else np.nan
    return np.array(total, dtype)


def _nll_vjp(node, g):
    (target,) = node.saved
    shape = node.input_meta[0][0]
    weight = _class_weight(node.params["weight"], shape[1], g.dtype)
    ignore_index, reduction = node.params["ignore_index"], node.params["reduction"]
    check_targets(target, shape[1], ignore_index)  # see the module's NOTE
    scale = 1.0
    if reduction == "mean":
        total_weight = nll_total_weight(target, weight, ignore_index)
        scale = 1.0 / total_weight if total_weight else np.nan
    g_flat = flat_contiguous(g)
    grad = np.empty(shape, g.dtype)
    nll_backward_kernel(target, weight, ignore_index, g_flat, int(g_flat.size > 1),
                        g.dtype.type(scale), grad)
    return grad, None


# ---------------------------------------------------------------------------------------
# embedding: rows of weight (num_embeddings, dim) picked by int64 indices of any shape.

@_jit
def embedding_kernel(weight, indices, out):
    for i in range(indices.shape[0]):
        out[i, :] = weight[indices[i], :]


@_jit
def embedding_backward_kernel(g, indices, padding_idx, grad_weight):
    grad_weight[:] = 0.0
    for i in range(indices.shape[0]):
        row = indices[i]
        if row != padding_idx:
            grad_weight[row, :] += g[i, :]


# How PyTorch names a tensor's type in embedding's message about the indices.
_INDEX_TYPE_NAMES = {"float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
                     "bool": "CPUBoolType"}


def _embedding_infer(weight, indices, padding_idx=-1):
    if indices.dtype.kind not in "iu":
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {_INDEX_TYPE_NAMES[indices.dtype.name]} "
                           "instead (while checking arguments for embedding)")
    if weight.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    return indices.shape + weight.shape[1:], weight.dtype


def _check_embedding_indices(flat, num_embeddings):
    """PyTorch's errors for indices outside [0, num_embeddings) (padding_idx rows are read too)."""
    if not flat.size:
        return
    if num_embeddings == 0:
        raise RuntimeError("index_select(): self indexing axis dim should be positive")
    # NOTE: the scan's "ignored" value is 0, an index that is valid whenever the table has
    # rows, so it excuses nothing.
    if first_out_of_range(flat, num_embeddings, 0) >= 0:
        raise IndexError("index out of range in self")


def _embedding_forward(weight, indices, padding_idx=-1):
    shape, dtype = _embedding_infer(weight, indices, padding_idx)
    flat = flat_contiguous(indices)
    _check_embedding_indices(flat, weight.shape[0])
    out = np.empty((flat.shape[0], weight.shape[1]), dtype)
    embedding_kernel(weight, flat, out)
    return out.reshape(shape)


def _embedding_vjp(node, g):
    (indices,) = node.saved
    weight_shape = node.input_meta[0][0]
    flat = flat_contiguous(indices)
    # NOTE: PyTorch's backward skips indices that went out of range since forward; an error
    # is better than a gradient that silently lacks them.
    _check_embedding_indices(flat, weight_shape[0])  # see the module's NOTE
    grad = np.empty(weight_shape, g.dtype)
    embedding_backward_kernel(np.ascontiguousarray(g).reshape(-1, weight_shape[1]), flat,
                              node.params["padding_idx"], grad)
    return grad, None


PRIMS = {
    "linear": register(Primitive("linear", "AddmmBackward0", _linear_infer, _linear_forward,
                                 _linear_vjp, save=(0, 1), differentiable=(0, 1, 2))),
    **{row.name: _pointwise_loss(row) for row in POINTWISE_LOSSES},
    "nll_loss": register(Primitive("nll_loss", "NllLossBackward0", _nll_infer, _nll_forward,
                                   _nll_vjp, save=(1,))),
    "embedding": register(Primitive("embedding", "EmbeddingBackward0", _embedding_infer,
                                    _embedding_forward, _embedding_vjp, save=(1,))),
}


# ---------------------------------------------------------------------------------------
# Fused rules: the same kernels, called on buffers inside a fused step.

def _dummy(em, ndim, dtype):
    """A zero-size stand-in for a gradient the kernel is told not to compute."""
    return em.empty(ndim, dtype)


class _LinearFusion:
    def forward(self, em, arrays, params, out):
        """np.dot into the output buffer, then the bias as an elementwise loop: an activation
        that follows joins that loop, so bias and activation form one epilogue."""
        x, weight, bias = (em.ref(a) for a in arrays)
        result = em.out(out)
        em.blas()
        em.emit(f"np.dot({x}, {weight}.T, {result})")
        em.elementwise("a + b", {"a": (result, out.shape), "b": (bias, arrays[2].shape)},
                       result, out.shape, result)

    def vjp(self, em, node, g, raw):
        x, weight = node.saved
        grads = [em.out(r) if r is not None else _dummy(em, n, g.dtype)
                 for r, n in zip(raw, (2, 2, 1))]
        needs = ", ".join(em.scalar(r is not None) for r in raw)
        em.blas()
        em.emit(f"{em.kernel(linear_vjp_kernel)}({em.ref(g)}, {em.ref(x)}, {em.ref(weight)}, "
                f"{', '.join(grads)}, {needs})")


class _PointwiseLossFusion:
    """The loss written out as loops from the row's per-element expressions (no call of the
    loss kernels, whose arguments cost more than the work for small inputs): the forward
    sum in a loop of its own, the gradient as an elementwise loop that the ops before it in
    backward can join. The arithmetic is the kernels': float64 sum, `g * scale` times the
    derivative, constants in the input's dtype."""

    def __init__(self, row):
        self.row = row

    @staticmethod
    def _check(params, x, y):
        if params["weight"] is not None or params["pos_weight"] is not None:
            raise Unfusable("loss weights")
        if params["reduction"] == "none" or x.dtype != y.dtype or not x.size:
            raise Unfusable("unreduced, mixed-dtype or empty loss")

    def _constants(self, em, expression, reference):
        """Local names for the constants `expression` reads (pos_weight, absent, is one),
        typed like `reference`."""
        values = dict(_CONSTANTS, pw=1.0)
        names = {}
        for name in sorted(set(re.findall(r"\b\w+\b", expression)) & set(values)):
            names[name] = em.new_name("c")
            em.emit(f"{names[name]} = typed({values[name]!r}, {reference})")
        return names

    def forward(self, em, arrays, params, out):
        x, y = arrays
        self._check(params, x, y)
        reference = em.ref(x)
        names = self._constants(em, f"{self.row.loss} {self.row.domain}", reference)
        index, total = em.new_name("i"), em.new_name("total")
        for name, array in (("x", x), ("y", y)):
            flat = em.new_name("v")
            em.emit(f"{flat} = {em.ref(array)}.reshape({x.size})")
            names[name] = f"{flat}[{index}]"
        loss = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)],
                      self.row.loss)
        domain = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)],
                        self.row.domain)
        em.emit(f"{total} = 0.0")
        em.emit(f"for {index} in range({x.size}):")
        if self.row.domain != "True":
            em.emit(f"    if not ({domain}):")
            em.emit(f'        raise RuntimeError("{DOMAIN_ERROR}")')
        em.emit(f"    {total} += {loss}")
        divisor = x.size if params["reduction"] == "mean" else 1
        em.emit(f"{em.out(out)}.reshape(1)[0] = {total} / {divisor}")

    def vjp(self, em, node, g, raw):
        x, y = node.saved
        self._check(node.params, x, y)
        scale = 1.0 / x.size if node.params["reduction"] == "mean" else 1.0
        reference = em.ref(x)
        operands = {"x": (reference, x.shape), "y": (em.ref(y), y.shape),
                    "g": (em.ref(g), g.shape)}
        for grad, derivative in zip(raw, (self.row.d_x, self.row.d_y)):
            if grad is None:
                continue
            names = self._constants(em, derivative, reference)
            em.elementwise(f"g * {scale!r} * ({derivative})", {**operands, **names},
                           em.out(grad), x.shape, reference)


class _NllFusion:
    @staticmethod
    def _weight(em, params, classes, dtype):
        if params["reduction"] == "none":
            raise Unfusable("nll_loss with reduction='none'")
        return em.constant(_class_weight(params["weight"], classes, dtype))

    def forward(self, em, arrays, params, out):
        logp, target = arrays
        weight = self._weight(em, params, logp.shape[1], logp.dtype)
        target_name = em.ref(target)
        classes, ignore = logp.shape[1], params["ignore_index"]
        self._check_before_call(em, target_name, classes, ignore)
        total, total_weight = em.new_name("total"), em.new_name("weight")
        em.emit(f"{total}, {total_weight} = {em.kernel(nll_forward_kernel)}({em.ref(logp)}, "
                f"{target_name}, {weight}, {em.scalar(ignore)}, {_dummy(em, 1, logp.dtype)}, "
                f"{em.scalar(True)})")
        value = f"{total} / {total_weight}" if params["reduction"] == "mean" else total
        em.emit(f"{em.out(out)}.reshape(1)[0] = {value}")

    @staticmethod
    def _check_before_call(em, target_name, classes, ignore):
        """Targets change every call: they are range-checked in Python before each call (once
        for the forward and the backward rule of one call of nll_loss)."""
        check = (_target_check(classes, ignore), target_name)
        if check not in em.preconditions:
            em.precondition(*check)

    def vjp(self, em, node, g, raw):
        (target,) = node.saved
        shape = node.input_meta[0][0]
        weight = self._weight(em, node.params, shape[1], g.dtype)
        self._check_before_call(em, em.ref(target), shape[1], node.params["ignore_index"])
        ignore = em.scalar(node.params["ignore_index"])
        scale = em.new_name("scale")
        if node.params["reduction"] == "mean":
            em.emit(f"{scale} = 1.0 / {em.kernel(nll_total_weight)}({em.ref(target)}, {weight}, "
                    f"{ignore})")
        else:
            em.emit(f"{scale} = 1.0")
        em.emit(f"{em.kernel(nll_backward_kernel)}({em.ref(target)}, {weight}, {ignore}, "
                f"{em.ref(g)}.reshape(1), {em.scalar(0)}, np.{g.dtype.name}({scale}), "
                f"{em.out(raw[0])})")


PRIMS["linear"].fuse = _LinearFusion()
PRIMS["nll_loss"].fuse = _NllFusion()
PRIMS["nll_loss"].check = _nll_check
for _row in POINTWISE_LOSSES:
    PRIMS[_row.name].fuse = _PointwiseLossFusion(_row)
