# The two commands a fresh machine needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0

.PHONY: setup serve test lint format bench soak worker clean

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

# Chromium for the Playground's browser tests: Debian's package, driven by Playwright (which
# downloads no browser of its own). Quiet, skipped when one is on PATH, and never fails the
# build: without apt, root or the network the browser tests skip and say why.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  apt="$$( [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo -n apt-get )"; export DEBIAN_FRONTEND=noninteractive; \
	  $$apt install -y -qq chromium >/dev/null 2>&1 || \
	  { $$apt update -qq >/dev/null 2>&1 && $$apt install -y -qq chromium >/dev/null 2>&1; }; \
	} || echo "make: could not install chromium; the Playground's browser tests will skip"

test: setup browser
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

# A bounded soak of `atnl serve` on loopback (3 min of mixed traffic; fails on a 5xx or RSS growth >= 5 %).
soak: setup
	$(BIN)/atnl bench soak --out reports/

# Builds the images and runs docker-compose.yml end to end on this machine, then removes the
# stack (root; minutes; not part of `make test`): README, "docker compose".
.PHONY: compose-test
compose-test: setup
	$(BIN)/python scripts/compose_test.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
