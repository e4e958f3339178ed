"""The shape of one row of the primitive table.

A primitive is declared once. The autograd engine and (later) the fused-code generator read
only these fields and never name a specific op.
"""


class Primitive:
    """One row: name, PyTorch grad_fn name, shape/dtype rule, forward, VJP, what to save.

    - `infer(*inputs, **params) -> (shape, np_dtype)` looks at `.shape`/`.dtype` only, never
      at data; it also raises the user-facing errors for bad shapes and indices.
    - `forward(*arrays, **params) -> array` runs the njit kernel(s) on NumPy arrays.
    - `vjp(node, grad) -> tuple` returns one gradient (or None) per input; `node.needs[i]`
      says which are wanted, `node.saved` holds what `save` asked for, `node.params` the
      parameters. A gradient may have the output's broadcast shape: the engine sums it back
      to the input's shape.
    - `check(*inputs, **params)` (optional) raises the user-facing errors that need data
      (class indices out of range); it runs when a call is deferred. `forward` checks too.
    - `save_for` (optional) gives, per input, the `save` entries its VJP reads: a call
      saves only those of the inputs that need a gradient (all of `save` without it).
    - `save` names what the VJP reads: a tuple of input positions plus "out".
    - `view=True` means the output shares memory (and PyTorch's version counter) with
      input 0.
    - `differentiable` lists the input positions that can carry a gradient.
    - `fuse` (optional) emits the primitive's forward and VJP into a fused step: an object
      with `forward(emitter, arrays, params, out)` and `vjp(emitter, node, grad, raw_grads)`.
      A primitive without one makes `nbgrad.compile` fall back to eager mode.
    """

    __slots__ = ("name", "grad_fn", "infer", "forward", "vjp", "save", "view", "differentiable",
                 "node_classes", "meta", "fuse", "check", "deferrable", "save_for")

    def __init__(self, name, grad_fn, infer, forward, vjp=None, save=(), view=False,
                 differentiable=(0,), meta=None):
        self.name = name
        self.grad_fn = grad_fn
        self.infer = infer
        self.forward = forward
        self.vjp = vjp
        self.save = save
        self.view = view
        self.differentiable = differentiable if vjp is not None else ()
        self.node_classes = {}
        # Family-specific facts another reader needs (e.g. the scalar expressions of an
        # elementwise op, which the fused code generator inlines).
        self.meta = meta
        self.fuse = None
        self.check = None
        self.save_for = None
        self.deferrable = False  # set in nbgrad.ops, once every fused rule is attached

    def __repr__(self):
        return f"<primitive {self.name}>"


# PyTorch's names of nbgrad's scalar types, as its error messages spell them.
TORCH_TYPE_NAMES = {"bool": "Bool", "int64": "Long", "float32": "Float", "float64": "Double"}


class Unfusable(Exception):
    """A fused rule cannot express this call; `nbgrad.compile` runs the step eagerly."""


PRIMITIVES = {}


def register(primitive):
    if primitive.name in PRIMITIVES:
        raise ValueError(f"primitive {primitive.name!r} declared twice")
    PRIMITIVES[primitive.name] = primitive
    return primitive
