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
