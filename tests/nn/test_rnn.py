"""nn.RNN, nn.LSTM, nn.GRU and their cells against torch: initialization from the same seed,
parameter names, order and shapes (state_dicts load both ways), outputs, final states and
every gradient for a grid of configurations in float32 and float64, dropout between layers,
a float64 gradcheck, repr, errors (type and message), and a training loop in the fused modes
(a deferred loop past FUSE_AFTER, nbgrad.compile). Sequences are short: a fused step unrolls
the time loop, and its compilation grows with it."""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn
from nbgrad.fuse import deferred
from conftest import Pair, TOL, assert_close, grad_fn_name, standard_step

T, B, F_IN, H = 4, 2, 3, 5  # time steps, batch, input features, hidden features

# (class, positional arguments, keyword arguments, input shape, given states' shapes)
SEQUENCE_CASES = {
    "rnn_tanh": ("RNN", (F_IN, H), {}, (T, B, F_IN), None),
    "rnn_relu_2_layers_bidirectional_batch_first":
        ("RNN", (F_IN, H, 2, "relu"), dict(bidirectional=True, batch_first=True), (B, T, F_IN), None),
    "rnn_unbatched_h0": ("RNN", (F_IN, H), dict(bias=False), (T, F_IN), [(1, H)]),
    "lstm_2_layers_h0_c0": ("LSTM", (F_IN, H, 2), {}, (T, B, F_IN), [(2, B, H), (2, B, H)]),
    "lstm_bidirectional_batch_first_no_bias":
        ("LSTM", (F_IN, H), dict(bidirectional=True, batch_first=True, bias=False), (B, T, F_IN), None),
    "lstm_projections_2_layers_bidirectional":
        ("LSTM", (F_IN, H, 2), dict(proj_size=2, bidirectional=True), (T, B, F_IN),
         [(4, B, 2), (4, B, H)]),
    "lstm_unbatched_batch_first_h0_c0":
        ("LSTM", (F_IN, H), dict(batch_first=True), (T, F_IN), [(1, H), (1, H)]),
    "gru_2_layers_bidirectional_h0": ("GRU", (F_IN, H, 2), dict(bidirectional=True), (T, B, F_IN),
                                      [(4, B, H)]),
    "gru_unbatched_no_bias": ("GRU", (F_IN, H), dict(bias=False, batch_first=True), (T, F_IN), None),
}
CELL_CASES = {
    "rnn_cell_tanh": ("RNNCell", (F_IN, H), {}, (B, F_IN), [(B, H)]),
    "rnn_cell_relu_unbatched": ("RNNCell", (F_IN, H), dict(nonlinearity="relu"), (F_IN,), None),
    "lstm_cell": ("LSTMCell", (F_IN, H), {}, (B, F_IN), [(B, H), (B, H)]),
    "lstm_cell_unbatched_no_bias": ("LSTMCell", (F_IN, H), dict(bias=False), (F_IN,), None),
    "gru_cell": ("GRUCell", (F_IN, H), {}, (B, F_IN), None),
    "gru_cell_unbatched_h0": ("GRUCell", (F_IN, H), dict(bias=False), (F_IN,), [(H,)]),
}
CASES = {**SEQUENCE_CASES, **CELL_CASES}


def _flat(result):
    """The tensors of a result: (output, h_n), (output, (h_n, c_n)), h' or (h', c')."""
    if isinstance(result, tuple):
        return [t for part in result for t in _flat(part)]
    return [result]


def _copy_of(module, lib):
    """`module`'s state_dict as tensors of `lib`, copied through NumPy."""
    return {name: lib.tensor(value.detach().numpy().copy())
            for name, value in module.state_dict().items()}


def _both(case, dtype):
    """The torch module of `case` and an nbgrad one that loaded its state_dict."""
    kind, args, kwargs, _, _ = CASES[case]
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(*args, **kwargs, dtype=getattr(torch, dtype))
    ours = getattr(nn, kind)(*args, **kwargs, dtype=getattr(nbgrad, dtype))
    ours.load_state_dict(_copy_of(reference, nbgrad))
    return ours, reference


