"""nn.Conv1d/Conv2d/ConvTranspose1d/ConvTranspose2d and their functions against torch: default initialization, repr,
state_dict, padding modes, the kernels' chunked paths, and errors (type and message).
The op itself (values and gradients in three modes, gradcheck) is in tests/ops' table."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn
from nbgrad.fuse import deferred
from nbgrad.ops import conv as conv_ops


def _input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _copy(source, target):
    target.load_state_dict({k: torch.from_numpy(v.detach().numpy().copy())
                            for k, v in source.state_dict().items()})


def _run(module, lib, x, upstream):
    """Output and gradients (input, then parameters) of one forward/backward."""
    xt = lib.from_numpy(x.copy()).requires_grad_()
    out = module(xt)
    out.backward(lib.from_numpy(upstream))
    return [out, xt.grad] + [p.grad for p in module.parameters()]


def _assert_same(module, reference, x, rtol=1e-5, atol=1e-5):
    upstream = _input(tuple(reference(torch.from_numpy(x)).shape), seed=1)
    for ours, theirs in zip(_run(module, nbgrad, x, upstream), _run(reference, torch, x, upstream),
                            strict=True):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol,
                                   atol=atol)


CONFIGS = [  # (Conv class name, args, kwargs, input shape)
    ("Conv2d", (1, 16, 3), {"padding": 1}, (2, 1, 6, 6)),
    ("Conv2d", (4, 6, (3, 2)), {"stride": 2, "dilation": (1, 2), "groups": 2, "bias": False}, (1, 4, 7, 8)),
    ("Conv2d", (3, 4, 3), {"padding": "same", "padding_mode": "reflect"}, (2, 3, 5, 6)),
    ("Conv2d", (3, 4, 2), {"padding": (1, 2), "padding_mode": "circular"}, (1, 3, 4, 5)),
    ("Conv2d", (3, 3, 3), {"padding": "valid", "groups": 3}, (1, 3, 5, 5)),
    ("Conv1d", (4, 8, 3), {"padding": "same", "groups": 2, "padding_mode": "replicate"}, (2, 4, 7)),
    ("Conv1d", (2, 3, 1), {"stride": 2}, (3, 2, 5)),
    # DCGAN's generator layers; a 3x3 stride-1 one (the convolution's "same" path), grouped
    # with output padding and dilation, 1x1, and unbatched 1-D
    ("ConvTranspose2d", (6, 4, 4), {"stride": 2, "padding": 1, "bias": False}, (2, 6, 3, 3)),
    ("ConvTranspose2d", (6, 4, 4), {"stride": 1, "padding": 0}, (2, 6, 1, 1)),
    ("ConvTranspose2d", (3, 4, 3), {"padding": 1}, (2, 3, 5, 6)),
    ("ConvTranspose2d", (4, 6, (3, 2)), {"stride": (2, 3), "output_padding": (1, 2), "groups": 2,
                                         "dilation": (2, 1)}, (1, 4, 4, 3)),
    ("ConvTranspose2d", (3, 5, 1), {}, (2, 3, 4, 4)),
    ("ConvTranspose1d", (4, 2, 3), {"stride": 3, "padding": 2, "output_padding": 1}, (4, 5)),
]


@pytest.mark.parametrize("name, args, kwargs, shape", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_module_matches_torch(name, args, kwargs, shape):
    """repr, state_dict keys and shapes, the attributes torch sets, and output and gradients
    with torch's weights; padding modes other than 'zeros' go through F.pad as torch."""
    module, reference = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(module) == repr(reference)
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    for attribute in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                      "transposed", "output_padding", "groups", "padding_mode",
                      "_reversed_padding_repeated_twice"):
        assert getattr(module, attribute) == getattr(reference, attribute), attribute
    _copy(module, reference)
    _assert_same(module, reference, _input(shape))


