"""Recurrent layers (torch/nn/modules/rnn.py): RNN, LSTM, GRU and their one-step cells.

Arguments, checks, parameter names, order, shapes and initialization are PyTorch's, so that a
state_dict loads either way; the arithmetic is its CPU kernels' (aten/src/ATen/native/RNN.cpp):
LSTM gates i, f, g, o; GRU gates r, z, n with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) and
h' = (h - n) * z + n; dropout between layers only, while training.

As PyTorch's CPU path, a layer computes its input's projection `x W_ih^T + b_ih` for all time
steps at once (one GEMM); the recurrence over the steps of one layer and direction is the
`recurrence` primitive (nbgrad/ops/recurrence.py, a primitive for speed), whose one output
holds the sequence output and the final states, viewed here in those parts. A PackedSequence
(nn.utils.rnn) runs the same primitive, over fewer rows as sequences end.
The cells run one `step` function, composed from linear, sigmoid, tanh, relu, mul and add, so
that their gradients are those of the ops (no hand-written VJP).
"""
import math
import numbers
import warnings

from .._tensor.dispatch import dispatch
from .._tensor.factories import empty, zeros
from .._tensor.shape import cat, stack
from ..ops import PRIMITIVES
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter
from .utils.rnn import PackedSequence

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


# --- one time step: (input projection, state, weights) -> (new state, output) ---------------
# `weights` is (w_hh, b_hh, w_hr), b_hh and w_hr None where absent; the input's projection
# (with b_ih) is given (the cells: RNNCell, LSTMCell, GRUCell).

def _tanh_step(projected, h, weights):
    w_hh, b_hh, _ = weights
    h = (F.linear(h, w_hh, b_hh) + projected).tanh()
    return h, h


def _relu_step(projected, h, weights):
    w_hh, b_hh, _ = weights
    h = (F.linear(h, w_hh, b_hh) + projected).relu()
    return h, h


