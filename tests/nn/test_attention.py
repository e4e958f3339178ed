"""Attention and transformer layers against torch: F.scaled_dot_product_attention (masks,
causal, scale, grouped heads, fully masked rows, gradcheck, errors), nn.MultiheadAttention
(parameters, initialisation, masks, need_weights, batch_first, kdim/vdim, add_bias_kv,
add_zero_attn, unbatched input, errors) and the Transformer modules (state_dict keys, a
torch state_dict loaded, outputs and every parameter's gradient in float32 and float64,
norm_first, gelu, masks, the nested-tensor path's results); a training-mode dropout check;
then one deferred training loop past FUSE_AFTER and one nbgrad.compile'd training step."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import TOL, Pair, assert_close, nbgrad_warnings, rng_for, standard_step
from nbgrad.fuse import deferred
from nbgrad.fuse.graph import FusedGraph

# Warnings both libraries give (the tests that check them record them themselves).
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True",
                                        "ignore:Support for mismatched")
DTYPES = ("float32", "float64")
# float32 attention sums products in another order than torch's kernels.
TOL32 = (5e-5, 1e-5)


def _tol(dtype):
    return TOL32 if dtype == "float32" else TOL["float64"]


def _array(name, shape, dtype, scale=1.0):
    return (rng_for(name).standard_normal(shape) * scale).astype(dtype)


def _both(array, requires_grad=False):
    """The same values as a torch and an nbgrad tensor."""
    return tuple(L.tensor(array, requires_grad=requires_grad) for L in (torch, nbgrad))


def _assert_close(actual, expected, dtype):
    rtol, atol = _tol(dtype)
    assert_close(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# F.scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------

def _bool_mask(name, shape, keep=0.7):
    return rng_for(name).random(shape) < keep


def _blocked_row_mask():
    mask = _bool_mask("blocked", (4, 5))
    mask[1] = False  # query 1 may attend to nothing: zeros, not NaN
    return mask


# name: (query, key, value shapes, keyword arguments as functions of the dtype)
SDPA_CASES = {
    "plain_4d": ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), {}),
    "unbatched_2d": ((4, 8), (5, 8), (5, 3), {}),
    "bool_mask_blocked_row": ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6),
                              {"attn_mask": lambda d: _blocked_row_mask()}),
    "float_mask_broadcast": ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6),
                             {"attn_mask": lambda d: _array("fmask", (3, 1, 5), d)}),
    "float_mask_blocked_row": ((2, 4, 8), (2, 5, 8), (2, 5, 6), {
        "attn_mask": lambda d: np.where(_blocked_row_mask(), _array("fm2", (4, 5), d), -np.inf)}),
    "float32_mask_float64_query": ((2, 4, 8), (2, 5, 8), (2, 5, 6),
                                   {"attn_mask": lambda d: _array("m32", (4, 5), "float32")}),
    "causal_square": ((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 6), {"is_causal": True}),
    "causal_more_keys": ((3, 4, 8), (3, 6, 8), (3, 6, 2), {"is_causal": True}),
    "causal_fewer_keys": ((3, 6, 8), (3, 4, 8), (3, 4, 2), {"is_causal": True}),
    "scale": ((2, 4, 8), (2, 5, 8), (2, 5, 6), {"scale": 0.3}),
    "negative_scale": ((2, 4, 8), (2, 5, 8), (2, 5, 6), {"scale": -0.7}),
    "grouped_query_heads": ((2, 6, 4, 8), (2, 2, 5, 8), (2, 3, 5, 4), {"enable_gqa": True}),
    "broadcast_batch": ((2, 3, 4, 8), (3, 5, 8), (1, 3, 5, 6), {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case, dtype):
    shapes, options = SDPA_CASES[case][:3], SDPA_CASES[case][3]
    arrays = [_array(f"{case}/{i}", shape, dtype) for i, shape in enumerate(shapes)]
    upstream = None
    results = []
    for L in (torch, nbgrad):
        inputs = [L.tensor(a, requires_grad=True) for a in arrays]
        kwargs = {k: (L.tensor(f(dtype)) if k == "attn_mask" else f)
                  for k, f in options.items()}
        out = L.nn.functional.scaled_dot_product_attention(*inputs, **kwargs)
        if upstream is None:
            upstream = _array(f"{case}/g", tuple(out.shape), dtype)
        (out * L.tensor(upstream)).sum().backward()
        results.append((out, [x.grad for x in inputs]))
    (theirs, their_grads), (ours, our_grads) = results
    assert not np.isnan(theirs.detach().numpy()).any()
    _assert_close(ours, theirs, dtype)
    for g, t in zip(our_grads, their_grads):
        _assert_close(g, t, dtype)


def test_sdpa_float_mask_gets_its_gradient():
    arrays = [_array(f"fm/{i}", (2, 4, 3), "float64") for i in range(3)]
    mask = _array("fm/mask", (4, 4), "float64")
    grads = []
    for L in (torch, nbgrad):
        m = L.tensor(mask, requires_grad=True)
        L.nn.functional.scaled_dot_product_attention(*map(L.tensor, arrays), attn_mask=m).sum() \
            .backward()
        grads.append(m.grad)
    _assert_close(grads[1], grads[0], "float64")


def test_sdpa_gradcheck():
    q, k, v = (nbgrad.tensor(_array(f"gc/{i}", shape, "float64"), requires_grad=True)
               for i, shape in enumerate(((2, 3, 4), (2, 5, 4), (2, 5, 3))))
    mask = nbgrad.tensor(_bool_mask("gc/mask", (3, 5)))
    assert nbgrad.autograd.gradcheck(
        lambda q, k, v: nbgrad.nn.functional.scaled_dot_product_attention(q, k, v, mask),
        (q, k, v))


def _sdpa_error_cases(L):
    q, k, v = L.zeros(2, 3, 4, 8), L.zeros(2, 3, 5, 8), L.zeros(2, 3, 5, 6)
    sdpa = L.nn.functional.scaled_dot_product_attention
    return {
        "dtypes": lambda: sdpa(q, k.double(), v),
        "rank": lambda: sdpa(q[0, 0, 0], k, v),
        "mask_dtype": lambda: sdpa(q, k, v, attn_mask=L.ones(4, 5, dtype=L.int64)),
        "mask_float64_query_float32": lambda: sdpa(q, k, v, attn_mask=L.zeros(4, 5).double()),
        "mask_1d": lambda: sdpa(q, k, v, attn_mask=L.ones(5, dtype=L.bool), is_causal=True),
        "mask_0d": lambda: sdpa(q, k, v, attn_mask=L.tensor(0.0)),
        "mask_and_causal": lambda: sdpa(q, k, v, attn_mask=L.ones(4, 5, dtype=L.bool),
                                        is_causal=True),
        "integer_inputs": lambda: sdpa(q.long(), k.long(), v.long()),
        "dropout_above_one": lambda: sdpa(q, k, v, dropout_p=1.5),
        "heads_not_divisible": lambda: sdpa(q, k[:, :2], v[:, :2], enable_gqa=True),
        "gqa_unbatched": lambda: sdpa(q[0, 0], k[0, 0], v[0, 0], enable_gqa=True),
        "mask_widens_scores": lambda: sdpa(q, k, v, attn_mask=L.zeros(1, 2, 3, 4, 5)),
        "scale_positional": lambda: sdpa(q, k, v, None, 0.0, False, 0.5),
        # shape mismatches come from the products: nbgrad's matmul words them its own way
        "query_key_width": lambda: sdpa(q, k[..., :7], v),
        "key_value_length": lambda: sdpa(q, k, v[..., :4, :]),
        "mask_shape": lambda: sdpa(q, k, v, attn_mask=L.zeros(4, 6)),
    }


OWN_MESSAGES = ("query_key_width", "key_value_length", "mask_shape")


@pytest.mark.parametrize("case", list(_sdpa_error_cases(torch)))
def test_sdpa_errors_are_torchs(case):
    with pytest.raises(Exception) as theirs:
        _sdpa_error_cases(torch)[case]()
    with pytest.raises(type(theirs.value)) as ours:
        _sdpa_error_cases(nbgrad)[case]()
    if case not in OWN_MESSAGES:
        assert str(ours.value).replace("nbgrad.", "torch.") == str(theirs.value)


def test_sdpa_dropout_in_training_keeps_the_expected_mean():
    """Uniform attention over 400 keys of ones: each output is the mean of kept weights scaled
    by 1 / (1 - p), so about 1, and the outputs differ from one another."""
    nbgrad.manual_seed(0)
    q, k = nbgrad.zeros(8, 3, 4), nbgrad.zeros(8, 400, 4)
    v = nbgrad.ones(8, 400, 2)
    out = nbgrad.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    assert out.shape == (8, 3, 2)
    assert abs(out.mean() - 1.0) < 0.03 and out.std() > 0.01


# ---------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------

def _copy_state(source, target):
    """torch module's state_dict into nbgrad's (keys must be the same)."""
    state = {k: v.detach().numpy().copy() for k, v in source.state_dict().items()}
    assert list(target.state_dict()) == list(state)
    target.load_state_dict(state)


def _module_pair(build, dtype):
    """The same module built in both libraries, torch's weights copied into nbgrad's."""
    torch.manual_seed(0)
    theirs = build(torch).to(getattr(torch, dtype))
    ours = build(nbgrad).to(getattr(nbgrad, dtype))
    _copy_state(theirs, ours)
    return theirs, ours


def _compare_calls(theirs, ours, call, dtype, name):
    """Run `call(L, module)` -> (outputs, input tensors) in both; compare the outputs, the
    gradients of a weighted sum of them, for the inputs and every parameter."""
    results = []
    for L, module in ((torch, theirs), (nbgrad, ours)):
        outputs, inputs = call(L, module)
        outputs = [o for o in outputs if o is not None]
        loss = sum((o * L.tensor(_array(f"{name}/g{i}", tuple(o.shape), dtype))).sum()
                   for i, o in enumerate(outputs))
        loss.backward()
        results.append((outputs, [x.grad for x in inputs],
                        {n: p.grad for n, p in module.named_parameters()}))
    (t_out, t_in, t_par), (n_out, n_in, n_par) = results
    assert len(n_out) == len(t_out)
    for a, e in zip(n_out, t_out):
        _assert_close(a, e, dtype)
    for a, e in zip(n_in, t_in):
        _assert_close(a, e, dtype)
    assert list(n_par) == list(t_par)
    for key, e in t_par.items():
        assert (n_par[key] is None) == (e is None), key
        if e is not None:
            _assert_close(n_par[key], e, dtype)


def _inputs(L, name, shapes, dtype):
    return [L.tensor(_array(f"{name}/x{i}", shape, dtype), requires_grad=True)
            for i, shape in enumerate(shapes)]


def _mask(L, array, dtype):
    """A bool mask as it is, a float one in the computation's dtype."""
    return L.tensor(array if array.dtype == bool else array.astype(dtype))