def test_default_init_is_torchs():
    """The same seed gives torch's weights (kaiming_uniform_ with a=sqrt(5), bias uniform
    +-1/sqrt(fan_in)); and the bounds hold for a large layer."""
    for make in (lambda lib: lib.nn.Conv2d(3, 8, (3, 2), groups=1),
                 lambda lib: lib.nn.Conv1d(6, 4, 5, groups=2)):
        nbgrad.manual_seed(3)
        torch.manual_seed(3)
        ours, theirs = make(nbgrad), make(torch)
        for k, v in theirs.state_dict().items():
            np.testing.assert_array_equal(ours.state_dict()[k].numpy(), v.numpy())
    layer = nn.Conv2d(64, 32, 3)
    fan_in = 64 * 9
    weight, bias = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert weight.dtype == np.float32 and weight.shape == (32, 64, 3, 3)
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
    # uniform(-b, b) has standard deviation b / sqrt(3)
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert nn.Conv2d(2, 4, 3, dtype=nbgrad.float64).weight.dtype == nbgrad.float64


def test_transposed_default_init_and_output_size_are_torchs():
    """The transposed modules' weights (in, out/groups, kernel) from the same seed are torch's
    (fan_in from the weight's dim 1), and forward's output_size picks the output padding."""
    nbgrad.manual_seed(5)
    torch.manual_seed(5)
    ours, theirs = nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2), torch.nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2)
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k].numpy(), v.numpy())
    x = _input((1, 6, 3, 4))
    _assert_same(ours, theirs, x)
    for size in ([8, 10], [1, 4, 7, 9], (7, 9)):
        out, expected = ours(nbgrad.tensor(x), output_size=size), theirs(torch.tensor(x), output_size=size)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_chunked_and_plain_gemm_paths_match_torch(monkeypatch):
    """A small column budget makes the kernels work through the batch in several chunks
    (the last one partial; with the weight's gradient not transposed, else transposed:
    TRANSPOSED_WEIGHT_GRADIENT_BELOW), with groups, and 1x1 stride-1 convolutions of single images
    take the plain-GEMM path (also unbatched: the squeeze of the unbatched form); "same"
    convolutions (masked shifted copies: dilated, padded unequally per dim, with inf in
    the input next to the padding) and other padded ones; float64 against torch."""
    rng = np.random.default_rng(0)
    for budget, transposed_below in ((60, 0), (conv_ops.COLUMN_BUDGET, conv_ops.TRANSPOSED_WEIGHT_GRADIENT_BELOW)):
        monkeypatch.setattr(conv_ops, "COLUMN_BUDGET", budget)
        monkeypatch.setattr(conv_ops, "TRANSPOSED_WEIGHT_GRADIENT_BELOW", transposed_below)
        for x_shape, w_shape, kwargs in [((5, 4, 5, 6), (6, 2, 3, 2), {"groups": 2, "padding": 1, "stride": (1, 2)}),
                                         ((3, 4, 3, 3), (6, 4, 1, 1), {}),
                                         ((1, 4, 3, 3), (6, 2, 1, 1), {"groups": 2}),
                                         ((4, 3, 3), (6, 4, 1, 1), {}),
                                         ((3, 4, 5, 6), (6, 2, 3, 5), {"groups": 2, "padding": (1, 2)}),
                                         ((2, 3, 6, 4), (4, 3, 3, 3), {"padding": (2, 1), "dilation": (2, 1)}),
                                         ((3, 2, 4, 5), (3, 2, 3, 2), {"padding": (2, 1), "stride": (2, 1)})]:
            arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
            if len(x_shape) == 4 and x_shape[0] == 2:
                arrays[0][1, 2, 0, 3] = np.inf  # (read only by taps that do not read padding)
            results = []
            for lib in (nbgrad, torch):
                x, w, b = (lib.tensor(a, requires_grad=True) for a in arrays)
                out = lib.nn.functional.conv2d(x, w, b, **kwargs)
                out.backward(lib.tensor(np.cos(np.arange(out.numel())).reshape(tuple(out.shape))))
                results.append([t.detach().numpy() for t in (out, x.grad, w.grad, b.grad)] + [out.grad_fn.name()])
            (*ours, our_node), (*theirs, their_node) = results
            assert our_node == their_node
            for mine, reference in zip(ours, theirs):
                np.testing.assert_allclose(mine, reference, rtol=1e-10, atol=1e-12)


