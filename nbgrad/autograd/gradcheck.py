"""gradcheck: reverse-mode gradients against float64 central finite differences."""
import warnings

import numpy as np

from .functional import reverse_jacobian, _tuple
from .grad_mode import enable_grad
from .grad_mode import no_grad


class GradcheckError(RuntimeError):
    pass


def _numerical_jacobian(func, inputs, eps):
    """Central differences: perturb each element of each input that requires grad."""
    base = [x.detach() for x in inputs]
    columns = []
    with no_grad():
        outs = _tuple(func(*base))[0]
        for j, x in enumerate(base):
            block = [np.zeros((o.numel(), x.numel())) for o in outs]
            if inputs[j].requires_grad:
                flat = x._data.reshape(-1)
                for k in range(flat.size):
                    original = flat[k]
                    flat[k] = original + eps
                    plus = [o._data.astype(np.float64).copy() for o in _tuple(func(*base))[0]]
                    flat[k] = original - eps
                    minus = [o._data.astype(np.float64).copy() for o in _tuple(func(*base))[0]]
                    flat[k] = original
                    for b, p, m in zip(block, plus, minus):
                        b[:, k] = ((p - m) / (2 * eps)).reshape(-1)
            columns.append(block)
    return columns, outs


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, fast_mode=False):
    """True if d func / d inputs from backward matches finite differences; else raise.

    PyTorch's other options change nothing here, by construction: nbgrad's backward is
    deterministic (`nondet_tol` has nothing to tolerate), has no undefined output gradients
    (`check_undefined_grad`), and `fast_mode` would check a random projection of the full
    Jacobian this always compares.
    """
    inputs, _ = _tuple(inputs)
    for index, x in enumerate(inputs):
        if x.requires_grad and x.dtype.name != "float64":
            warnings.warn(f"Input #{index} requires gradient and is not a double precision floating "
                          "point. This check will likely fail if all the inputs are not of "
                          "double precision floating point.", UserWarning, stacklevel=2)
    if not any(x.requires_grad for x in inputs):
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but "
                         "none of the them have requires_grad=True.")
    numerical, _ = _numerical_jacobian(func, inputs, eps)
    wanted = [i for i, x in enumerate(inputs) if x.requires_grad]
    xs = [x.detach().requires_grad_(True) if x.requires_grad else x.detach() for x in inputs]
    with enable_grad():
        outs = _tuple(func(*xs))[0]
    for i, out in enumerate(outs):
        analytical = reverse_jacobian(out, [xs[j] for j in wanted])
        for j, got in zip(wanted, analytical):
            got = got._data.reshape(out.numel(), xs[j].numel())
            expected = numerical[j][i]
            if not np.allclose(got, expected, rtol=rtol, atol=atol):
                message = (f"Jacobian mismatch for output {i} with respect to input {j},\n"
                           f"numerical:{expected}\nanalytical:{got}\n")
                if raise_exception:
                    raise GradcheckError(message)
                return False
    return True