def _causal(n):
    return np.triu(np.full((n, n), -np.inf), 1)


def _kpm(batch, length, padded):
    """A key padding mask: the last `padded[b]` keys of sequence b are padding."""
    return np.arange(length)[None, :] >= (length - np.asarray(padded))[:, None]


# name: (constructor keywords, input shapes (self-attention: one), forward keywords as arrays)
MHA_CASES = {
    "self_attention_weights": (dict(), [(5, 2, 8)], {}),
    "batch_first_padding_no_weights": (
        dict(batch_first=True), [(2, 5, 8)],
        dict(key_padding_mask=_kpm(2, 5, [2, 0]), need_weights=False)),
    "cross_kdim_vdim_3d_float_mask_per_head": (
        dict(kdim=6, vdim=3), [(4, 2, 8), (5, 2, 6), (5, 2, 3)],
        dict(attn_mask=_array("m3", (4, 4, 5), "float64"), average_attn_weights=False)),
    "bias_kv_zero_attn_masks": (
        dict(add_bias_kv=True, add_zero_attn=True), [(4, 2, 8), (5, 2, 8)],
        dict(key_padding_mask=_kpm(2, 5, [1, 3]), attn_mask=_bool_mask("m2", (4, 5)))),
    "bias_kv_zero_attn_no_weights": (
        dict(add_bias_kv=True, add_zero_attn=True, batch_first=True), [(2, 4, 8)],
        dict(attn_mask=_causal(4), need_weights=False)),
    "unbatched_padding": (
        dict(), [(4, 8), (5, 8), (5, 8)],
        dict(key_padding_mask=np.array([False, True, False, False, True]))),
    "unbatched_3d_mask_no_weights": (
        dict(), [(4, 8)], dict(attn_mask=_bool_mask("m3u", (2, 4, 4)), need_weights=False)),
    "causal_hint_no_weights": (
        dict(batch_first=True), [(3, 5, 8)], dict(attn_mask=_causal(5), is_causal=True,
                                                  need_weights=False)),
    "causal_hint_with_weights_and_padding": (
        dict(), [(5, 3, 8)], dict(attn_mask=_causal(5) == -np.inf, is_causal=True,
                                  key_padding_mask=_kpm(3, 5, [0, 1, 2]))),
    "no_bias_float_padding": (
        dict(bias=False, num_heads=4), [(3, 2, 8)],
        dict(key_padding_mask=_array("fkpm", (2, 3), "float64"))),
    "fully_padded_sequence_no_weights": (
        dict(), [(3, 2, 8)], dict(key_padding_mask=_kpm(2, 3, [3, 0]), need_weights=False)),
}


