"""recurrence: one layer of nn.RNN/LSTM/GRU in one direction, over every time step. A
primitive for speed: composed from Tensor ops, a step was 10-15 nodes (a deferred LSTM at
T=48 made a tape too long to fuse and ran ~10x slower than torch), and each step's
SelectBackward0 of the input projection allocated a zero gradient of the whole projection
(O(T^2) memory traffic). Here a forward is one njit loop over time (per step one BLAS gemm
`h @ w_hh^T`, the gates in scalar loops), and the backward one loop back through time.

Inputs: the input projection of every step, `x W_ih^T + b_ih` (one GEMM, as PyTorch's CPU
path makes it), (T, B, G*H), or a PackedSequence's (N, G*H) rows; w_hh (G*H, P); b_hh (G*H,);
w_hr (P, H) (LSTM's proj_size); h0 (B, P); c0 (B, H) (LSTM). Absent ones are zero-size
stand-ins. P is the state's width: H, or proj_size. Parameters: `mode` ('RNN_TANH',
'RNN_RELU', 'LSTM', 'GRU'), `reverse` (the backward direction), `batch_sizes` (a packed
sequence's rows per step, a tuple; None: every step has all B rows).

The arithmetic is PyTorch's CPU cells' (aten/src/ATen/native/RNN.cpp), in the order of its
ops: gates = (h W_hh^T + b_hh) + projection; LSTM gates i, f, g, o, c' = f c + i g,
h' = o tanh(c') (then h' W_hr^T); GRU gates r, z, n, n = tanh(x_n + r (W_hn h + b_hn)),
h' = (h - n) z + n.

A node has one output: the flat array [every step's output (N, P); the final h (B, P);
LSTM's final c (B, H)], which nn.RNNBase views in parts, so that gradients reaching the
sequence output, h_n and c_n all flow into this one node. A packed sequence's rows leave
as their sequences end (forward) or join as they begin (reverse): the kernels keep a state
of all B rows whose rows not in a step hold their final (forward) or initial (reverse)
state, and the final state is that array after the last step.

The node saves its inputs (the differentiable VJP, for create_graph=True, recomputes the
forward from them with Tensor operations), its output and "extra": per row, the gates after
their activations, LSTM's c and tanh(c) (and its h before the projection), GRU's
W_hn h + b_hn. (NOTE: tanh and exp are kernel_support's: libm's tanhf, np.tanh in njit, took
~20 ns an element; the backward reads tanh(c) instead of recomputing it.)
"""
import numba
import numpy as np

from .._core.dtype import C_TYPE_NAMES
from .._core.kernel_support import exp, tanh, typed
from .._core.unlinked import calling_unlinked
from .blas import gemm
from .primitive import TORCH_TYPE_NAMES, Primitive, register

_jit = numba.njit(cache=True, error_model="numpy")
_u = np.uint64

# mode -> (kernel code, gates per hidden unit)
MODES = {"RNN_TANH": (0, 1), "RNN_RELU": (1, 1), "LSTM": (2, 4), "GRU": (3, 3)}
_TANH, _RELU, _LSTM, _GRU = 0, 1, 2, 3
_SCALARS = {np.dtype(t): np.array([1, 0], t) for t in (np.float32, np.float64)}


def _extra_width(kind, hidden, projected):
    """The columns of "extra" per row: the gates, then LSTM's c, tanh(c) (and h before its
    projection), GRU's W_hn h + b_hn."""
    gates = MODES[kind][1] * hidden
    if kind == "LSTM":
        return gates + hidden * (3 if projected else 2)
    return gates + hidden * (kind == "GRU")


@_jit
def _starts(batch_sizes):
    starts = np.zeros(batch_sizes.shape[0], np.int64)
    for t in range(1, batch_sizes.shape[0]):
        starts[t] = starts[t - 1] + batch_sizes[t - 1]
    return starts


@_jit
def _sigmoid(x):
    return typed(1.0, x) / (typed(1.0, x) + exp(-x))


