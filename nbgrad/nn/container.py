"""Containers that register what they hold: ModuleList, ModuleDict, ParameterList,
ParameterDict (PyTorch's torch.nn containers).

A list holds its items under the names "0", "1", ...; a dict under its keys. So
`named_parameters()`, `state_dict()` and optimizers see them with PyTorch's names
("layers.0.weight", "scales.1").

Entries are written into the registries directly: replacing `list[0]` or `dict["a"]` keeps
its place (as PyTorch does, and as Module's `__setattr__` does for an existing name).
"""
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import chain

from .._tensor.tensor import Tensor
from .module import Module
from .parameter import Parameter

__all__ = ["ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _checked_module(module):
    if module is not None and not isinstance(module, Module):
        raise TypeError(f"{type(module).__name__} is not a Module subclass")
    return module


def _as_parameter(value):
    """A tensor as a Parameter (sharing its memory), as PyTorch's parameter containers do."""
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"nbgrad's parameter containers hold tensors; got {type(value).__name__}")


def _list_index(container, index):
    """`index` (an int, possibly negative) as the name of an entry of list `container`."""
    index = operator.index(index)
    if not -len(container) <= index < len(container):
        raise IndexError(f"index {index} is out of range")
    return str(index % len(container))


def _renumbered(registry):
    """The entries of `registry` under the names "0", "1", ... in their order."""
    return OrderedDict((str(i), value) for i, value in enumerate(registry.values()))


class _Entries:
    """A container's entries: its registry named by `_registry`; `_put(name, value)` (of
    each container) checks and registers one entry."""

    def _entries(self):
        return getattr(self, self._registry)


class _ListMixin(_Entries):
    """The list protocol over the entries, named "0", "1", ..."""

    def __len__(self):
        return len(self._entries())

    def __iter__(self):
        return iter(self._entries().values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(list(self._entries().values())[index])
        return self._entries()[_list_index(self, index)]

    def __setitem__(self, index, value):
        self._put(_list_index(self, index), value)

    def __delitem__(self, index):
        entries = self._entries()
        names = list(entries)[index] if isinstance(index, slice) else [_list_index(self, index)]
        for name in names:
            del entries[name]
        object.__setattr__(self, self._registry, _renumbered(entries))

    def append(self, value):
        self._put(str(len(self)), value)
        return self

    def extend(self, values):
        if not isinstance(values, Iterable):
            raise TypeError(f"{type(self).__name__}.extend should be called with an iterable, "
                            f"but got {type(values).__name__}")
        for value in values:
            self.append(value)
        return self

    def __iadd__(self, values):
        return self.extend(values)

    def __add__(self, other):
        return type(self)(chain(self, other))


class ModuleList(_ListMixin, Module):
    """Modules in a list, each registered (under "0", "1", ...) as a submodule."""

    _registry = "_modules"

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _put(self, name, module):
        self._modules[name] = _checked_module(module)

    def insert(self, index, module):
        # PyTorch's shift: every entry from `index` on moves one name up.
        entries = self._modules
        for i in range(len(entries), index, -1):
            entries[str(i)] = entries[str(i - 1)]
        entries[str(index)] = _checked_module(module)

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module

    def __repr__(self):
        """PyTorch's: runs of equal modules shown once, as "(0-2): 3 x Linear(...)"."""
        if not self._modules:
            return "ModuleList()"
        runs = []  # [first index, last index, repr]
        for index, module in enumerate(self):
            text = repr(module)
            if runs and runs[-1][2] == text:
                runs[-1][1] = index
            else:
                runs.append([index, index, text])
        lines = [(f"({first}): " if first == last else
                  f"({first}-{last}): {last - first + 1} x ") + text.replace("\n", "\n  ")
                 for first, last, text in runs]
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"


class _DictMixin(_Entries):
    """The dict protocol over the entries, named by their keys."""

    def __getitem__(self, key):
        return self._entries()[key]

    def __setitem__(self, key, value):
        self._put(key, value)

    def __delitem__(self, key):
        del self._entries()[key]

    def __len__(self):
        return len(self._entries())

    def __iter__(self):
        return iter(self._entries())

    def __contains__(self, key):
        return key in self._entries()

    def keys(self):
        return self._entries().keys()

    def items(self):
        return self._entries().items()

    def values(self):
        return self._entries().values()

    def get(self, key, default=None):
        return self._entries().get(key, default)

    def pop(self, key):
        return self._entries().pop(key)

    def clear(self):
        self._entries().clear()

    def update(self, entries):
        if isinstance(entries, (Mapping, _DictMixin)):
            for key, value in self._mapping_items(entries):
                self[key] = value
            return
        if not isinstance(entries, Iterable):
            raise TypeError(f"{type(self).__name__}.update should be called with an iterable of "
                            f"key/value pairs, but got {type(entries).__name__}")
        for position, pair in enumerate(entries):
            if not isinstance(pair, Iterable):
                raise TypeError(f"{type(self).__name__} update sequence element #{position} "
                                f"should be Iterable; is{type(pair).__name__}")
            pair = tuple(pair)
            if len(pair) != 2:
                raise ValueError(f"{type(self).__name__} update sequence element #{position} "
                                 f"has length {len(pair)}; 2 is required")
            self[pair[0]] = pair[1]

    @staticmethod
    def _mapping_items(entries):
        return entries.items()


class ModuleDict(_DictMixin, Module):
    """Modules by name, each registered as a submodule under its key."""

    _registry = "_modules"

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _put(self, key, module):
        self._modules[key] = _checked_module(module)


def _parameter_lines(entries, type_name):
    """PyTorch's lines of a parameter container's repr: "  (name): Parameter containing:
    [<type_name(p)> of size 2x3]"."""
    return [f"  ({name}): {'Parameter' if isinstance(p, Parameter) else 'Tensor'} containing: "
            f"[{type_name(p)} of size {'x'.join(str(size) for size in p.shape)}]"
            for name, p in entries]


def _container_repr(name, lines):
    """Module.__repr__ of PyTorch for a module without children whose extra_repr is `lines`."""
    if len(lines) <= 1:
        return f"{name}({''.join(lines)})"
    return f"{name}(\n  " + "\n  ".join(lines) + "\n)"


class ParameterList(_ListMixin, Module):
    """Parameters in a list, each registered (under "0", "1", ...); a tensor becomes a
    Parameter."""

    _registry = "_parameters"

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def _put(self, name, value):
        self._parameters[name] = _as_parameter(value)

    def __repr__(self):
        return _container_repr("ParameterList", _parameter_lines(
            self._parameters.items(), lambda p: repr(p.dtype)))


class ParameterDict(_DictMixin, Module):
    """Parameters by name, each registered under its key; a tensor becomes a Parameter.
    A plain dict's items are added in sorted order, as in PyTorch."""

    _registry = "_parameters"

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def _put(self, key, value):
        self._parameters[key] = _as_parameter(value)

    @staticmethod
    def _mapping_items(entries):
        # PyTorch keeps the order of an OrderedDict or ParameterDict, sorts other mappings.
        if isinstance(entries, (OrderedDict, ParameterDict)):
            return entries.items()
        return sorted(entries.items())

    def __repr__(self):
        return _container_repr("ParameterDict", _parameter_lines(
            self._parameters.items(), lambda p: p.type()))