def _lstm_step(projected, state, weights):
    w_hh, b_hh, w_hr = weights
    h, c = state
    i, f, g, o = (F.linear(h, w_hh, b_hh) + projected).chunk(4, 1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return (h, c), h


def _gru_step(projected, h, weights):
    w_hh, b_hh, _ = weights
    x_r, x_z, x_n = projected.chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = (h_r + x_r).sigmoid()
    z = (h_z + x_z).sigmoid()
    n = (x_n + h_n * r).tanh()
    h = (h - n) * z + n
    return h, h


def _run_direction(mode, input, state, w_ih, b_ih, weights, reverse, batch_sizes):
    """One layer in one direction, over a (T, B, I) input (its outputs (T, B, P)) or, given
    `batch_sizes`, over a packed sequence's data (its outputs packed the same way); and its
    final state, each sequence's at its own last step: the `recurrence` primitive (see
    nbgrad/ops/recurrence.py), whose one flat output is viewed in those parts."""
    w_hh, b_hh, w_hr = weights
    if batch_sizes is None:
        steps, batch, size = input.shape
        # One GEMM for every step's input projection (a reshape copies a batch_first input).
        projected = F.linear(input.reshape(steps * batch, size), w_ih, b_ih)
        projected = projected.reshape(steps, batch, projected.shape[1])
        rows, shape = steps * batch, (steps, batch)
    else:
        projected = F.linear(input, w_ih, b_ih)
        rows, shape = projected.shape[0], (projected.shape[0],)
    h0, c0 = state if isinstance(state, tuple) else (state, None)
    absent = empty(0, dtype=projected.dtype)
    flat = dispatch(PRIMITIVES["recurrence"],
                    tuple(absent if t is None else t for t in (projected, w_hh, b_hh, w_hr, h0, c0)),
                    {"mode": mode, "reverse": reverse,
                     "batch_sizes": None if batch_sizes is None else tuple(batch_sizes)})
    batch, width = h0.shape
    end = (rows + batch) * width
    # PyTorch's CPU layers stack their steps' outputs (cat for a packed sequence's): the
    # sequence output shows that node's name.
    output = dispatch(PRIMITIVES["reshape"], (flat[:rows * width],), {"shape": shape + (width,)},
                      grad_fn_name="StackBackward0" if batch_sizes is None else "CatBackward0")
    final = flat[rows * width:end].view(batch, width)
    if c0 is not None:
        final = (final, flat[end:].view(batch, c0.shape[1]))
    return output, final


def _run_layers(module, input, states, batch_sizes=None, all_weights=None):
    """`module`'s layers over a (T, B, I) input, or a packed sequence's data with its
    `batch_sizes` (a list), from `states` (one per layer and direction, layer-major): the last
    layer's output and the final states, in that order. `all_weights`: as the module's
    (its own if None)."""
    directions = 2 if module.bidirectional else 1
    finals, all_weights = [], all_weights or module.all_weights
    for layer in range(module.num_layers):
        if layer and module.dropout and module.training:
            input = F.dropout(input, module.dropout, True)  # between layers, not after the last
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = all_weights[index]
            w_ih, w_hh = weights[:2]
            b_ih, b_hh = weights[2:4] if module.bias else (None, None)
            w_hr = weights[-1] if module.proj_size else None
            output, final = _run_direction(module.mode, input, states[index], w_ih, b_ih,
                                           (w_hh, b_hh, w_hr), direction == 1, batch_sizes)
            outputs.append(output)
            finals.append(final)
        input = outputs[0] if directions == 1 else cat(outputs, -1)
    return input, finals


# --- the sequence modules -------------------------------------------------------------------

class RNNBase(Module):
    """What RNN, LSTM and GRU share: their arguments, parameters (per layer and direction,
    `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, LSTM's `weight_hr_l{k}`,
    `_reverse` for the backward direction), initialization and checks."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        if (not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1
                or isinstance(dropout, bool)):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                                  ("input_size", input_size, int)):
            if not isinstance(value, kind):
                raise TypeError(f"{name} should be of type {kind.__name__}, got: "
                                f"{type(value).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        gates = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}.get(mode)
        if gates is None:
            raise ValueError("Unrecognized RNN mode: " + mode)
        gate_size = gates * hidden_size
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names = []
        self._all_weights = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
            for direction in range(num_directions):
                shapes = {"weight_ih": (gate_size, layer_input_size),
                          "weight_hh": (gate_size, real_hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(empty(*shape, dtype=dtype, device=device)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    @property
    def _flat_weights(self):
        # Read from the registry each time (PyTorch keeps a list it updates on assignment).
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self):
        """PyTorch packs the weights into one cuDNN buffer here; on the CPU (nbgrad's only
        device) it leaves them as they are, and so does this."""

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def check_input(self, input, batch_sizes):
        weight_dtype = self._flat_weights[0].dtype
        if input.dtype != weight_dtype:
            # (PyTorch's words, which name dtypes as torch's)
            ours, theirs = f"torch.{input.dtype.name}", f"torch.{weight_dtype.name}"
            raise ValueError(f"RNN input dtype ({ours}) does not match weight dtype ({theirs}). "
                             f"Convert input: input.to({theirs}), or convert model: "
                             f"model.to({ours})")
        expected_input_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_input_dim:
            raise RuntimeError(f"input must have {expected_input_dim} dimensions, got "
                               f"{input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.size(-1)}")

    def get_expected_hidden_size(self, input, batch_sizes):
        if batch_sizes is not None:
            mini_batch = int(batch_sizes[0])
        else:
            mini_batch = input.size(0) if self.batch_first else input.size(1)
        num_directions = 2 if self.bidirectional else 1
        return (self.num_layers * num_directions, mini_batch,
                self.proj_size if self.proj_size > 0 else self.hidden_size)

    def check_hidden_size(self, hx, expected_hidden_size, msg="Expected hidden size {}, got {}"):
        if hx.size() != expected_hidden_size:
            raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input, hidden, batch_sizes):
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx, permutation):
        if permutation is None:
            return hx
        return hx.index_select(1, permutation)

    # PyTorch's RNN and GRU transpose their fresh batch-first output in place (`transpose_`),
    # which records TransposeBackward1, and its LSTM out of place: the same view either way.
    _batch_first_output_grad_fn = "TransposeBackward1"

    # The hidden state, per kind: one tensor (RNN, GRU) or (h, c) (LSTM, which overrides).

    def _zero_hidden(self, batch, dtype):
        return zeros(self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size,
                     dtype=dtype)

    def _per_layer(self, hx):
        """The initial state of each layer and direction."""
        return hx.unbind(0)

    def _stacked(self, finals):
        return stack(finals)

    def _run(self, input, hx):
        """The layers over a checked 3-D `input` (batch_first or not) from `hx`: the output
        (batch_first or not) and the final hidden state."""
        if input.size(1 if self.batch_first else 0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if not self.batch_first:
            output, finals = _run_layers(self, input, self._per_layer(hx))
        else:
            output, finals = _run_layers(self, input.transpose(0, 1), self._per_layer(hx))
            output = dispatch(PRIMITIVES["permute"], (output,), {"dims": (1, 0, 2)},
                              grad_fn_name=self._batch_first_output_grad_fn)
        return output, self._stacked(finals)

    def _run_packed(self, packed, hx):
        """PyTorch's forward of a PackedSequence: the output packed as the input, the final
        hidden state in the sequences' original order."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        sizes = batch_sizes.tolist()
        if hx is None:
            hx = self._zero_hidden(sizes[0], data.dtype)
        else:
            hx = self.permute_hidden(hx, sorted_indices)
        self.check_forward_args(data, hx, batch_sizes)
        output, finals = _run_layers(self, data, self._per_layer(hx), sizes)
        return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                self.permute_hidden(self._stacked(finals), unsorted_indices))

    def _unbatched_input(self, input):
        """(is_batched, the input with its batch dimension), after PyTorch's check."""
        if input.dim() not in (2, 3):
            # (PyTorch's words differ between the kinds.)
            kind = {"LSTM": "LSTM: ", "GRU": "GRU: "}.get(self.mode, "RNN: ")
            detail = "D tensor" if kind == "RNN: " else "D"
            raise ValueError(f"{kind}Expected input to be 2D or 3D, got {input.dim()}{detail} "
                             "instead")
        is_batched = input.dim() == 3
        return is_batched, input if is_batched else input.unsqueeze(self._batch_dim)

    @property
    def _batch_dim(self):
        return 0 if self.batch_first else 1

    def _forward_one_state(self, input, hx):
        """RNN's and GRU's forward: one state tensor."""
        if isinstance(input, PackedSequence):
            return self._run_packed(input, hx)
        is_batched, input = self._unbatched_input(input)
        if not is_batched and hx is not None:
            if hx.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got "
                                   f"{hx.dim()}-D tensor")
            hx = hx.unsqueeze(1)
        elif hx is not None and hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got "
                               f"{hx.dim()}-D tensor")
        if hx is None:
            hx = self._zero_hidden(input.size(self._batch_dim), input.dtype)
        self.check_forward_args(input, hx, None)
        output, hidden = self._run(input, hx)
        if not is_batched:
            return output.squeeze(self._batch_dim), hidden.squeeze(1)
        return output, hidden

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)