EMPTY_CASES = [  # (function, input shape, weight shape, bias, kwargs): outputs with no elements
    ("conv2d", (2, 0, 5, 5), (3, 0, 3, 3), True, {}),
    ("conv1d", (2, 0, 5), (3, 0, 3), True, {}),
    ("conv2d", (2, 0, 5, 5), (3, 0, 3, 3), True, {"padding": 1, "stride": 2}),
    ("conv2d", (2, 0, 5, 5), (4, 0, 3, 3), True, {"groups": 2}),
    ("conv2d", (2, 0, 5, 5), (3, 0, 3, 3), False, {"padding": "same", "dilation": 2}),
    ("conv2d", (0, 5, 5), (3, 0, 3, 3), True, {}),  # (unbatched)
    ("conv2d", (0, 2, 5, 5), (3, 2, 3, 3), True, {}),  # (no images)
]


def _empty_convolutions(L, *tensors):
    """The EMPTY_CASES' outputs, and a loss summing them."""
    outs = [getattr(L.nn.functional, name)(x, w, b if bias else None, **kwargs)
            for (name, _, _, bias, kwargs), x, w, b in zip(EMPTY_CASES, *[iter(tensors)] * 3)]
    loss = outs[0].sum()
    for out in outs[1:]:
        loss = loss + out.sum()
    loss.backward()
    return outs, loss


def test_empty_outputs_match_torch(monkeypatch, fused_runs):
    """As PyTorch, an input without channels gives an output without channels (whatever
    the weight's out channels; no bias added), and an empty output gives zero gradients
    (the bias's and the weight's are not empty): shapes, grad_fn, values and gradients
    against torch, in immediate mode (float32 and float64; and with create_graph=True), in
    a deferred loop past FUSE_AFTER and in nbgrad.compile (the fused rule: float32)."""
    def results(L, run, dtype, grad_fns=True):
        rng = np.random.default_rng(0)
        tensors = [L.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
                   for _, x_shape, w_shape, _, _ in EMPTY_CASES
                   for shape in (x_shape, w_shape, w_shape[:1])]
        outs, loss = run(*tensors)
        # (a compiled step's results have no grad_fn: their graph is the fused step)
        return ([(tuple(out.shape), out.grad_fn.name() if grad_fns else None) for out in outs]
                + [out.detach().numpy() for out in outs] + [loss.item()]
                + [t.grad if t.grad is None else t.grad.numpy() for t in tensors])

    def assert_same(ours, theirs, mode):
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs):
            if isinstance(reference, tuple):
                assert mine[0] == reference[0] and mine[1] in (reference[1], None), mode
            else:
                assert (mine is None) == (reference is None), mode
                np.testing.assert_array_equal(mine, reference, err_msg=mode)

    def eager(*tensors):
        return _empty_convolutions(nbgrad, *tensors)

    expected = {dtype: results(torch, lambda *t: _empty_convolutions(torch, *t), dtype)
                for dtype in (np.float32, np.float64)}
    monkeypatch.setattr(deferred, "enabled", False)
    for dtype in (np.float32, np.float64):
        assert_same(results(nbgrad, eager, dtype), expected[dtype], f"immediate, {dtype}")
    # create_graph=True: zero gradients joined to the graph, through which a second backward
    # reaches the weight and bias (with no images: PyTorch fails there without channels)
    second = []
    for L in (torch, nbgrad):
        x, w, b = (L.ones(*shape, requires_grad=True) for shape in ((0, 2, 5, 5), (3, 2, 3, 3), (3,)))
        grads = L.autograd.grad(L.nn.functional.conv2d(x, w, b).square().sum(), (x, w, b),
                                create_graph=True)
        sum(grad.sum() for grad in grads).backward()
        second.append([t.detach().numpy() for t in grads + (x.grad, w.grad, b.grad)])
    for mine, reference in zip(*second, strict=True):
        np.testing.assert_array_equal(mine, reference)
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "_graphs", {})
    for _ in range(deferred.FUSE_AFTER + 1):
        ours = results(nbgrad, eager, np.float32)
    assert fused_runs["runs"] == 1
    assert_same(ours, expected[np.float32], "deferred")
    step = nbgrad.compile(eager)
    for _ in range(2):
        ours = results(nbgrad, step, np.float32, grad_fns=False)
    assert step.stats["fused_calls"] == 1, step.explain()
    assert "conv_" not in step.source and ".fill(0)" in step.source  # (no kernel called)
    assert_same(ours, expected[np.float32], "nbgrad.compile")