def _mha_call(name, shapes, forward, dtype):
    def call(L, module):
        inputs = _inputs(L, name, shapes, dtype)
        query, key, value = (inputs * 3)[:3] if len(inputs) == 1 else \
            (inputs + inputs[-1:])[:3]
        kwargs = {k: (_mask(L, v, dtype) if isinstance(v, np.ndarray) else v)
                  for k, v in forward.items()}
        out, weights = module(query, key, value, **kwargs)
        return [out, weights], inputs
    return call


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_torch(case, dtype):
    options, shapes, forward = MHA_CASES[case]
    options = {"num_heads": 2, **options}
    theirs, ours = _module_pair(lambda L: L.nn.MultiheadAttention(8, **options), dtype)
    # Parameters that init leaves at zero (biases) or small get values that matter.
    with torch.no_grad():
        for i, p in enumerate(theirs.parameters()):
            p.copy_(torch.from_numpy(_array(f"{case}/p{i}", tuple(p.shape), dtype, 0.5)))
    _copy_state(theirs, ours)
    _compare_calls(theirs, ours, _mha_call(case, shapes, forward, dtype), dtype, case)


def test_multihead_attention_weights_of_a_fully_padded_sequence_are_nan_as_torchs():
    results = []
    for L in (torch, nbgrad):
        L.manual_seed(0)
        module = L.nn.MultiheadAttention(4, 2)
        x = L.tensor(_array("nan", (3, 2, 4), "float32"))
        results.append(module(x, x, x, key_padding_mask=L.tensor(_kpm(2, 3, [3, 0]))))
    for ours, theirs in zip(*results[::-1]):
        _assert_close(ours, theirs, "float32")


