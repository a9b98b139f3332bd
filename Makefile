# Two commands set everything up on a fresh machine:
#   make book   - create .venv, install requirements.txt, run every page, build _build/html
#   make test   - same environment, run the test suite
PYTHON ?= python3
VENV ?= .venv
PARAMS ?= auto
# The study's offline weights live beside the repository; override with WEIGHTS_DIR=... or unset.
WEIGHTS_DIR ?= $(abspath ../shared/weights)
export REGISTERS_WEIGHTS_DIR ?= $(WEIGHTS_DIR)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test bench env clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

env: $(STAMP)

book: $(STAMP)
	$(PY) -m analysis build --set $(PARAMS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m analysis bench $(BENCH_ARGS)

clean:
	rm -rf _build
