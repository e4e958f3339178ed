"""Execute every teaching notebook in notebooks/ and fail on any cell error.

The kernel is started with this interpreter (``sys.executable``), whatever kernelspec
``python3`` happens to resolve to on the machine, so the notebooks run against the same
environment (and the same nbgrad) as the rest of the test suite.
"""

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


def _kernel_manager():
    km = KernelManager(kernel_name="python3")
    # Pin the kernel to this interpreter: a user-level python3 kernelspec may point elsewhere.
    km.kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return km


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=600,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    # Raises nbclient.exceptions.CellExecutionError (with the cell source and traceback)
    # on the first cell that errors.
    client.execute()