@pytest.mark.parametrize("options", [dict(), dict(kdim=3, vdim=5, bias=False),
                                     dict(add_bias_kv=True, batch_first=True)])
def test_multihead_attention_parameters_init_and_repr_are_torchs(options):
    modules = []
    for L in (torch, nbgrad):
        L.manual_seed(3)
        modules.append(L.nn.MultiheadAttention(6, 3, **options))
    theirs, ours = modules
    assert repr(ours) == repr(theirs)
    assert type(ours.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert isinstance(ours.out_proj, nbgrad.nn.Linear)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (key, value), (_, expected) in zip(ours.state_dict().items(),
                                           theirs.state_dict().items()):
        assert_close(value, expected, rtol=1e-6, atol=1e-7), key
    for attribute in ("embed_dim", "kdim", "vdim", "_qkv_same_embed_dim", "num_heads",
                      "dropout", "batch_first", "head_dim", "add_zero_attn", "bias_k"):
        if attribute != "bias_k" or theirs.bias_k is None:
            assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def test_multihead_attention_dropout_in_training():
    nbgrad.manual_seed(0)
    module = nbgrad.nn.MultiheadAttention(4, 2, dropout=0.5)
    x = nbgrad.tensor(_array("drop", (6, 3, 4), "float32"))
    out, weights = module(x, x, x)
    assert tuple(out.shape) == (6, 3, 4) and tuple(weights.shape) == (3, 6, 6)
    # Each head's kept weights are scaled by 2: the averaged rows sum to about 1, not exactly.
    sums = weights.detach().sum(-1).numpy()
    assert not np.allclose(sums, 1.0) and abs(sums.mean() - 1.0) < 0.35
    module.eval()
    np.testing.assert_allclose(module(x, x, x)[1].detach().sum(-1).numpy(), 1.0, rtol=1e-5)


def _mha_error_cases(L):
    mha = L.nn.MultiheadAttention(8, 2)
    x = L.zeros(4, 2, 8)
    bad = L.zeros(4, 2, 6)
    return {
        "zero_heads": lambda: L.nn.MultiheadAttention(8, 0),
        "not_divisible": lambda: L.nn.MultiheadAttention(8, 3),
        "query_rank": lambda: mha(x[0, 0], x[0, 0], x[0, 0]),
        "key_rank": lambda: mha(x, x[0], x),
        "padding_rank": lambda: mha(x, x, x, key_padding_mask=L.zeros(2, 4, 1, dtype=L.bool)),
        "padding_shape": lambda: mha(x, x, x, key_padding_mask=L.zeros(3, 4, dtype=L.bool)),
        "padding_dtype": lambda: mha(x, x, x, key_padding_mask=L.zeros(2, 4, dtype=L.int64)),
        "mask_2d_shape": lambda: mha(x, x, x, attn_mask=L.zeros(4, 5)),
        "mask_3d_shape": lambda: mha(x, x, x, attn_mask=L.zeros(2, 4, 4)),
        "mask_rank": lambda: mha(x, x, x, attn_mask=L.zeros(1, 1, 4, 4)),
        "embed_dim": lambda: mha(bad, bad, bad),
        "key_value_shapes": lambda: mha(x, x, x[:3]),
        "causal_without_mask": lambda: mha(x, x, x, is_causal=True),
        "unbatched_3d_mask": lambda: mha(x[:, 0], x[:, 0], x[:, 0], attn_mask=L.zeros(2, 4, 3)),
    }


@pytest.mark.parametrize("case", list(_mha_error_cases(torch)))
def test_multihead_attention_errors_are_torchs(case):
    with pytest.raises(Exception) as theirs:
        _mha_error_cases(torch)[case]()
    with pytest.raises(type(theirs.value)) as ours:
        _mha_error_cases(nbgrad)[case]()
    assert str(ours.value).replace("nbgrad.", "torch.") == str(theirs.value)


def test_mismatched_mask_types_warn_as_torch():
    caught = []
    for L in (torch, nbgrad):
        mha = L.nn.MultiheadAttention(4, 2)
        x = L.zeros(3, 2, 4)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            mha(x, x, x, key_padding_mask=L.zeros(2, 3, dtype=L.bool), attn_mask=L.zeros(3, 3))
        caught.append([str(w.message) for w in record if "mismatched" in str(w.message)])
    assert caught[1] == caught[0] and caught[0]


# ---------------------------------------------------------------------------------------------
# Transformer modules
# ---------------------------------------------------------------------------------------------

def _encoder_layer(L, **options):
    return L.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **options)


