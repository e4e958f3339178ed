"""Parameters as one flat vector and back (torch/nn/utils/convert_parameters.py)."""
from ..._tensor import api as _api
from ..._tensor.tensor import Tensor


def parameters_to_vector(parameters):
    """One 1-D tensor of all parameters' values, in order (differentiable, as PyTorch's)."""
    return _api.cat([param.view(-1) for param in parameters])


def vector_to_parameters(vec, parameters):
    """Set the parameters' values (their `.data`) from consecutive slices of `vec`."""
    if not isinstance(vec, Tensor):
        kind = type(vec)
        name = kind.__qualname__ if kind.__module__ == "builtins" else \
            f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"expected torch.Tensor, but got: {name}")
    pointer = 0
    for param in parameters:
        count = param.numel()
        param.data = vec[pointer:pointer + count].view(param.shape).data
        pointer += count
