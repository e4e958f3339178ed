"""Losses that are primitives, each for speed or numerical stability:

- `pointwise losses` (mse, l1, binary cross entropy, with and without logits, smooth L1,
  Huber, soft margin: each a node of its own in PyTorch): generated from one table of scalar
  expressions, with the reduction done inside the kernel, so a loss is one kernel forward
  and one backward. BCE with logits uses the log-sum-exp form
  `max(-x, 0) + log1p(exp(-|x|))`, which never overflows.
- `nll_loss`: gathers the target class of each row of log-probabilities (cross entropy is
  log_softmax followed by this), with class weights and `ignore_index`.

Each has its fused rule next to it.

NOTE: Numba does not bounds-check. Class indices are validated in Python (with a small njit
scan) before a kernel uses them, at forward and again at backward: the saved targets may
share memory with a NumPy array (`from_numpy`) that the user changed in between, which no
version counter sees. (PyTorch, too, reads them as they are then.)
"""
import ast
import functools
import re
import types

import numba
import numpy as np

from .._core import modules as _codegen
from .elementwise import sign_expression
from .indexing import first_out_of_range, scattered
from .primitive import TORCH_TYPE_NAMES, Primitive, Unfusable, register
from .shape import flat_contiguous

_jit = numba.njit(cache=True, error_model="numpy")

REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------
# Pointwise losses: loss(x, y) per element, times an optional weight, then reduced.
# Names: x (prediction), y (target), pw (BCE's pos_weight), the typed constants
# zero, half, one, two, eps, floor, and the row's parameters (given typed like the data).
# d_x / d_y are the derivatives of the per-element loss; d_y None where PyTorch has no
# derivative for the target (its API refuses a target that requires grad). Expressions may
# choose with `a if condition else b` (a `where` in the differentiable VJP).

class PointwiseLoss:
    def __init__(self, name, grad_fn, loss, d_x, d_y, pos_weight=False, domains=(), params=()):
        self.name, self.grad_fn = name, grad_fn
        self.loss, self.d_x, self.d_y = loss, d_x, d_y
        self.pos_weight = pos_weight
        self.params = params
        # (condition, operand name): conditions every element must meet, checked in order by
        # the forward kernel (eager and fused) as it reads them: they need the values, which
        # a deferred input has only when it runs.
        self.domains = domains


# NOTE: the message is PyTorch's; `not (0 <= x <= 1)` also refuses NaN, as PyTorch does.
DOMAIN_ERROR = "all elements of {} should be between 0 and 1"