def _decoder_layer(L, **options):
    return L.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, **options)


def _unary(shapes, **forward):
    """A call of a module on one input (and masks)."""
    def make(name, dtype):
        def call(L, module):
            inputs = _inputs(L, name, shapes, dtype)
            kwargs = {k: (_mask(L, v, dtype) if isinstance(v, np.ndarray) else v)
                      for k, v in forward.items()}
            return [module(*inputs, **kwargs)], inputs
        return call
    return make


# name: (builder, call maker)
TRANSFORMER_CASES = {
    "encoder_layer": (lambda L: _encoder_layer(L), _unary([(5, 2, 8)])),
    "encoder_layer_norm_first_gelu_masks": (
        lambda L: _encoder_layer(L, norm_first=True, activation="gelu", batch_first=True),
        _unary([(2, 5, 8)], src_mask=_bool_mask("em", (5, 5)),
               src_key_padding_mask=_kpm(2, 5, [1, 2]))),
    "encoder_layer_callable_activation_no_bias": (
        lambda L: _encoder_layer(L, activation=L.nn.functional.silu, bias=False,
                                 layer_norm_eps=1e-3),
        _unary([(4, 8)], src_mask=_causal(4), is_causal=True)),
    "encoder_norm_causal_detected": (
        lambda L: L.nn.TransformerEncoder(_encoder_layer(L, activation=L.nn.GELU()), 2,
                                          L.nn.LayerNorm(8), enable_nested_tensor=False),
        _unary([(5, 3, 8)], mask=_causal(5))),
    "encoder_batch_first_padding_training": (
        lambda L: L.nn.TransformerEncoder(_encoder_layer(L, batch_first=True), 2),
        _unary([(3, 4, 8)], src_key_padding_mask=_kpm(3, 4, [0, 1, 2]))),
    "decoder_layer": (lambda L: _decoder_layer(L), _unary([(4, 2, 8), (5, 2, 8)])),
    "decoder_layer_norm_first_masks": (
        lambda L: _decoder_layer(L, norm_first=True, batch_first=True, activation="gelu"),
        _unary([(2, 4, 8), (2, 5, 8)], tgt_mask=_causal(4), tgt_is_causal=True,
               memory_key_padding_mask=_kpm(2, 5, [2, 0]),
               memory_mask=_bool_mask("mm", (4, 5)))),
    "decoder_norm": (
        lambda L: L.nn.TransformerDecoder(_decoder_layer(L), 2, L.nn.LayerNorm(8)),
        _unary([(4, 2, 8), (5, 2, 8)], tgt_mask=_causal(4),
               tgt_key_padding_mask=_kpm(2, 4, [0, 1]))),
    "transformer": (
        lambda L: L.nn.Transformer(8, 2, 2, 1, 16, dropout=0.0),
        _unary([(5, 2, 8), (4, 2, 8)], tgt_mask=_causal(4),
               src_key_padding_mask=_kpm(2, 5, [1, 0]),
               memory_key_padding_mask=_kpm(2, 5, [1, 0]))),
    "transformer_unbatched_batch_first": (
        lambda L: L.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True,
                                   norm_first=True),
        _unary([(5, 8), (3, 8)])),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRANSFORMER_CASES))
