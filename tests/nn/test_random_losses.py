"""Random calls of the loss functions against PyTorch: random shapes (a batch of one or none,
K extra dims), reductions, class weights, ignored and out-of-range classes, label smoothing,
probability targets, pos_weight, margins, valid or not, in the three modes (immediate, a
deferred loop past FUSE_AFTER, nbgrad.compile called again): the same values, gradients of
every leaf, and error types.

Why: a loss ends every training step, and its options combine in ways the op table's cases
do not list (ignore_index with class weights and label smoothing on a K-dim input). As a
search with other seeds:
NBGRAD_RANDOM_LOSS_SEEDS=1000:2000 pytest -n 2 tests/nn/test_random_losses.py
"""
import random
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import (PROGRAM_ERRORS, match_torch_in_mode, program_outcome, program_step,
                      search_seeds)
from nbgrad.fuse import deferred

def _reduction(r):
    return r.choice(["'mean'", "'sum'", "'none'"])


def _classes(r, leaves, arrays, shape, classes):
    """Class targets for an input of `shape` (N, C, d...) or (C,): some ignored (-100 or 1),
    rarely one out of range."""
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = np.array([r.randrange(classes) for _ in range(int(np.prod(target_shape)))],
                      np.int64).reshape(target_shape)
    if target.size and r.random() < 0.3:
        target.flat[r.randrange(target.size)] = r.choice([-100, 1])
    if target.size and r.random() < 0.03:
        target.flat[0] = classes  # out of range: an error
    arrays["t"] = target


