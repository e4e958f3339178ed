"""PyTorch's tensor repr (`tensor([1.0368, 2.7163], grad_fn=<AddBackward0>)`) and
`set_printoptions`, following torch/_tensor_str.py's rules: one width for all elements,
chosen from the nonzero finite values; fixed, integer-valued or scientific notation; a long
tensor summarized to its edge items; a suffix that would pass the line width on a line of
its own."""
import math

import numpy as np

from .._core.dtype import get_default_dtype

__all__ = ["set_printoptions"]

_PREFIX = "tensor("
_PROFILES = {"default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
             "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
             "full": dict(precision=4, threshold=math.inf, edgeitems=3, linewidth=80)}
_options = dict(_PROFILES["default"], sci_mode=None)


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """PyTorch's print options: a `profile` ("default", "short", "full") first, then each
    option given; `sci_mode` None means "chosen from the values"."""
    if profile is not None:
        _options.update(_PROFILES[profile])
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            _options[name] = value
    _options["sci_mode"] = sci_mode


class _Formatter:
    """How every element of one tensor is written: the notation and the common width."""

    def __init__(self, values, floating):
        self.floating, self.int_mode, self.sci_mode, self.width = floating, True, False, 1
        precision = _options["precision"]
        if not floating:
            self.width = max((len(str(v)) for v in values.tolist()), default=1)
            return
        values = values.astype(np.float64)
        shown = values[np.isfinite(values) & (values != 0)]
        if shown.size:
            largest, smallest = np.abs(shown).max(), np.abs(shown).min()
            self.int_mode = bool(np.all(shown == np.ceil(shown)))
            self.sci_mode = (largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4
                             if _options["sci_mode"] is None else _options["sci_mode"])
            texts = [f"{v:.{precision}e}" if self.sci_mode else f"{v:.0f}." if self.int_mode
                     else f"{v:.{precision}f}" for v in shown.tolist()]
            self.width = max(len(text) for text in texts)

    def __call__(self, value):
        precision = _options["precision"]
        if not self.floating:
            text = str(value)
        elif self.sci_mode:
            text = f"{value:{self.width}.{precision}e}"
        elif self.int_mode:
            text = f"{value:.0f}" + ("." if math.isfinite(value) else "")
        else:
            text = f"{value:.{precision}f}"
        return text.rjust(self.width)


def _summarized(data):
    """The elements shown when a tensor is summarized: its edge items along every dim."""
    edge = _options["edgeitems"]
    if data.ndim == 0:
        return data.reshape(-1)
    if data.ndim == 1:
        return np.concatenate([data[:edge], data[-edge:]]) if data.shape[0] > 2 * edge else data
    rows = range(data.shape[0])
    if data.shape[0] > 2 * edge:
        rows = [*range(edge), *range(data.shape[0] - edge, data.shape[0])]
    return np.concatenate([_summarized(data[i]).reshape(-1) for i in rows])


def _nested(data, fmt, indent, summarize):
    edge = _options["edgeitems"]
    long = summarize and data.shape[0] > 2 * edge
    if data.ndim == 1:
        values = data.tolist()
        cells = ([fmt(v) for v in values[:edge]] + [" ..."] + [fmt(v) for v in values[-edge:]]
                 if long else [fmt(v) for v in values])
        per_line = max(1, math.floor((_options["linewidth"] - indent) / (fmt.width + 2)))
        lines = [", ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = ([*range(edge), None, *range(data.shape[0] - edge, data.shape[0])] if long
            else range(data.shape[0]))
    parts = ["..." if i is None else _nested(data[i], fmt, indent + 1, summarize) for i in rows]
    return "[" + ("," + "\n" * (data.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def _python_values(data):
    # bfloat16 (ml_dtypes) and float16 elements print through float64; ints and bools as such.
    return data.astype(np.float64) if data.dtype.kind in "fV" else data


def _with_suffixes(text, suffixes, indent):
    last_line = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > _options["linewidth"]:
            text += ",\n" + " " * indent + suffix
            last_line = indent + len(suffix)
        else:
            text += ", " + suffix
            last_line += len(suffix) + 2
    return text + ")"


def format_tensor(tensor):
    data, dtype = _python_values(tensor._data), tensor.dtype
    indent = len(_PREFIX)
    suffixes = []
    if data.size == 0:
        body = "[]"
        if data.ndim != 1:
            suffixes.append(f"size={tuple(data.shape)}")
        if dtype is not get_default_dtype():
            suffixes.append(f"dtype={dtype!r}")
    else:
        summarize = data.size > _options["threshold"]
        fmt = _Formatter(_summarized(data) if summarize else data.reshape(-1), dtype.is_floating_point)
        body = fmt(data.item()) if data.ndim == 0 else _nested(data, fmt, indent, summarize)
        # As PyTorch: the dtype is shown unless it is the default one, or int64 or bool.
        if dtype is not get_default_dtype() and dtype.name not in ("int64", "bool"):
            suffixes.append(f"dtype={dtype!r}")
    if tensor.grad_fn is not None:
        suffixes.append(f"grad_fn=<{type(tensor.grad_fn).__name__}>")
    elif tensor.requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(_PREFIX + body, suffixes, indent)