def test_transformer_modules_match_torch(case, dtype):
    build, make_call = TRANSFORMER_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # enable_nested_tensor's, in both
        theirs, ours = _module_pair(build, dtype)
    assert repr(ours) == repr(theirs)
    _compare_calls(theirs, ours, make_call(case, dtype), dtype, case)


def test_transformer_init_is_torchs():
    """Same seed, same draws: every parameter (xavier_uniform_ on all matrices) equal."""
    modules = []
    for L in (torch, nbgrad):
        L.manual_seed(1)
        modules.append(L.nn.Transformer(8, 2, 1, 2, 12))
    theirs, ours = modules
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, expected in theirs.state_dict().items():
        assert_close(ours.state_dict()[key], expected, rtol=1e-6, atol=1e-7), key


def test_a_torch_checkpoint_of_a_transformer_loads(tmp_path):
    torch.manual_seed(0)
    theirs = torch.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True).eval()
    torch.save(theirs.state_dict(), tmp_path / "transformer.pt")
    ours = nbgrad.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True).eval()
    ours.load_state_dict(nbgrad.load(tmp_path / "transformer.pt"))
    src, tgt = (_array(f"checkpoint/{i}", (2, n, 8), "float32") for i, n in enumerate((5, 3)))
    mask = _causal(3).astype(np.float32)
    expected = theirs(torch.tensor(src), torch.tensor(tgt), tgt_mask=torch.tensor(mask))
    _assert_close(ours(nbgrad.tensor(src), nbgrad.tensor(tgt), tgt_mask=nbgrad.tensor(mask)),
                  expected, "float32")


