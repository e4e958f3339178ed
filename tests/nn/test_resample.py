"""Padding, upsampling and channel-dropout modules and functions against torch: values,
gradients, grad_fn names, reprs, torch's index rules over many sizes, dropout masks."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
import nbgrad.nn.functional as F
from conftest import assert_same_error

RNG = np.random.default_rng(12)


def _both(array):
    return (torch.tensor(array, requires_grad=True), nbgrad.tensor(array, requires_grad=True))


def _check_against_torch(torch_fn, nbgrad_fn, shape, dtype=np.float32, tol=1e-6):
    """Output, grad_fn name and input gradient of `*_fn(input)`, nbgrad's against torch's."""
    t_in, n_in = _both(RNG.standard_normal(shape).astype(dtype))
    t_out, n_out = torch_fn(t_in), nbgrad_fn(n_in)
    assert type(n_out.grad_fn).__name__ == type(t_out.grad_fn).__name__
    np.testing.assert_allclose(n_out.detach().numpy(), t_out.detach().numpy(), rtol=tol, atol=tol)
    g = RNG.standard_normal(tuple(t_out.shape)).astype(dtype)
    t_out.backward(torch.tensor(g))
    n_out.backward(nbgrad.tensor(g))
    np.testing.assert_allclose(n_in.grad.numpy(), t_in.grad.numpy(), rtol=tol, atol=tol)


# (module name, constructor arguments, input shape)
PADDING_MODULES = [
    ("ZeroPad1d", (2,), (2, 3, 4)), ("ZeroPad2d", ((1, 0, 2, -1),), (2, 3, 4)),
    ("ZeroPad3d", (1,), (1, 2, 2, 3)), ("ConstantPad1d", ((1, 2), 3.5), (3, 4)),
    ("ConstantPad2d", (1, -2.0), (1, 2, 3)), ("ConstantPad3d", ((1, 0, 0, 1, 1, 0), 1), (2, 2, 2, 2)),
    ("ReflectionPad1d", (3,), (2, 3, 4)), ("ReflectionPad2d", ((1, 0, 2, 0),), (2, 3, 4)),
    ("ReflectionPad3d", (1,), (1, 2, 2, 3)), ("ReplicationPad1d", (3,), (3, 2)),
    ("ReplicationPad2d", (2,), (1, 2, 3, 2)), ("ReplicationPad3d", ((2, 0, 1, 0, 0, 1),), (2, 2, 3, 2)),
    ("CircularPad1d", (2,), (2, 3, 4)), ("CircularPad2d", ((1, 2, 0, 1),), (2, 3, 4)),
    ("CircularPad3d", (1,), (1, 1, 2, 2, 3)),
]


def test_padding_modules_match_torch():
    for name, args, shape in PADDING_MODULES:
        t_module, n_module = getattr(torch.nn, name)(*args), getattr(nbgrad.nn, name)(*args)
        assert repr(n_module) == repr(t_module)
        assert n_module.padding == t_module.padding
        _check_against_torch(t_module, n_module, shape)


def test_circular_pad_beyond_what_negative_padding_leaves_raises():
    # PyTorch returns uninitialized memory where nothing is left to wrap around, and fails
    # on overlapping copies or returns some values where less is left than a pad; the
    # gather would read past the input.
    x = nbgrad.arange(4.0).reshape(1, 2, 2)
    for pads in [(-2, 1), (2, -2), (-1, 2), (1, 1, -2, 1)]:
        with pytest.raises(RuntimeError, match="wrapping around more than once"):
            F.pad(x, pads, mode="circular")
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        F.pad(nbgrad.ones(1, 2, 3), (-2, 2), mode="circular")
    np.testing.assert_array_equal(F.pad(x, (-1, 1), mode="circular").numpy(),
                                  [[[1, 1], [3, 3]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_upsample_modules_match_torch(dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, kwargs, shape in [
            ("Upsample", dict(scale_factor=2), (1, 2, 3, 4)),
            ("Upsample", dict(size=(5, 2), mode="bilinear"), (2, 1, 3, 4)),
            ("Upsample", dict(scale_factor=(1.5, 0.5), mode="bilinear", align_corners=True), (1, 2, 3, 4)),
            ("Upsample", dict(scale_factor=1.7, mode="linear", recompute_scale_factor=True), (2, 2, 5)),
            ("Upsample", dict(size=3, mode="nearest-exact"), (1, 2, 5)),
            ("Upsample", dict(scale_factor=0.6, mode="trilinear"), (1, 1, 4, 5, 3)),
            ("UpsamplingNearest2d", dict(scale_factor=3), (1, 2, 2, 3)),
            ("UpsamplingBilinear2d", dict(size=(4, 5)), (1, 2, 2, 3))]:
        t_module, n_module = getattr(torch.nn, name)(**kwargs), getattr(nbgrad.nn, name)(**kwargs)
        assert repr(n_module) == repr(t_module)
        _check_against_torch(t_module, n_module, shape, dtype, tol)


def test_interpolate_index_rules_over_many_sizes():
    """Torch's source indices and weights (nearest and nearest-exact exactly) for sizes and
    scale factors that hit the rules' edges, in both dtypes, every mode."""
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        for in_size in (1, 2, 3, 5, 7):
            x = RNG.standard_normal((1, 2, in_size)).astype(dtype)
            calls = [dict(size=out, mode=mode, **extra) for out in range(1, 12)
                     for mode, extra in (("nearest", {}), ("nearest-exact", {}), ("linear", {}),
                                         ("linear", dict(align_corners=True)))]
            calls += [dict(scale_factor=s, mode=mode) for s in (0.6, 1.3, 1.5, 2.5, 1 / 3)
                      for mode in ("nearest", "linear") if int(in_size * s) >= 1]
            for kwargs in calls:
                expected = torch.nn.functional.interpolate(torch.tensor(x), **kwargs).numpy()
                actual = F.interpolate(nbgrad.tensor(x), **kwargs).numpy()
                exact = kwargs["mode"] != "linear"
                np.testing.assert_allclose(actual, expected, rtol=0 if exact else tol,
                                           atol=0 if exact else tol, err_msg=str(kwargs))
        # bicubic, antialiased bilinear and bicubic, area: downsampling by several ratios,
        # upsampling, align_corners
        x = RNG.standard_normal((1, 2, 9, 11)).astype(dtype)
        for size, align in [((4, 3), False), ((2, 5), True), ((1, 1), False), ((9, 20), False),
                            ((5, 11), True), ((13, 7), False)]:
            for kwargs in (dict(mode="bilinear", antialias=True), dict(mode="bicubic"),
                           dict(mode="bicubic", antialias=True), dict(mode="area")):
                if kwargs["mode"] != "area":
                    kwargs["align_corners"] = align
                expected = torch.nn.functional.interpolate(torch.tensor(x), size, **kwargs).numpy()
                actual = F.interpolate(nbgrad.tensor(x), size, **kwargs).numpy()
                np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol,
                                           err_msg=f"{size} {kwargs}")