def _forward_backward(module, lib, case, dtype):
    """A forward on fixed inputs (and states), a backward of a fixed random upstream: the
    results, then the gradients of the input, the states and every parameter."""
    _, _, _, x_shape, state_shapes = CASES[case]
    rng = np.random.default_rng(0)
    inputs = [lib.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
              for shape in [x_shape] + (state_shapes or [])]
    states = inputs[1:]
    if states:
        results = module(inputs[0], tuple(states) if len(states) == 2 else states[0])
    else:
        results = module(inputs[0])
    results = _flat(results)
    upstream = [lib.tensor(rng.standard_normal(tuple(r.shape)).astype(dtype)) for r in results]
    sum((r * u).sum() for r, u in zip(results, upstream)).backward()
    return results, [t.grad for t in inputs] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_torch(case, dtype):
    ours, reference = _both(case, dtype)
    results, grads = _forward_backward(ours, nbgrad, case, dtype)
    expected, expected_grads = _forward_backward(reference, torch, case, dtype)
    # (float32: torch's LSTM runs oneDNN's kernel, which sums in another order)
    rtol, atol = (1e-5, 1e-5) if dtype == "float32" else TOL[dtype]
    # (torch's float32 LSTM output comes from oneDNN's fused layer; ours stacks the steps)
    names = {"MkldnnRnnLayerBackward0": "StackBackward0"}
    assert [type(r.grad_fn).__name__ for r in results] == \
        [names.get(type(r.grad_fn).__name__, type(r.grad_fn).__name__) for r in expected]
    for mine, theirs in zip(results + grads, expected + expected_grads, strict=True):
        assert_close(mine, theirs, rtol=rtol, atol=atol)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradients_through_each_result_match_torch(kind):
    """A layer's sequence output and final states are views of one node: a backward from h_n
    alone, c_n alone, or with the output, gives torch's gradients (both directions, two
    layers, float64)."""
    def run(lib, used):
        torch.manual_seed(0)
        reference = getattr(torch.nn, kind)(F_IN, H, 2, bidirectional=True, dtype=torch.float64)
        module = reference if lib is torch else getattr(nn, kind)(F_IN, H, 2, bidirectional=True,
                                                                   dtype=nbgrad.float64)
        if lib is not torch:
            module.load_state_dict(_copy_of(reference, nbgrad))
        x = lib.tensor(np.random.default_rng(1).standard_normal((T, B, F_IN)), requires_grad=True)
        output, states = module(x)
        results = [output] + list(states if isinstance(states, tuple) else (states,))
        weights = lib.tensor(np.random.default_rng(2).standard_normal(4))
        sum(results[i].sum() * weights[i] for i in used).backward()
        return [x.grad] + [p.grad for p in module.parameters()]

    for used in [(1,), (2,), (0, 1), (0, 2)] if kind == "LSTM" else [(1,), (0, 1)]:
        for mine, theirs in zip(run(nbgrad, used), run(torch, used), strict=True):
            assert_close(mine, theirs)


@pytest.mark.parametrize("case", list(CASES))
def test_initialization_names_and_state_dicts_match_torch(case):
    """From the same seed, the same parameters (names, order, shapes, values): torch's
    reset_parameters through nbgrad's generator; each library loads the other's state_dict."""
    kind, args, kwargs, _, _ = CASES[case]
    torch.manual_seed(3)
    reference = getattr(torch.nn, kind)(*args, **kwargs)
    nbgrad.manual_seed(3)
    ours = getattr(nn, kind)(*args, **kwargs)
    expected = [(name, p.detach().numpy()) for name, p in reference.named_parameters()]
    got = [(name, p.detach().numpy()) for name, p in ours.named_parameters()]
    assert [name for name, _ in got] == [name for name, _ in expected]
    for (_, mine), (_, theirs) in zip(got, expected):
        np.testing.assert_array_equal(mine, theirs)
    assert repr(ours) == repr(reference)
    if isinstance(reference, torch.nn.RNNBase):
        assert ours._flat_weights_names == reference._flat_weights_names
        assert ours._all_weights == reference._all_weights
        assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == \
            [[tuple(w.shape) for w in ws] for ws in reference.all_weights]
        assert [w is getattr(ours, n) for w, n in zip(ours._flat_weights, ours._flat_weights_names)]
        assert ours.mode == reference.mode
    # Both ways: nbgrad's state_dict into a fresh torch module, torch's into nbgrad's.
    torch.manual_seed(4)
    fresh = getattr(torch.nn, kind)(*args, **kwargs)
    fresh.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in
                           ours.state_dict().items()})
    for (_, mine), (_, theirs) in zip(got, fresh.named_parameters()):
        np.testing.assert_array_equal(mine, theirs.detach().numpy())


