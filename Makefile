# The two commands a fresh machine needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0

.PHONY: setup serve test lint format bench worker clean

# torch first (the pinned CPU build on disk; an unpinned torch pulls a CUDA
# build), then the project and its dev tools.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,plots]'
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/atnl serve

worker: setup
	$(BIN)/atnl worker

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check models service benchmarks tests
	$(BIN)/ruff format --check models service benchmarks tests
	$(BIN)/mypy models service benchmarks

format: setup
	$(BIN)/ruff format models service benchmarks tests
	$(BIN)/ruff check --fix models service benchmarks tests

bench: setup
	$(BIN)/atnl bench quality --out reports/
	$(BIN)/atnl bench fewshot --out reports/
	$(BIN)/atnl bench service --out reports/

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
