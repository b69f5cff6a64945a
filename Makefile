# Two commands for a newcomer: `make book` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= default
PARAMS ?= params/$(PROFILE).yaml
NB ?=

.PHONY: setup book notebooks html test test-lib test-notebooks chapter zoo bench bench-train bench-probe clean

setup:
	@bash scripts/setup.sh

## Execute every chapter with papermill (params/default.yaml; chapters 01 and 03 in a second lane), then build the HTML book.
book: setup notebooks html

notebooks:
	$(PY) scripts/run_notebooks.py --params $(PARAMS) --jobs 2

html:
	$(PY) scripts/build_book.py

## Rerun one chapter, e.g. `make chapter NB=04 PARAMS=params/full.yaml`, then rebuild the HTML.
chapter: setup
	@test -n "$(NB)" || (echo "usage: make chapter NB=04 [PARAMS=params/full.yaml]" && exit 2)
	$(PY) scripts/run_notebooks.py --params $(PARAMS) --only $(NB)
	$(PY) scripts/build_book.py

## Unit tests, then every chapter end to end on the smoke profile.
test: setup
	$(PY) -m pytest

test-lib: setup
	$(PY) -m pytest -m "not notebook and not browser"

## Train the designed default zoo (resumable; estimated 1.5 hours on 2 idle cores; --dry-run prints the plan).
## ZOO_OUT=dir trains into another directory (default data/zoo).
zoo: setup
	$(PY) scripts/train_zoo.py $(if $(ZOO_OUT),--out $(ZOO_OUT))

## NNK speed and memory (benchmarks/results/nnk.json): per size, side by side, faiss exact kNN alone,
## the kNN stage, the torch search, nnk_graph, the authors' route (faiss + a QP per node in Python),
## faiss / kNN stage / nnk_graph alternated in one process (--rounds, default 3)
## and the approximate candidate modes (recall and MGM change on sampled nodes), up to 1M x 256.
## BENCH_ARGS="--quick" for a smoke run; BENCH_ARGS="--configs 10000x512" for one size.
bench: setup
	$(PY) benchmarks/nnk.py $(BENCH_ARGS)

## Training speed: SimCLR step breakdown and images/s, first-zoo settings vs the new ones (benchmarks/results/train.json).
bench-train: setup
	$(PY) benchmarks/train.py

## Linear-probe speed on 2,048-d features, 10 and 100 classes (benchmarks/results/probe.json).
bench-probe: setup
	$(PY) benchmarks/probe.py

clean:
	rm -rf _build chapters