def test_reprs_match_torch():
    for args, kwargs in [((3, 4, 2, "relu", False, True, 0.5, True), {}),
                         ((3, 4), dict(proj_size=2, dropout=0.25, num_layers=3))]:
        kinds = ("RNN",) if len(args) > 3 else ("LSTM", "GRU")
        for kind in kinds:
            if kind == "GRU" and "proj_size" in kwargs:
                continue
            assert repr(getattr(nn, kind)(*args, **kwargs)) == \
                repr(getattr(torch.nn, kind)(*args, **kwargs))
    for kind, kwargs in [("RNNCell", dict(bias=False, nonlinearity="relu")), ("LSTMCell", {}),
                         ("GRUCell", dict(bias=False))]:
        assert repr(getattr(nn, kind)(3, 4, **kwargs)) == repr(getattr(torch.nn, kind)(3, 4, **kwargs))


def _dropout_run(lib, training):
    lib.manual_seed(7)
    module = lib.nn.LSTM(F_IN, H, 3, dropout=0.5, bidirectional=True)
    module.train(training)
    x = lib.tensor(np.random.default_rng(1).standard_normal((T, B, F_IN)).astype(np.float32))
    output, (h_n, c_n) = module(x)
    (output.sum() + c_n.sum()).backward()
    return [output, h_n, c_n] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("training", [True, False])
def test_dropout_between_layers_matches_torch(training):
    """Dropout between layers only while training, drawn as torch draws it (the same
    generator, the same draws in the same order), not after the last layer."""
    for mine, theirs in zip(_dropout_run(nbgrad, training), _dropout_run(torch, training),
                            strict=True):
        assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_dropout_with_one_layer_warns_as_torch():
    caught = {}
    for lib in (torch, nbgrad):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            lib.nn.GRU(3, 4, dropout=0.5)
        caught[lib] = [(w.category, str(w.message)) for w in record]
    assert caught[nbgrad] == caught[torch] and len(caught[torch]) == 1


def test_gradcheck_float64():
    """Finite differences of a 2-layer bidirectional LSTM with projections and given states,
    with respect to the input, the states and every parameter."""
    module = nn.LSTM(2, 3, 2, bidirectional=True, proj_size=2, dtype=nbgrad.float64)
    names = module._flat_weights_names
    rng = np.random.default_rng(0)
    x, h0, c0 = (nbgrad.tensor(rng.standard_normal(shape), requires_grad=True)
                 for shape in ((3, 2, 2), (4, 2, 2), (4, 2, 3)))

    def run(x, h0, c0, *weights):
        # The parameters in the registry replaced by gradcheck's copies of them.
        module._parameters.update(zip(names, weights))
        output, (h_n, c_n) = module(x, (h0, c0))
        return output, h_n, c_n

    weights = [getattr(module, name).detach().requires_grad_() for name in names]
    assert nbgrad.autograd.gradcheck(run, (x, h0, c0, *weights))


