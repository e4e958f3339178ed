"""nbgrad.data: TensorDataset, DataLoader (seeded shuffling), load_digits, and the digits
training run reaching 95% test accuracy (an accuracy test, not a timing test)."""
import numpy as np
import pytest

import nbgrad
from nbgrad.data import DataLoader, TensorDataset, load_digits


def make_dataset(n=10):
    return TensorDataset(nbgrad.arange(n).float().reshape(n, 1), nbgrad.arange(n))


def test_tensor_dataset():
    dataset = make_dataset()
    assert len(dataset) == 10
    x, y = dataset[3]
    assert x.tolist() == [3.0] and y.item() == 3
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):  # as PyTorch
        TensorDataset(nbgrad.zeros(3), nbgrad.zeros(4))


@pytest.mark.parametrize("drop_last, sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_in_order(drop_last, sizes):
    loader = DataLoader(make_dataset(), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) == len(batches)
    assert [len(y) for _, y in batches] == sizes
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == list(range(sum(sizes)))
    x, y = batches[0]
    assert x.shape == (4, 1) and x.dtype == nbgrad.float32 and y.dtype == nbgrad.int64


def test_shuffle_is_a_permutation_seeded_by_manual_seed():
    def epoch_orders():
        nbgrad.manual_seed(42)
        loader = DataLoader(make_dataset(), batch_size=3, shuffle=True)
        return [np.concatenate([y.numpy() for _, y in loader]).tolist() for _ in range(2)]

    first, second = epoch_orders(), epoch_orders()
    assert first == second
    assert sorted(first[0]) == list(range(10))
    assert first[0] != first[1]  # a new order every epoch


def test_generic_dataset_is_collated():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return nbgrad.tensor([float(i)]), i * i

    x, y = next(iter(DataLoader(Squares(), batch_size=5)))
    assert x.shape == (5, 1) and y.tolist() == [0, 1, 4, 9, 16]


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(make_dataset(), batch_size=0)


def test_load_digits():
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert x_train.dtype == nbgrad.float32 and y_train.dtype == nbgrad.int64
    assert 0.0 <= x_train.numpy().min() and x_train.numpy().max() == 1.0
    assert set(np.unique(y_test.numpy())) == set(range(10))


def test_digits_training_reaches_95_percent():
    from nbgrad.examples.digits import train
    _, accuracy, _ = train(epochs=8, progress=False, log=lambda line: None)
    assert accuracy >= 0.95


def test_digits_cnn_reaches_98_percent():
    """The example's CNN, fused, at its default settings (`--model cnn --mode fused`)."""
    from nbgrad.examples.digits import train
    _, accuracy, _ = train(progress=False, log=lambda line: None, mode="fused", model="cnn")
    assert accuracy >= 0.98


# ---------------------------------------------------------------------------------------------
# torch.utils.data's API, against torch: collation, loaders, samplers, splits, errors
# ---------------------------------------------------------------------------------------------

import collections  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.utils.data as tud  # noqa: E402

import nbgrad.utils.data as nud  # noqa: E402

Point = collections.namedtuple("Point", "x y")


def plain(value):
    """`value` (batches of either library) as plain Python: tensors as (dtype, shape, values)."""
    if isinstance(value, (torch.Tensor, nbgrad.Tensor)):
        return ("tensor", str(value.dtype).split(".")[-1], tuple(value.shape), value.tolist())
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.tolist())
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    return value


def outcome(call):
    try:
        return "ok", plain(call())
    except Exception as error:  # noqa: BLE001  (any error is compared with PyTorch's)
        return type(error).__name__, str(error)


def lib_of(L):
    """The library's data module and tensor namespace."""
    return (tud, torch) if L == "torch" else (nud, nbgrad)


BATCHES = {
    "floats": lambda T: [1.5, 2.0],
    "ints": lambda T: [1, 2, 3],
    "bools": lambda T: [True, False],
    "strings": lambda T: ["a", "b"],
    "tuples": lambda T: [(1, 2.0), (3, 4.0)],
    "lists": lambda T: [[1, 2], [3, 4]],
    "dicts": lambda T: [{"a": 1, "b": np.zeros(2)}, {"a": 2, "b": np.ones(2)}],
    "numpy_arrays": lambda T: [np.arange(3, dtype=np.float32), np.arange(3, dtype=np.float32)],
    "numpy_scalars": lambda T: [np.float32(1.5), np.float32(2.5)],
    "numpy_int32": lambda T: [np.int32(1), np.int32(2)],
    "tensors": lambda T: [T.tensor([1.0, 2.0]), T.tensor([3.0, 4.0])],
    "nested": lambda T: [({"x": T.tensor([1]), "y": [1.0, 2.0]}, "s"),
                         ({"x": T.tensor([2]), "y": [3.0, 4.0]}, "t")],
    "namedtuples": lambda T: [Point(1, 2.0), Point(3, 4.0)],
    "unequal_lists": lambda T: [[1, 2], [3]],
    "objects": lambda T: [object(), object()],
    "string_arrays": lambda T: [np.array(["a"]), np.array(["b"])],
}


