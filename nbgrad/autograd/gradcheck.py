"""gradcheck: reverse-mode gradients against float64 central finite differences;
gradgradcheck: the same check of the gradient itself (create_graph=True)."""
import warnings

import numpy as np

from . import grad as _grad
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
                # NOTE: element by element through the array itself (reshape(-1) would copy a
                # non-contiguous one, and the perturbation would never reach `func`).
                array = x._data
                for k, index in enumerate(np.ndindex(array.shape)):
                    original = array[index]
                    array[index] = original + eps
                    plus = [o._data.astype(np.float64).copy() for o in _tuple(func(*base))[0]]
                    array[index] = original - eps
                    minus = [o._data.astype(np.float64).copy() for o in _tuple(func(*base))[0]]
                    array[index] = original
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


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False,
                  masked=False):
    """True if the second derivatives of `func` (the gradient of its VJP, taken with
    create_graph=True, with respect to the inputs and the output gradients) match finite
    differences of that VJP; else raise (gradcheck's error) or return False. As PyTorch's,
    `grad_outputs` default to random values in [-1, 1] (from a fixed seed here)."""
    for flag, value, meaning in (
            ("check_batched_grad", check_batched_grad, "batched gradients (vmap)"),
            ("check_fwd_over_rev", check_fwd_over_rev, "forward-mode AD"),
            ("check_grad_dtypes", check_grad_dtypes, "the dtype check of gradients"),
            ("masked", masked, "masked (sparse) gradients")):
        if value:
            raise NotImplementedError(f"gradgradcheck({flag}=True): nbgrad has no {meaning}")
    if not check_rev_over_rev:
        return True  # nothing is left to check
    inputs, _ = _tuple(inputs)
    if grad_outputs is None:
        with enable_grad():
            outputs = [o for o in _tuple(func(*inputs))[0] if o.requires_grad]
        grad_outputs = tuple(_random_like(o, gen_non_contig_grad_outputs, seed)
                             for seed, o in enumerate(outputs))
    else:
        grad_outputs, _ = _tuple(grad_outputs)
    count = len(grad_outputs)
    wanted = [i for i, x in enumerate(inputs) if x.requires_grad]
    seeds_wanted = [i for i, g in enumerate(grad_outputs) if g.requires_grad]

    def vjp(*args):
        # gradcheck hands this detached copies: the flags are set again, as PyTorch does.
        with enable_grad():
            xs = [x.requires_grad_() if i in wanted else x
                  for i, x in enumerate(args[:-count])]
            outs = [o for o in _tuple(func(*xs))[0] if o.requires_grad]
            seeds = [g.requires_grad_() if i in seeds_wanted else g
                     for i, g in enumerate(args[-count:])]
            grads = _grad(outs, [xs[i] for i in wanted], seeds, create_graph=True,
                          allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(vjp, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad, fast_mode=fast_mode)


def _random_like(tensor, non_contiguous, seed):
    """Values uniform in [-1, 1] of `tensor`'s shape and dtype that require grad (torch's
    make_tensor), strided in memory if `non_contiguous`."""
    shape, dtype = tuple(tensor.shape), tensor.dtype.np
    values = np.random.default_rng(seed).uniform(-1, 1, shape + ((2,) if non_contiguous else ()))
    array = values.astype(dtype)[..., 0] if non_contiguous else values.astype(dtype)
    return tensor._new_plain(array).requires_grad_(True)