def _error(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001
        return type(error).__name__, str(error)
    return None


def _x(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


BAD_CALLS = {  # name: call(L), which raises in torch
    "rnn_input_4d": lambda L: L.nn.RNN(3, 4)(L.tensor(_x(2, 2, 2, 3))),
    "lstm_input_1d": lambda L: L.nn.LSTM(3, 4)(L.tensor(_x(3))),
    "gru_input_4d": lambda L: L.nn.GRU(3, 4)(L.tensor(_x(2, 2, 2, 3))),
    "input_dtype": lambda L: L.nn.RNN(3, 4)(L.tensor(_x(5, 2, 3, dtype=np.float64))),
    "input_integer": lambda L: L.nn.GRU(3, 4)(L.tensor(np.ones((5, 2, 3), np.int64))),
    "input_size": lambda L: L.nn.LSTM(3, 4)(L.tensor(_x(5, 2, 4))),
    "hidden_size": lambda L: L.nn.RNN(3, 4, 2)(L.tensor(_x(5, 2, 3)), L.tensor(_x(2, 3, 4))),
    "hidden_batched_2d": lambda L: L.nn.GRU(3, 4)(L.tensor(_x(5, 2, 3)), L.tensor(_x(2, 4))),
    "hidden_unbatched_3d": lambda L: L.nn.RNN(3, 4)(L.tensor(_x(5, 3)), L.tensor(_x(1, 1, 4))),
    "lstm_cell_state_size": lambda L: L.nn.LSTM(3, 4)(
        L.tensor(_x(5, 2, 3)), (L.tensor(_x(1, 2, 4)), L.tensor(_x(1, 2, 5)))),
    "lstm_projected_state_size": lambda L: L.nn.LSTM(3, 4, proj_size=2)(
        L.tensor(_x(5, 2, 3)), (L.tensor(_x(1, 2, 4)), L.tensor(_x(1, 2, 4)))),
    "lstm_states_batched_2d": lambda L: L.nn.LSTM(3, 4)(
        L.tensor(_x(5, 2, 3)), (L.tensor(_x(1, 2, 4)), L.tensor(_x(2, 4)))),
    "lstm_states_unbatched_3d": lambda L: L.nn.LSTM(3, 4)(
        L.tensor(_x(5, 3)), (L.tensor(_x(1, 2, 4)), L.tensor(_x(2, 4)))),
    "empty_sequence": lambda L: L.nn.GRU(3, 4)(L.tensor(_x(0, 2, 3))),
    "empty_sequence_batch_first": lambda L: L.nn.LSTM(3, 4, batch_first=True)(
        L.tensor(_x(2, 0, 3))),
    "dropout_range": lambda L: L.nn.RNN(3, 4, dropout=2),
    "dropout_bool": lambda L: L.nn.LSTM(3, 4, dropout=True),
    "dropout_string": lambda L: L.nn.GRU(3, 4, dropout="a"),
    "bias_type": lambda L: L.nn.GRU(3, 4, bias=1),
    "batch_first_type": lambda L: L.nn.LSTM(3, 4, batch_first=1),
    "input_size_type": lambda L: L.nn.RNN(3.0, 4),
    "input_size_zero": lambda L: L.nn.RNN(0, 4),
    "hidden_size_type": lambda L: L.nn.LSTM(3, 4.0),
    "hidden_size_zero": lambda L: L.nn.GRU(3, 0),
    "num_layers_zero": lambda L: L.nn.LSTM(3, 4, 0),
    "proj_size_negative": lambda L: L.nn.LSTM(3, 4, proj_size=-1),
    "proj_size_too_big": lambda L: L.nn.LSTM(3, 4, proj_size=4),
    "proj_size_gru": lambda L: L.nn.GRU(3, 4, proj_size=1),
    "proj_size_rnn": lambda L: L.nn.RNN(3, 4, proj_size=1),
    "nonlinearity": lambda L: L.nn.RNN(3, 4, nonlinearity="sigmoid"),
    "nonlinearity_for_lstm": lambda L: L.nn.LSTM(3, 4, nonlinearity="tanh"),
    "cell_input_3d": lambda L: L.nn.RNNCell(3, 4)(L.tensor(_x(2, 2, 3))),
    "cell_input_0d": lambda L: L.nn.GRUCell(3, 4)(L.tensor(1.0)),
    "cell_hidden_3d": lambda L: L.nn.GRUCell(3, 4)(L.tensor(_x(2, 3)), L.tensor(_x(2, 4, 1))),
    "lstm_cell_hx_3d": lambda L: L.nn.LSTMCell(3, 4)(
        L.tensor(_x(2, 3)), (L.tensor(_x(2, 4)), L.tensor(_x(2, 4, 1)))),
    "cell_input_size": lambda L: L.nn.RNNCell(3, 4)(L.tensor(_x(2, 5))),
    "cell_batch": lambda L: L.nn.GRUCell(3, 4)(L.tensor(_x(3, 3)), L.tensor(_x(2, 4))),
    "cell_hidden_size": lambda L: L.nn.RNNCell(3, 4)(L.tensor(_x(2, 3)), L.tensor(_x(2, 5))),
    "cell_unbatched_hidden_2d": lambda L: L.nn.RNNCell(3, 4)(L.tensor(_x(3)), L.tensor(_x(2, 4))),
    "lstm_cell_one_state": lambda L: L.nn.LSTMCell(3, 4)(L.tensor(_x(2, 3)), (L.tensor(_x(2, 4)),)),
    "lstm_cell_second_state_size": lambda L: L.nn.LSTMCell(3, 4)(
        L.tensor(_x(2, 3)), (L.tensor(_x(2, 4)), L.tensor(_x(2, 5)))),
    "lstm_cell_second_state_batch": lambda L: L.nn.LSTMCell(3, 4)(
        L.tensor(_x(2, 3)), (L.tensor(_x(2, 4)), L.tensor(_x(3, 4)))),
    "cell_nonlinearity": lambda L: _with_nonlinearity(L.nn.RNNCell(3, 4), "sigmoid")(
        L.tensor(_x(2, 3))),
    "pad_no_sequences": lambda L: L.nn.utils.rnn.pad_sequence([]),
    "pad_not_iterable": lambda L: L.nn.utils.rnn.pad_sequence(3),
    "pad_first_0d": lambda L: L.nn.utils.rnn.pad_sequence([L.tensor(1.0)]),
    "pad_later_0d": lambda L: L.nn.utils.rnn.pad_sequence([L.ones(2, 3), L.tensor(1.0)]),
    "pad_side": lambda L: L.nn.utils.rnn.pad_sequence([L.ones(2, 3)], padding_side="middle"),
    "pad_trailing_mismatch": lambda L: L.nn.utils.rnn.pad_sequence([L.ones(2, 3), L.ones(1, 4)]),
    "pad_trailing_wider": lambda L: L.nn.utils.rnn.pad_sequence([L.ones(2, 1), L.ones(1, 4)]),
    "pack_unsorted": lambda L: L.nn.utils.rnn.pack_padded_sequence(L.ones(4, 3, 2), [4, 2, 3]),
    "pack_lengths_count": lambda L: L.nn.utils.rnn.pack_padded_sequence(L.ones(4, 3, 2), [4, 3]),
    "pack_zero_length": lambda L: L.nn.utils.rnn.pack_padded_sequence(L.ones(4, 3, 2), [4, 3, 0]),
    "pack_negative_length": lambda L: L.nn.utils.rnn.pack_padded_sequence(
        L.ones(4, 3, 2), [4, -1, 3], enforce_sorted=False),
    "pack_lengths_2d": lambda L: L.nn.utils.rnn.pack_padded_sequence(
        L.ones(4, 3, 2), L.tensor([[4, 3, 1]])),
    "pack_empty": lambda L: L.nn.utils.rnn.pack_padded_sequence(L.ones(0, 3, 2), [4, 3, 1]),
    "pad_packed_total_length": lambda L: L.nn.utils.rnn.pad_packed_sequence(
        L.nn.utils.rnn.pack_sequence([L.ones(3, 2), L.ones(1, 2)]), total_length=2),
    "packed_input_size": lambda L: L.nn.GRU(3, 4)(
        L.nn.utils.rnn.pack_sequence([L.ones(3, 2), L.ones(1, 2)])),
    "packed_hidden_size": lambda L: L.nn.RNN(2, 4)(
        L.nn.utils.rnn.pack_sequence([L.ones(3, 2), L.ones(1, 2)]), L.zeros(1, 3, 4)),
    "unpad_lengths_short": lambda L: L.nn.utils.rnn.unpad_sequence(L.zeros(4, 3), L.tensor([4, 2])),
    "unpad_lengths_list": lambda L: L.nn.utils.rnn.unpad_sequence(L.zeros(4, 3), [4, 2, 1]),
    # (transposed in place: a leaf that requires grad refuses it)
    "unpad_leaf": lambda L: L.nn.utils.rnn.unpad_sequence(L.zeros(4, 3, requires_grad=True),
                                                          L.tensor([4, 2, 1])),
    "hidden_dtype": lambda L: L.nn.RNN(3, 4)(L.tensor(_x(5, 2, 3)),
                                             L.tensor(_x(1, 2, 4, dtype=np.float64))),
}
# The message of a mismatched dtype in a matmul is nbgrad's linear's, not PyTorch's (it names
# NumPy's dtypes): only the type is compared.
TYPE_ONLY = {
    "cell_input_dtype": lambda L: L.nn.LSTMCell(3, 4)(L.tensor(_x(2, 3, dtype=np.float64))),
}


def _with_nonlinearity(cell, nonlinearity):
    cell.nonlinearity = nonlinearity  # PyTorch checks it at the call, not at construction
    return cell


def test_errors_match_torch():
    mismatches = {}
    for name, bad in BAD_CALLS.items():
        expected = _error(lambda: bad(torch))
        assert expected is not None, name
        got = _error(lambda: bad(nbgrad))
        if got != expected:
            mismatches[name] = (got, expected)
    for name, bad in TYPE_ONLY.items():
        expected, got = _error(lambda: bad(torch)), _error(lambda: bad(nbgrad))
        if got is None or got[0] != expected[0]:
            mismatches[name] = (got, expected)
    assert not mismatches


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_first, padding_side", [(False, "right"), (True, "left")])
def test_pad_sequence_matches_torch(dtype, batch_first, padding_side):
    """Values, grad_fn and the gradients of every sequence (trailing dims broadcast into the
    first's, a shorter dtype cast to its dtype)."""
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in ((3, 2, 2), (1, 2, 2), (4, 1, 2))]
    arrays[1] = arrays[1].astype(np.float32)
    results = {}
    for lib in (torch, nbgrad):
        sequences = [lib.tensor(a, requires_grad=True) for a in arrays]
        padded = lib.nn.utils.rnn.pad_sequence(sequences, batch_first, -1.5, padding_side)
        upstream = lib.tensor(np.random.default_rng(3).standard_normal(tuple(padded.shape)),
                              dtype=padded.dtype)
        (padded * upstream).sum().backward()
        results[lib] = [padded] + [s.grad for s in sequences], type(padded.grad_fn).__name__
    assert results[nbgrad][1] == results[torch][1] == "CopySlices"
    for mine, theirs in zip(results[nbgrad][0], results[torch][0], strict=True):
        assert_close(mine, theirs)


# --- packed sequences --------------------------------------------------------------------------

PACKED_CASES = {  # name: (class, keyword arguments, lengths, given states' shapes, enforce_sorted)
    "gru_sorted": ("GRU", {}, [4, 3, 1], [], True),
    "rnn_2_layers_bidirectional_h0": ("RNN", dict(num_layers=2, bidirectional=True),
                                      [2, 4, 1, 4], [(4, 4, H)], False),
    "lstm_projections_2_layers_bidirectional_h0_c0":
        ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2), [2, 4, 1, 4],
         [(4, 4, 2), (4, 4, H)], False),
    "lstm_bidirectional_equal_lengths": ("LSTM", dict(bidirectional=True), [3, 3, 1], [], True),
}