def random_case(seed):
    """(leaf shapes {name: shape}, other arrays {name: array}, program setting `out`)."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    batch = r.choice([0, 1, 2, 3, 3])
    classes = r.randint(1, 4)
    extra = tuple(r.randint(1, 3) for _ in range(r.choice([0, 0, 1, 2])))
    shape = (batch, classes) + extra
    if r.random() < 0.1:
        shape = (classes,)
    leaves, arrays = {"x": shape}, {}
    reduction = _reduction(r)
    kind = r.random()
    if kind < 0.3:
        _classes(r, leaves, arrays, shape, classes)
        weight = ""
        if r.random() < 0.4:
            arrays["w"] = rng.uniform(0.2, 2.0, classes + (r.random() < 0.03))
            weight = ", weight=w"
        ignore = r.choice(["", ", ignore_index=1", ", ignore_index=-100"])
        if r.random() < 0.5:
            return leaves, arrays, f"out = F.nll_loss(F.log_softmax(x, {min(1, len(shape) - 1)})" \
                f", t{weight}{ignore}, reduction={reduction})"
        smoothing = r.choice(["", ", label_smoothing=0.1", ", label_smoothing=0.5"])
        return leaves, arrays, f"out = F.cross_entropy(x, t{weight}{ignore}{smoothing}, " \
            f"reduction={reduction})"
    if kind < 0.4:
        arrays["p"] = rng.dirichlet(np.ones(classes), shape[:1] + extra if len(shape) > 1
                                    else ()).astype(np.float64)
        if len(shape) > 1:
            arrays["p"] = np.moveaxis(arrays["p"], -1, 1)
        smoothing = r.choice(["", ", label_smoothing=0.2"])
        weight = ""
        if r.random() < 0.4:
            arrays["w"] = rng.uniform(0.2, 2.0, classes)
            weight = ", weight=w"
        return leaves, arrays, f"out = F.cross_entropy(x, p{weight}{smoothing}, " \
            f"reduction={reduction})"
    if kind < 0.55:
        arrays["y"] = rng.uniform(0, 1, shape)
        if r.random() < 0.5:
            arrays["y"] = np.round(arrays["y"])
        weight = ""
        if r.random() < 0.3:
            arrays["w"] = rng.uniform(0.2, 2.0, shape[-1:])
            weight = ", weight=w"
        if r.random() < 0.5:
            return leaves, arrays, f"out = F.binary_cross_entropy(x.sigmoid(), y{weight}, " \
                f"reduction={reduction})"
        pos = ""
        if r.random() < 0.5:
            arrays["q"] = rng.uniform(0.5, 3.0, shape[-1:])
            pos = ", pos_weight=q"
        return leaves, arrays, f"out = F.binary_cross_entropy_with_logits(x, y{weight}{pos}, " \
            f"reduction={reduction})"
    if kind < 0.8:
        leaves["y"] = shape if r.random() < 0.85 else shape[-1:]  # (broadcast: a warning)
        if np.prod(shape) and r.random() < 0.2:
            arrays["tie"] = 0  # equal elements: the kinks of l1 and the Huber losses
        name = r.choice(["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                         "soft_margin_loss", "kl_div", "poisson_nll_loss"])
        option = {"smooth_l1_loss": r.choice(["", ", beta=0.0", ", beta=0.5"]),
                  "huber_loss": r.choice(["", ", delta=0.5", ", delta=2.0"]),
                  "kl_div": r.choice(["", ", log_target=True"]),
                  "poisson_nll_loss": r.choice(["", ", log_input=False", ", full=True"])}.get(
                      name, "")
        second = "y"
        if name == "kl_div" and not option:
            second = "y.softmax(-1)"
        if name == "poisson_nll_loss" and option == ", log_input=False":
            return leaves, arrays, f"out = F.{name}(x.exp(), y.abs(){option}, " \
                f"reduction={reduction})"
        if name == "poisson_nll_loss":
            second = "y.abs()"
        if name == "kl_div" and reduction == "'mean'":
            reduction = r.choice(["'batchmean'", "'mean'"])
        return leaves, arrays, f"out = F.{name}(x, {second}{option}, reduction={reduction})"
    leaves["y"] = shape
    arrays["s"] = rng.choice([-1.0, 1.0], shape[:1] if len(shape) > 1 else ())
    if len(shape) == 2 and r.random() < 0.5:
        margin = r.choice(["", ", margin=0.5"])
        return leaves, arrays, f"out = F.cosine_embedding_loss(x, y, s{margin}, " \
            f"reduction={reduction})"
    if len(shape) == 2 and r.random() < 0.5:
        leaves["z"] = shape
        swap = r.choice(["", ", swap=True", ", p=1"])
        return leaves, arrays, f"out = F.triplet_margin_loss(x, y, z{swap}, " \
            f"reduction={reduction})"
    arrays["s"] = rng.choice([-1.0, 1.0], shape)
    if r.random() < 0.5:
        return leaves, arrays, f"out = F.margin_ranking_loss(x, y, s, margin=0.3, " \
            f"reduction={reduction})"
    return leaves, arrays, f"out = F.hinge_embedding_loss(x - y, s, margin=0.5, " \
        f"reduction={reduction})"


def _run(L, program, leaf_arrays, others, upstream, step=program_step):
    """("ok", out, each leaf's grad) or ("raise", error type)."""
    others = {name: L.tensor(array) for name, array in others.items()}
    return program_outcome(L, program, leaf_arrays, others, upstream, step=step)


def _arrays(seed, leaf_shapes, others):
    rng = np.random.default_rng(seed + 1)
    leaves = {name: rng.standard_normal(shape) for name, shape in leaf_shapes.items()}
    if others.pop("tie", None) is not None:
        leaves["y"] = np.broadcast_to(leaves["x"], leaf_shapes["y"]).copy() \
            if leaf_shapes["y"] == leaf_shapes["x"] else leaves["y"]
    return leaves, others


def _torch_out(program, leaves, others):
    scope = {"F": torch.nn.functional, **{k: torch.tensor(v) for k, v in leaves.items()},
             **{k: torch.tensor(v) for k, v in others.items()}}
    try:
        exec(program, scope)
    except PROGRAM_ERRORS:
        return None
    return scope["out"]


@pytest.mark.parametrize("mode", ["immediate", "deferred", "compile"])
@pytest.mark.parametrize("seed", search_seeds("NBGRAD_RANDOM_LOSS_SEEDS", range(16)))
def test_random_losses_match_torch(seed, mode, monkeypatch):
    monkeypatch.setattr(deferred, "enabled", mode != "immediate")
    leaf_shapes, others, program = random_case(seed)
    leaves, others = _arrays(seed, leaf_shapes, others)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _torch_out(program, leaves, others)
        upstream = np.random.default_rng(seed + 2).standard_normal(
            () if out is None else tuple(out.shape))
        expected = _run(torch, program, leaves, others, upstream)
    names = ("value",) + tuple(f"{name}.grad" for name in leaf_shapes)
    match_torch_in_mode(mode, program_step, lambda step: _run(nbgrad, program, leaves, others,
                                                       upstream, step),
                        expected, names, f"{leaf_shapes}\n{program}")