@calling_unlinked
@_jit
def recurrence_kernel(proj, w_hh, b_hh, w_hr, h0, c0, batch_sizes, layout, scalars, out, extra):
    """The layer's forward (see the module's docstring); all arrays flat and C-ordered;
    `layout`: (kind code, reverse, H, P, extra width)."""
    kind, reverse, hidden, width, columns = layout[0], layout[1], layout[2], layout[3], layout[4]
    steps, batch = batch_sizes.shape[0], h0.shape[0] // width
    gates = w_hh.shape[0] // width
    rows = 0
    for t in range(steps):
        rows += batch_sizes[t]
    starts = _starts(batch_sizes)
    lstm, projected = kind == _LSTM, w_hr.shape[0] > 0
    bias = b_hh.shape[0] > 0
    h = h0.copy()
    c = c0.copy()
    linear = np.empty(batch * gates, scalars.dtype)
    before = np.empty(batch * hidden * projected, scalars.dtype)  # LSTM's h before w_hr
    transposed = kind >= 0
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        n, start = batch_sizes[t], starts[t]
        gemm(n, gates, width, h, 0, width, not transposed, w_hh, 0, width, transposed,
             linear, 0, gates, scalars, 0, 1)
        for b in range(n):
            x_at, l_at, e_at = (start + b) * gates, b * gates, (start + b) * columns
            if bias:
                for j in range(_u(gates)):
                    linear[_u(l_at) + j] += b_hh[j]
            if kind == _GRU:
                for j in range(hidden):
                    r = _sigmoid(linear[l_at + j] + proj[x_at + j])
                    z = _sigmoid(linear[l_at + hidden + j] + proj[x_at + hidden + j])
                    hn = linear[l_at + 2 * hidden + j]
                    new = tanh(proj[x_at + 2 * hidden + j] + hn * r)
                    extra[e_at + j], extra[e_at + hidden + j] = r, z
                    extra[e_at + 2 * hidden + j], extra[e_at + 3 * hidden + j] = new, hn
                    value = (h[b * width + j] - new) * z + new
                    h[b * width + j] = value
                    out[(start + b) * width + j] = value
            elif lstm:
                # NOTE: each activation in a loop of its own over a run of gates, so that
                # LLVM vectorizes exp and tanh (the whole cell in one loop took ~60 ns a
                # unit: LSTM(32, 64) at T=48, B=8, forward 2.2 -> 0.8 ms; PyTorch's 0.5-0.6);
                # unsigned indices (see ops/conv.py).
                e, lin, x = _u(e_at), _u(l_at), _u(x_at)
                state, size = _u(b * hidden), _u(hidden)
                two, three, four = _u(2) * size, _u(3) * size, _u(4) * size
                five, six = _u(5) * size, _u(6) * size
                for k in range(two):  # i, f
                    extra[e + k] = _sigmoid(linear[lin + k] + proj[x + k])
                for k in range(two, three):  # g
                    extra[e + k] = tanh(linear[lin + k] + proj[x + k])
                for k in range(three, four):  # o
                    extra[e + k] = _sigmoid(linear[lin + k] + proj[x + k])
                for j in range(size):  # c' = f c + i g, and tanh(c')
                    cell = extra[e + size + j] * c[state + j] + extra[e + j] * extra[e + two + j]
                    extra[e + four + j] = cell
                    c[state + j] = cell
                for j in range(size):
                    extra[e + five + j] = tanh(extra[e + four + j])
                for j in range(size):
                    value = extra[e + three + j] * extra[e + five + j]
                    if projected:
                        before[state + j] = value
                        extra[e + six + j] = value
                    else:
                        h[_u(b * width) + j] = value
                        out[_u((start + b) * width) + j] = value
            else:
                for j in range(hidden):
                    value = linear[l_at + j] + proj[x_at + j]
                    value = tanh(value) if kind == _TANH else max(value, typed(0.0, value))
                    extra[e_at + j] = value
                    h[b * width + j] = value
                    out[(start + b) * width + j] = value
        if projected:
            gemm(n, width, hidden, before, 0, hidden, not transposed, w_hr, 0, hidden,
                 transposed, h, 0, width, scalars, 0, 1)
            for k in range(n * width):
                out[start * width + k] = h[k]
    final = rows * width
    for k in range(batch * width):
        out[final + k] = h[k]
    for k in range(c.shape[0] * lstm):
        out[final + batch * width + k] = c[k]


