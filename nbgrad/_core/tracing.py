"""The hook through which `nbgrad.compile` watches one eager run of a step.

`current` is None except while a step is being traced; library code that touches data
outside a primitive (the backward engine, optimizers, in-place fills) reports it here so the
fused code generator sees every array operation of the step.
"""
current = None


def graph_break(reason):
    """Tell an active tracer that the step cannot be fused (e.g. `.item()` inside it)."""
    if current is not None:
        current.graph_break(reason)