def _error(fn):
    try:
        fn()
    except Exception as error:  # noqa: BLE001
        # A set in a message ({'same', 'valid'}) prints in an order of its own: sorted here.
        message = re.sub(r"\{[^}]*\}", lambda m: str(sorted(m.group(0)[1:-1].split(", "))),
                         str(error).split("\n")[0])
        return type(error).__name__, message.replace("nbgrad.Size", "torch.Size")
    return None


r = np.random.default_rng(0).standard_normal
BAD_CALLS = {  # name: fn(L) that raises in torch
    "kernel_too_big": lambda L: L.nn.functional.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 5, 5)))),
    "dilated_kernel_too_big": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 2, 2))), dilation=4),
    "kernel_too_big_1d": lambda L: L.conv1d(L.tensor(r((1, 3, 4))), L.tensor(r((2, 3, 5)))),
    "groups_input_channels": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 1, 3, 3))), groups=2),
    "groups_output_channels": lambda L: L.conv2d(L.tensor(r((1, 4, 4, 4))), L.tensor(r((3, 2, 3, 3))), groups=2),
    "groups_more_than_out": lambda L: L.conv2d(L.tensor(r((1, 4, 4, 4))), L.tensor(r((2, 1, 3, 3))), groups=4),
    "wrong_channels": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 2, 3, 3)))),
    "input_rank_5": lambda L: L.conv2d(L.tensor(r((1, 1, 3, 4, 4))), L.tensor(r((2, 1, 3, 3)))),
    "input_rank_4_conv1d": lambda L: L.conv1d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3)))),
    "weight_rank_3_conv2d": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3)))),
    "weight_rank_4_conv1d": lambda L: L.conv1d(L.tensor(r((1, 3, 4))), L.tensor(r((2, 3, 3, 3)))),
    "bias_shape": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), L.tensor(r(3))),
    "empty_bias": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), L.tensor(r(0))),
    "same_with_stride": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), stride=2,
                                           padding="same"),
    "padding_string": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), padding="full"),
    "negative_padding": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), padding=-1),
    "zero_stride": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), stride=0),
    "zero_dilation": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), dilation=0),
    "zero_groups": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), groups=0),
    "stride_length": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))), stride=(1, 1, 1)),
    "dtype_mismatch": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))), L.tensor(r((2, 3, 3, 3))).float()),
    "bias_dtype_mismatch": lambda L: L.conv2d(L.tensor(r((1, 3, 4, 4))).float(), L.tensor(r((2, 3, 3, 3))).float(),
                                              L.tensor(r(2))),
    "module_groups_in": lambda L: L.nn.Conv2d(3, 4, 3, groups=2),
    "module_groups_out": lambda L: L.nn.Conv2d(4, 3, 3, groups=2),
    "module_groups_zero": lambda L: L.nn.Conv2d(4, 4, 3, groups=0),
    "module_same_stride": lambda L: L.nn.Conv1d(4, 4, 3, stride=2, padding="same"),
    "module_padding_mode": lambda L: L.nn.Conv2d(4, 4, 3, padding_mode="zero"),
    "module_padding_string": lambda L: L.nn.Conv2d(4, 4, 3, padding="full"),
    "module_input_channels": lambda L: L.nn.Conv2d(4, 3, 3)(L.ones(1, 5, 5, 5)),
    # transposed
    "t_input_channels": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((5, 2, 3, 3)))),
    "t_groups": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), groups=3),
    "t_output_padding": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))),
                                                     output_padding=(0, 1)),
    "t_output_padding_1d": lambda L: L.conv_transpose1d(L.tensor(r((1, 4, 3))), L.tensor(r((4, 2, 3))),
                                                        output_padding=1, stride=1),
    "t_negative_output_padding": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))),
                                                              stride=2, output_padding=-1),
    "t_output_too_small": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), padding=3),
    "t_output_too_small_1d": lambda L: L.conv_transpose1d(L.tensor(r((1, 4, 3))), L.tensor(r((4, 2, 3))), padding=3),
    "t_negative_padding": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), padding=-1),
    "t_zero_stride": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), stride=0),
    "t_zero_dilation": lambda L: L.conv_transpose1d(L.tensor(r((1, 4, 3))), L.tensor(r((4, 2, 3))), dilation=0),
    "t_bias_shape": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), L.tensor(r(3))),
    "t_empty_bias": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), L.tensor(r(0))),
    "t_bias_rank": lambda L: L.conv_transpose1d(L.tensor(r((1, 4, 3))), L.tensor(r((4, 2, 3))), L.tensor(r((2, 1)))),
    "t_input_rank": lambda L: L.conv_transpose2d(L.tensor(r((3, 3))), L.tensor(r((4, 2, 3, 3)))),
    "t_input_rank_1d": lambda L: L.conv_transpose1d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3)))),
    "t_weight_rank": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3)))),
    "t_empty_weight": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 0, 3, 3)))),
    "t_empty_spatial": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 0, 3))), L.tensor(r((4, 2, 3, 3)))),
    "t_padding_string": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), padding="same"),
    "t_dtype_mismatch": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))).float(), L.tensor(r((4, 2, 3, 3)))),
    "t_stride_length": lambda L: L.conv_transpose2d(L.tensor(r((1, 4, 3, 3))), L.tensor(r((4, 2, 3, 3))), stride=(1, 2, 3)),
    "t_module_padding_mode": lambda L: L.nn.ConvTranspose2d(4, 2, 3, padding_mode="reflect"),
    "t_module_groups": lambda L: L.nn.ConvTranspose2d(4, 3, 3, groups=2),
    "t_module_output_size": lambda L: L.nn.ConvTranspose2d(4, 2, 3, stride=2)(L.ones(1, 4, 3, 3), output_size=[6, 7]),
    "t_module_output_size_length": lambda L: L.nn.ConvTranspose2d(4, 2, 3, stride=2)(L.ones(1, 4, 3, 3),
                                                                                      output_size=[1, 7, 7]),
}