@calling_unlinked
@_jit
def recurrence_vjp_kernel(g, w_hh, w_hr, h0, c0, out, extra, batch_sizes, layout, scalars,
                          grad_proj, grad_w_hh, grad_b_hh, grad_w_hr, grad_h0, grad_c0):
    """Backpropagation through time: every gradient (zero-size outputs are skipped), from the
    gradient `g` of the flat output and what the forward saved."""
    kind, reverse, hidden, width, columns = layout[0], layout[1], layout[2], layout[3], layout[4]
    steps, batch = batch_sizes.shape[0], h0.shape[0] // width
    gates = w_hh.shape[0] // width
    starts = _starts(batch_sizes)
    rows = starts[steps - 1] + batch_sizes[steps - 1]
    one, zero = typed(1.0, scalars), typed(0.0, scalars)
    lstm, gru, projected = kind == _LSTM, kind == _GRU, w_hr.shape[0] > 0
    final = rows * width
    dh = g[final:final + batch * width].copy()
    dc = g[final + batch * width:final + batch * width + c0.shape[0] * lstm].copy()
    # The gradient of the hidden projection's rows (GRU's n part differs from grad_proj's).
    d_linear = np.empty(rows * gates * gru, scalars.dtype) if gru else grad_proj
    previous = np.empty(rows * width, scalars.dtype)  # each row's state before its step
    d_out = np.empty(rows * width * projected, scalars.dtype)  # of the projected h
    d_before = np.empty(batch * hidden * projected, scalars.dtype)
    transposed = kind >= 0
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        n, start = batch_sizes[t], starts[t]
        p = t + 1 if reverse else t - 1
        known = batch_sizes[p] if 0 <= p < steps else 0  # rows with a previous step
        p_start = starts[p] if 0 <= p < steps else 0
        for b in range(n):
            for k in range(width):
                previous[(start + b) * width + k] = \
                    out[(p_start + b) * width + k] if b < known else h0[b * width + k]
                dh[b * width + k] += g[(start + b) * width + k]
        if projected:
            for k in range(n * width):
                d_out[start * width + k] = dh[k]
            gemm(n, hidden, width, dh, 0, width, not transposed, w_hr, 0, hidden,
                 not transposed, d_before, 0, hidden, scalars, 0, 1)
        for b in range(n):
            x_at, e_at = (start + b) * gates, (start + b) * columns
            if lstm:
                pe_at = (p_start + b) * columns + 4 * hidden
                for j in range(hidden):
                    i, f = extra[e_at + j], extra[e_at + hidden + j]
                    cg, o = extra[e_at + 2 * hidden + j], extra[e_at + 3 * hidden + j]
                    tanh_c = extra[e_at + 5 * hidden + j]
                    before = c0[b * hidden + j] if b >= known else extra[pe_at + j]
                    d = d_before[b * hidden + j] if projected else dh[b * width + j]
                    d_cell = dc[b * hidden + j] + d * o * (one - tanh_c * tanh_c)
                    grad_proj[x_at + j] = d_cell * cg * i * (one - i)
                    grad_proj[x_at + hidden + j] = d_cell * before * f * (one - f)
                    grad_proj[x_at + 2 * hidden + j] = d_cell * i * (one - cg * cg)
                    grad_proj[x_at + 3 * hidden + j] = d * tanh_c * o * (one - o)
                    dc[b * hidden + j] = d_cell * f
            elif gru:
                for j in range(hidden):
                    r, z = extra[e_at + j], extra[e_at + hidden + j]
                    new, hn = extra[e_at + 2 * hidden + j], extra[e_at + 3 * hidden + j]
                    d = dh[b * width + j]
                    d_new = (d - d * z) * (one - new * new)
                    d_r = d_new * hn * r * (one - r)
                    d_z = d * (previous[(start + b) * width + j] - new) * z * (one - z)
                    grad_proj[x_at + j] = d_linear[x_at + j] = d_r
                    grad_proj[x_at + hidden + j] = d_linear[x_at + hidden + j] = d_z
                    grad_proj[x_at + 2 * hidden + j] = d_new
                    d_linear[x_at + 2 * hidden + j] = d_new * r
                    dh[b * width + j] = d * z  # (the direct path; the product's is added)
            else:
                for j in range(hidden):
                    value, d = extra[e_at + j], dh[b * width + j]
                    grad_proj[x_at + j] = d * (one - value * value) if kind == _TANH else \
                        (d if value > zero else zero)
        # The state's gradient through h W_hh^T: added to GRU's direct path.
        gemm(n, width, gates, d_linear, start * gates, gates, not transposed, w_hh, 0, width,
             not transposed, dh, 0, width, scalars, 0, 0 if gru else 1)
    for k in range(grad_h0.shape[0]):
        grad_h0[k] = dh[k]
    for k in range(grad_c0.shape[0]):
        grad_c0[k] = dc[k]
    if grad_w_hh.shape[0]:
        gemm(gates, width, rows, d_linear, 0, gates, transposed, previous, 0, width,
             not transposed, grad_w_hh, 0, width, scalars, 0, 1)
    if grad_b_hh.shape[0]:
        grad_b_hh[:] = zero
        for row in range(rows):
            for j in range(gates):
                grad_b_hh[j] += d_linear[row * gates + j]
    if grad_w_hr.shape[0]:
        gemm(width, hidden, rows, d_out, 0, width, transposed, extra, 6 * hidden, columns,
             not transposed, grad_w_hr, 0, hidden, scalars, 0, 1)


