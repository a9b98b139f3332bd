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

OFFLINE_MODEL := vit_tiny_patch16_224.augreg_in21k_ft_in1k

.PHONY: book test bench env clean weights images

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

# (connected machine) the study's offline model into WEIGHTS_DIR, e.g. for the GitHub workflow
weights: $(STAMP)
	$(PY) -m analysis fetch $(OFFLINE_MODEL) --to $(WEIGHTS_DIR)

# (connected machine) Imagenette's validation split into data/imagenette: the paper set's images and class probe
images: data/imagenette

data/imagenette: | $(STAMP)
	$(PY) -m analysis fetch-images imagenette --to $@

clean:
	rm -rf _build