def _packed_run(lib, case, dtype):
    """pack_padded_sequence, the RNN on the packed batch, pad_packed_sequence, a backward: the
    packed input and output, the padded output and its lengths, the final states, and the
    gradients of the padded input, the given states and every parameter."""
    kind, kwargs, lengths, state_shapes, enforce_sorted = PACKED_CASES[case]
    lib.manual_seed(0)
    module = getattr(lib.nn, kind)(F_IN, H, **kwargs, dtype=getattr(lib, dtype))
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((max(lengths), len(lengths), F_IN)).astype(dtype),
                   requires_grad=True)
    states = [lib.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
              for shape in state_shapes]
    packed = lib.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    hx = (tuple(states) if len(states) == 2 else states[0]) if states else None
    output, final = module(packed, hx)
    padded, padded_lengths = lib.nn.utils.rnn.pad_packed_sequence(output, batch_first=True,
                                                                  padding_value=-1.0)
    finals = _flat(final)
    upstream = [lib.tensor(rng.standard_normal(tuple(r.shape)).astype(dtype))
                for r in [padded] + finals]
    sum((r * u).sum() for r, u in zip([padded] + finals, upstream)).backward()
    indices = [t for t in packed[1:] + output[1:] if t is not None]
    return ([packed.data, output.data, padded, padded_lengths] + indices + finals
            + [x.grad] + [t.grad for t in states] + [p.grad for p in module.parameters()])


