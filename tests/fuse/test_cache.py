"""The name of a generated module (nbgrad._core.modules): keyed by its text and by the nbgrad
sources it calls, so that an edit of a kernel it calls compiles it afresh (Numba's own cache
does not notice a changed callee) and an edit of any other module does not.

"Editing" a file here is changing its digest in `_DIGESTS` (what the process read at import);
the rule itself is checked on a small package of its own in a temporary directory.
"""
import os
import textwrap

import pytest

import nbgrad
from nbgrad._core import modules as _codegen

PACKAGE = os.path.dirname(os.path.abspath(nbgrad.__file__))
KERNEL_SUPPORT = os.path.join(PACKAGE, "_core", "kernel_support.py")
SCALAR_MATH = os.path.join(PACKAGE, "_core", "scalar_math.py")
CALLS_TYPED = "from nbgrad._core.kernel_support import typed\n\nVALUE = typed\n"


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NBGRAD_CACHE_DIR", str(tmp_path))


def edit(monkeypatch, path):
    assert path in _codegen._DIGESTS, path
    monkeypatch.setitem(_codegen._DIGESTS, path, "edited")


def name_of(source):
    return _codegen.load_module("probe", source).__name__


def test_a_module_not_imported_leaves_the_name_unchanged(cache, monkeypatch):
    before = name_of(CALLS_TYPED)
    for name in os.listdir(os.path.join(PACKAGE, "ops")):
        if name.endswith(".py"):
            edit(monkeypatch, os.path.join(PACKAGE, "ops", name))
    assert name_of(CALLS_TYPED) == before


def test_an_imported_module_changes_the_name(cache, monkeypatch):
    before = name_of(CALLS_TYPED)
    edit(monkeypatch, KERNEL_SUPPORT)
    assert name_of(CALLS_TYPED) != before


def test_the_text_and_the_versions_change_the_name(cache, monkeypatch):
    before = name_of(CALLS_TYPED)
    assert name_of(CALLS_TYPED + "OTHER = 2\n") != before
    monkeypatch.setattr(_codegen, "__version__", "0.0.0+edited")
    assert name_of(CALLS_TYPED) != before


def test_the_eager_kernels_follow_what_they_call():
    """The generated elementwise module calls kernel_support's overloads and scalar_math's
    functions (PyTorch's scalar formulas) only: its cache key follows both files."""
    source = nbgrad.ops.elementwise._generate_module(parallel=False)
    assert sorted(_codegen._called_files(source)) == sorted([KERNEL_SUPPORT, SCALAR_MATH])


# ---------------------------------------------------------------------------------------------
# The rule, on a package of its own.

FILES = {
    # The module a generated source imports a kernel from: Numba compiles `kernel` into it,
    # with what `kernel` calls and the globals it reads.
    "kernels.py": """
        import numba
        from .callees import callee
        from . import values
        from .sub import reexport

        @numba.njit
        def kernel(x):
            return callee(x) + values.OFFSET + reexport.deep(x)
    """,
    "callees.py": """
        from numba.extending import overload
        from .deepest import deepest

        def callee(x):
            return x

        @overload(callee)
        def _callee(x):
            return lambda x: deepest(x)
    """,
    "deepest.py": """
        import numba

        _jit = numba.njit(cache=True)

        @_jit
        def deepest(x):
            return x
    """,
    # No compiled code, but values Numba freezes into `kernel`.
    "values.py": "OFFSET = 2\n",
    # Run by the import of sub.reexport, but nothing of it is bound where `kernel` reads.
    "sub/__init__.py": "from .. import unrelated\n",
    # No compiled code, a re-export of some.
    "sub/reexport.py": "from ..deep import deep\n",
    "deep.py": """
        import numba

        @numba.njit
        def deep(x):
            return x
    """,
    "unrelated.py": """
        import numba

        @numba.njit
        def unrelated(x):
            return x
    """,
}
CALLED = ["callees.py", "deep.py", "deepest.py", "kernels.py", "sub/reexport.py", "values.py"]


@pytest.fixture
def package(monkeypatch, tmp_path):
    root = tmp_path / "nbgrad"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.setattr(_codegen, "_PACKAGE", str(root))
    monkeypatch.setattr(_codegen, "_DIGESTS", _codegen._digests_of_package())
    return root


def called(source, root):
    return sorted(os.path.relpath(path, root) for path in _codegen._called_files(source))


@pytest.mark.parametrize("source", [
    "from nbgrad.kernels import kernel as _kernel\n",
    "import numpy as np\nfrom nbgrad import kernels\n",
    "import nbgrad.kernels\n",
])
def test_the_sources_a_generated_module_calls(package, source):
    assert called(source, package) == CALLED


def test_a_source_without_nbgrad_imports_calls_nothing(package):
    assert called("from _nbgrad_gen_reduction_0123 import sum as _sum\nVALUE = 1\n",
                  package) == []
    # A module with compiled code reached only through the importing module's namespace.
    assert called("from nbgrad.sub.reexport import deep\n", package) == ["deep.py",
                                                                         "sub/reexport.py"]


def test_the_key_follows_exactly_the_called_sources(package, monkeypatch):
    source = "from nbgrad.kernels import kernel as _kernel\n"
    before = _codegen._module_key(source)
    for name in FILES:
        with monkeypatch.context() as patch:
            edit(patch, str(package / name))
            changed = _codegen._module_key(source) != before
        assert changed == (name in CALLED), name