def _no_projections(kwargs):
    if "proj_size" in kwargs:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class RNN(RNNBase):
    """h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), nonlinearity 'tanh' or
    'relu'. Arguments: (input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)."""

    def __init__(self, *args, **kwargs):
        _no_projections(kwargs)
        # (PyTorch's: nonlinearity is the fourth argument, which RNNBase does not take.)
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if self.nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' "
                             "or 'relu'.")
        super().__init__(modes[self.nonlinearity], *args, **kwargs)

    def forward(self, input, hx=None):
        return self._forward_one_state(input, hx)


class GRU(RNNBase):
    """Gates r, z, n: r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h."""

    def __init__(self, *args, **kwargs):
        _no_projections(kwargs)
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input, hx=None):
        return self._forward_one_state(input, hx)


class LSTM(RNNBase):
    """Gates i, f, g, o: c' = f * c + i * g, h' = o * tanh(c'); with proj_size > 0, h' is then
    projected by weight_hr to proj_size features."""

    _batch_first_output_grad_fn = "TransposeBackward0"

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def get_expected_cell_size(self, input, batch_sizes):
        if batch_sizes is not None:
            mini_batch = int(batch_sizes[0])
        else:
            mini_batch = input.size(0) if self.batch_first else input.size(1)
        num_directions = 2 if self.bidirectional else 1
        return self.num_layers * num_directions, mini_batch, self.hidden_size

    def check_forward_args(self, input, hidden, batch_sizes):
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def permute_hidden(self, hx, permutation):
        if permutation is None:
            return hx
        return hx[0].index_select(1, permutation), hx[1].index_select(1, permutation)

    def _zero_hidden(self, batch, dtype):
        directions = 2 if self.bidirectional else 1
        return (zeros(self.num_layers * directions, batch, self.proj_size or self.hidden_size,
                      dtype=dtype),
                zeros(self.num_layers * directions, batch, self.hidden_size, dtype=dtype))

    def _per_layer(self, hx):
        return list(zip(hx[0].unbind(0), hx[1].unbind(0)))

    def _stacked(self, finals):
        return stack([h for h, _ in finals]), stack([c for _, c in finals])

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._run_packed(input, hx)
        is_batched, input = self._unbatched_input(input)
        if hx is None:
            hx = self._zero_hidden(input.size(self._batch_dim), input.dtype)
        else:
            dims = (hx[0].dim(), hx[1].dim())
            if is_batched and dims != (3, 3):
                raise RuntimeError(f"For batched 3-D input, hx and cx should also be 3-D but got "
                                   f"({dims[0]}-D, {dims[1]}-D) tensors")
            if not is_batched:
                if dims != (2, 2):
                    raise RuntimeError(f"For unbatched 2-D input, hx and cx should also be 2-D "
                                       f"but got ({dims[0]}-D, {dims[1]}-D) tensors")
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(input, hx, None)
        output, (h_n, c_n) = self._run(input, hx)
        if not is_batched:
            return output.squeeze(self._batch_dim), (h_n.squeeze(1), c_n.squeeze(1))
        return output, (h_n, c_n)