_SOFTPLUS_NEG_X = "(max(-x, zero) + np.log1p(np.exp(-abs(x))))"  # log(1 + exp(-x)), stably
_SOFTPLUS_X = "(max(x, zero) + np.log1p(np.exp(-abs(x))))"
POINTWISE_LOSSES = [
    PointwiseLoss("mse_loss", "MseLossBackward0", "(x - y) * (x - y)",
                  "two * (x - y)", "-two * (x - y)"),
    PointwiseLoss("l1_loss", "L1LossBackward0", "abs(x - y)",
                  sign_expression("x - y"), f"-{sign_expression('x - y')}"),
    # PyTorch clamps each log at -100 so that x = 0 or 1 gives a finite loss, and divides the
    # gradient by max(x (1 - x), 1e-12).
    PointwiseLoss("binary_cross_entropy", "BinaryCrossEntropyBackward0",
                  "-(y * max(np.log(x), floor) + (one - y) * max(np.log(one - x), floor))",
                  "(x - y) / max((one - x) * x, eps)",
                  "-np.log(x / (one - x))",  # (the target's: PyTorch's -logit(x), unclamped)
                  domains=(("x >= zero and x <= one", "input"),
                           ("y >= zero and y <= one", "target"))),
    PointwiseLoss("binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsBackward0",
                  f"(one - y) * x + (one + (pw - one) * y) * {_SOFTPLUS_NEG_X}",
                  "(one + (pw - one) * y) / (one + np.exp(-x)) - pw * y",
                  # the target's as PyTorch's log_sigmoid(-x) - pw log_sigmoid(x), which is
                  # inf at x = -inf where -x + (pw - 1) softplus(-x) is 0 * inf
                  f"pw * {_SOFTPLUS_NEG_X} - {_SOFTPLUS_X}", pos_weight=True),
    # PyTorch's kernels: |x - y| against beta (delta); the gradient's branches in its order,
    # so that NaN takes the linear one (NaN) and the bounds the constant ones. beta = 0 is
    # l1_loss (the API sends it there).
    PointwiseLoss("smooth_l1_loss", "SmoothL1LossBackward0",
                  "half * abs(x - y) * abs(x - y) / beta if abs(x - y) < beta else "
                  "abs(x - y) - half * beta",
                  "-one if x - y <= -beta else (one if x - y >= beta else (x - y) / beta)",
                  "one if x - y <= -beta else (-one if x - y >= beta else (y - x) / beta)",
                  params=("beta",)),
    PointwiseLoss("huber_loss", "HuberLossBackward0",
                  "half * abs(x - y) * abs(x - y) if abs(x - y) < delta else "
                  "delta * (abs(x - y) - half * delta)",
                  "-delta if x - y <= -delta else (delta if x - y >= delta else x - y)",
                  "delta if x - y <= -delta else (-delta if x - y >= delta else y - x)",
                  params=("delta",)),
    # PyTorch's log1p(exp(-x y)), which overflows to inf where -x y is large, as PyTorch's
    # does; its gradient there is inf / inf = NaN, as PyTorch's.
    PointwiseLoss("soft_margin_loss", "SoftMarginLossBackward0", "np.log1p(np.exp(-x * y))",
                  "-y * np.exp(-y * x) / (one + np.exp(-y * x))", None),
]

_HEADER = '''"""Generated by nbgrad.ops.losses from POINTWISE_LOSSES; do not edit."""
import numba
import numpy as np
from nbgrad._core.kernel_support import typed

_jit = numba.njit(cache=True, error_model="numpy")
'''

# x, y: flat arrays of one shape. weight, pw: flat arrays read at [i * step] (step 0 means
# a single broadcast value). g is read the same way: one value for 'mean'/'sum'.
_LOSS_TEMPLATE = '''
@_jit
def {name}_forward(x, y, weight, weight_step, pw, pw_step, out, reduce{params}):
{constants}
    total = 0.0
    for i in range(x.shape[0]):
        xi, yi, pwi = x[i], y[i], pw[i * pw_step]
{domain_checks}        value = weight[i * weight_step] * ({loss})
        if reduce:
            total += value
        else:
            out[i] = value
    return total


@_jit
def {name}_backward(x, y, weight, weight_step, pw, pw_step, g, g_step, scale, grad_x, grad_y,
                    need_x, need_y{params}):
{constants}
    for i in range(x.shape[0]):
        xi, yi, pwi = x[i], y[i], pw[i * pw_step]
        gi = g[i * g_step] * scale * weight[i * weight_step]
        if need_x:
            grad_x[i] = gi * ({d_x})
        if need_y:
            grad_y[i] = gi * ({d_y})
'''
_CONSTANTS = {"zero": 0.0, "half": 0.5, "one": 1.0, "two": 2.0, "eps": 1e-12, "floor": -100.0}


def _domain_checks(row, rename, indent):
    """The lines raising PyTorch's error for an element outside a domain of `row`, with
    `rename` applied to each condition."""
    return "".join(f"{indent}if not ({rename(condition)}):\n"
                   f'{indent}    raise RuntimeError("{DOMAIN_ERROR.format(operand)}")\n'
                   for condition, operand in row.domains)


def _loss_source(row):
    def per_element(expr):
        return re.sub(r"\b(x|y|pw)\b", r"\1i", expr)

    constants = "\n".join(f"    {name} = typed({value!r}, x)" for name, value in _CONSTANTS.items())
    return _LOSS_TEMPLATE.format(name=row.name, constants=constants, loss=per_element(row.loss),
                                 domain_checks=_domain_checks(row, per_element, "        "),
                                 d_x=per_element(row.d_x), d_y=per_element(row.d_y or "zero"),
                                 params="".join(", " + name for name in row.params))