@pytest.mark.parametrize("case", sorted(BATCHES))
def test_default_collate_matches_torch(case):
    expected = outcome(lambda: tud.default_collate(BATCHES[case](torch)))
    actual = outcome(lambda: nud.default_collate(BATCHES[case](nbgrad)))
    if case == "objects":  # the message names the class, which differs only by its address
        expected, actual = expected[0], actual[0]
    assert actual == expected


class Records:
    """A map-style dataset of mixed samples (a NumPy array, an int, a float)."""

    def __init__(self, n=11):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full(2, i, dtype=np.float32), i, i / 2


class Stream:
    """An iterable dataset of n dicts (made for either library's IterableDataset)."""

    @staticmethod
    def of(data):
        class _Stream(data.IterableDataset):
            def __iter__(self):
                return iter({"i": i, "x": [i, i + 1]} for i in range(10))

            def __len__(self):
                return 10
        return _Stream()


def _loaders(L):
    """Loaders of library L ("torch" or "nbgrad") over several datasets and options; each
    loader is read for two epochs, and the generator's state after is compared too."""
    data, T = lib_of(L)
    g = T.Generator().manual_seed(2147483647)
    tensors = data.TensorDataset(T.arange(10.0).reshape(5, 2), T.arange(5))
    return [
        (data.DataLoader(tensors, batch_size=2, shuffle=True, generator=g), 2),
        (data.DataLoader(Records(), batch_size=4, shuffle=True, drop_last=True, generator=g), 2),
        (data.DataLoader(Records(), batch_size=None), 1),
        (data.DataLoader(Records(), batch_size=3,
                         sampler=data.RandomSampler(Records(), replacement=True, num_samples=7,
                                                    generator=g)), 1),
        (data.DataLoader(Records(), batch_sampler=data.BatchSampler(
            data.SequentialSampler(range(11)), 3, False)), 1),
        (data.DataLoader(Records(5), batch_size=2, collate_fn=lambda batch: batch), 1),
        (data.DataLoader(Stream.of(data), batch_size=4, drop_last=True), 1),
        (data.DataLoader(Stream.of(data), batch_size=3), 1),
        (data.DataLoader(data.ConcatDataset([Records(3), Records(2)]) + Records(1),
                         batch_size=4, shuffle=True, generator=g), 1),
        (data.DataLoader(data.Subset(Records(), [9, 2, 4]), batch_size=2,
                         sampler=data.SubsetRandomSampler([0, 2, 1], generator=g)), 1),
        (data.DataLoader(Records(), batch_size=5, sampler=data.WeightedRandomSampler(
            [0.1] * 5 + [1.0] * 6, 12, generator=g)), 2),
        (data.DataLoader(Records(), batch_size=5, sampler=data.WeightedRandomSampler(
            np.arange(11.0), 6, replacement=False, generator=g)), 1),
    ], g


def _read(L):
    loaders, g = _loaders(L)
    read = [(len(loader), [plain(list(loader)) for _ in range(epochs)])
            for loader, epochs in loaders]
    return read, g.get_state().tolist()


def test_loaders_give_torch_batches():
    expected, actual = _read("torch"), _read("nbgrad")
    for i, (a, e) in enumerate(zip(actual[0], expected[0])):
        assert a == e, f"loader {i}"
    assert actual[1] == expected[1]  # every draw taken, as PyTorch takes them


def test_shuffle_without_generator_follows_manual_seed_as_torch():
    def epochs(data, T):
        T.manual_seed(7)
        loader = data.DataLoader(Records(), batch_size=4, shuffle=True)
        return [plain(list(loader)) for _ in range(2)] + [plain(T.rand(2))]
    assert epochs(nud, nbgrad) == epochs(tud, torch)


def test_random_split_matches_torch():
    def splits(data, T):
        g = T.Generator().manual_seed(42)
        parts = data.random_split(Records(), [0.5, 0.3, 0.2], generator=g)
        parts += data.random_split(range(10), [3, 7], generator=g)
        T.manual_seed(0)
        parts += data.random_split(range(4), [0.5, 0.5])
        return [(len(p), list(p.indices)) for p in parts]
    assert splits(nud, nbgrad) == splits(tud, torch)


def test_datasets_match_torch():
    def facts(data, T):
        concat = data.ConcatDataset([range(3), range(10, 12)])
        subset = data.Subset(range(10, 20), [5, 1])
        tensors = data.TensorDataset(T.arange(3), T.arange(3) * 2)
        return (len(concat), [concat[i] for i in range(-5, 5)], concat.cumulative_sizes,
                len(subset), subset[0], subset[1], len(tensors), plain(tensors[1]))
    assert facts(nud, nbgrad) == facts(tud, torch)


