"""Conv1d, Conv2d, ConvTranspose1d and ConvTranspose2d: PyTorch's modules (argument names,
checks, default initialization, attributes, repr and state_dict keys) over F.conv1d/conv2d
and F.conv_transpose1d/conv_transpose2d; a padding_mode other than 'zeros' pads with F.pad
first, as PyTorch does (transposed ones take only 'zeros', as PyTorch's)."""
import math

from .._tensor.factories import empty
from .._tensor.tensor import Size
from . import functional as F
from . import init
from .module import Module, registered_weight
from .parameter import Parameter

_PADDING_STRINGS = {"same", "valid"}
_PADDING_MODES = {"zeros", "reflect", "replicate", "circular"}


def _tuple(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


class _ConvNd(Module):
    """PyTorch's _ConvNd: what the convolutions and the transposed ones share."""
    _dims = None         # spatial dims, set by each subclass
    _function = None     # F.conv1d, F.conv2d, F.conv_transpose1d or F.conv_transpose2d

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 transposed, output_padding, groups, bias, padding_mode, device=None, dtype=None):
        super().__init__()
        dims = self._dims
        kernel_size, stride, dilation = (_tuple(v, dims) for v in (kernel_size, stride, dilation))
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if isinstance(padding, str):
            if padding not in _PADDING_STRINGS:
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 f"{_PADDING_STRINGS}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = _tuple(padding, dims)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, but got "
                             f"padding_mode='{padding_mode}'")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.transposed, self.output_padding = transposed, _tuple(output_padding, dims)
        self.groups, self.padding_mode = groups, padding_mode
        # F.pad's argument for the padding modes: (left, right) of the last dim first (a list
        # for a padding string, a tuple for ints, as PyTorch).
        if padding == "same":
            totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
            pairs = [(total // 2, total - total // 2) for total in totals]
        else:
            pairs = [(p, p) for p in (padding if padding != "valid" else (0,) * dims)]
        reversed_pairs = [side for pair in reversed(pairs) for side in pair]
        self._reversed_padding_repeated_twice = reversed_pairs if isinstance(padding, str) else \
            tuple(reversed_pairs)
        shape = (in_channels, out_channels // groups) if transposed else \
            (out_channels, in_channels // groups)
        self.weight = Parameter(empty(*shape, *kernel_size, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype))
        else:
            # NOTE: not `self.bias = None` first: that makes a plain attribute (see Linear).
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch's: kaiming_uniform_ with a=sqrt(5) is uniform(+-1/sqrt(fan_in)).
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        weight, bias = registered_weight(self), self._parameters["bias"]
        if self.padding_mode != "zeros":
            return self._function(F.pad(input, self._reversed_padding_repeated_twice,
                                       mode=self.padding_mode),
                                  weight, bias, self.stride, 0, self.dilation, self.groups)
        return self._function(input, weight, bias, self.stride, self.padding, self.dilation,
                              self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False,
                         0, groups, bias, padding_mode, device, dtype)


class Conv1d(_Conv):
    _dims = 1
    _function = staticmethod(F.conv1d)


class Conv2d(_Conv):
    _dims = 2
    _function = staticmethod(F.conv2d)


class _ConvTransposeNd(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            # (PyTorch fails here with an AttributeError of its own making)
            raise ValueError(f"padding={padding!r} is not supported for {type(self).__name__}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True,
                         output_padding, groups, bias, padding_mode, device, dtype)

    def _output_padding(self, input, output_size):
        """The output padding that gives `output_size` (spatial sizes, or with the batch and
        channel dims), within the sizes the input allows; else the module's own."""
        if output_size is None:
            return self.output_padding
        dims = self._dims
        leading = 2 if input.ndim == dims + 2 else 1
        output_size = list(output_size)
        if len(output_size) == leading + dims:
            output_size = output_size[leading:]
        if len(output_size) != dims:
            raise ValueError(f"ConvTranspose{dims}D: for {input.ndim}D input, output_size must have "
                             f"{dims} or {leading + dims} elements (got {len(output_size)})")
        smallest = [(size - 1) * step - 2 * side + d * (k - 1) + 1 for size, step, side, d, k
                    in zip(input.shape[leading:], self.stride, self.padding, self.dilation,
                           self.kernel_size)]
        largest = [size + step - 1 for size, step in zip(smallest, self.stride)]
        if any(not low <= size <= high for size, low, high in zip(output_size, smallest, largest)):
            raise ValueError(f"requested an output size of {output_size}, but valid sizes range from "
                             f"{smallest} to {largest} (for an input of "
                             f"{Size(input.shape[leading:])})")
        return tuple(size - low for size, low in zip(output_size, smallest))

    def forward(self, input, output_size=None):
        return self._function(input, registered_weight(self), self._parameters["bias"], self.stride,
                              self.padding, self._output_padding(input, output_size), self.groups,
                              self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    _dims = 1
    _function = staticmethod(F.conv_transpose1d)


class ConvTranspose2d(_ConvTransposeNd):
    _dims = 2
    _function = staticmethod(F.conv_transpose2d)


class Unfold(Module):
    """F.unfold as a module: the arguments kept as given (PyTorch's repr shows them so)."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, input):
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """F.fold as a module (see Unfold)."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, input):
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding,
                      self.stride)

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}")