_loss_kernels = _codegen.load_module(
    "losses", _HEADER + "\n".join(_loss_source(row) for row in POINTWISE_LOSSES))


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

    def _constants(self, em, expression, reference, params, dtype):
        """Local names for the constants `expression` reads (pos_weight, absent, is one),
        typed like `reference`, and for the row's parameters (`dtype` scalars, as the eager
        kernels get them)."""
        values = dict(_CONSTANTS, pw=1.0)
        read = set(re.findall(r"\b\w+\b", expression))
        names = {}
        for name in sorted(read & set(values)):
            names[name] = em.new_name("c")
            em.emit(f"{names[name]} = typed({values[name]!r}, {reference})")
        for name in sorted(read & set(self.row.params)):
            names[name] = em.new_name("c")
            em.emit(f"{names[name]} = {em.literal(params[name], dtype)}")
        return names

    def forward(self, em, arrays, params, out):
        x, y = arrays
        self._check(params, x, y)
        reference = em.ref(x)
        names = self._constants(em, " ".join([self.row.loss, *(c for c, _ in self.row.domains)]),
                                reference, params, x.dtype)
        index, total = em.new_name("i"), em.new_name("total")
        for name, array in (("x", x), ("y", y)):
            flat = em.new_name("v")
            em.emit(f"{flat} = {em.ref(array)}.reshape({x.size})")
            names[name] = f"{flat}[{index}]"
        loss = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)],
                      self.row.loss)
        em.emit(f"{total} = 0.0")
        em.emit(f"for {index} in range({x.size}):")
        checks = _domain_checks(self.row, lambda condition: re.sub(
            r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)], condition), "    ")
        for line in checks.splitlines():
            em.emit(line)
        em.emit(f"    {total} += {loss}")
        divisor = x.size if params["reduction"] == "mean" else 1
        em.emit(f"{em.out(out)}.reshape(1)[0] = {total} / {divisor}")

    def vjp(self, em, node, g, input_grads):
        x, y = node.saved
        self._check(node.params, x, y)
        scale = 1.0 / x.size if node.params["reduction"] == "mean" else 1.0
        reference = em.ref(x)
        operands = {"x": (reference, x.shape), "y": (em.ref(y), y.shape),
                    "g": (em.ref(g), g.shape)}
        for grad, derivative in zip(input_grads, (self.row.d_x, self.row.d_y)):
            if grad is None:
                continue
            names = self._constants(em, derivative, reference, node.params, x.dtype)
            em.elementwise(f"g * {scale!r} * ({derivative})", {**operands, **names},
                           em.out(grad), x.shape, reference)


# The names the loss expressions read, for Tensors (the differentiable VJPs): `max` always
# has a constant second argument there; `where` stands for `a if condition else b`, one
# of whose branches is a Tensor.
_TENSOR_NAMES = {"np": types.SimpleNamespace(log=lambda t: t.log(), exp=lambda t: t.exp(),
                                             log1p=lambda t: t.log1p(), sign=lambda t: t.sign()),
                 "max": lambda t, floor: t.clamp_min(floor), "abs": abs,
                 "where": lambda c, a, b, like: _tensor_where(c, a, b, like),
                 **_CONSTANTS}


def _tensor_where(condition, a, b, like):
    """`a if condition else b` on Tensors; two numbers (sign_expression's) as a Tensor of
    `like`'s dtype."""
    if isinstance(a, (int, float)):
        if isinstance(b, (int, float)):
            return condition.to(like.dtype) * (a - b) + b
        return b.where(condition.logical_not(), a)
    return a.where(condition, b)


class _ChoiceAsWhere(ast.NodeTransformer):
    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("where", ast.Load()),
                        [node.test, node.body, node.orelse, ast.Name("x", ast.Load())], [])


def _tensor_expression(expr, where):
    """Expression `expr` compiled for evaluation on Tensors (`_TENSOR_NAMES`)."""
    tree = ast.fix_missing_locations(_ChoiceAsWhere().visit(ast.parse(expr, mode="eval")))
    return compile(tree, where, "eval")