def test_nearest_gradient_is_the_forward_transposed():
    """NOTE: torch's nearest backward (not its forward) copies when the output has the
    input's size, and halves indices at twice it, even where a scale factor made its forward
    read other elements; nbgrad's gradient is the VJP of its (torch's) forward."""
    x = nbgrad.tensor(np.arange(3.0).reshape(1, 1, 3), requires_grad=True)
    out = F.interpolate(x, scale_factor=1.2)  # size 3, elements [0, 0, 1] as torch's
    np.testing.assert_array_equal(out.detach().numpy(), torch.nn.functional.interpolate(
        torch.arange(3.0).reshape(1, 1, 3), scale_factor=1.2).numpy())
    out.backward(nbgrad.tensor([[[1.0, 10.0, 100.0]]]))
    np.testing.assert_array_equal(x.grad.numpy(), [[[11.0, 100.0, 0.0]]])


def test_pad_and_interpolate_warnings_and_dtypes_as_torch():
    ints = np.arange(6).reshape(1, 2, 3)
    for L in (torch, nbgrad):
        assert L.nn.functional.pad(L.tensor(ints), (1, 1), value=2.5).dtype == L.int64
    np.testing.assert_array_equal(F.pad(nbgrad.tensor(ints), (1, 1), value=2.5).numpy(),
                                  torch.nn.functional.pad(torch.tensor(ints), (1, 1), value=2.5).numpy())
    np.testing.assert_array_equal(F.pad(nbgrad.tensor(ints), (2, 1), mode="reflect").numpy(),
                                  torch.nn.functional.pad(torch.tensor(ints), (2, 1), mode="reflect").numpy())
    # the deprecated upsample functions: torch's warning, then interpolate
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for name, args, kwargs in (("upsample", (None, 2, "bilinear"), {}),
                               ("upsample_nearest", ((5, 5),), {}),
                               ("upsample_bilinear", (), dict(scale_factor=2))):
        results = []
        for L in (torch, nbgrad):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = getattr(L.nn.functional, name)(L.tensor(x), *args, **kwargs)
            results.append((out.numpy(), [str(w.message) for w in caught]))
        np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
        assert results[1][1] == results[0][1]
    # uint8 images: nearest as torch
    image = RNG.integers(0, 256, (1, 3, 4, 5)).astype(np.uint8)
    np.testing.assert_array_equal(F.interpolate(nbgrad.tensor(image), size=(7, 3)).numpy(),
                                  torch.nn.functional.interpolate(torch.tensor(image), size=(7, 3)).numpy())
    # float16 is stored only: computed in float32 and rounded back (bilinear's separable
    # sums may round to the neighbouring float16 of torch's)
    half = RNG.standard_normal((1, 2, 3, 4)).astype(np.float16)
    for kwargs, tol in ((dict(scale_factor=2), 0), (dict(size=(2, 7), mode="bilinear"), 1e-3)):
        actual = F.interpolate(nbgrad.tensor(half), **kwargs).numpy()
        assert actual.dtype == np.float16
        np.testing.assert_allclose(
            actual, torch.nn.functional.interpolate(torch.tensor(half), **kwargs).numpy(), rtol=tol)