# --- the cells: one time step ---------------------------------------------------------------

class RNNCellBase(Module):
    """What the cells share: weight_ih (chunks * hidden_size, input_size), weight_hh
    (chunks * hidden_size, hidden_size), bias_ih and bias_hh, initialized as the RNNs'."""

    _step = None  # the step function (RNNCell picks its own by nonlinearity)
    _kind = None  # the name PyTorch's messages give (not the class's: a subclass keeps it)

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, dtype=dtype,
                                         device=device))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, dtype=dtype,
                                         device=device))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
        else:
            # NOTE: not `self.bias_ih = None` first: that makes a plain attribute (see Linear).
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _check_dims(self, input, hidden):
        """PyTorch's checks of the ranks; `hidden`: {label: state tensor given}."""
        if input.dim() not in (1, 2):
            raise ValueError(f"{self._kind}: Expected input to be 1D or 2D, got {input.dim()}D "
                             "instead")
        for label, value in hidden.items():
            if value.dim() not in (1, 2):
                raise ValueError(f"{self._kind}: Expected {label} to be 1D or 2D, got "
                                 f"{value.dim()}D instead")

    def _cell(self, input, states):
        """One step from batched states: (new state, output), after the checks of PyTorch's
        cell kernels."""
        if input.size(1) != self.weight_ih.size(1):
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected "
                               f"{self.weight_ih.size(1)}")
        for label, hx in enumerate(states):
            if input.size(0) != hx.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{label} "
                                   f"batch size {hx.size(0)}")
            if hx.size(1) != self.weight_hh.size(1):
                raise RuntimeError(f"hidden{label} has inconsistent hidden_size: got "
                                   f"{hx.size(1)}, expected {self.weight_hh.size(1)}")
        state = states[0] if len(states) == 1 else tuple(states)
        return self._step(F.linear(input, self.weight_ih, self.bias_ih), state,
                          (self.weight_hh, self.bias_hh, None))

    def _forward_one_state(self, input, hx):
        """RNNCell's and GRUCell's forward: one state tensor in, the new one out."""
        self._check_dims(input, {} if hx is None else {"hidden": hx})
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = zeros(input.size(0), self.hidden_size, dtype=input.dtype)
        elif not is_batched:
            hx = hx.unsqueeze(0)
        _, output = self._cell(input, (hx,))
        return output if is_batched else output.squeeze(0)


class RNNCell(RNNCellBase):
    _kind = "RNNCell"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    @property
    def _step(self):
        # Read at each call: PyTorch checks the nonlinearity there, not at construction.
        step = {"tanh": _tanh_step, "relu": _relu_step}.get(self.nonlinearity)
        if step is None:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return step

    def forward(self, input, hx=None):
        return self._forward_one_state(input, hx)


class GRUCell(RNNCellBase):
    _step, _kind = staticmethod(_gru_step), "GRUCell"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._forward_one_state(input, hx)


class LSTMCell(RNNCellBase):
    _step, _kind = staticmethod(_lstm_step), "LSTMCell"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        self._check_dims(input, {} if hx is None else {f"hx[{i}]": v for i, v in enumerate(hx)})
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = (zeros(input.size(0), self.hidden_size, dtype=input.dtype),) * 2
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        if len(hx) != 2:
            raise RuntimeError("lstm_cell expects two hidden states")
        (h, c), _ = self._cell(input, hx)
        return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))
