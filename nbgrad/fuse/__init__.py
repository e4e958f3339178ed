"""nbgrad.fuse: fused Numba kernels from traced steps.

`kernel.py` is the one pipeline (traced run -> generated source -> arenas -> call function
-> compiled kernel); `compile.py` (`nbgrad.compile`) and `graph.py` (deferred eager graphs)
are its two front ends.

NOTE: `nbgrad.fuse.compile` is the function (as `torch.compile`); its module is reached
through `sys.modules["nbgrad.fuse.compile"]` or `from nbgrad.fuse.compile import ...`.
"""
from .compile import Compiled, compile
from .tracer import GraphBreak
from . import deferred  # noqa: F401  (installs deferred eager mode, see nbgrad._core.mode)

__all__ = ["compile", "Compiled", "GraphBreak"]