def test_errors_match_torch():
    """Every bad call raises torch's exception type with torch's message (tests/
    test_bad_inputs.py runs the core ones in each mode, in subprocesses)."""
    mismatches = {}
    for name, bad in BAD_CALLS.items():
        expected = _error(lambda: bad(torch))
        assert expected is not None, f"torch accepts {name}"
        actual = _error(lambda: bad(nbgrad))
        if actual != expected:
            mismatches[name] = (actual, expected)
    assert not mismatches, mismatches


def _same_path_params(padding):
    return {"stride": (1, 1), "padding": (padding, padding), "dilation": (1, 1), "groups": 1}


def test_winograd_choice():
    """The rule (_winograd_pays): ResNet-18's 3x3 layers at 56x56 and 28x28 (at 224x224)
    and at 16x16 (layer1 at 64x64) take Winograd F(4x4, 3x3) in the forward, whatever the
    padding; few tiles (512 channels at 2x2), images under 16x16 (14x14: measured slower),
    few channels (the digits CNN: its kernels are then never compiled), other kernels,
    strides and groups do not."""
    def chosen(x_shape, w_shape, padding=1, **params):
        out_shape = (x_shape[0], w_shape[0]) + tuple(size + 2 * padding - w_shape[-1] + 1
                                                      for size in x_shape[2:])
        return conv_ops._winograd_plan(x_shape, w_shape, out_shape,
                                       {**_same_path_params(padding), **params}) is not None

    assert chosen((1, 64, 56, 56), (64, 64, 3, 3))
    assert chosen((1, 128, 28, 28), (128, 128, 3, 3))
    assert chosen((1, 64, 56, 56), (64, 64, 3, 3), padding=3)
    assert chosen((8, 64, 16, 16), (64, 64, 3, 3))
    assert not chosen((1, 256, 14, 14), (256, 256, 3, 3))
    assert not chosen((8, 512, 2, 2), (512, 512, 3, 3))
    assert not chosen((8, 128, 8, 8), (128, 128, 3, 3))
    assert not chosen((64, 1, 8, 8), (16, 1, 3, 3))
    assert not chosen((64, 16, 4, 4), (32, 16, 3, 3))
    assert not chosen((1, 64, 56, 56), (64, 64, 5, 5))
    assert not chosen((1, 64, 56, 56), (64, 32, 3, 3), groups=2)
    assert not chosen((1, 64, 56, 56), (64, 64, 3, 3), stride=(2, 2))