def _plan(proj, w_hh, w_hr, h0, mode, batch_sizes):
    """(batch sizes as int64, layout, rows, batch, H, P, extra width) of a call."""
    width = w_hh.shape[1]
    hidden = w_hh.shape[0] // MODES[mode][1]
    if batch_sizes is None:
        steps, batch = proj.shape[:2]
        sizes = np.full(steps, batch, np.int64)
    else:
        sizes = np.array(batch_sizes, np.int64)
        batch = int(sizes[0])
    columns = _extra_width(mode, hidden, w_hr.size > 0)
    return sizes, int(sizes.sum()), batch, hidden, width, columns


def _layout(mode, reverse, hidden, width, columns):
    return np.array([MODES[mode][0], reverse, hidden, width, columns], np.int64)


def _recurrence_infer(proj, w_hh, b_hh, w_hr, h0, c0, mode, reverse, batch_sizes):
    if mode not in MODES:
        raise ValueError("Unrecognized RNN mode: " + mode)
    gates = MODES[mode][1]
    sizes, rows, batch, hidden, width, _ = _plan(proj, w_hh, w_hr, h0, mode, batch_sizes)
    # (nn.RNNBase checks the user's arguments; these guard the kernels' memory.)
    expected = {"input projection": ((rows, gates * hidden), proj.shape),
                "w_hh": ((gates * hidden, width), w_hh.shape),
                "b_hh": ((gates * hidden,), b_hh.shape) if b_hh.size else None,
                "w_hr": ((width, hidden), w_hr.shape) if w_hr.size else None,
                "h0": ((batch, width), h0.shape),
                "c0": ((batch, hidden), c0.shape) if mode == "LSTM" else None}
    if batch_sizes is None:
        expected["input projection"] = ((len(sizes), batch, gates * hidden), proj.shape)
    for name, pair in expected.items():
        if pair is not None and tuple(pair[0]) != tuple(pair[1]):
            raise RuntimeError(f"recurrence: {name} of shape {tuple(pair[1])}, expected "
                               f"{tuple(pair[0])}")
    if (batch_sizes is not None and
            (not len(sizes) or sizes.min() <= 0 or np.any(np.diff(sizes) > 0))):
        raise RuntimeError("recurrence: batch_sizes must be positive and non-increasing")
    if w_hr.size and mode != "LSTM":
        raise RuntimeError("recurrence: projections are LSTM's only")
    dtype = w_hh.dtype
    if dtype.name not in ("float32", "float64") or any(
            a.dtype != dtype for a in (proj, b_hh, w_hr) if a.size):
        raise RuntimeError("recurrence: expected float32 or float64 weights of one dtype")
    # PyTorch's words (its CPU cells' hidden product h @ w_hh^T; LSTM's c in a product with
    # projections, NOTE: its float64 LSTM without them promotes a float32 c0 instead)
    if h0.dtype != dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                           f"{TORCH_TYPE_NAMES[h0.dtype.name]} and {TORCH_TYPE_NAMES[dtype.name]}")
    if mode == "LSTM" and c0.dtype != dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{C_TYPE_NAMES[c0.dtype.name]} != {C_TYPE_NAMES[dtype.name]}")
    size = (rows + batch) * width + batch * hidden * (mode == "LSTM")
    return (size,), proj.dtype