def test_generate_square_subsequent_mask():
    ours = nbgrad.nn.Transformer.generate_square_subsequent_mask(4, dtype=nbgrad.float64)
    assert_close(ours, torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64))
    assert_close(nbgrad.nn.Transformer().generate_square_subsequent_mask(3),
                 torch.nn.Transformer.generate_square_subsequent_mask(3))


@pytest.mark.parametrize("mask_check, padded", [(True, [[3, 4], [0]]), (True, [[0], [4]]),
                                                (False, [[0], [4]])])
def test_encoder_inference_with_padding_gives_torchs_nested_tensor_results(mask_check, padded):
    """In eval, without grad, torch cuts each sequence to its unpadded length (its first
    positions) and gives zeros at the padding; with a mask that is not a prefix, mask_check
    sends it the ordinary way instead."""
    mask = np.zeros((2, 5), dtype=bool)
    for row, positions in enumerate(padded):
        mask[row, positions] = True
    results = []
    for L in (torch, nbgrad):
        L.manual_seed(0)
        encoder = L.nn.TransformerEncoder(_encoder_layer(L, batch_first=True), 2,
                                          L.nn.LayerNorm(8), mask_check=mask_check).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's on nested tensors
            with L.no_grad():
                results.append(encoder(L.tensor(_array("nested", (2, 5, 8), "float32")),
                                       src_key_padding_mask=L.tensor(mask)))
    _assert_close(results[1], results[0], "float32")


def test_enable_nested_tensor_warns_as_torch():
    messages = []
    for L in (torch, nbgrad):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            L.nn.TransformerEncoder(_encoder_layer(L), 1)
            L.nn.TransformerEncoder(_encoder_layer(L, batch_first=True, norm_first=True), 1)
            L.nn.TransformerEncoder(_encoder_layer(L, batch_first=True), 1)
            L.nn.TransformerEncoder(_encoder_layer(L), 1, enable_nested_tensor=False)
        messages.append([str(w.message) for w in record])
    assert messages[1] == messages[0] and len(messages[0]) == 2


def _transformer_error_cases(L):
    model = L.nn.Transformer(8, 2, 1, 1, 16)
    return {
        "activation": lambda: _encoder_layer(L, activation="tanh"),
        "batch": lambda: model(L.zeros(3, 2, 8), L.zeros(3, 4, 8)),
        "features": lambda: model(L.zeros(3, 2, 8), L.zeros(3, 2, 6)),
        "mask_dtype": lambda: model.encoder(L.zeros(3, 2, 8), mask=L.zeros(3, 3, dtype=L.int64)),
    }