def _pointwise_loss(row):
    forward_kernel = getattr(_loss_kernels, row.name + "_forward")
    backward_kernel = getattr(_loss_kernels, row.name + "_backward")

    def infer(x, y, weight, pos_weight, reduction, **values):
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

    def typed_params(values, dtype):
        return tuple(dtype.type(values[name]) for name in row.params)

    def forward(x, y, weight=None, pos_weight=None, reduction="mean", **values):
        shape, dtype = infer(x, y, weight, pos_weight, reduction)
        reduce = reduction != "none"
        out = np.empty(x.size if not reduce else 0, dtype)
        total = forward_kernel(*operands(x, y, weight, pos_weight), out, reduce,
                               *typed_params(values, dtype))
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
        need_x, need_y = node.needs[0], row.d_y is not None and node.needs[1]
        # Made in the inputs' shapes (the kernel writes flat views), so the engine owns them.
        grad_x = np.empty(x.shape if need_x else 0, g.dtype)
        grad_y = np.empty(y.shape if need_y else 0, g.dtype)
        backward_kernel(*operands(x, y, weight, pos_weight), g_flat, int(g_flat.size > 1),
                        g.dtype.type(scale), grad_x.reshape(-1), grad_y.reshape(-1), need_x,
                        need_y, *typed_params(params, g.dtype))
        return (grad_x if need_x else None, grad_y if need_y else None)

    derivatives = [None if d is None else _tensor_expression(d, f"<{row.name} derivative>")
                   for d in (row.d_x, row.d_y)]

    def differentiable_vjp(node, g, saved):
        """`vjp` as Tensor operations (create_graph=True): the derivative expressions
        evaluated on Tensors, so differentiated again by autograd."""
        x, y = saved
        params = node.params
        dtype = node.input_meta[0][1]
        scale = 1.0 / x.numel() if params["reduction"] == "mean" and x.numel() else 1.0
        g = g * scale
        # the weights are constants (parameters), in x's dtype as `operands` gives them
        if params["weight"] is not None:
            g = g * params["weight"].astype(dtype, copy=False)
        pos_weight = params["pos_weight"]
        names = {"x": x, "y": y.to(x.dtype),
                 "pw": 1.0 if pos_weight is None else pos_weight.astype(dtype, copy=False),
                 **{name: params[name] for name in row.params}}
        return tuple(g * eval(derivative, _TENSOR_NAMES, names)
                     if need and derivative is not None else None
                     for derivative, need in zip(derivatives, node.needs))

    return register(Primitive(row.name, row.grad_fn, infer, forward, vjp, save=(0, 1),
                              differentiable=(0, 1) if row.d_y is not None else (0,),
                              fuse=_PointwiseLossFusion(row),
                              differentiable_vjp=differentiable_vjp))


# ---------------------------------------------------------------------------------------
# nll_loss: log-probabilities (N, C), int64 targets (N,), class weights (C,).

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
    """The class weights: `weight`, or ones where it is the zero-size stand-in of none."""
    return _ones(n_classes, dtype) if weight.size == 0 else weight


# NOTE: the class weight is an input (a zero-size stand-in when there is none), not a
# parameter: a compiled step reads it at every call (a parameter is baked into the kernel:
# a criterion's weight replaced between calls was ignored), and deferral keys it as a tensor.

def _nll_infer(logp, target, weight, ignore_index=-100, reduction="mean"):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if logp.ndim != 2:
        raise ValueError(f"nll_loss: expected a 2-D input, got {logp.ndim}-D")
    if target.ndim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if target.dtype not in (np.int64, np.uint8):
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got "
                           f"{TORCH_TYPE_NAMES.get(target.dtype.name, target.dtype.name)}")
    if logp.dtype.kind != "f":
        raise NotImplementedError(f'"nll_loss_out_frame" not implemented for '
                                  f"'{TORCH_TYPE_NAMES[logp.dtype.name]}'")
    # NOTE: a 0-d target has batch size 0 in PyTorch's message.
    if target.ndim != 1 or logp.shape[0] != target.shape[0]:
        raise ValueError(f"Expected input batch_size ({logp.shape[0]}) to match target "
                         f"batch_size ({target.shape[0] if target.ndim else 0}).")
    if weight.size and weight.shape != (logp.shape[1],):
        raise RuntimeError(f"weight tensor should be defined either for all {logp.shape[1]} "
                           f"classes or no classes but got weight tensor of shape: "
                           f"{list(weight.shape)}")
    if weight.dtype != logp.dtype:
        raise RuntimeError(f"expected scalar type {TORCH_TYPE_NAMES[logp.dtype.name]} but found "
                           f"{TORCH_TYPE_NAMES.get(weight.dtype.name, weight.dtype.name)}")
    return (target.shape if reduction == "none" else ()), logp.dtype