def _feature_dropout(L, function, shape, p, seed, inplace=False):
    L.manual_seed(seed)
    x = (L.arange(float(np.prod(shape))).reshape(shape) / 7 - 1).requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = getattr(L.nn.functional, function)(x * 1.0, p, training=True, inplace=inplace)
    out.backward(L.ones_like(out))
    return out.detach().numpy(), x.grad.numpy(), type(out.grad_fn).__name__, [
        str(w.message) for w in caught]


def test_channel_dropout_masks_warnings_and_gradients_match_torch():
    """The same seed zeroes the same channels as torch (the noise is drawn as torch draws
    it), with torch's scale, gradient, grad_fn and warnings (a 3-D input to dropout2d)."""
    for function, shape in (("dropout2d", (3, 4, 2, 2)), ("dropout2d", (3, 4, 5)),
                            ("dropout1d", (3, 4, 5)), ("dropout1d", (4, 5)),
                            ("dropout3d", (2, 3, 2, 2, 2)), ("dropout3d", (3, 2, 2, 2)),
                            ("dropout3d", (3, 4)), ("feature_alpha_dropout", (3, 4, 2)),
                            ("alpha_dropout", (3, 4, 2)), ("alpha_dropout", (5,))):
        for p, inplace in ((0.3, False), (0.5, True), (1.0, False)):
            actual = _feature_dropout(nbgrad, function, shape, p, 7, inplace)
            expected = _feature_dropout(torch, function, shape, p, 7, inplace)
            for a, e in zip(actual, expected):
                np.testing.assert_equal(a, e, err_msg=f"{function} {shape} {p} {inplace}")


def test_dropout2d_module_statistics_and_eval():
    nbgrad.manual_seed(0)
    layer = nbgrad.nn.Dropout2d(0.25)
    assert repr(layer) == repr(torch.nn.Dropout2d(0.25))
    x = nbgrad.ones(50, 40, 3, 3)
    out = layer(x).numpy()
    per_channel = out.reshape(2000, 9)
    # whole channels: each is all 0 or all 1/(1-p)
    assert set(np.unique(per_channel.min(1) == per_channel.max(1))) == {True}
    assert np.allclose(np.unique(out), [0.0, 1 / 0.75])
    dropped = (per_channel[:, 0] == 0).mean()
    assert 0.2 < dropped < 0.3  # 2000 channels at p=0.25: 5 standard deviations is 0.05
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nbgrad.nn.Dropout1d(1.5)



def test_dropout3d_and_alpha_dropout_modules_match_torch():
    def run(L):
        L.manual_seed(3)
        x = L.randn(2, 3, 4, 2, 2)
        layers = [L.nn.Dropout3d(0.4), L.nn.AlphaDropout(0.2), L.nn.FeatureAlphaDropout(0.3, True)]
        outputs = [layer(x).numpy() for layer in layers]
        for layer in layers:
            layer.eval()
        evaluated = [layer(x) is x for layer in layers]
        # F.alpha_dropout and F.feature_alpha_dropout do nothing unless told they train
        untrained = [L.nn.functional.alpha_dropout(x) is x,
                     L.nn.functional.feature_alpha_dropout(x, 0.9) is x]
        return [repr(layer) for layer in layers], outputs, evaluated, untrained
    (reprs, outputs, evaluated, untrained), expected = run(nbgrad), run(torch)
    assert reprs == expected[0] and evaluated == expected[2] and untrained == expected[3]
    for a, e in zip(outputs, expected[1], strict=True):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("make", [
    lambda L: L.nn.AlphaDropout(-0.1), lambda L: L.nn.functional.alpha_dropout(L.ones(2), 1.5),
    lambda L: L.nn.functional.alpha_dropout(L.ones(3, dtype=L.int64), 0.2, True),
    lambda L: L.nn.functional.feature_alpha_dropout(L.ones(3), 0.2, True),
    lambda L: L.nn.functional.dropout3d(L.ones(2, 2), 1.1)])
def test_alpha_and_3d_dropout_errors_match_torch(make):
    assert_same_error(make)