def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype).reshape(-1)


def _recurrence_forward_saving(proj, w_hh, b_hh, w_hr, h0, c0, mode, reverse, batch_sizes):
    (size,), dtype = _recurrence_infer(proj, w_hh, b_hh, w_hr, h0, c0, mode, reverse,
                                       batch_sizes)
    sizes, rows, _, hidden, width, columns = _plan(proj, w_hh, w_hr, h0, mode, batch_sizes)
    out, extra = np.empty(size, dtype), np.empty(rows * columns, dtype)
    recurrence_kernel(*(_flat(a, dtype) for a in (proj, w_hh, b_hh, w_hr, h0, c0)), sizes,
                      _layout(mode, reverse, hidden, width, columns), _SCALARS[dtype], out,
                      extra)
    return out, extra


def _recurrence_forward(*arrays, **params):
    return _recurrence_forward_saving(*arrays, **params)[0]


def _gradient_shapes(node):
    """The shapes of the gradients the VJP kernel writes: each input's, zero-size for a
    stand-in or an input that needs none (the kernel skips those)."""
    shapes = [meta[0] for meta in node.input_meta]
    needs = node.needs
    return [(int(np.prod(shape)) if needs[i] or i == 0 else 0,) for i, shape in enumerate(shapes)]


def _recurrence_vjp(node, g):
    _, w_hh, _, w_hr, h0, c0, out, extra = node.saved
    dtype = out.dtype
    params = node.params
    proj_shape = node.input_meta[0][0]
    sizes, _, _, hidden, width, columns = _plan(np.empty(proj_shape, dtype), w_hh, w_hr, h0,
                                                params["mode"], params["batch_sizes"])
    grads = [np.empty(shape, dtype) for shape in _gradient_shapes(node)]
    recurrence_vjp_kernel(_flat(g, dtype), *(_flat(a, dtype) for a in (w_hh, w_hr, h0, c0)),
                          out, extra, sizes,
                          _layout(params["mode"], params["reverse"], hidden, width, columns),
                          _SCALARS[dtype], *grads)
    return tuple(grad.reshape(meta[0]) if need else None
                 for grad, need, meta in zip(grads, node.needs, node.input_meta))


def _columns(parts):
    """Tensors of equal rows side by side (no cat here: Tensor operations only)."""
    total = sum(part.shape[1] for part in parts)
    joined = parts[0].new_zeros((parts[0].shape[0], total))
    at = 0
    for part in parts:
        joined[:, at:at + part.shape[1]] = part
        at += part.shape[1]
    return joined


