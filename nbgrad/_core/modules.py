"""Turn generated Python source into an importable module so `numba.njit(cache=True)` works.

NOTE: Numba cannot cache functions made with `exec` or closures ("no locator available"),
so generated source is written to a real `.py` file, named by a hash of its text, of the
nbgrad and numba versions and of the nbgrad sources it calls (`_called_files`), and imported
under a unique name registered in `sys.modules`.
"""
import atexit
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import warnings

import numba

from .._version import __version__

_loaded = {}

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # nbgrad's directory


def _digests_of_package():
    """The sha256 of each source file of nbgrad (path -> hex digest), read at import (2 ms).

    NOTE: read once, so a generated module is keyed by the code this process runs: a file
    edited after the import (the process still runs the old code, and Numba compiles that
    into the callers) must not name what goes into the cache.
    """
    digests = {}
    for directory, _, names in os.walk(_PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    digests[path] = hashlib.sha256(handle.read()).hexdigest()
    return digests


_DIGESTS = _digests_of_package()

# The names under which Numba compiles a function into its caller (decorators and their
# factories: `_jit = numba.njit(...)`, `@overload(...)`, `@intrinsic`).
_NUMBA_COMPILERS = frozenset({"jit", "njit", "generated_jit", "vectorize", "guvectorize",
                              "cfunc", "stencil", "overload", "overload_method",
                              "overload_attribute", "intrinsic", "register_jitable"})

# A module-level import statement: `from <module> import <names>` (names in parentheses may
# span lines) or `import <modules>`. NOTE: read as text, not parsed (parsing every file a
# generated module reaches took 30 ms of each warm start): an import written at the start of
# a line inside a string (a template of generated source) counts too, which can only add a
# file to a key, never leave one out.
_IMPORT = re.compile(r"^(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)"
                     r"|import[ \t]+([^\n]*))", re.MULTILINE)
_NUMBA_COMPILER = re.compile(r"\b(?:" + "|".join(sorted(_NUMBA_COMPILERS)) + r")\b")


def _module_file(module):
    """The source file of the nbgrad module named `module` (dotted), or None."""
    parts = module.split(".")
    if parts[0] != "nbgrad":
        return None
    base = os.path.join(_PACKAGE, *parts[1:])
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if path in _DIGESTS:
            return path
    return None


def _imported_files(text, package):
    """The nbgrad files that the import statements in source `text` bind names from. A
    name that is a submodule binds that module, any other an attribute of the module
    imported from; `package` (a list of names) is where a relative import starts."""
    files = set()
    for origin, names, modules in _IMPORT.findall(text):
        if modules:
            files.update(_module_file(name.split(" as ")[0].strip())
                         for name in modules.split("#")[0].split(","))
            continue
        level = len(origin) - len(origin.lstrip("."))
        base = package[:len(package) - level + 1] if level else []
        module = ".".join(base + ([origin[level:]] if origin[level:] else []))
        for line in names.strip("()").split("\n"):
            for name in line.split("#")[0].split(","):
                name = name.split(" as ")[0].strip()
                if name:
                    files.add(_module_file(f"{module}.{name}") or _module_file(module))
    files.discard(None)
    return files


@functools.cache
def _facts(path):
    """(the nbgrad files the module at `path` imports from, whether it compiles code with
    Numba)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    # The package a relative import starts from (that of a module, or the package itself).
    package = os.path.relpath(path, os.path.dirname(_PACKAGE)).split(os.sep)[:-1]
    # NOTE: a compiler's name in a comment or docstring counts too: a larger key, never a
    # stale one.
    compiles = _NUMBA_COMPILER.search(text) is not None
    return frozenset(_imported_files(text, package)), compiles


def _called_files(source):
    """The nbgrad source files whose code or values generated `source` may have compiled
    into it: the modules it imports from; every module that a module with Numba-compiled
    code (njit functions, overloads) imports from; and every module with compiled code that
    these import, transitively (a callee of a callee, or one re-exported by another module).

    NOTE: Numba's cache checks only the file of the function it compiles, not its callees,
    nor the globals it froze into the machine code as constants: a changed njit kernel or
    overload (such as `typed`) in another module would load stale machine code. Hashing these
    files renames the generated module instead, and only when something it can call or read
    changed: an edit of an ops module it does not reach recompiles nothing.
    NOTE: a constant re-exported into a module with compiled code through a module without
    any is not followed (nbgrad's kernels read constants from their own module).
    """
    direct = _imported_files(source, [])
    called, seen, pending = set(direct), set(direct), list(direct)
    while pending:
        imports, compiles = _facts(pending.pop())
        for path in imports:
            if compiles or _facts(path)[1]:
                called.add(path)
            if path not in seen:
                seen.add(path)
                pending.append(path)
    return sorted(called)


def _module_key(source):
    """What names a generated module: its text, the sources it calls, nbgrad's and numba's
    versions."""
    digest = hashlib.sha256(f"{__version__}|{numba.__version__}|".encode())
    for path in _called_files(source):
        digest.update(f"{os.path.relpath(path, _PACKAGE)}:{_DIGESTS[path]}|".encode())
    digest.update(source.encode())
    return digest.hexdigest()[:20]


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


def uses_private_directory():
    """Whether this process generates its modules in its own temporary directory."""
    return _private is not None


def load_module(prefix, source):
    """Import `source` as a module written under the cache directory; return the module.

    An unwritable cache directory is reported once and replaced by this process's temporary
    directory (`_private_directory`), so compilation still happens (but is not kept for the
    next process).

    NOTE: a module in the temporary directory is compiled without Numba's cache: its
    entries would be filed under that directory's path, which no other process has, and
    would stay in NUMBA_CACHE_DIR after the directory is gone.
    """
    name = f"_nbgrad_gen_{prefix}_{_module_key(source)}"
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
