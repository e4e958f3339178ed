"""Run a PyTorch script on nbgrad, unedited: `python -m nbgrad.compat script.py [args...]`.

While the script runs, `import torch` gives `nbgrad`, and `import torch.<name>` (or
`from torch.<name> import ...`) gives `nbgrad.<name>`: `torch.nn`, `torch.nn.functional`,
`torch.optim`, `torch.autograd`, `torch.utils.data`, `torch.linalg` and the rest. A teacher can
try their own material this way before changing a line of it.

When the script stops on something nbgrad does not have (a function, a method, a module), the
runner says which PyTorch API is missing and at which line of the script, after the usual
traceback. Any other error is the script's own and is reported as Python reports it.
"""
import importlib
import importlib.abc
import importlib.util
import os
import re
import runpy
import sys
import traceback
import types

from ._tensor.tensor import Tensor

_TORCH = "torch"
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)'")
# PyTorch's modules -> nbgrad's (the first that matches a name, and its submodules).
_ALIASES = (("torchvision.models", "nbgrad.models"), (_TORCH, "nbgrad"))
# Packages whose only modules are aliases: `import torchvision` gives an empty package, and
# its other modules (`torchvision.transforms`) are missing.
_HOLDERS = ("torchvision",)


def _renamed(name, pairs):
    for source, target in pairs:
        if name == source or name.startswith(source + "."):
            return target + name[len(source):]
    return None


def _nbgrad_name(torch_name):
    return _renamed(torch_name, _ALIASES) or "nbgrad"


def _torch_name(nbgrad_name):
    return _renamed(nbgrad_name, [(target, source) for source, target in _ALIASES])


class TorchAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook that answers `torch` and `torch.*` with `nbgrad` and `nbgrad.*`, and
    `torchvision.models` with `nbgrad.models`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _HOLDERS and fullname.split(".")[0] not in (_TORCH, *_HOLDERS):
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname in _HOLDERS)

    def create_module(self, spec):
        if spec.name in _HOLDERS:
            return types.ModuleType(spec.name)
        if _renamed(spec.name, _ALIASES) is None:  # another module of a holder
            raise ModuleNotFoundError(f"nbgrad has no module for {spec.name!r}", name=spec.name)
        # NOTE: the nbgrad module itself is returned, so `torch.nn is nbgrad.nn`; the import
        # system keeps its own __name__ and __spec__ (it only fills in missing ones).
        try:
            return importlib.import_module(_nbgrad_name(spec.name))
        except ModuleNotFoundError as error:
            if error.name != _nbgrad_name(spec.name):
                raise  # a module nbgrad itself failed to import
            raise ModuleNotFoundError(f"nbgrad has no module for {spec.name!r} (import torch as nbgrad: "
                                      f"{_nbgrad_name(spec.name)} does not exist)", name=spec.name) from None

    def exec_module(self, module):
        pass  # already imported by create_module


def install():
    """Map `torch` to `nbgrad` in this process, for imports made from now on."""
    if not any(isinstance(finder, TorchAlias) for finder in sys.meta_path):
        sys.meta_path.insert(0, TorchAlias())


def missing_api(error):
    """The PyTorch name that `error` shows nbgrad lacks (`torch.nn.Bilinear`,
    `torch.Tensor.unfold`), or None when the error is not about a missing name."""
    if isinstance(error, ModuleNotFoundError) and (error.name or "").startswith(_TORCH):
        return error.name
    if isinstance(error, ImportError) and not isinstance(error, ModuleNotFoundError):
        # "cannot import name 'X' from 'nbgrad.nn' (...)": X is the missing name
        # (Python 3.12 has it as `name_from`; 3.10 and 3.11 only in the message).
        found = _CANNOT_IMPORT.match(str(error))
        module = error.name or ""
        if found and module.startswith("nbgrad"):
            return f"{_torch_name(module)}.{found.group(1)}"
        return None
    if isinstance(error, AttributeError) and error.name is not None:
        owner = error.obj
        if isinstance(owner, types.ModuleType) and owner.__name__.startswith("nbgrad"):
            return f"{_torch_name(owner.__name__)}.{error.name}"
        if isinstance(owner, Tensor) or owner is Tensor:
            return f"torch.Tensor.{error.name}"
        if type(owner).__module__.startswith("nbgrad"):
            return f"{type(owner).__name__}.{error.name} (an nbgrad object)"
    return None


def _script_line(error, path):
    """The line of the script (`path`) where `error` went through last, or None."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.abspath(frame.filename) == path:
            line = frame
    return line


def run(path, argv=()):
    """Run the script at `path` as `__main__` with `torch` mapped to nbgrad. Returns the exit
    status: 0, or 1 after reporting an error."""
    path = os.path.abspath(path)
    install()
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as error:  # noqa: BLE001  (reported, then the exit status says it failed)
        # The traceback from the script's first frame on (not the runner's and runpy's).
        frames = error.__traceback__
        while frames is not None and os.path.abspath(frames.tb_frame.f_code.co_filename) != path:
            frames = frames.tb_next
        traceback.print_exception(type(error), error, frames or error.__traceback__)
        where = _script_line(error, path)
        at = f"{where.filename}:{where.lineno}: {where.line}" if where else path
        missing = missing_api(error)
        if missing:
            print(f"\nnbgrad.compat: nbgrad lacks {missing}, which the script uses at\n  {at}",
                  file=sys.stderr)
        else:
            print(f"\nnbgrad.compat: the script stopped with {type(error).__name__} at\n  {at}",
                  file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