def _double_backward(lib, kind, **kwargs):
    lib.manual_seed(0)
    module = getattr(lib.nn, kind)(F_IN, H, bidirectional=True, dtype=lib.float64, **kwargs)
    x = lib.tensor(np.random.default_rng(0).standard_normal((4, 3, F_IN)), requires_grad=True)
    packed = lib.nn.utils.rnn.pack_padded_sequence(x, [4, 2, 1])
    output, final = module(packed)
    loss = (output.data ** 2).sum() + sum((state ** 2).sum() for state in _flat(final))
    (gx,) = lib.autograd.grad(loss, x, create_graph=True)
    (gx ** 3).sum().backward()
    return [gx] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("kind, kwargs", [("LSTM", dict(proj_size=2)), ("GRU", {})])
def test_double_backward_of_packed_sequences_matches_torch(kind, kwargs):
    """create_graph=True through the recurrence (its Tensor-operation VJP), packed, both
    directions: the gradient and the gradients of a function of it, against torch."""
    for mine, theirs in zip(_double_backward(nbgrad, kind, **kwargs),
                            _double_backward(torch, kind, **kwargs), strict=True):
        assert_close(mine, theirs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(PACKED_CASES))
def test_packed_sequences_match_torch(case, dtype):
    """Sequences of different lengths packed (sorted, or sorted here), run, padded back:
    values, batch sizes, indices, final states (each sequence's at its own last step) and
    every gradient, against torch."""
    rtol, atol = (1e-5, 1e-5) if dtype == "float32" else TOL[dtype]
    for mine, theirs in zip(_packed_run(nbgrad, case, dtype), _packed_run(torch, case, dtype),
                            strict=True):
        assert_close(mine, theirs, rtol=rtol, atol=atol)


