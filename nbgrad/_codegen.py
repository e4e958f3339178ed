"""Turn generated Python source into an importable module so `numba.njit(cache=True)` works.

NOTE: Numba cannot cache functions made with `exec` or closures ("no locator available"),
so generated source is written to a real `.py` file, named by a hash of its text, of the
nbgrad and numba versions and of the kernels it may call, and imported under a unique name
registered in `sys.modules`.
"""
import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings

import numba

from ._version import __version__

_loaded = {}


def _fingerprint_of_kernels():
    """A hash of nbgrad/ops, where every kernel that generated code calls is defined.

    NOTE: Numba's cache does not notice a changed callee, so an edit there must rename every
    generated module (and so compile it afresh) instead of loading stale machine code.
    """
    digest = hashlib.sha256()
    ops = os.path.join(os.path.dirname(__file__), "ops")
    for name in sorted(os.listdir(ops)):
        if name.endswith(".py"):
            with open(os.path.join(ops, name), "rb") as source:
                digest.update(source.read())
    return digest.hexdigest()[:16]


_KERNELS = _fingerprint_of_kernels()


def cache_dir():
    """`NBGRAD_CACHE_DIR`, else the user's cache directory (XDG on Linux)."""
    explicit = os.environ.get("NBGRAD_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nbgrad")


def _tolerate_corrupted_numba_cache():
    """Make an unreadable Numba cache entry a warning and a recompile, never a crash.

    NOTE: Numba raises (e.g. UnpicklingError) when a cached index or data file holds garbage;
    its loader is wrapped here so the entry is reported and compiled afresh (then rewritten).
    """
    from numba.core import caching

    load = caching.Cache.load_overload
    if getattr(load, "_nbgrad_tolerant", False):
        return

    def load_overload(self, sig, target_context):
        try:
            return load(self, sig, target_context)
        except Exception as error:  # noqa: BLE001 - any unreadable entry is bypassed
            warnings.warn(f"nbgrad: ignoring an unreadable Numba cache entry for "
                          f"{self._name} ({type(error).__name__}: {error}); recompiling",
                          RuntimeWarning)
            # Drop the broken index so the fresh compilation can be saved in its place.
            try:
                os.remove(self._cache_file._index_path)
            except (AttributeError, OSError):
                pass
            return None

    load_overload._nbgrad_tolerant = True
    caching.Cache.load_overload = load_overload


_tolerate_corrupted_numba_cache()


def _write_atomically(path, source):
    # Write to a private temporary file, then rename: two processes generating the same
    # module at once each rename a complete file over the other, never a half-written one.
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(source)
    os.replace(tmp, path)


def load_module(prefix, source):
    """Import `source` as a module written under the cache directory; return the module.

    An unwritable cache directory is reported once and replaced by a private temporary
    directory, so compilation still happens (but is not kept for the next process).
    """
    key = hashlib.sha256(f"{__version__}|{numba.__version__}|{_KERNELS}|{source}".encode()).hexdigest()[:20]
    name = f"_nbgrad_gen_{prefix}_{key}"
    if name in _loaded:
        return _loaded[name]
    path = None
    for directory in (os.path.join(cache_dir(), "generated"), None):
        try:
            if directory is None:
                directory = tempfile.mkdtemp(prefix="nbgrad-")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, name + ".py")
            existing = None
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    existing = handle.read()
            # The name is a hash of the source, so any other content is a corrupted file.
            if existing != source.encode():
                if existing is not None:
                    warnings.warn(f"nbgrad: cache file {path} was corrupted; rewriting it",
                                  RuntimeWarning)
                _write_atomically(path, source)
            break
        except OSError as error:
            warnings.warn(f"nbgrad: cache directory {directory!r} is not usable ({error}); "
                          "compiling into a temporary directory instead", RuntimeWarning)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module
