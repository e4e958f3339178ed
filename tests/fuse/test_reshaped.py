"""`reshaped`, the `.reshape` of serial fused steps (nbgrad._core.kernel_support): NumPy's
results and errors, and a view that shares its array's memory."""
import numba
import numpy as np
import pytest

from nbgrad._core.kernel_support import reshaped


@numba.njit
def to_size(array, size):
    return reshaped(array, size)


@numba.njit
def to_shape(array, shape):
    return reshaped(array, shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy_and_shares_memory(dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    for size in (24, -1):
        flat = to_size(array, size)
        np.testing.assert_array_equal(flat, array.reshape(size))
    for shape in ((4, 6), (2, 3, 4), (24,)):
        np.testing.assert_array_equal(to_shape(array, shape), array.reshape(shape))
    np.testing.assert_array_equal(to_shape(np.ones(1, dtype), ()), np.ones((), dtype))
    to_shape(array, (6, 4))[5, 3] = -1
    assert array[1, 2, 3] == -1


def test_a_shape_of_another_size_raises_numpys_error():
    with pytest.raises(ValueError, match="cannot reshape"):
        to_shape(np.zeros((2, 3)), (4, 2))
    with pytest.raises(ValueError, match="cannot reshape"):
        to_size(np.zeros((2, 3)), 5)
    with pytest.raises(ValueError, match="cannot reshape"):
        to_shape(np.zeros(2), ())


@numba.njit
def numbas_reshape(array, shape):
    return array.reshape(shape)


def test_an_array_that_is_not_c_contiguous_gets_numbas_reshape():
    array = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    for shape in ((2, 3), (3, 2)):
        try:
            expected = numbas_reshape(array, shape)
        except NotImplementedError:  # (Numba reshapes an F-ordered array only to its shape)
            with pytest.raises(NotImplementedError):
                to_shape(array, shape)
        else:
            np.testing.assert_array_equal(to_shape(array, shape), expected)
