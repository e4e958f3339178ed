"""nn.Parameter: a leaf tensor that a Module registers as one of its parameters."""
from .._tensor.factories import empty
from .._tensor.tensor import Tensor, _init


class Parameter(Tensor):
    """A Tensor subclass, so `isinstance(p, nn.Parameter)` and every Tensor method work.

    Like PyTorch's, it shares memory with `data` and requires grad unless told otherwise;
    setting `requires_grad = False` freezes it (optimizers then leave it alone).

    NOTE: nbgrad computes no gradients in float16 or bfloat16, so a Parameter of those dtypes
    cannot require grad, where PyTorch's can. `Parameter(half_tensor)` raises the Tensor's
    error for it rather than quietly making a frozen parameter: with PyTorch's default
    `requires_grad=True` the caller asked for a trainable one, and a frozen one would only
    show as a parameter an optimizer never moves. `Parameter(half_tensor, requires_grad=False)`
    is fine. `Module.half()` is the other way in: there the requirement is set aside
    (`_grad_set_aside`) and comes back when the module is cast to float32 or float64.
    """

    __slots__ = ("_grad_set_aside",)

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = empty(0)
        array = data._data if isinstance(data, Tensor) else Tensor(data)._data
        # NOTE: not cls._wrap: that calls cls.__new__, which is this method.
        parameter = Tensor.__new__(cls)
        _init(parameter, array)
        parameter._grad_set_aside = False
        if requires_grad:
            # The Tensor's setter: integer and half dtypes raise its errors, as PyTorch's
            # integer ones do.
            parameter.requires_grad = True
        return parameter

    def __init__(self, data=None, requires_grad=True):
        # Everything happened in __new__; Tensor.__init__ would reinterpret the arguments.
        pass

    @Tensor.requires_grad.setter
    def requires_grad(self, value):
        Tensor.requires_grad.fset(self, value)
        # Asked for explicitly: a later cast to float32 must not bring back one set aside.
        self._grad_set_aside = False

    def _wants_grad(self):
        """Whether it requires grad, or would if it were not float16 or bfloat16."""
        return self._requires_grad or self._grad_set_aside

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce__(self):
        return (_rebuild, (self._data, self._requires_grad, self._grad_set_aside))

    def __deepcopy__(self, memo):
        copy = _rebuild(self._data.copy(), self._requires_grad, self._grad_set_aside)
        if self.grad is not None:
            copy.grad = Tensor._wrap(self.grad._data.copy())
        memo[id(self)] = copy
        return copy


def _rebuild(array, requires_grad, grad_set_aside):
    parameter = Parameter(Tensor._wrap(array), requires_grad)
    parameter._grad_set_aside = grad_set_aside
    return parameter