def test_winograd_choice_for_the_input_gradient():
    """The input's gradient takes Winograd where the convolution of the output gradient
    into the input's shape would (the same rule, channels exchanged), for padding 0 to 2
    (its padding is 2 - p)."""
    def chosen(x_shape, w_shape, padding=1):
        out_shape = (x_shape[0], w_shape[0]) + tuple(size + 2 * padding - 2
                                                      for size in x_shape[2:])
        return conv_ops._winograd_plan(x_shape, w_shape, out_shape, _same_path_params(padding),
                                       True) is not None

    assert chosen((1, 64, 56, 56), (64, 64, 3, 3))
    assert chosen((8, 64, 16, 16), (64, 64, 3, 3), padding=0)
    assert chosen((8, 64, 16, 16), (64, 64, 3, 3), padding=2)
    assert not chosen((8, 64, 16, 16), (64, 64, 3, 3), padding=3)
    assert not chosen((1, 256, 14, 14), (256, 256, 3, 3))
    assert not chosen((1, 64, 56, 56), (16, 64, 3, 3))


def test_winograd_matches_torch(monkeypatch):
    """Convolutions made to take Winograd in the forward and the input's gradient
    (asserted: the thresholds lowered to 1 so small shapes do; the input's gradient for
    padding 0 to 2) against torch in float64 and float32, forward and all gradients (the
    weight's and bias's by im2col): odd output sizes (the edge tiles cropped), padding 0 to 3, batch 1
    and 3, channels that divide by nothing, inputs transposed and sliced, no bias; several
    chunks of images (a small column budget); a float64 gradcheck; and a compiled step (the
    fused rule calls the same kernels) against eager."""
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_SIZE", 1)
    rng = np.random.default_rng(0)
    cases = [  # (input shape before the layout, weight shape, padding, layout, bias)
        ((1, 3, 5, 5), (4, 3, 3, 3), 1, "plain", True),
        ((3, 5, 7, 6), (7, 5, 3, 3), 0, "transposed", True),
        ((2, 4, 6, 9), (3, 4, 3, 3), 2, "sliced", False),
        ((3, 17, 9, 11), (13, 17, 3, 3), 1, "plain", True),
        ((2, 4, 3, 4), (5, 4, 3, 3), 3, "plain", True),
    ]
    layouts = {"plain": lambda t: t, "transposed": lambda t: t.transpose(2, 3),
               "sliced": lambda t: t[:, :, 1:, ::2]}
    for dtype, rtol, atol in ((np.float64, 1e-10, 1e-12), (np.float32, 1e-5, 1e-5)):
        for budget in (conv_ops.COLUMN_BUDGET, 300):
            monkeypatch.setattr(conv_ops, "COLUMN_BUDGET", budget)
            for x_shape, w_shape, padding, layout, has_bias in cases:
                # (weights scaled as nn.Conv2d initializes them: outputs of about 1)
                arrays = [(rng.standard_normal(shape) * scale).astype(dtype) for shape, scale in
                          ((x_shape, 1), (w_shape, (9 * x_shape[1]) ** -0.5), (w_shape[:1], 1))]
                results = []
                for lib in (nbgrad, torch):
                    x, w, b = (lib.tensor(a, requires_grad=True) for a in arrays)
                    xs = layouts[layout](x)
                    out = lib.nn.functional.conv2d(xs, w, b if has_bias else None, padding=padding)
                    out.backward(lib.tensor(np.cos(np.arange(out.numel())).reshape(tuple(out.shape))
                                            .astype(dtype)))
                    results.append([t.detach().numpy() for t in (out, x.grad, w.grad)]
                                   + ([b.grad.numpy()] if has_bias else []))
                assert conv_ops._winograd_plan(tuple(xs.shape), w_shape, tuple(out.shape),
                                               _same_path_params(padding)) is not None
                assert (conv_ops._winograd_plan(tuple(xs.shape), w_shape, tuple(out.shape),
                                                _same_path_params(padding), True) is not None
                        ) == (padding <= 2)
                for mine, reference in zip(*results, strict=True):
                    np.testing.assert_allclose(mine, reference, rtol=rtol, atol=atol)

    x, w, b = (nbgrad.tensor(rng.standard_normal(shape), requires_grad=True)
               for shape in ((2, 3, 5, 4), (4, 3, 3, 3), (4,)))
    assert nbgrad.autograd.gradcheck(lambda *a: nbgrad.nn.functional.conv2d(*a, padding=1),
                                     (x, w, b))

    def step(x, w, b):
        loss = nbgrad.nn.functional.conv2d(x, w, b, padding=1).square().sum()
        loss.backward()
        return loss

    grads = []
    for run in (step, nbgrad.compile(step, fullgraph=True)):
        for _ in range(2):
            x.grad = w.grad = b.grad = None
            loss = run(x, w, b)
        grads.append([loss.detach().numpy()] + [t.grad.numpy() for t in (x, w, b)])
    assert run.source.count("winograd_kernel(") == 2  # (the forward and the input's gradient)
    for mine, reference in zip(*grads, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-12)


