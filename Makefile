# Two entry points: `make demo` and `make check`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo check lint types test spec clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m refimpl demo

check: lint types test

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

types: $(STAMP)
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .hypothesis

.PHONY: bench
bench: $(STAMP)
	$(PY) -m bench.run
