"""F.affine_grid and F.grid_sample against torch where the op table does not reach: error
messages and warnings, what nbgrad leaves out, and the gradients where torch's own backward
crashes (a NaN grid point with border or reflection padding, an infinite one with reflection)."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
import nbgrad.nn.functional as F


def _x(L, *shape, dtype="float32"):
    return L.ones(*shape, dtype=getattr(L, dtype))


# Calls each library must refuse with the same exception type and message.
BAD = {
    "mode": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2), mode="cubic",
                                                  align_corners=False),
    "padding": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2),
                                                     padding_mode="wrap", align_corners=False),
    "batch": lambda L: L.nn.functional.grid_sample(_x(L, 2, 1, 2, 2), _x(L, 1, 3, 3, 2),
                                                   align_corners=False),
    "last_dim": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 1),
                                                      align_corners=False),
    "grid_rank": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 1, 2),
                                                       align_corners=False),
    "input_rank": lambda L: L.nn.functional.grid_sample(_x(L, 2, 3, 4), _x(L, 2, 1, 1),
                                                        align_corners=False),
    "bicubic_5d": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2, 2), _x(L, 1, 1, 1, 1, 3),
                                                        mode="bicubic", align_corners=False),
    "empty_spatial": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 0), _x(L, 1, 3, 3, 2),
                                                           align_corners=False),
    "dtypes": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2, dtype="float64"),
                                                    _x(L, 1, 3, 3, 2), align_corners=False),
    "integer_input": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2, dtype="int32"),
                                                           _x(L, 1, 3, 3, 2), align_corners=False),
    "integer_grid": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2),
                                                          _x(L, 1, 3, 3, 2, dtype="int64"),
                                                          align_corners=False),
    "align_corners_int": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), _x(L, 1, 3, 3, 2),
                                                               align_corners=1),
    "grid_list": lambda L: L.nn.functional.grid_sample(_x(L, 1, 1, 2, 2), [[1.0]], align_corners=False),
    "theta_dtype": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3, dtype="int64"), (1, 1, 2, 2),
                                                         align_corners=False),
    "theta_shape": lambda L: L.nn.functional.affine_grid(_x(L, 1, 3, 3), (1, 1, 2, 2),
                                                         align_corners=False),
    "theta_shape_3d": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), [1, 1, 2, 2, 2],
                                                            align_corners=False),
    "size_rank": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (1, 1, 2), align_corners=False),
    "size_zero": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (1, 1, 0, 2), align_corners=True),
    "size_negative": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (1, 1, -1, 2),
                                                           align_corners=False),
    "size_batch": lambda L: L.nn.functional.affine_grid(_x(L, 2, 2, 3), (3, 1, 2, 2), align_corners=False),
    "size_float": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (1, 1, 2.0, 2),
                                                        align_corners=False),
    "size_bool_first": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (True, 1, 2, 2),
                                                             align_corners=False),
    "size_float_tensor": lambda L: L.nn.functional.affine_grid(
        _x(L, 1, 2, 3), (1, 1, 2, L.tensor(2.0)), align_corners=False),
    "affine_align_corners_int": lambda L: L.nn.functional.affine_grid(_x(L, 1, 2, 3), (1, 1, 2, 2),
                                                                      align_corners=0),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_calls_raise_torchs_error_and_message(name):
    with pytest.raises(Exception) as expected:
        BAD[name](torch)
    with pytest.raises(expected.type) as raised:
        BAD[name](nbgrad)
    assert str(raised.value).replace("nbgrad.", "torch.") == str(expected.value)


def _warnings(L, call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(L)
    return out, [str(w.message) for w in caught]


def test_warnings_and_empty_results_as_torch():
    theta = np.array([[[1.0, 0.2, 0.1], [-0.3, 0.9, 0.0]]], np.float32)
    calls = [
        lambda L: L.nn.functional.affine_grid(L.tensor(theta), (1, 1, 3, 4)),
        lambda L: L.nn.functional.affine_grid(L.tensor(theta), (1, 1, 1, 4), align_corners=True),
        # a unit size with align_corners: warned, and the size check skipped, as torch's
        lambda L: L.nn.functional.affine_grid(L.tensor(theta[:0]), (0, 1, 1, 4), align_corners=True),
        lambda L: L.nn.functional.grid_sample(_x(L, 1, 2, 3, 3), L.tensor(theta[:, :, None, :2])),
        # an empty result of an integer input: torch checks no dtype then
        lambda L: L.nn.functional.grid_sample(_x(L, 2, 3, 4, 5, dtype="int64"), _x(L, 2, 0, 3, 2),
                                              align_corners=False),
    ]
    for call in calls:
        (expected, expected_warnings), (actual, actual_warnings) = (_warnings(L, call)
                                                                    for L in (torch, nbgrad))
        assert actual_warnings == expected_warnings
        assert str(actual.dtype).replace("nbgrad.", "torch.") == str(expected.dtype)
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_what_nbgrad_leaves_out_says_so():
    x, grid = _x(nbgrad, 1, 1, 2, 2), _x(nbgrad, 1, 3, 3, 2)
    with pytest.raises(NotImplementedError, match="bicubic"):
        F.grid_sample(x, grid, mode="bicubic", align_corners=False)
    with pytest.raises(NotImplementedError, match="5-D"):
        F.grid_sample(_x(nbgrad, 1, 1, 2, 2, 2), _x(nbgrad, 1, 1, 1, 1, 3), align_corners=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_nonfinite_points_where_torchs_backward_crashes(dtype, mode):
    """The forward as torch's (NaN clamped to 0, infinities to the ends or, reflected, to 0);
    the backward of that location: the input's gradient at the taps read, the grid's 0."""
    x = np.arange(1.0, 13.0).reshape(1, 1, 3, 4).astype(dtype)
    grid = np.array([[[[np.nan, 0.0], [0.0, np.nan], [np.inf, 1.0], [-np.inf, 0.0]]]], dtype)
    for padding in ("border", "reflection"):
        expected = torch.nn.functional.grid_sample(torch.tensor(x), torch.tensor(grid), mode=mode,
                                                   padding_mode=padding, align_corners=False)
        x_n = nbgrad.tensor(x, requires_grad=True)
        grid_n = nbgrad.tensor(grid, requires_grad=True)
        out = F.grid_sample(x_n, grid_n, mode=mode, padding_mode=padding, align_corners=False)
        np.testing.assert_array_equal(out.detach().numpy(), expected.numpy())
        out.sum().backward()
        assert not grid_n.grad.numpy()[~np.isfinite(grid)].any()
        # each point's weights sum to 1 over the taps it read: the forward's value, again
        np.testing.assert_allclose((x_n.grad.numpy() * x).sum(), out.detach().numpy().sum(),
                                   rtol=1e-6)
