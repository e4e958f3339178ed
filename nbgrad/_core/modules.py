"""Turn generated Python source into an importable module so `numba.njit(cache=True)` works.

NOTE: Numba cannot cache functions made with `exec` or closures ("no locator available"),
so generated source is written to a real `.py` file, named by a hash of its text, of the
nbgrad and numba versions and of the kernels it may call, and imported under a unique name
registered in `sys.modules`.
"""
import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings

import numba

from .._version import __version__

_loaded = {}


def _fingerprint_of_kernels():
    """A hash of nbgrad/ops, where every kernel that generated code calls is defined.

    NOTE: Numba's cache does not notice a changed callee, so an edit there must rename every
    generated module (and so compile it afresh) instead of loading stale machine code.
    """
    digest = hashlib.sha256()
    ops = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ops")
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


class _ForeignCacheEntry(Exception):
    """A Numba cache data file holds the compilation of another function or signature."""


def _tolerate_corrupted_numba_cache():
    """Make an unreadable or foreign Numba cache entry a warning and a recompile, never a
    crash or a wrong kernel.

    NOTE: Numba raises (e.g. UnpicklingError) when a cached index or data file holds garbage;
    its loader is wrapped here so the entry is reported and compiled afresh (then rewritten).
    NOTE: Numba does not check that a data file (.nbc) its index points to holds what the
    index stored there: a valid file of another function (files swapped or copied) would be
    loaded and run with the wrong arguments. Each entry's function and signature are checked
    against what is being loaded, before Numba links its machine code into the process.
    """
    from numba.core import caching, sigutils

    load = caching.Cache.load_overload
    if getattr(load, "_nbgrad_tolerant", False):
        return

    def _load_overload(self, sig, target_context):
        # Numba's Cache._load_overload (0.68), with the check between reading and rebuilding.
        if not self._enabled:
            return None
        data = self._cache_file.load(self._index_key(sig, target_context.codegen()))
        if data is None:
            return None
        if isinstance(self._impl, caching.CompileResultCacheImpl):
            fndesc, signature = data[1], data[3]
            stored = (fndesc.modname, fndesc.qualname, tuple(signature.args))
            wanted = (self._py_func.__module__, self._py_func.__qualname__,
                      tuple(sigutils.normalize_signature(sig)[0]))
            if stored != wanted:
                raise _ForeignCacheEntry(f"it holds {stored[0]}.{stored[1]}{stored[2]}, not "
                                         f"{wanted[0]}.{wanted[1]}{wanted[2]}")
        return self._impl.rebuild(target_context, data)

    def load_overload(self, sig, target_context):
        target_context.refresh()
        try:
            with self._guard_against_spurious_io_errors():
                return _load_overload(self, sig, target_context)
        except Exception as error:  # noqa: BLE001 - any unreadable entry is bypassed
            warnings.warn(f"nbgrad: ignoring an unreadable or foreign Numba cache entry for "
                          f"{self._name} ({type(error).__name__}: {error}); recompiling",
                          RuntimeWarning, stacklevel=2)
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


_private = None  # this process's temporary directory, if the cache directory is not usable


def _private_directory():
    """One temporary directory for the process, removed when it exits."""
    global _private
    if _private is None:
        _private = tempfile.mkdtemp(prefix="nbgrad-")
        atexit.register(shutil.rmtree, _private, ignore_errors=True)
    return _private


def load_module(prefix, source):
    """Import `source` as a module written under the cache directory; return the module.

    An unwritable cache directory is reported once and replaced by this process's temporary
    directory (`_private_directory`), so compilation still happens (but is not kept for the
    next process).

    NOTE: a module in the temporary directory is compiled without Numba's cache: its
    entries would be filed under that directory's path, which no other process has, and
    would stay in NUMBA_CACHE_DIR after the directory is gone.
    """
    key = hashlib.sha256(f"{__version__}|{numba.__version__}|{_KERNELS}|{source}".encode()).hexdigest()[:20]
    name = f"_nbgrad_gen_{prefix}_{key}"
    if name in _loaded:
        return _loaded[name]
    path = None
    shared = os.path.join(cache_dir(), "generated")
    for directory in ((shared,) if _private is None else ()) + (None,):
        try:
            if directory is None:
                directory = _private_directory()
                source = source.replace("cache=True", "cache=False")
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
                                  RuntimeWarning, stacklevel=2)
                _write_atomically(path, source)
            break
        except OSError as error:
            warnings.warn(f"nbgrad: cache directory {directory!r} is not usable ({error}); "
                          "compiling into a temporary directory instead", RuntimeWarning,
                          stacklevel=2)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module
