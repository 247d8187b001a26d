# Two entry points: `make demo` and `make check`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo check lint types bytecode test spec trace clean soak oom-sweep property-thorough bench conformance mutation cport

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m refimpl demo

check: lint types cport test trace

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

types: $(STAMP)
	$(PY) -m mypy

# Every conformance case starts a fresh driver process: compiled modules spare each one
# compiling refimpl/ anew where PYTHONDONTWRITEBYTECODE is set (compileall writes regardless).
bytecode: $(STAMP)
	$(PY) -m compileall -q refimpl

# One pytest worker per core; a test waits on its child processes as often as it computes.
test: bytecode
	$(PY) -m pytest -n auto --dist worksteal

# The example C port (examples/c-port) as the shared library the C ABI driver loads.
cport:
	$(MAKE) -C examples/c-port

spec: $(STAMP)
	$(PY) tools/trace.py spec

# Every rule has a passing test, every test cites known rules (reads build/trace.json).
trace: $(STAMP)
	$(PY) tools/trace.py check

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .hypothesis
	find refimpl -name __pycache__ -prune -exec rm -rf {} +
	$(MAKE) -C examples/c-port clean

# The full soak (not part of `check`): 20,000 hostile scripts; prints the balanced counters.
soak: $(STAMP)
	$(PY) tests/hostile/hostile_soak.py --scripts 20000

# The table of flows x allocation points that survive an injected allocation failure.
oom-sweep: $(STAMP)
	$(PY) tests/hostile/hostile_oom.py

# Far more Hypothesis examples and steps than `check` runs.
property-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest tests/property tests/hostile

# Costs against their stdlib and raw-lupa baselines, as ratios (not part of `check`).
bench: $(STAMP)
	$(PY) -m bench.run

# The conformance report against a driver, at a level (quick, standard, thorough), with any of
# --seed N, --case NAME, --replay FILE, --stress OPS in CONFORMANCE_ARGS:
#   make conformance DRIVER="python -m refimpl.driver" LEVEL=quick
#   make conformance CONFORMANCE_ARGS="--replay build/conformance/failures/stateful_queue-0.jsonl"
DRIVER ?= python -m refimpl.driver
LEVEL ?= standard
conformance: bytecode
	$(PY) -m refimpl.conformance --driver "$(DRIVER)" --level $(LEVEL) $(CONFORMANCE_ARGS)

# Mutation score of the conformance suite over refimpl/ with mutmut, in process and, for every
# 10th mutant, through the driver (long; not part of check). Report: build/mutation/report.md.
#   make mutation MODULES="action_queue state_pool" MUTATION_ARGS="--driver-all"
#   make mutation MODULES=script_runner MUTATION_ARGS="--every 8"   (a sample, in process)
mutation: $(STAMP)
	$(PY) tools/mutate.py $(MODULES) $(MUTATION_ARGS)
