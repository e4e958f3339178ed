"""The one expression -> loop emitter: a scalar expression (an elementwise row's forward or
VJP, an engine's `a + b`) becomes statements of a loop nest in generated Numba source.

Two callers write loops with it, each keeping only what is its own:
  - `nbgrad.ops.elementwise` (eager kernels): one module of flat, strided and threaded
    kernel functions per row, operands read through `at1`/`at4` into locals;
  - `nbgrad.fuse.codegen.Emitter.elementwise` (fused steps): chains of ops in one loop nest
    over a shape, broadcast reads, buffer names.

The expression's names are substituted by the caller's reads of its operands; its numbers
are hoisted into typed constants. Generated modules import `typed` from
`nbgrad._core.kernel_support`.
"""
import re

# A number in an expression (integer, decimal, or with an exponent such as 7.6e-06), to be
# hoisted into a typed constant; it never starts inside a name (x2) or another number.
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?![\w.])")


def _float_literal(number):
    """A number matched by _NUMBER as a Python float literal."""
    return number if any(c in number for c in ".eE") else number + ".0"


def hoist_constants(expr, reference, new_name):
    """`expr` with each number replaced by a name, and the statements that define those
    names before the loop: `name = typed(value, reference)`, the number in the dtype of the
    array `reference`.

    NOTE: in njit `float32_array * 2.0` is float64 (NumPy 2 keeps float32): a bare number
    would silently change the result's dtype.
    `new_name(count)` names a constant, given how many distinct numbers came before it; it
    is called for every number in `expr` (a repeated number keeps its first name).
    """
    constants = {}

    def hoist(match):
        return constants.setdefault(_float_literal(match.group(1)), new_name(len(constants)))

    body = _NUMBER.sub(hoist, expr)
    return body, [f"{name} = typed({value}, {reference})" for value, name in constants.items()]


def substitute(expr, reads):
    """`expr` with each name in `reads` (a mapping name -> source) replaced by its source:
    the caller's read of that operand's element."""
    if not reads:
        return expr
    return re.sub(r"\b(" + "|".join(map(re.escape, reads)) + r")\b",
                  lambda match: reads[match.group(1)], expr)


def index_names(rank):
    """The index variables of a loop nest of `rank` loops, outermost first."""
    return [f"i{d}" for d in range(rank)]


def loop_nest(indices, extents, body, parallel=False):
    """The lines of a loop nest in a function's body, running `indices[d]` over
    `range(extents[d])` (sources), the outermost a `numba.prange` when `parallel`, with the
    statements `body` inside."""
    lines = []
    for d, (index, extent) in enumerate(zip(indices, extents)):
        kind = "numba.prange" if parallel and d == 0 else "range"
        lines.append("    " * (d + 1) + f"for {index} in {kind}({extent}):")
    inner = "    " * (len(indices) + 1)
    return lines + [inner + statement for statement in body]
