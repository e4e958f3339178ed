"""scikit-learn's 8x8 handwritten digits (1797 images; the data ships inside scikit-learn,
nothing is downloaded)."""
import numpy as np

from .._tensor.tensor import Tensor


def load_digits(test_fraction=0.2, seed=0):
    """Return `(x_train, y_train, x_test, y_test)` as nbgrad tensors.

    x: float32 of shape (n, 64), pixel values scaled from 0..16 to [0, 1].
    y: int64 of shape (n,), the digit 0..9.
    The split is a fixed shuffle (by `seed`), `test_fraction` of the images held out;
    it does not touch nbgrad's generator.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError("load_digits needs scikit-learn: pip install 'nbgrad[examples]'") from error
    digits = sklearn_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (Tensor._wrap(x[train]), Tensor._wrap(y[train]),
            Tensor._wrap(x[test]), Tensor._wrap(y[test]))