def _with_rows(state, rows):
    """`state` with its first rows replaced by `rows`."""
    if rows.shape[0] == state.shape[0]:
        return rows
    joined = state.new_zeros(state.shape)
    joined[:rows.shape[0]] = rows
    joined[rows.shape[0]:] = state[rows.shape[0]:]
    return joined


def _recurrence_differentiable_vjp(node, g, saved):
    """The kernels' forward and backpropagation through time as Tensor operations
    (create_graph=True): the forward recomputed from the saved inputs (its gates are not in
    the graph), then the VJP kernel's formulas, step by step."""
    proj, w_hh, b_hh, w_hr, h0, c0 = saved[:6]
    mode, reverse = node.params["mode"], node.params["reverse"]
    lstm, gru = mode == "LSTM", mode == "GRU"
    shapes = [np.broadcast_to(np.zeros((), np.float32), meta[0]) for meta in node.input_meta]
    sizes, rows, batch, hidden, width, _ = _plan(shapes[0], shapes[1], shapes[3], shapes[4],
                                                 mode, node.params["batch_sizes"])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    x = proj.reshape(rows, -1)
    has_bias, projected = b_hh.numel() > 0, w_hr.numel() > 0

    def gate(a, k):
        return a[:, k * hidden:(k + 1) * hidden]

    order = list(range(len(sizes)))[::-1] if reverse else list(range(len(sizes)))
    h, c, steps = h0, c0, {}
    for t in order:
        n, start = int(sizes[t]), int(starts[t])
        previous, linear = h[:n], h[:n] @ w_hh.mT
        linear = linear + b_hh if has_bias else linear
        xt = x[start:start + n]
        if gru:
            r = (gate(linear, 0) + gate(xt, 0)).sigmoid()
            z = (gate(linear, 1) + gate(xt, 1)).sigmoid()
            new = (gate(xt, 2) + gate(linear, 2) * r).tanh()
            steps[t] = (previous, None, (r, z, new, gate(linear, 2)))
            h = _with_rows(h, (previous - new) * z + new)
        elif lstm:
            a = linear + xt
            i, f, o = gate(a, 0).sigmoid(), gate(a, 1).sigmoid(), gate(a, 3).sigmoid()
            cg = gate(a, 2).tanh()
            cell = f * c[:n] + i * cg
            tanh_c = cell.tanh()
            before = o * tanh_c
            steps[t] = (previous, c[:n], (i, f, cg, o, tanh_c, before))
            h = _with_rows(h, before @ w_hr.mT if projected else before)
            c = _with_rows(c, cell)
        else:
            value = (linear + xt).tanh() if mode == "RNN_TANH" else (linear + xt).relu()
            steps[t] = (previous, None, (value,))
            h = _with_rows(h, value)
    end = (rows + batch) * width
    g_out = g[:rows * width].reshape(rows, width)
    dh = g[rows * width:end].reshape(batch, width)
    dc = g[end:].reshape(batch, hidden) if lstm else None
    d_proj, d_w_hh, d_b_hh, d_w_hr = x.new_zeros(x.shape), 0, 0, 0
    for t in reversed(order):
        n, start = int(sizes[t]), int(starts[t])
        previous, c_before, acts = steps[t]
        d = dh[:n] + g_out[start:start + n]
        if lstm:
            i, f, cg, o, tanh_c, before = acts
            if projected:
                d_w_hr = d_w_hr + d.mT @ before
                d = d @ w_hr
            d_cell = dc[:n] + d * o * (1 - tanh_c * tanh_c)
            d_linear = d_x = _columns([d_cell * cg * i * (1 - i), d_cell * c_before * f * (1 - f),
                                       d_cell * i * (1 - cg * cg), d * tanh_c * o * (1 - o)])
            dc = _with_rows(dc, d_cell * f)
            d_state = d_linear @ w_hh
        elif gru:
            r, z, new, hn = acts
            d_new = (d - d * z) * (1 - new * new)
            d_r, d_z = d_new * hn * r * (1 - r), d * (previous - new) * z * (1 - z)
            d_x, d_linear = _columns([d_r, d_z, d_new]), _columns([d_r, d_z, d_new * r])
            d_state = d * z + d_linear @ w_hh
        else:
            (value,) = acts
            d_linear = d_x = d * (1 - value * value) if mode == "RNN_TANH" else \
                d * (value > 0).to(d.dtype)
            d_state = d_linear @ w_hh
        d_proj[start:start + n] = d_x
        d_w_hh = d_w_hh + d_linear.mT @ previous
        d_b_hh = d_b_hh + d_linear.sum(0)
        dh = _with_rows(dh, d_state)
    grads = (d_proj.reshape(proj.shape), d_w_hh, d_b_hh if has_bias else None,
             d_w_hr if projected else None, dh, dc)
    return tuple(grad if need else None for grad, need in zip(grads, node.needs))