def test_winograd_rounding_at_resnets_layers():
    """F(4x4, 3x3) in float32 at ResNet-18's layers that take it (the default thresholds),
    forward and input gradient, against torch in float64: its rounding error stays within
    1e-4 of the result's scale (measured 1e-5; im2col's 3e-7), and float64's within 1e-12."""
    rng = np.random.default_rng(1)
    for batch, channels, size in ((1, 64, 56), (1, 128, 28), (8, 64, 16)):
        x = rng.standard_normal((batch, channels, size, size))
        w = rng.standard_normal((channels, channels, 3, 3)) * (9 * channels) ** -0.5
        g = rng.standard_normal(x.shape)
        assert conv_ops._winograd_plan(x.shape, w.shape, x.shape, _same_path_params(1))
        assert conv_ops._winograd_plan(x.shape, w.shape, x.shape, _same_path_params(1), True)
        tx = torch.tensor(x, requires_grad=True)
        reference = torch.nn.functional.conv2d(tx, torch.tensor(w), padding=1)
        reference.backward(torch.tensor(g))
        references = [reference.detach().numpy(), tx.grad.numpy()]
        for dtype, tolerance in ((np.float32, 1e-4), (np.float64, 1e-12)):
            nx = nbgrad.tensor(x.astype(dtype), requires_grad=True)
            out = nbgrad.nn.functional.conv2d(nx, nbgrad.tensor(w.astype(dtype)), padding=1)
            out.backward(nbgrad.tensor(g.astype(dtype)))
            for mine, expected in zip((out.detach().numpy(), nx.grad.numpy()), references):
                assert np.abs(mine - expected).max() <= tolerance * np.abs(expected).max()