@pytest.mark.parametrize("case", ["activation", "batch", "features", "mask_dtype"])
def test_transformer_errors_are_torchs(case):
    with pytest.raises(Exception) as theirs:
        _transformer_error_cases(torch)[case]()
    with pytest.raises(type(theirs.value)) as ours:
        _transformer_error_cases(nbgrad)[case]()
    assert str(ours.value).replace("nbgrad.", "torch.") == str(theirs.value)


def test_encoder_layer_dropout_in_training():
    nbgrad.manual_seed(0)
    layer = nbgrad.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5)
    x = nbgrad.tensor(_array("layer_drop", (5, 3, 8), "float32"))
    first, second = layer(x).detach().numpy(), layer(x).detach().numpy()
    assert first.shape == (5, 3, 8) and np.isfinite(first).all()
    assert not np.allclose(first, second)  # new draws each call
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())


# ---------------------------------------------------------------------------------------------
# The fused modes: a tiny language model (embedding, causal encoder, head)
# ---------------------------------------------------------------------------------------------

def _tiny_encoder(L):
    """A one-layer causal TransformerEncoder that regresses a target. (Sequence first: with
    batch_first, MultiheadAttention's transpose of an input that needs no gradient is a
    non-contiguous input of the deferred graph, which then does not fuse.)"""
    layer = L.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    return L.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)


CAUSAL = {L: L.nn.Transformer.generate_square_subsequent_mask(6) for L in (torch, nbgrad)}


def _forward(L):
    return lambda encoder, x: encoder(x, mask=CAUSAL[L], is_causal=True)


def _batch(L, step):
    """Sequence-first (6, 3, 8) inputs and targets."""
    rng = rng_for(f"encoder/{step}")
    return tuple(L.tensor(rng.standard_normal((6, 3, 8)).astype(np.float32)) for _ in range(2))


def test_deferred_training_loop_fuses_and_matches_torch(monkeypatch, fused_runs):
    """Self-attention with a padding mask that leaves one sequence no key (a row of
    _safe_softmax's zeros), trained past FUSE_AFTER: the graph fuses and gives torch's
    losses and parameters. (MultiheadAttention alone: its graph compiles in a fraction of an
    encoder layer's time; the compiled step below has the whole layer.)"""
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", 2)
    monkeypatch.setattr(deferred, "_graphs", {})
    torch.manual_seed(0)
    theirs, ours = torch.nn.MultiheadAttention(8, 2), nbgrad.nn.MultiheadAttention(8, 2)
    _copy_state(theirs, ours)
    libraries = ((torch, theirs), (nbgrad, ours))
    optimizers = [L.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for L, m in libraries]
    for step in range(5):
        losses = []
        for (L, model), optimizer in zip(libraries, optimizers):
            x, target = _batch(L, step)
            padding = L.tensor(_kpm(3, 6, [0, 6, 2]))
            optimizer.zero_grad()
            out = model(x, x, x, key_padding_mask=padding, need_weights=False)[0]
            loss = L.nn.functional.mse_loss(out, target)
            loss.backward()
            optimizer.step()
            losses.append(loss)
        assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (key, value), expected in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert_close(value, expected, rtol=1e-4, atol=1e-5), key
    assert fused_runs["runs"] >= 2
    assert any(isinstance(g, FusedGraph) for g in deferred._graphs.values())
    deferred.realize_all()


def test_compiled_training_step_matches_eager():
    def build():
        model = _tiny_encoder(nbgrad)
        return model, nbgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def make_step(s):
        return standard_step(s, nbgrad.nn.MSELoss(), lambda x: _forward(nbgrad)(s.model, x))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair(build, make_step)
        for step in range(3):
            pair(*_batch(nbgrad, step))
    assert not nbgrad_warnings(caught), nbgrad_warnings(caught)
    pair.check_outputs_kept()
