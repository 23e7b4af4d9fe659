# The two commands of the README quick start live here: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs, so both work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the project needs at run time (fonts and data sets ship in these).
DEBIAN_PACKAGES ?= fonts-nanum fonts-unfonts-core fonts-baekmuk fonts-alee fonts-wqy-zenhei dataset-fashion-mnist librsvg2-bin chromium chromium-driver postgresql
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch from the local wheel; must come before the project so nothing pulls CUDA builds.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[fast,faiss,train,serve,study,dev]"
	touch $(STAMP)

install: $(STAMP)
	bash scripts/install_debian.sh $(DEBIAN_PACKAGES)

demo: install
	$(PY) -m pairsim demo

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks are run by hand on a quiet machine; each writes its results under benchmarks/results/.
bench: install
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
