"""nn.Parameter: a leaf tensor that a Module registers as one of its parameters."""
from .._tensor.factories import empty
from .._tensor.tensor import Tensor, _init


class Parameter(Tensor):
    """A Tensor subclass, so `isinstance(p, nn.Parameter)` and every Tensor method work.

    Like PyTorch's, it shares memory with `data` and requires grad unless told otherwise;
    setting `requires_grad = False` freezes it (optimizers then leave it alone).
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = empty(0)
        array = data._data if isinstance(data, Tensor) else Tensor(data)._data
        # NOTE: not cls._wrap: that calls cls.__new__, which is this method.
        parameter = Tensor.__new__(cls)
        _init(parameter, array, requires_grad and array.dtype.kind == "f")
        return parameter

    def __init__(self, data=None, requires_grad=True):
        # Everything happened in __new__; Tensor.__init__ would reinterpret the arguments.
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce__(self):
        return (Parameter, (Tensor._wrap(self._data), self._requires_grad))

    def __deepcopy__(self, memo):
        copy = Parameter(Tensor._wrap(self._data.copy()), self._requires_grad)
        if self.grad is not None:
            copy.grad = Tensor._wrap(self.grad._data.copy())
        memo[id(self)] = copy
        return copy