def test_winograd_threaded_transforms_give_the_serial_result(monkeypatch):
    """winograd_kernel's threaded transforms (by kernel, plane and output channel) against
    its serial ones, bit for bit: odd sizes, padding 0 to 3, one or several chunks, with and
    without a bias."""
    assert nbgrad._core.threads.start()
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv_ops, "WINOGRAD_MIN_SIZE", 1)
    rng = np.random.default_rng(2)
    for x_shape, out_channels, padding, budget, has_bias in (
            ((1, 7, 9, 13), 5, 1, conv_ops.COLUMN_BUDGET, True),
            ((3, 4, 6, 5), 9, 0, 300, False), ((2, 33, 17, 3), 3, 3, 5000, True)):
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal((out_channels, x_shape[1], 3, 3)).astype(np.float32)
        bias = rng.standard_normal(out_channels if has_bias else 0).astype(np.float32)
        out_shape = (x_shape[0], out_channels) + tuple(size + 2 * padding - 2
                                                       for size in x_shape[2:])
        monkeypatch.setattr(conv_ops, "COLUMN_BUDGET", budget)
        plan = conv_ops._winograd_plan(x_shape, w.shape, out_shape, _same_path_params(padding))
        outs = []
        for threaded in (False, True):
            out = np.empty(out_shape, np.float32)
            conv_ops.winograd_kernel(x.reshape(-1), w.reshape(-1), bias, out.reshape(-1),
                                     plan.array, np.empty(plan.workspace, np.float32), threaded)
            outs.append(out)
        np.testing.assert_array_equal(*outs)


CACHED_KERNELS_SCRIPT = r'''
import json
import numpy as np
import nbgrad
from nbgrad.ops import conv as conv_ops

rng = np.random.default_rng(0)
results = []
for x_shape, w_shape in (((3, 2, 5, 4), (4, 2, 3, 3)), ((1, 32, 28, 28), (32, 32, 3, 3))):
    x, w, b = (nbgrad.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
               for shape in (x_shape, w_shape, w_shape[:1]))
    out = nbgrad.nn.functional.conv2d(x, w, b, padding=1)
    out.square().sum().backward()
    results += [t.detach().numpy().reshape(-1)[:50].tolist() for t in (out, x.grad, w.grad, b.grad)]
kernels = (conv_ops.conv_forward_kernel, conv_ops.conv_backward_kernel, conv_ops.winograd_kernel)
print(json.dumps({"results": results,
                  "hits": [sum(k.stats.cache_hits.values()) for k in kernels],
                  "misses": [sum(k.stats.cache_misses.values()) for k in kernels]}))
'''


def test_kernels_load_from_the_cache_in_a_new_process(tmp_path):
    """The kernels call im2col, col2im and gemm unlinked (by symbol): a process that loads
    them from Numba's cache must register those first (their cache entries name them:
    _core.unlinked.UnlinkedCallsCache), or its first call jumps to nothing. Two processes on one empty cache: the first compiles all three
    kernels, the second loads them and gets the same results."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(nbgrad.__file__)))
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(tmp_path / "nbgrad"),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"), NBGRAD_DEFERRED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    reports = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", CACHED_KERNELS_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = reports
    assert first["misses"] == [1, 1, 1] and first["hits"] == [0, 0, 0]
    assert second["hits"] == [1, 1, 1] and second["misses"] == [0, 0, 0]
    assert second["results"] == first["results"]
