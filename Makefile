# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Kernels compile once per checkout, not once per process.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export NBGRAD_CACHE_DIR ?= $(CURDIR)/.cache/nbgrad
# nbgrad's own modules (an editable install, which pip does not byte-compile) are compiled to
# bytecode once, not again in each process: the tests, the notebooks and the compile helper
# start many, and importing nbgrad from source takes 0.3 s longer (0.7 against 0.4 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,notebooks,bench,examples,lint]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[examples]'
	touch $@

# pytest on two workers (worksteal: a worker that runs out of tests takes some of the other's,
# so the long tests at the end do not run on one of them alone). A cold cache compiles about a
# thousand fused kernels (the three-mode tests of tests/ops/test_modes.py): keep the whole run
# under 20 min on 2 cores.
test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=30 tests
	cd asv_benchmarks && ../$(PY) -m asv machine --yes >/dev/null && \
		../$(PY) -m asv run --python=same --quick --dry-run --show-stderr

demo: $(VENV)/.installed-demo
	$(PY) -m nbgrad.examples.digits

bench: $(VENV)/.installed-test
	$(PY) asv_benchmarks/compare.py

clean:
	rm -rf .cache asv_benchmarks/results asv_benchmarks/html asv_benchmarks/env