class _RecurrenceFusion:
    """The eager kernels, called on the step's buffers with the same argument types (their
    eager compilations are reused). A call without a node (no gradient) writes its "extra"
    into a scratch buffer of the step."""

    @staticmethod
    def _constants(em, arrays, params, dtype):
        proj, w_hh, _, w_hr, h0, _ = arrays
        sizes, rows, _, hidden, width, columns = _plan(proj, w_hh, w_hr, h0, params["mode"],
                                                       params["batch_sizes"])
        return (rows, columns, em.constant(sizes),
                em.constant(_layout(params["mode"], params["reverse"], hidden, width, columns)),
                em.constant(_SCALARS[np.dtype(dtype)]))

    def forward(self, em, arrays, params, out):
        proj = arrays[0]
        rows, columns, sizes, layout, scalars = self._constants(em, arrays, params, proj.dtype)
        out, extra = out if type(out) is tuple else (out, np.empty(rows * columns, proj.dtype))
        flat = [f"{em.ref(a)}.reshape({a.size})" for a in arrays]
        em.blas()
        em.emit(f"{em.kernel(recurrence_kernel)}({', '.join(flat)}, {sizes}, {layout}, "
                f"{scalars}, {em.out(out)}, {em.out(extra)})")

    def vjp(self, em, node, g, input_grads):
        _, w_hh, _, w_hr, h0, c0, out, extra = node.saved
        proj = np.empty(node.input_meta[0][0], out.dtype)
        arrays = (proj, w_hh, None, w_hr, h0, c0)
        _, _, sizes, layout, scalars = self._constants(em, arrays, node.params, out.dtype)
        grads = []
        for i, grad in enumerate(input_grads):
            if grad is None:
                # (the projection's gradient is the kernel's work space: always full)
                grad = proj if i == 0 else None
            grads.append(f"{em.out(grad)}.reshape({grad.size})" if grad is not None
                         else em.empty(1, out.dtype))
        reads = [f"{em.ref(a)}.reshape({a.size})" for a in (g, w_hh, w_hr, h0, c0)]
        em.blas()
        em.emit(f"{em.kernel(recurrence_vjp_kernel)}({', '.join(reads)}, {em.ref(out)}, "
                f"{em.ref(extra)}, {sizes}, {layout}, {scalars}, {', '.join(grads)})")


PRIMS = {
    # (PyTorch's name for its one-node CPU layer, oneDNN's LSTM: the sequence output's and
    # the final states' nodes, views of this one, show PyTorch's names of its own CPU path.)
    "recurrence": register(Primitive(
        "recurrence", "MkldnnRnnLayerBackward0", _recurrence_infer, _recurrence_forward,
        _recurrence_vjp, save=(0, 1, 2, 3, 4, 5, "out", "extra"),
        differentiable=(0, 1, 2, 3, 4, 5), fuse=_RecurrenceFusion(),
        differentiable_vjp=_recurrence_differentiable_vjp,
        forward_saving=_recurrence_forward_saving)),
}
