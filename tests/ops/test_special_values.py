"""Every row of the op tables (TABLE of tests/ops/test_ops.py, MORE of test_modes.py) with
NaN, inf, -inf or signed zeros put into its random inputs: the forward and the gradient of
every input against PyTorch's, eagerly, in float32 and float64. (The table's own rows keep
their inputs in each op's domain, and tests/ops/test_indices_and_nonfinite.py runs chosen
special values in all three modes; this sweep is what makes a new row face the special
values too.)

A row and pattern listed in KNOWN_DIFFERENCES (or FLOAT32_DIFFERENCES) is skipped, with the
reason; every other one must give PyTorch's values (NaN where PyTorch's is NaN) or raise
where PyTorch raises.
"""
import warnings

import numpy as np
import pytest
import torch

import nbgrad
from conftest import TOL, rng_for
from test_modes import MODE_TABLE
from test_ops import make_inputs

# Values put into each random input, at positions drawn per input.
PATTERNS = {"nan": [np.nan], "inf": [np.inf], "-inf": [-np.inf], "zeros": [0.0, -0.0],
            "mixed": [np.nan, np.inf, -np.inf, 0.0]}

_LAPACK_INF = ("LAPACK's arithmetic on infinite entries: PyTorch's MKL returns numbers that "
               "depend on its algorithm; nbgrad returns NaN (Numba's LAPACK refuses them)")
_EIGH = "PyTorch's eigh fails to converge (an error) or returns numbers; nbgrad returns NaN"
KNOWN_DIFFERENCES = {
    # row: ({patterns}, reason)
    "std_mean_mean": ({"inf", "-inf", "mixed"}, "PyTorch's std_mean computes the mean by "
                      "Welford's updates, which make inf - inf = NaN; nbgrad's mean is inf"),
    "reductions_keepdims": ({"mixed"}, "prod's gradient: PyTorch divides the product by each "
                            "element unless a zero is anywhere in the tensor, NaN / NaN there"),
    "cdist_p1": (set(PATTERNS), "PyTorch's cdist backward takes sign(NaN) = NaN (and NaN at "
                 "infinite differences); nbgrad's p = 1 norm gradient takes sign(NaN) = 0"),
    "rnn_layer_relu_no_bias": (set(PATTERNS), "NaN and inf through the recurrence's ReLU "
                               "gradient: not matched"),
    "linalg_solve_empty": ({"zeros"}, "a singular A with an empty B: PyTorch factors A and "
                           "raises; nbgrad skips the solve"),
    "inverse_method_T": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_solve_vectors": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_solve_broadcast": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_solve_vector": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_solve_right": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_det": ({"inf", "-inf", "mixed"}, _LAPACK_INF),
    "det_method": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_slogdet": ({"inf", "-inf", "mixed"}, _LAPACK_INF),
    "slogdet_method": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_cholesky": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_cholesky_upper": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_svd_full": ({"inf", "-inf"}, _LAPACK_INF),
    "linalg_qr_wide": (set(PATTERNS), "NaN or inf in the part of a wide matrix beyond its "
                       "square: PyTorch's gradient stays finite in the square part, nbgrad's "
                       "is NaN for the whole matrix"),
    "linalg_eigh_values": (set(PATTERNS) - {"zeros"}, _EIGH),
    "linalg_eigh_vectors": ({"nan", "mixed"}, _EIGH),
    "linalg_eigvalsh_upper": (set(PATTERNS) - {"zeros"}, _EIGH),
    "linalg_pinv_hermitian": (set(PATTERNS) - {"zeros"}, _EIGH),
}

# Differences in float32 only: row -> ({patterns}, reason).
FLOAT32_DIFFERENCES = {
    "gelu_silu": ({"inf", "mixed"}, "PyTorch's float32 gelu(inf) is NaN (its vectorized erf); "
                  "its float64 gelu(inf), and nbgrad's in both, is inf"),
}

# grid_sample: PyTorch 2.13's backward crashes on NaN and infinite grid points (see its rows).
ROWS = [r for r in MODE_TABLE if "grid_sample" not in r.name
        and any(not isinstance(spec, np.ndarray) for spec in r.inputs)]


def _with_special(array, values, seed):
    """`array` with `values` at positions drawn by `seed` (float arrays; others as they are)."""
    array = array.copy()
    if array.size and np.issubdtype(array.dtype, np.floating):
        flat = array.reshape(-1)
        positions = np.random.default_rng(seed).permutation(flat.size)[:len(values)]
        flat[positions] = values[:len(positions)]
    return array


def _outcome(lib, row, arrays):
    """("error", type) or ("value", output, [input gradients])."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            leaves = [lib.tensor(a, requires_grad=True) for a in arrays]
            out = row.fn(lib, *leaves)
            value = np.array(out.detach().numpy(), copy=True)
            grads = None
            if out.dtype.is_floating_point and out.requires_grad:
                upstream = rng_for(row.name + "/upstream").standard_normal(tuple(out.shape))
                out.backward(gradient=lib.tensor(upstream.astype(value.dtype)))
                grads = [None if leaf.grad is None else leaf.grad.numpy().copy()
                         for leaf in leaves]
    except Exception as error:  # compared below: an error where PyTorch gives values fails
        return ("error", type(error).__name__)
    return ("value", value, grads)


def _assert_equal(actual, expected, tolerance, what):
    np.testing.assert_equal(actual.shape, expected.shape, err_msg=what)
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(actual, expected, *tolerance, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_special_values_match_torch(row, pattern, dtype):
    for known in (KNOWN_DIFFERENCES, FLOAT32_DIFFERENCES if dtype == "float32" else {}):
        patterns, reason = known.get(row.name, ((), ""))
        if pattern in patterns:
            pytest.skip(reason)
    tolerance = row.tol32 if dtype == "float32" and row.tol32 else TOL[dtype]
    arrays = [a if isinstance(spec, np.ndarray) else _with_special(a, PATTERNS[pattern], i)
              for i, (a, spec) in enumerate(zip(make_inputs(row, dtype), row.inputs))]
    expected = _outcome(torch, row, arrays)
    actual = _outcome(nbgrad, row, arrays)
    if expected[0] == "error" or actual[0] == "error":
        assert actual[0] == expected[0], f"nbgrad: {actual[:2]}, torch: {expected[:2]}"
        return
    _assert_equal(actual[1], expected[1], tolerance, "forward")
    assert (actual[2] is None) == (expected[2] is None)
    for i, (grad, torch_grad) in enumerate(zip(actual[2] or (), expected[2] or ())):
        assert (grad is None) == (torch_grad is None), f"input {i}"
        if grad is not None:
            _assert_equal(grad, torch_grad, tolerance, f"gradient of input {i}")