def test_pack_sequence_and_packed_sequence_methods_match_torch():
    results = {}
    for lib in (torch, nbgrad):
        rnn_utils = lib.nn.utils.rnn
        sequences = [lib.tensor(np.arange(n * 2.0).reshape(n, 2)) for n in (2, 3, 1)]
        packed = rnn_utils.pack_sequence(sequences, enforce_sorted=False)
        converted = packed.float()
        results[lib] = [packed.data, packed.batch_sizes, packed.sorted_indices,
                        packed.unsorted_indices, converted.data, packed.to(lib.float64).data,
                        rnn_utils.invert_permutation(lib.tensor([2, 0, 1])),
                        *rnn_utils.pad_packed_sequence(packed, total_length=4)]
        assert type(converted).__name__ == "PackedSequence" and not packed.is_cuda
        assert packed.to(lib.float64) is packed
    for mine, theirs in zip(results[nbgrad], results[torch], strict=True):
        assert_close(mine, theirs)


def test_unpad_and_unpack_sequence_match_torch():
    """The sequences back out of a padded batch (transposed in place, as torch's, when not
    batch_first) and out of a packed one (in their original order), with their gradients."""
    results = {}
    for lib in (torch, nbgrad):
        rnn_utils = lib.nn.utils.rnn
        leaf = lib.tensor(np.arange(24.0).reshape(4, 3, 2), requires_grad=True)
        padded = leaf * 1
        unpadded = rnn_utils.unpad_sequence(padded, lib.tensor([4, 0, 3]))
        batch_first = rnn_utils.unpad_sequence(leaf.detach(), lib.tensor([2, 1, 2, 3]), True)
        sequences = [leaf[:n, 0] for n in (2, 4, 1)]
        unpacked = rnn_utils.unpack_sequence(rnn_utils.pack_sequence(sequences, enforce_sorted=False))
        outputs = unpadded + batch_first + unpacked
        sum((out * (i + 1)).sum() for i, out in enumerate(outputs)).backward()
        results[lib] = outputs + [leaf.grad], [tuple(padded.shape), type(padded.grad_fn).__name__,
                                               *(grad_fn_name(out) for out in outputs)]
    assert results[nbgrad][1] == results[torch][1]
    for mine, theirs in zip(results[nbgrad][0], results[torch][0], strict=True):
        assert_close(mine, theirs)


