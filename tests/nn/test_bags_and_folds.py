"""nn.EmbeddingBag, PixelShuffle/PixelUnshuffle and Unfold/Fold against torch.nn: reprs,
parameters, initialization, state_dict, training steps, and the errors of bad calls (type
and message). The ops' values and gradients are rows of tests/ops/test_ops.py."""
import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.fuse import deferred

LIBS = (nbgrad, torch)


def close(mine, theirs, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=rtol, atol=atol)


MODULES = [
    lambda L: L.nn.Embedding(10, 3, padding_idx=0, max_norm=2.0, norm_type=1.0,
                             scale_grad_by_freq=True, sparse=True),
    lambda L: L.nn.EmbeddingBag(10, 3),
    lambda L: L.nn.EmbeddingBag(10, 3, max_norm=1.0, norm_type=1, scale_grad_by_freq=True,
                                mode="sum", padding_idx=-1),
    lambda L: L.nn.EmbeddingBag(7, 2, mode="max", include_last_offset=True, padding_idx=3,
                                dtype=L.float64),
    lambda L: L.nn.PixelShuffle(3), lambda L: L.nn.PixelUnshuffle(2),
    lambda L: L.nn.Unfold(2), lambda L: L.nn.Unfold((2, 3), dilation=2, padding=1, stride=(1, 2)),
    lambda L: L.nn.Fold((4, 5), 2), lambda L: L.nn.Fold(output_size=6, kernel_size=(1, 2), stride=2),
]