def _nll_check(logp, target, weight, ignore_index=-100, reduction="mean"):
    check_targets(target, logp.shape[1], ignore_index)


def _nll_forward(logp, target, weight, ignore_index=-100, reduction="mean"):
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


def _nll_backward_terms(node, target, weight, dtype):
    """(class weights, ignore_index, the scale of 'mean') for the VJP, after the targets'
    check again (see the module's NOTE)."""
    classes = node.input_meta[0][0][1]
    weight = _class_weight(weight, classes, dtype)
    ignore_index, reduction = node.params["ignore_index"], node.params["reduction"]
    check_targets(target, classes, ignore_index)
    scale = 1.0
    if reduction == "mean":
        total_weight = nll_total_weight(target, weight, ignore_index)
        scale = 1.0 / total_weight if total_weight else np.nan
    return weight, ignore_index, scale


def _nll_vjp(node, g):
    target, weight = node.saved
    shape = node.input_meta[0][0]
    weight, ignore_index, scale = _nll_backward_terms(node, target, weight, g.dtype)
    g_flat = flat_contiguous(g)
    grad = np.empty(shape, g.dtype)
    nll_backward_kernel(target, weight, ignore_index, g_flat, int(g_flat.size > 1),
                        g.dtype.type(scale), grad)
    return grad, None, None


def _nll_differentiable_vjp(node, g, saved):
    """`_nll_vjp` as Tensor operations (create_graph=True): -weight[t] * g * scale
    written into zeros at (i, t) of every row i whose target t is not ignored."""
    target = saved[0].numpy()
    shape, dtype = node.input_meta[0]
    weight, ignore_index, scale = _nll_backward_terms(node, target, saved[1].numpy(), dtype)
    rows = np.flatnonzero(target != ignore_index)
    classes = target[rows]
    values = (g[rows] if g.ndim else g) * -weight[classes] * scale
    return scattered(values, rows * shape[1] + classes, shape), None, None


class _NllFusion:
    @staticmethod
    def _weight(em, params, weight, classes, dtype):
        if params["reduction"] == "none":
            raise Unfusable("nll_loss with reduction='none'")
        return em.ref(weight) if weight.size else em.constant(_ones(classes, dtype))

    def forward(self, em, arrays, params, out):
        logp, target, weight = arrays
        weight = self._weight(em, params, weight, logp.shape[1], logp.dtype)
        target_name = em.ref(target)
        classes, ignore = logp.shape[1], params["ignore_index"]
        self._check_before_call(em, target_name, classes, ignore)
        total, total_weight = em.new_name("total"), em.new_name("weight")
        em.emit(f"{total}, {total_weight} = {em.kernel(nll_forward_kernel)}({em.ref(logp)}, "
                f"{target_name}, {weight}, {em.scalar(ignore)}, {em.empty(1, logp.dtype)}, "
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

    def vjp(self, em, node, g, input_grads):
        target, weight = node.saved
        shape = node.input_meta[0][0]
        weight = self._weight(em, node.params, weight, shape[1], g.dtype)
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
                f"{em.out(input_grads[0])})")


PRIMS = {
    **{row.name: _pointwise_loss(row) for row in POINTWISE_LOSSES},
    "nll_loss": register(Primitive("nll_loss", "NllLossBackward0", _nll_infer, _nll_forward,
                                   _nll_vjp, save=(1, 2), check=_nll_check, fuse=_NllFusion(),
                                   differentiable_vjp=_nll_differentiable_vjp)),
}
