"""Random indices against PyTorch: `x[index]`, `x[index] = f(x[index])` and a constant written
through an index, with integers, 0-d integer tensors, slices (negative, past the end,
stepped), None, Ellipsis, Python bools, integer tensors and boolean masks mixed, in the
three modes (immediate, a deferred loop past FUSE_AFTER, nbgrad.compile called again): the
same values, gradients and error types.

Why: NumPy and PyTorch read some mixed indices differently (an integer beside an array
index: see ops.indexing.torch_stages), which a search like this one found after every
hand-written case had passed. As a search with other seeds:
NBGRAD_RANDOM_INDEX_SEEDS=1000:2000 pytest -n 2 tests/ops/test_random_indices.py
"""
import random

import numpy as np
import pytest
import torch

import nbgrad
from conftest import match_torch_in_mode, search_seeds
from nbgrad.fuse import deferred

ERRORS = (IndexError, RuntimeError, ValueError, TypeError)


def _part(r, size, arrays):
    """One index part for a dimension of `size` (or one that takes none): its source and the
    number of dimensions it takes."""
    kind = r.random()
    if kind < 0.05 and size:
        return f"L.tensor({r.randrange(-size, size)})", 1
    if kind < 0.2 and size:
        return str(r.randrange(-size, size)), 1
    if kind < 0.45:
        start = r.choice(["", str(r.randrange(-size - 1, size + 1))])
        stop = r.choice(["", str(r.randrange(-size - 1, size + 2))])
        return f"{start}:{stop}" + r.choice(["", ":1", ":2", ":3"]), 1
    if kind < 0.52:
        return "None", 0
    if kind < 0.55:
        return r.choice(["True", "False"]), 0
    if kind < 0.85 and size and arrays < 2:
        return f"L.tensor({[r.randrange(-size, size) for _ in range(r.randrange(1, 5))]})", 1
    if size and arrays < 2:
        return f"L.tensor({[r.random() < 0.5 for _ in range(size)]})", 1
    return ":", 1


def random_case(seed):
    """(shape, program): a program reading `y` (x * 1, x the leaf) that sets `out`."""
    r = random.Random(seed)
    shape = tuple(r.randrange(0, 5) if r.random() < 0.1 else r.randrange(1, 5)
                  for _ in range(r.randrange(1, 4)))
    parts, dim, arrays = [], 0, 0
    while dim < len(shape) and r.random() < 0.8:
        if r.random() < 0.07 and "..." not in parts:
            parts.append("...")
            dim = len(shape) - r.randrange(0, len(shape) - dim + 1)
            continue
        part, taken = _part(r, shape[dim], arrays)
        arrays += part.startswith("L.tensor([")
        parts.append(part)
        dim += taken
    index = "[" + (", ".join(parts) or "...") + "]"
    kind = r.random()
    if kind < 0.5:
        return shape, f"out = y{index}"
    if kind < 0.75:
        return shape, f"y{index} = y{index} * 2 + 1\nout = y"
    return shape, f"z = y.clone()\nz{index} = 0.5\nout = z * y"


def _step(L, program, x, upstream):
    scope = {"L": L, "y": x * 1}
    exec(program, scope)
    out = scope["out"]
    (out * upstream).sum().backward()
    return out


def _run(L, program, x0, upstream, step=_step):
    """("ok", out, x.grad) or ("raise", error type)."""
    x = L.tensor(x0, requires_grad=True)
    try:
        out = step(L, program, x, L.tensor(upstream))
    except ERRORS as error:
        return "raise", type(error).__name__
    return "ok", out.detach().numpy().copy(), x.grad.numpy().copy()


def _out_shape(program, x0):
    """The shape of torch's `out` (() where torch raises: nbgrad must raise before it reads
    the upstream gradient)."""
    scope = {"L": torch, "y": torch.tensor(x0)}
    try:
        exec(program, scope)
    except ERRORS:
        return ()
    return tuple(scope["out"].shape)


@pytest.mark.parametrize("mode", ["immediate", "deferred", "compile"])
@pytest.mark.parametrize("seed", search_seeds("NBGRAD_RANDOM_INDEX_SEEDS", range(40)))
def test_random_indices_match_torch(seed, mode, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", mode != "immediate")
    shape, program = random_case(seed)
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    upstream = rng.standard_normal(_out_shape(program, x0))
    expected = _run(torch, program, x0, upstream)
    match_torch_in_mode(mode, _step, lambda step: _run(nbgrad, program, x0, upstream, step),
                        expected, ("value", "gradient"), f"{list(shape)}\n{program}")