@pytest.mark.parametrize("make", MODULES)
def test_modules_print_hold_and_initialize_as_torch(make):
    """Same repr, attributes, parameters and state_dict; the same initial weights from the
    same seed (normal, the padding_idx row zero)."""
    modules = []
    for L in LIBS:
        L.manual_seed(3)
        modules.append(make(L))
    mine, theirs = modules
    assert repr(mine) == repr(theirs)
    attributes = {k: v for k, v in vars(theirs).items() if not k.startswith("_") and k != "training"}
    assert {k: getattr(mine, k) for k in attributes} == attributes
    assert [name for name, _ in mine.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    for (key, value), (torch_key, torch_value) in zip(mine.state_dict().items(),
                                                      theirs.state_dict().items(), strict=True):
        assert key == torch_key and str(value.dtype) == str(torch_value.dtype).replace("torch", "nbgrad")
        close(value, torch_value, rtol=0, atol=0)


def test_embedding_bag_trains_as_torch():
    """The text-classification model's bag (mean of 1-D ids with offsets, an empty bag) and
    a weighted sum with max_norm's in-place renormalization, under SGD, past FUSE_AFTER (in
    the default deferred mode: the ops around the bags defer and fuse, the bags run at
    once)."""
    ids = np.array([4, 1, 7, 7, 2, 9, 0, 3], np.int64)
    offsets = np.array([0, 3, 3, 5], np.int64)
    sample_weights = np.linspace(-1.0, 2.0, ids.size).astype(np.float32)
    models = []
    for L in LIBS:
        L.manual_seed(0)
        models.append((L.nn.EmbeddingBag(10, 4), L.nn.EmbeddingBag(10, 4, max_norm=1.2, mode="sum")))
    for step in range(deferred.FUSE_AFTER + 2):
        results = []
        for L, (mean_bag, weighted_bag) in zip(LIBS, models):
            out = (mean_bag(L.tensor(ids), L.tensor(offsets))
                   * weighted_bag(L.tensor(ids), L.tensor(offsets), L.tensor(sample_weights)))
            (out * L.tensor(np.cos(np.arange(16.0) + step).reshape(4, 4))).sum().backward()
            with L.no_grad():
                for bag in (mean_bag, weighted_bag):
                    bag.weight -= 0.5 * bag.weight.grad
                    bag.weight.grad = None
            results.append([out, mean_bag.weight, weighted_bag.weight])
        for mine, theirs in zip(*results):
            close(mine, theirs)


def test_from_pretrained_as_torch():
    for L in LIBS:
        weights = L.tensor([[1, 2.3, 3], [4, 5.1, 6.3]])
        table = L.nn.Embedding.from_pretrained(weights, padding_idx=1, max_norm=20.0)
        assert not table.weight.requires_grad and repr(table) == "Embedding(2, 3, padding_idx=1, max_norm=20.0)"
        assert table(L.tensor([1])).tolist() == [[4.0, 5.099999904632568, 6.300000190734863]]
        with pytest.raises(AssertionError, match="Shape of weight does not match"):
            L.nn.Embedding(3, 3, _weight=weights)
        weights = L.tensor([[1, 2.3, 3], [4, 5.1, 6.3]])
        bag = L.nn.EmbeddingBag.from_pretrained(weights, padding_idx=0, mode="max")
        assert not bag.weight.requires_grad and repr(bag) == "EmbeddingBag(2, 3, mode='max', padding_idx=0)"
        assert bag(L.tensor([[1, 0]])).tolist() == [[4.0, 5.099999904632568, 6.300000190734863]]
        assert L.nn.EmbeddingBag.from_pretrained(weights, freeze=False).weight.requires_grad
        with pytest.raises(AssertionError, match="Embeddings parameter is expected to be 2-dimensional"):
            L.nn.EmbeddingBag.from_pretrained(weights[0])
        with pytest.raises(AssertionError, match="Shape of weight does not match"):
            L.nn.EmbeddingBag(3, 3, _weight=weights)
        with pytest.raises(AssertionError, match="^padding_idx must be within num_embeddings"):
            L.nn.EmbeddingBag(3, 3, padding_idx=3)
        with pytest.raises(AssertionError, match="^Padding_idx must be within num_embeddings"):
            L.nn.Embedding(3, 3, padding_idx=-4)


def test_scale_grad_by_freq_divides_by_each_ids_count_as_embedding_does():
    """NOTE: PyTorch 2.13's CPU embedding_bag backward divides the gradient of the k-th
    distinct id (in sorted order) by the count of the k-th id of the sorted ids, which is
    another id's count wherever counts differ (ids 1, 2, 2, 3, 4, 4, 5, 9: id 3's gradient
    halved, id 4's not divided). nbgrad divides each id's by its own count, as its
    documentation and torch's Embedding do: here the bags' sums of torch's Embedding."""
    ids = np.array([[1, 2, 4, 5], [4, 3, 2, 9]], np.int64)
    weights = np.random.default_rng(0).standard_normal((10, 3))
    mine = nbgrad.tensor(weights, requires_grad=True)
    nbgrad.nn.functional.embedding_bag(nbgrad.tensor(ids), mine, mode="sum",
                                       scale_grad_by_freq=True).sum().backward()
    reference = torch.tensor(weights, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(ids), reference, scale_grad_by_freq=True).sum().backward()
    close(mine.grad, reference.grad)


def test_ids_changed_after_forward_are_checked_again():
    """The ids of a NumPy array changed between forward and backward: an error, never a
    read out of range (see nbgrad/ops/embedding.py's NOTE)."""
    ids = np.array([1, 2, 3])
    weight = nbgrad.ones(4, 2, requires_grad=True)
    out = nbgrad.nn.functional.embedding_bag(nbgrad.from_numpy(ids), weight, nbgrad.tensor([0, 1]),
                                             mode="max")
    ids[1] = 10**11
    with pytest.raises(RuntimeError, match="found idx to be 100000000000"):
        out.sum().backward()


def test_sparse_gradients_are_refused_before_max_norm_writes():
    bag = nbgrad.nn.EmbeddingBag(4, 2, max_norm=0.1, sparse=True)
    before = bag.weight.detach().clone()
    with pytest.raises(NotImplementedError, match="sparse"):
        bag(nbgrad.tensor([[0, 1]]))
    assert nbgrad.equal(bag.weight, before)


def _calls(L):
    F, tensor = L.nn.functional, L.tensor
    w = L.ones(10, 3, requires_grad=True)
    x = L.ones(2, 8, 3, 4)
    columns = L.ones(2, 12, 20)
    return {
        "first_offset": lambda: F.embedding_bag(tensor([1, 2, 3, 4]), w, tensor([1, 2])),
        "last_offset": lambda: F.embedding_bag(tensor([1, 2, 3, 4]), w, tensor([0, 5])),
        "id_out_of_range_max": lambda: F.embedding_bag(tensor([1, 2, 30, 4]), w, tensor([0, 2]), mode="max"),
        "id_negative_padding": lambda: F.embedding_bag(tensor([1, -1]), w, tensor([0, 1]), mode="sum",
                                                       padding_idx=1),
        "float_ids": lambda: F.embedding_bag(tensor([1.0, 2.0]), w, tensor([0, 2])),
        "float_offsets": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0.0, 1.0])),
        "int8_ids_and_offsets": lambda: F.embedding_bag(tensor([1, 2], dtype=L.int8), w,
                                                        tensor([0, 1], dtype=L.int8)),
        "sample_weights_dtype": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0, 1]), mode="sum",
                                                        per_sample_weights=tensor([1.0, 2.0], dtype=L.float64)),
        "sample_weights_mean": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0, 1]),
                                                       per_sample_weights=tensor([1.0, 2.0])),
        "sample_weights_max": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0, 1]), mode="max",
                                                      per_sample_weights=tensor([1.0, 2.0])),
        "no_offsets_with_last": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([], dtype=L.int64),
                                                        include_last_offset=True),
        "padding_idx_too_large": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0, 1]), padding_idx=10),
        "padding_idx_too_small": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0, 1]), padding_idx=-11),
        "long_weight": lambda: F.embedding_bag(tensor([1, 2]), L.ones(10, 3, dtype=L.long), tensor([0, 1])),
        "input_3d": lambda: F.embedding_bag(tensor([[[1, 2]]]), w),
        "unknown_mode": lambda: F.embedding_bag(tensor([[1, 2]]), w, mode="median"),
        "weight_1d": lambda: F.embedding_bag(tensor([[1, 2]]), w[0]),
        "offsets_2d": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([[0, 1]])),
        "no_offsets": lambda: F.embedding_bag(tensor([1, 2]), w),
        "max_by_frequency": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0]), mode="max",
                                                    scale_grad_by_freq=True),
        "max_sparse": lambda: F.embedding_bag(tensor([1, 2]), w, tensor([0]), mode="max", sparse=True),
        "shuffle_rank": lambda: F.pixel_shuffle(x[0, 0], 1),
        "shuffle_factor_0": lambda: F.pixel_shuffle(x, 0),
        "shuffle_channels": lambda: L.pixel_shuffle(x, 3),
        "shuffle_float_factor": lambda: F.pixel_shuffle(x, 2.0),
        "unshuffle_height": lambda: F.pixel_unshuffle(L.ones(1, 3, 5), 2),
        "unshuffle_width": lambda: L.pixel_unshuffle(L.ones(1, 4, 5), 2),
        "unshuffle_factor_0": lambda: F.pixel_unshuffle(L.ones(1, 4, 5), 0),
        "unfold_no_blocks": lambda: F.unfold(x, 7),
        "unfold_kernel_0": lambda: F.unfold(x, 0),
        "unfold_stride_0": lambda: F.unfold(x, 2, stride=0),
        "unfold_padding_negative": lambda: F.unfold(x, 2, padding=-1),
        "unfold_dilation_0": lambda: F.unfold(x, 2, dilation=0),
        "unfold_kernel_3d": lambda: F.unfold(x, (2, 2, 2)),
        "unfold_no_channels": lambda: F.unfold(L.ones(2, 0, 5, 6), 2),
        "unfold_long": lambda: F.unfold(L.ones(2, 3, 5, 6, dtype=L.long), 2),
        "unfold_2d": lambda: F.unfold(x[0, 0], 2),
        "unfold_1d": lambda: F.unfold(L.ones(5), 2),
        "unfold_0d": lambda: F.unfold(L.ones(()), 2),
        "unfold_5d": lambda: F.unfold(L.ones(1, 2, 3, 4, 5), 2),
        "unfold_float_kernel": lambda: F.unfold(x, [2.5, 1]),
        "fold_blocks_padding": lambda: F.fold(columns, (5, 6), 2, padding=1),
        "fold_blocks_kernel": lambda: F.fold(columns, (5, 6), (2, 3)),
        "fold_channels": lambda: F.fold(L.ones(2, 13, 20), (5, 6), 2),
        "fold_kernel_0": lambda: F.fold(columns, (5, 6), 0),
        "fold_1d": lambda: F.fold(columns[0, 0], (5, 6), 2),
        "fold_4d": lambda: F.fold(L.ones(2, 3, 4, 20), (5, 6), 2),
        "fold_output_size_3d": lambda: F.fold(columns, (5, 6, 7), 2),
        "fold_float_output_size": lambda: F.fold(columns, (5.0, 6), 2),
        "fold_float_stride": lambda: F.fold(columns, (5, 6), 2, stride=1.5),
        "fold_no_blocks": lambda: F.fold(L.ones(2, 12, 0), (1, 1), 2),
        "fold_long": lambda: F.fold(L.ones(2, 12, 20, dtype=L.long), (5, 6), 2),
    }


def _error(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 (the type and message are the result)
        # (the first line: PyTorch's C++ errors may add more, "[ torch.LongTensor{} ]")
        return type(error).__name__, str(error).splitlines()[0].replace("nbgrad", "torch")
    return None


# NOTE: decreasing offsets (PyTorch: an assertion, "Expected i < index_size to be true", in
# sum and mean mode, a garbage result in max mode) and ids out of range in sum and mean mode
# without padding_idx (the same assertion) raise RuntimeError with messages of nbgrad's own:
# see test_bad_inputs.py for their types.
@pytest.mark.parametrize("name", list(_calls(torch)))
def test_bad_calls_raise_torchs_errors(name):
    theirs = _error(_calls(torch)[name])
    assert theirs is not None
    assert _error(_calls(nbgrad)[name]) == theirs