# --- the fused modes --------------------------------------------------------------------------
# NOTE: a fused step unrolls the time loop, and its compilation takes about 0.6 s per op on a
# cold cache (an LSTM step is 15 ops forward): two steps of an LSTM, three of an RNN.

def _sequence_batch(lib, steps, features):
    rng = np.random.default_rng(5)
    x = lib.tensor(rng.standard_normal((steps, B, F_IN)).astype(np.float32))
    y = lib.tensor(rng.standard_normal((steps, B, features)).astype(np.float32))
    return x, y


def _loss(module, x, y):
    """A loss of the output and the final states (so that backward reaches every op)."""
    output, states = module(x)
    states = states if isinstance(states, tuple) else (states,)
    return ((output - y) ** 2).mean() + sum(state.sum() for state in states)


def _training_run(lib, steps):
    lib.manual_seed(0)
    module = lib.nn.LSTM(F_IN, H)
    opt = lib.optim.SGD(module.parameters(), lr=0.1)
    x, y = _sequence_batch(lib, 2, H)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(module, x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().numpy() for p in module.parameters()]


def test_deferred_training_loop_fuses_and_matches_torch(monkeypatch, fused_runs):
    """A plain LSTM training loop past FUSE_AFTER (3 here): the fused kernel's steps give
    torch's losses and parameters."""
    deferred.realize_all()
    monkeypatch.setattr(deferred, "enabled", True)
    monkeypatch.setattr(deferred, "FUSE_AFTER", 3)
    monkeypatch.setattr(deferred, "_graphs", {})
    steps = 5
    losses, params = _training_run(nbgrad, steps)
    assert fused_runs["runs"] == steps - 3
    expected_losses, expected_params = _training_run(torch, steps)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(params, expected_params, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_compiled_step_matches_eager():
    """nbgrad.compile of a training step (a batch-first ReLU RNN, backward, SGD update): every
    call's loss, parameters and gradients equal the eager step's."""
    def build():
        module = nn.RNN(F_IN, H, nonlinearity="relu", batch_first=True)
        return module, nbgrad.optim.SGD(module.parameters(), lr=0.1)

    x, y = _sequence_batch(nbgrad, 3, H)
    x, y = x.transpose(0, 1).contiguous(), y.transpose(0, 1).contiguous()  # batch first
    pair = Pair(build, lambda s: standard_step(
        s, loss_fn=lambda out, target: out, forward=lambda x: _loss(s.model, x, y)))
    for _ in range(3):
        pair(x, y)
    assert pair.compiled.stats["fused_calls"] == 2, pair.compiled.explain()