ERRORS = {
    "negative_workers": lambda data, T: data.DataLoader(Records(), num_workers=-1),
    "sampler_and_shuffle": lambda data, T: data.DataLoader(
        Records(), shuffle=True, sampler=data.SequentialSampler(Records())),
    "batch_sampler_and_size": lambda data, T: data.DataLoader(
        Records(), batch_size=2, batch_sampler=data.BatchSampler(range(3), 2, False)),
    "none_size_and_drop_last": lambda data, T: data.DataLoader(Records(), batch_size=None,
                                                               drop_last=True),
    "iterable_and_shuffle": lambda data, T: data.DataLoader(Stream.of(data), shuffle=True),
    "zero_batch_size": lambda data, T: data.DataLoader(Records(), batch_size=0),
    "prefetch_without_workers": lambda data, T: data.DataLoader(Records(), prefetch_factor=2),
    "persistent_without_workers": lambda data, T: data.DataLoader(Records(),
                                                                  persistent_workers=True),
    "split_bad_sum": lambda data, T: data.random_split(range(10), [3, 3]),
    "split_bad_fraction": lambda data, T: data.random_split(range(10), [1.5, -0.5]),
    "concat_empty": lambda data, T: data.ConcatDataset([]),
    "concat_index": lambda data, T: data.ConcatDataset([range(3)])[-4],
    "tensors_mismatch": lambda data, T: data.TensorDataset(T.zeros(3), T.zeros(4)),
    "num_samples": lambda data, T: data.RandomSampler(Records(), num_samples=0),
    "weights_2d": lambda data, T: data.WeightedRandomSampler([[1.0, 2.0]], 2),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_match_torch(case):
    expected = outcome(lambda: ERRORS[case](tud, torch))
    actual = outcome(lambda: ERRORS[case](nud, nbgrad))
    assert actual == expected


class Seeded:
    """A map-style dataset whose samples are drawn in the worker: its worker id, seed and a
    random number from the library's default generator."""

    def __init__(self, data, T):
        self.data, self.T = data, T

    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = self.data.get_worker_info()
        return i, info.id, info.seed, self.T.initial_seed(), self.T.rand(2)


def _sharded(data):
    class Sharded(data.IterableDataset):
        """Each worker streams its share of range(10)."""

        def __iter__(self):
            info = data.get_worker_info()
            return iter(range(info.id, 10, info.num_workers))
    return Sharded()


def _failing(data):
    class Failing(data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise ValueError("sample 2 is broken")
            return i
    return Failing()


def _worker_runs(data, T):
    g = T.Generator().manual_seed(5)
    runs = [list(data.DataLoader(Records(), batch_size=3, shuffle=True, generator=g,
                                 num_workers=2)),
            list(data.DataLoader(Seeded(data, T), batch_size=2, num_workers=2, generator=g)),
            list(data.DataLoader(_sharded(data), batch_size=2, num_workers=2,
                                 prefetch_factor=1))]
    return [plain(run) for run in runs], g.get_state().tolist(), data.get_worker_info()


def test_worker_processes_give_torch_batches():
    """Batches made by workers: in order, seeded as PyTorch's workers (the same base seed,
    the same worker seeds, the same numbers drawn in them), iterable datasets round robin."""
    expected, actual = _worker_runs(tud, torch), _worker_runs(nud, nbgrad)
    for i, (a, e) in enumerate(zip(actual[0], expected[0])):
        assert a == e, f"run {i}"
    assert actual[1:] == expected[1:]


def test_worker_errors_are_raised_as_torch_raises_them():
    """(PyTorch's message, checked against torch when this was written; a torch loader with
    workers costs seconds of test time.)"""
    with pytest.raises(ValueError) as caught:
        list(nud.DataLoader(_failing(nud), batch_size=1, num_workers=2))
    message = str(caught.value)
    assert message.startswith("Caught ValueError in DataLoader worker process 0.\nOriginal "
                              "Traceback"), message
    assert "sample 2 is broken" in message


def test_more_workers_than_cores_warn_as_torch():
    loader = nud.DataLoader(Records(4), batch_size=2, num_workers=os.cpu_count() + 1)
    with pytest.warns(UserWarning, match="Our suggested max number of worker in current system"):
        assert len(list(loader)) == 2


def test_persistent_workers_are_refused_not_ignored():
    with pytest.raises(NotImplementedError, match="persistent_workers"):
        nud.DataLoader(Records(), num_workers=2, persistent_workers=True)


def test_pin_memory_warns_as_torch_without_an_accelerator():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(nud.DataLoader(Records(2), pin_memory=True))
    assert any("no accelerator is found" in str(w.message) for w in caught)


def test_utils_data_is_the_data_package():
    import nbgrad.data as data
    assert nbgrad.utils.data.DataLoader is data.DataLoader
    assert {"Dataset", "IterableDataset", "TensorDataset", "DataLoader", "random_split", "Subset",
            "ConcatDataset", "default_collate"} <= set(nud.__all__)
