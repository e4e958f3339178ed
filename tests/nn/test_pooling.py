"""Pooling against torch: every module (values, return_indices, gradients, grad_fn names,
reprs), the options and layouts the op rows of tests/ops/test_ops.py leave out
(divisor_override, count_include_pad with ceil_mode, None in an adaptive output size,
unbatched and empty-batch inputs, transposed and sliced inputs, torch's top-level forms),
and torch's choice of maximum among ties, -inf and NaN in every max form.

All eager: the kernels are shared by every call, so a case costs no compilation; the op
rows run the three modes (tests/ops/test_modes.py).
"""
import numpy as np
import pytest
import torch

import nbgrad
from conftest import assert_close, grad_fn_name, rng_for

EDGES = np.array([[1.0, 3.0, 3.0, -np.inf, -np.inf, 0.0], [2.0, 3.0, 1.0, -np.inf, -np.inf, 0.0],
                  [np.nan, 0.5, np.nan, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, np.nan, 0.0],
                  [-1.0, 2.0, 2.0, -1.0, 4.0, 4.0]])


def _modules(L):
    """(name, module, input shape or array) of each case, for library `L`."""
    nn = L.nn
    edges = np.stack([EDGES, -EDGES])[None]  # (1, 2, 5, 6)
    return [
        ("MaxPool2d", nn.MaxPool2d(2), (2, 3, 6, 5)),
        ("MaxPool2d_indices", nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True), edges),
        ("MaxPool2d_tuples", nn.MaxPool2d((3, 2), (1, 2), (1, 0), (2, 1), True), edges),
        ("MaxPool2d_unbatched", nn.MaxPool2d(2, 1), (3, 4, 4)),
        ("MaxPool1d", nn.MaxPool1d(3, 2, 1, return_indices=True, ceil_mode=True), edges[0]),
        ("MaxPool1d_dilation", nn.MaxPool1d(2, 1, 1, 2), (2, 7)),
        ("AvgPool2d", nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 2, 6, 6)),
        ("AvgPool2d_divisor", nn.AvgPool2d((3, 2), 2, (1, 0), True, False, 4), (1, 2, 5, 6)),
        ("AvgPool2d_unbatched", nn.AvgPool2d(2), (3, 4, 5)),
        ("AvgPool1d", nn.AvgPool1d(4, 3, 2, True, False), (2, 3, 8)),
        ("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d((None, 4)), (2, 2, 5, 7)),
        ("AdaptiveAvgPool2d_1", nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
        ("AdaptiveAvgPool2d_larger", nn.AdaptiveAvgPool2d((7, 3)), (3, 4, 2)),
        ("AdaptiveAvgPool1d", nn.AdaptiveAvgPool1d(3), (2, 7)),
        ("AdaptiveMaxPool2d", nn.AdaptiveMaxPool2d((2, 4), return_indices=True), edges),
        ("AdaptiveMaxPool2d_none", nn.AdaptiveMaxPool2d((3, None)), (1, 2, 5, 4)),
        ("AdaptiveMaxPool1d", nn.AdaptiveMaxPool1d(4, True), edges[0]),
    ]


NAMES = [name for name, _, _ in _modules(torch)]


def _input(spec, name, dtype):
    if isinstance(spec, np.ndarray):
        return spec.astype(dtype)
    return rng_for(name).standard_normal(spec).astype(dtype)


def _run(L, module, array):
    """The module's outputs (values, and indices if it returns them) and the input's gradient
    under a fixed upstream gradient."""
    x = L.tensor(array, requires_grad=True)
    result = module(x)
    values = result[0] if isinstance(result, tuple) else result
    upstream = rng_for("upstream").standard_normal(tuple(values.shape)).astype(array.dtype)
    values.backward(L.tensor(upstream))
    return result if isinstance(result, tuple) else (result,), x.grad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_module_matches_torch(name, dtype):
    (_, t_module, spec), (_, n_module, _) = (
        [case for case in _modules(L) if case[0] == name][0] for L in (torch, nbgrad))
    assert repr(n_module) == repr(t_module)
    array = _input(spec, name, dtype)
    t_results, t_grad = _run(torch, t_module, array)
    n_results, n_grad = _run(nbgrad, n_module, array)
    assert len(n_results) == len(t_results)
    for n_result, t_result in zip(n_results, t_results):
        assert_close(n_result, t_result)  # indices: int64, exactly
    assert grad_fn_name(n_results[0]) == grad_fn_name(t_results[0])
    assert_close(n_grad, t_grad)


def test_window_of_more_than_64_positions():
    """Windows of more than 64 positions find their maximum's position by another loop (see
    nbgrad.ops.pooling): ties, -inf and NaN there too."""
    array = rng_for("large windows").integers(-2, 3, (3, 9, 9)).astype(float)
    array[0] = 2.0
    array[1] = -np.inf
    array[2, 3, 3:5] = array[2, 7, 1] = np.nan
    results = []
    for L in (torch, nbgrad):
        x = L.tensor(array, requires_grad=True)
        values, indices = L.nn.functional.adaptive_max_pool2d(x, 1, return_indices=True)
        values.sum().backward()
        results.append((values, indices, x.grad))
    for n_result, t_result in zip(*results[::-1]):
        assert_close(n_result, t_result)


# 2x2 windows that tile a 7x5 plane (a row and a column left over), transposed from 5x7 (a
# non-contiguous input): ties (a constant window, a tie on a diagonal), a window of -inf,
# NaN (two in a window: torch keeps the last; one beside a larger number).
TILES = np.array([[[[2.0, 2.0, 1.0, 3.0, -np.inf, -np.inf, 9.0],
                    [2.0, 2.0, 3.0, 0.0, -np.inf, -np.inf, 9.0],
                    [0.0, -1.0, 0.5, 0.5, 4.0, -2.0, 9.0],
                    [-1.0, 0.0, 0.5, 0.5, 1.0, 4.0, 9.0],
                    [7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]],
                   [[np.nan, 1.0, 5.0, np.nan, 0.0, 0.0, 0.0],
                    [1.0, np.nan, 1.0, 0.0, 0.0, np.nan, 0.0],
                    [-3.0, -2.0, np.nan, -1.0, 2.0, 1.0, 0.0],
                    [-4.0, -5.0, 3.0, 6.0, 1.0, 2.0, 0.0],
                    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tiles_match_torch(dtype):
    """Windows that tile the input (stride == kernel, no padding: the digits CNN's
    MaxPool2d(2)) take kernels of their own (see nbgrad.ops.pooling), whose loops run over
    the planes innermost below PLANES_INNER_BELOW tiles a row: torch's values, its choice
    among ties and NaN (values, indices and gradient), and a gradient of 0 where no window
    reaches. TILES transposed (7x5: 2 tiles a row), and beside its mirror image (7x10: 5)."""
    pool = nbgrad.ops.pooling.PRIMS["max_pool2d"].forward.__self__
    tiles = nbgrad.ops.pooling._max_kernels(2, 2)
    params = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
                  ceil_mode=False, ndim=2)
    wide = np.concatenate([TILES, TILES[:, :, ::-1]], axis=2)
    for planes, tiles_a_row in ((TILES, 2), (wide, 5)):
        windows = pool.windows(planes.transpose(0, 1, 3, 2), params)
        assert windows.tiles and windows.input_view[1] == 7
        assert windows.output_view[2] == tiles_a_row
        assert [pool.kernels(windows, saving)[0] for saving in (False, True)] \
            == [tiles.max_pool_tiles_forward, tiles.max_pool_tiles_saving]
        results = []
        for L in (torch, nbgrad):
            x = L.tensor(planes.astype(dtype), requires_grad=True)
            values, indices = L.nn.functional.max_pool2d(x.transpose(2, 3), 2, return_indices=True)
            with L.no_grad():
                unsaved = L.nn.functional.max_pool2d(x.transpose(2, 3), 2)
            g = rng_for("tiles").standard_normal(tuple(values.shape)).astype(dtype)
            values.backward(L.tensor(g))
            results.append((values, indices, unsaved, x.grad))
        for n_result, t_result in zip(*results[::-1]):
            assert_close(n_result, t_result)


# Function calls: the layouts and forms the modules do not reach.
CALLS = {
    "max_pool2d_transposed": lambda L, x: L.nn.functional.max_pool2d(x.transpose(2, 3), 3, 2, 1,
                                                                     return_indices=True),
    "max_pool2d_sliced": lambda L, x: L.nn.functional.max_pool2d(x[:, :, 1:, ::2], (2, 1)),
    "avg_pool2d_sliced": lambda L, x: L.nn.functional.avg_pool2d(x[::2], 2, 1, 1),
    "adaptive_avg_pool2d_transposed": lambda L, x: L.nn.functional.adaptive_avg_pool2d(
        x.transpose(1, 3), (2, 3)),
    "adaptive_max_pool1d_sliced": lambda L, x: L.nn.functional.adaptive_max_pool1d(
        x[0, :, 1], 3, return_indices=True),
    "max_pool2d_empty_batch": lambda L, x: L.nn.functional.max_pool2d(x[:0], 2),
    "avg_pool1d_empty_batch": lambda L, x: L.nn.functional.avg_pool1d(x[:0, 0], 2),
    "max_pool2d_stride_list": lambda L, x: L.nn.functional.max_pool2d(x, [3, 2], stride=[]),
    "max_pool2d_with_indices": lambda L, x: L.nn.functional.max_pool2d_with_indices(x, 3, 2, 1),
    "adaptive_max_pool1d_with_indices": lambda L, x: L.nn.functional.adaptive_max_pool1d_with_indices(
        x[1], 3),
    "torch_max_pool2d": lambda L, x: L.max_pool2d(x, 2, 1, 1, 1, True),
    "torch_max_pool1d_with_indices": lambda L, x: L.max_pool1d_with_indices(x[0], 3, 1, 1),
    "torch_adaptive_max_pool1d": lambda L, x: L.adaptive_max_pool1d(x[1], 2),
    "torch_avg_pool1d": lambda L, x: L.avg_pool1d(x[1], 3, 2, 1, True, False),
    "torch_adaptive_avg_pool1d": lambda L, x: L.adaptive_avg_pool1d(x[0], 4),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_function_matches_torch(name):
    array = rng_for(name).standard_normal((2, 3, 6, 5))
    results = {}
    for L in (torch, nbgrad):
        x = L.tensor(array, requires_grad=True)
        result = CALLS[name](L, x)
        result = result if isinstance(result, tuple) else (result,)
        upstream = rng_for("upstream").standard_normal(tuple(result[0].shape))
        result[0].backward(L.tensor(upstream))
        results[L.__name__] = (result, x.grad, grad_fn_name(result[0]))
    (n_result, n_grad, n_name), (t_result, t_grad, t_name) = results["nbgrad"], results["torch"]
    assert len(n_result) == len(t_result) and n_name == t_name
    for n_value, t_value in zip(n_result, t_result):
        assert_close(n_value, t_value)
    assert_close(n_grad, t_grad)


def test_result_changed_in_place_before_backward():
    """Max pooling saves its input (and PyTorch its indices), not its result: an in-place op
    on the result (ReLU(inplace=True) after pooling) leaves the gradient as torch's."""
    array = rng_for("in place").standard_normal((2, 3, 6, 6))
    grads = []
    for L in (torch, nbgrad):
        x = L.tensor(array, requires_grad=True)
        F = L.nn.functional
        for pooled in (F.max_pool2d(x, 3, 2, 1), F.adaptive_max_pool2d(x, 4), F.avg_pool2d(x, 2)):
            pooled.relu_()
            pooled.sum().backward()
        grads.append(x.grad)
    assert_close(grads[1], grads[0])


def test_window_of_only_padding():
    """Dilation 3 over 2 elements with padding 1: one window reads only padding. Its value
    (-inf) and index (its first position, 2, outside the plane) are torch's; its gradient
    goes nowhere (torch's backward adds it at that index, into the next plane)."""
    array = np.array([[1.0, 2.0], [3.0, -1.0]])
    results = [L.nn.functional.max_pool1d(L.tensor(array), 2, 1, 1, 3, return_indices=True)
               for L in (torch, nbgrad)]
    for t_result, n_result in zip(*results):
        assert_close(n_result, t_result)
    x = nbgrad.tensor(array, requires_grad=True)
    nbgrad.nn.functional.max_pool1d(x, 2, 1, 1, 3).sum().backward()
    assert not x.grad.numpy().any()


def test_top_level_forms_take_torchs_arguments():
    """torch's top-level max_pool2d has no return_indices; its adaptive_max_pool1d always
    returns the indices."""
    x = nbgrad.ones(1, 2, 4, 4)
    with pytest.raises(TypeError):
        nbgrad.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError):
        torch.max_pool2d(torch.ones(1, 2, 4, 4), 2, return_indices=True)
    assert isinstance(nbgrad.adaptive_max_pool1d(x[0], 2), tuple)
    assert not isinstance(nbgrad.nn.functional.adaptive_max_pool1d(x[0], 2), tuple)


def _ones(L, *shape):
    return L.ones(*shape, requires_grad=True)


# Bad calls (tests/test_bad_inputs.py runs the same kinds in subprocesses, in each mode, for
# the error type): the message must be torch's too.
BAD_CALLS = {
    "pad_above_half_kernel": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), 2, padding=2),
    "pad_above_half_undilated_kernel": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 1, 5, 5), 2, 1, 2, 3),
    "kernel_larger_than_input": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), 5),
    "dilated_output_too_small": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 1, 2, 2), 3, padding=1,
                                                                     dilation=2),
    "max_rank": lambda L: L.nn.functional.max_pool2d(_ones(L, 4, 4), 2),
    "max_empty_channels": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 0, 4, 4), 2),
    "stride_zero": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), 2, stride=0),
    "negative_kernel": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), -1),
    "negative_stride": lambda L: L.nn.functional.avg_pool2d(_ones(L, 1, 2, 4, 4), 2, -1),
    "zero_dilation": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), 2, 1, 0, 0, return_indices=True),
    "negative_padding": lambda L: L.nn.functional.avg_pool2d(_ones(L, 1, 2, 4, 4), 2, 1, -1),
    "three_kernel_sizes": lambda L: L.nn.functional.max_pool2d(_ones(L, 1, 2, 4, 4), (2, 2, 2)),
    "float_kernel": lambda L: L.nn.functional.avg_pool2d(_ones(L, 1, 2, 4, 4), 2.0),
    "bool_input": lambda L: L.nn.functional.max_pool2d(L.ones(1, 1, 4, 4, dtype=L.bool), 2),
    "avg_rank": lambda L: L.nn.functional.avg_pool2d(_ones(L, 4, 4), 2),
    "avg_rank_5": lambda L: L.nn.functional.avg_pool2d(_ones(L, 1, 1, 1, 4, 4), 2),
    "divisor_zero": lambda L: L.nn.functional.avg_pool2d(_ones(L, 1, 2, 4, 4), 2, divisor_override=0),
    "avg_pool1d_rank": lambda L: L.nn.functional.avg_pool1d(_ones(L, 4), 2),
    "avg_pool1d_kernel_larger_than_input": lambda L: L.nn.functional.avg_pool1d(_ones(L, 1, 2, 4), 5),
    "max_pool1d_rank": lambda L: L.nn.functional.max_pool1d(_ones(L, 1, 2, 4, 4), 2),
    "max_pool1d_padding": lambda L: L.nn.functional.max_pool1d(_ones(L, 1, 2, 4), 2, padding=2),
    "max_pool1d_output_size": lambda L: L.nn.functional.max_pool1d(_ones(L, 1, 2, 4), 5),
    "max_pool1d_stride": lambda L: L.nn.functional.max_pool1d(_ones(L, 1, 2, 4), 2, -1),
    "max_pool1d_indices_padding": lambda L: L.nn.functional.max_pool1d(_ones(L, 1, 2, 4), 2, 1, 2,
                                                                       return_indices=True),
    "adaptive_avg_negative_size": lambda L: L.nn.functional.adaptive_avg_pool2d(_ones(L, 1, 2, 4, 4), -1),
    "adaptive_max_negative_size": lambda L: L.nn.functional.adaptive_max_pool2d(_ones(L, 1, 2, 4, 4), -1),
    "adaptive_avg_three_sizes": lambda L: L.nn.functional.adaptive_avg_pool2d(_ones(L, 1, 2, 4, 4), (1, 2, 3)),
    "adaptive_max_rank": lambda L: L.nn.functional.adaptive_max_pool2d(_ones(L, 4, 4), 2),
    "adaptive_avg_empty_dim": lambda L: L.nn.functional.adaptive_avg_pool2d(_ones(L, 1, 2, 0, 4), 2),
    "adaptive_max_pool1d_two_sizes": lambda L: L.nn.functional.adaptive_max_pool1d(_ones(L, 1, 2, 4), (2, 2)),
    "adaptive_avg_pool1d_rank": lambda L: L.nn.functional.adaptive_avg_pool1d(_ones(L, 4), 2),
    "adaptive_none_of_1d": lambda L: L.nn.functional.adaptive_avg_pool2d(_ones(L, 4), (1, None)),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_call_raises_torchs_error(name):
    errors = []
    for L in (torch, nbgrad):
        with pytest.raises(Exception) as caught:
            BAD_CALLS[name](L)
        errors.append((type(caught.value).__name__, str(caught.value).splitlines()[0]))
    assert errors[1] == errors[0]
