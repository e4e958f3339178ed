"""The shape of one row of the primitive table.

A primitive is declared once, complete. The autograd engine and the fused-code generator read
only these fields and never name a specific op.
"""
import sys

from .._core.dtype import ALL as ALL_DTYPES


class Primitive:
    """One row: name, PyTorch grad_fn name, shape/dtype rule, forward, VJP, what to save.

    Every field is given to the constructor and none changes afterwards (assigning one
    raises): everything that reads the table can rely on a row being complete.

    - `infer(*inputs, **params) -> (shape, np_dtype)` looks at `.shape`/`.dtype` only, never
      at data; it also raises the user-facing errors for bad shapes and indices.
    - `forward(*arrays, **params) -> array` runs the njit kernel(s) on NumPy arrays.
    - `vjp(node, grad) -> tuple` (None: no gradient) returns one gradient (or None) per
      input; `node.needs[i]` says which are wanted, `node.saved` holds what `save` asked
      for, `node.params` the parameters. A gradient may have the output's broadcast shape:
      the engine sums it back to the input's shape.
    - `save` names what the VJP reads: a tuple of input positions plus "out" and "extra".
    - `forward_saving` (optional) is the forward of a call that records a node:
      `forward_saving(*arrays, **params) -> (out, extra)`, where `extra` is an array the
      VJP reads that is neither an input nor the result (max pooling's argmax, as PyTorch's
      node saves its indices), saved as "extra". A call without a node runs `forward`,
      which need not compute it.
    - `save_for` (optional) gives, per input, the `save` entries its VJP reads: a call
      saves only those of the inputs that need a gradient (all of `save` without it).
    - `view=True` means the output shares memory (and PyTorch's version counter) with
      input 0.
    - `differentiable` holds the input positions that can carry a gradient (`EVERY_POSITION`
      for a primitive with any number of inputs, all differentiable); empty without a `vjp`.
    - `check(*inputs, **params)` (optional) raises the user-facing errors that need data
      (class indices out of range); it runs when a call is deferred, after `infer` (whose
      errors come first, as in PyTorch). `forward` checks too, in the same order.
    - `fuse` (optional) emits the primitive's forward and VJP into a fused step: an object
      with `forward(emitter, arrays, params, out)` and `vjp(emitter, node, grad, input_grads)`
      (the arrays the eager VJP returned, one per input, None where none is needed),
      defined in the primitive's family module; `out` is the pair (out, extra) for a call
      that ran `forward_saving`. Without one, `nbgrad.compile` falls back to
      eager mode.
    - `differentiable_vjp(node, g, saved) -> tuple` (optional) is the VJP written with
      differentiable Tensor operations, for `create_graph=True` (higher-order gradients):
      the engine calls it with grad mode on, so the ops it calls are recorded and its
      results can be differentiated again. `g` is the incoming gradient as a Tensor (it may
      have a graph of its own); `saved` is a tuple parallel to `save`, each entry a Tensor
      connected to the graph as PyTorch's SavedVariable unpacks: input i is the leaf itself
      (a leaf that requires grad), or a Tensor over the saved array whose grad_fn is input
      i's own grad_fn, or a plain Tensor (no grad) where input i needs none; "out" is a
      Tensor whose grad_fn is `node` itself; None where `save_for` left the entry out.
      `node.needs`, `node.params` and `node.input_meta` are as for `vjp`. It returns one
      Tensor (or None) per input, like `vjp`: it calls only Tensor methods and operators
      (`g * a.cos()`, `g @ b.mT`, `a.where(cond, b)`, `.sum(dim, keepdim=True)`,
      `.expand(shape)`), never a kernel or an array, and may return a gradient of the
      output's broadcast shape or another dtype (the engine sums it back and casts, both
      differentiably). Without one, a backward with create_graph=True through the node
      raises an error naming its grad_fn.
    - `writes` (optional) holds the input positions whose arrays the forward may write in
      place (batch_norm's running statistics). A deferred call marks those tensors, so
      that reading one runs the pending ops first (nbgrad.fuse.deferred).
    - `scalar_overloads` (optional) maps the grad_fn names of PyTorch's overloads that take
      a Python number for some inputs (`x ** 2` records PowBackward0, `2 ** x` PowBackward2)
      to the input positions their node links: PyTorch's node has no edge for a Scalar
      argument, so `next_functions` lists only those. Other calls list the `differentiable`
      positions (a number that PyTorch wraps as a tensor, `x * 2`, shows as `(None, 0)`).
    - `result_guarded` (optional) holds the grad_fn names of PyTorch's overloads whose node
      saves the result where this primitive's VJP reads the input: the in-place forms of
      elu and leaky_relu, whose input is gone, get the same gradient from their result. Such
      a node keeps the version of its result (not the result): as PyTorch's, its backward
      raises after a later in-place write into the tensor holding it.
    """

    # NOTE: slots keep reads (prim.forward, prim.vjp, ... on every op call) plain descriptor
    # lookups; only assignment is refused, by __setattr__.
    __slots__ = ("name", "grad_fn", "infer", "forward", "vjp", "save", "save_for", "view",
                 "differentiable", "check", "fuse", "differentiable_vjp", "scalar_overloads",
                 "writes", "forward_saving", "result_guarded")

    def __init__(self, name, grad_fn, infer, forward, vjp=None, *, save=(), save_for=None,
                 view=False, differentiable=(0,), check=None, fuse=None,
                 differentiable_vjp=None, scalar_overloads=None, writes=(),
                 forward_saving=None, result_guarded=frozenset()):
        fields = dict(name=name, grad_fn=grad_fn, infer=infer, forward=forward, vjp=vjp,
                      save=save, save_for=save_for, view=view, forward_saving=forward_saving,
                      differentiable=differentiable if vjp is not None else (),
                      check=check, fuse=fuse, differentiable_vjp=differentiable_vjp,
                      scalar_overloads=scalar_overloads or {}, writes=writes,
                      result_guarded=result_guarded)
        for field, value in fields.items():
            object.__setattr__(self, field, value)

    def __setattr__(self, field, value):
        raise AttributeError(f"{self!r} is immutable: {field} is given to its constructor")

    def __delattr__(self, field):
        raise AttributeError(f"{self!r} is immutable: {field} cannot be deleted")

    def __repr__(self):
        return f"<primitive {self.name}>"


# `differentiable` of a primitive whose inputs, however many (cat, stack), can all carry a
# gradient: every position. (Membership in a range is a constant-time comparison.)
EVERY_POSITION = range(sys.maxsize)


# PyTorch's names of nbgrad's scalar types, as its error messages spell them.
TORCH_TYPE_NAMES = {d.name: d.scalar_type for d in ALL_DTYPES}


class Unfusable(Exception):
    """A fused rule cannot express this call; `nbgrad.compile` runs the step eagerly."""


PRIMITIVES = {}


def register(primitive):
    if primitive.name in PRIMITIVES:
        raise ValueError(f"primitive {primitive.name!r} declared twice")
    PRIMITIVES[primitive.name] = primitive
    return primitive
