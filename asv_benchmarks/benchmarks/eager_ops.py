"""Eager per-op latency: one primitive's forward, and its forward plus backward.

Two sizes per op: "tiny" (3 elements, 3x3 for matmul) measures the fixed cost of an eager
op (Python dispatch around the Numba kernel); "large" (1e6 elements, 512x512 for matmul)
measures the kernels themselves. Every setup() runs the op once forward and backward, so
Numba compilation (or loading from the cache) is never part of a timing.

The inputs require grad, so eager mode defers each op until its value is read
(nbgrad.fuse.deferred): `time_forward` reads the result (`.data`), so that the op runs
inside the timing. `time_forward_backward` repeats one graph, so after
`deferred.FUSE_AFTER` calls (a warm-up in setup) its backward runs as one fused kernel.
"""

import numpy as np

import nbgrad
from nbgrad.fuse import deferred

SHAPES = {
    "tiny": {"elementwise": (3,), "matmul": (3, 3)},
    "large": {"elementwise": (1_000_000,), "matmul": (512, 512)},
}

OPS = {
    "add": (2, lambda a, b: a + b),
    "mul": (2, lambda a, b: a * b),
    "exp": (1, lambda a: a.exp()),
    "matmul": (2, lambda a, b: a @ b),
}


class EagerOps:
    params = (list(OPS), list(SHAPES))
    param_names = ["op", "size"]

    def setup(self, op, size):
        # asv reports a NotImplementedError raised in setup() as "skipped" and exits 0;
        # an op listed here must work, so make that a failure CI notices.
        try:
            self._setup(op, size)
        except NotImplementedError as exc:
            raise RuntimeError(f"{op} ({size}) is not implemented: {exc!r}") from exc

    def _setup(self, op, size):
        n_inputs, self.fn = OPS[op]
        shape = SHAPES[size]["matmul" if op == "matmul" else "elementwise"]
        rng = np.random.default_rng(0)
        self.inputs = [
            nbgrad.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
            for _ in range(n_inputs)
        ]
        out = self.fn(*self.inputs)
        self.grad_out = nbgrad.ones_like(out)
        # Warm up: compile (or load) the forward and VJP kernels, and the fused graph of
        # forward and backward, outside the timings.
        self.time_forward(op, size)
        for _ in range(deferred.FUSE_AFTER + 1):
            self.time_forward_backward(op, size)

    def time_forward(self, op, size):
        self.fn(*self.inputs).data  # noqa: B018  (reading .data runs a deferred forward)

    def time_forward_backward(self, op, size):
        for x in self.inputs:
            x.grad = None
        self.fn(*self.inputs).backward(self.grad_out)
