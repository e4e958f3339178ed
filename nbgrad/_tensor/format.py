"""PyTorch's tensor repr: `tensor([1.0368, 2.7163], grad_fn=<AddBackward0>)`."""
import numpy as np

_LINE_WIDTH = 80
_THRESHOLD = 1000
_EDGE_ITEMS = 3
_PREFIX = "tensor("


def _float_formatter(values):
    finite = values[np.isfinite(values)]
    nonzero = np.abs(finite[finite != 0])
    if finite.size and np.all(finite == np.ceil(finite)):
        if nonzero.size and nonzero.max() > 1e8:
            return lambda v: f"{v:.4e}"
        return lambda v: f"{v:.0f}." if np.isfinite(v) else f"{v}"
    if nonzero.size and (nonzero.max() / nonzero.min() > 1000 or nonzero.max() > 1e8
                         or nonzero.min() < 1e-4):
        return lambda v: f"{v:.4e}"
    return lambda v: f"{v:.4f}"


def _formatter(data, floating):
    if floating:
        shown = _summarized_values(data).astype(np.float64)
        fmt = _float_formatter(shown)
    elif data.dtype.kind == "b":
        fmt = str
    else:
        def fmt(v):
            return str(int(v))
    width = max((len(fmt(v)) for v in _summarized_values(data).reshape(-1)), default=0)
    return lambda v: fmt(v).rjust(width), width


def _summarized_values(data):
    if data.size <= _THRESHOLD or data.ndim == 0:
        return data.reshape(-1)
    parts = []
    for row in _edges(data):
        parts.append(_summarized_values(row))
    return np.concatenate(parts) if parts else data.reshape(-1)


def _edges(data):
    if data.shape[0] > 2 * _EDGE_ITEMS:
        return [data[i] for i in range(_EDGE_ITEMS)] + [data[i] for i in range(-_EDGE_ITEMS, 0)]
    return [data[i] for i in range(data.shape[0])]


def _format_nested(data, fmt, width, indent, summarize):
    if data.ndim == 0:
        return fmt(data.item())
    if data.ndim == 1:
        items = data.tolist()
        if summarize and len(items) > 2 * _EDGE_ITEMS:
            cells = [fmt(v) for v in items[:_EDGE_ITEMS]] + ["..."] + [fmt(v) for v in items[-_EDGE_ITEMS:]]
        else:
            cells = [fmt(v) for v in items]
        per_line = max(1, (_LINE_WIDTH - indent) // (width + 2))
        lines = [", ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = range(data.shape[0])
    if summarize and data.shape[0] > 2 * _EDGE_ITEMS:
        rows = list(range(_EDGE_ITEMS)) + [None] + list(range(data.shape[0] - _EDGE_ITEMS, data.shape[0]))
    parts = ["..." if i is None else _format_nested(data[i], fmt, width, indent + 1, summarize)
             for i in rows]
    separator = "," + "\n" * (data.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(parts) + "]"


def format_tensor(tensor):
    data, dtype = tensor._data, tensor.dtype
    if data.size == 0:
        body = "[]"
    else:
        fmt, width = _formatter(data, dtype.is_floating_point)
        body = _format_nested(data, fmt, width, len(_PREFIX), data.size > _THRESHOLD)
    extras = []
    if data.size == 0 and data.shape != (0,):
        extras.append(f"size={tuple(data.shape)}")
    # As PyTorch: the dtype is shown unless it is the default one, or int64 or bool (which
    # the values show), except that an empty tensor has no values to show it.
    shown_by_values = ("float32",) if data.size == 0 else ("float32", "int64", "bool")
    if dtype.name not in shown_by_values:
        extras.append(f"dtype={dtype!r}")
    if tensor.grad_fn is not None:
        extras.append(f"grad_fn=<{type(tensor.grad_fn).__name__}>")
    elif tensor.requires_grad:
        extras.append("requires_grad=True")
    return _PREFIX + ", ".join([body] + extras) + ")"
