# The two commands a fresh machine needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_STAMP := $(VENV)/.torch-stamp
SERVE_STAMP := $(VENV)/.serve-stamp
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0

.PHONY: setup serve test test-fast lint format bench soak worker clean

# torch first (the pinned CPU build; an unpinned torch pulls a CUDA build), on its own, so
# that the project's installs below never choose another one.
$(TORCH_STAMP):
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	touch $(TORCH_STAMP)

# What serving needs (`make serve`, `make worker`): the project and its runtime dependencies only.
$(SERVE_STAMP): pyproject.toml | $(TORCH_STAMP)
	$(BIN)/pip install -q -e .
	touch $(SERVE_STAMP)

# What testing, linting and the benchmarks need: the project with its dev tools and plots, and
# the Python client (clients/python), which tests/clients runs against a real server.
$(STAMP): pyproject.toml clients/python/pyproject.toml | $(TORCH_STAMP)
	$(BIN)/pip install -q -e '.[dev,plots]'
	$(BIN)/pip install -q -e ./clients/python
	touch $(SERVE_STAMP) $(STAMP)

setup: $(STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/atnl serve

worker: $(SERVE_STAMP)
	$(BIN)/atnl worker

# $(call apt_install,COMMANDS,PACKAGE,CONSEQUENCE): Debian's PACKAGE unless one of COMMANDS is on
# PATH, with apt-get as root or through `sudo -n`; quiet, and it never fails the build: without
# apt, root or the network it prints one line saying what it could not do and what follows.
define apt_install
@for c in $(1); do command -v $$c >/dev/null 2>&1 && exit 0; done; \
apt="$$( [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo -n apt-get )"; export DEBIAN_FRONTEND=noninteractive; \
$$apt install -y -qq $(2) >/dev/null 2>&1 || \
{ $$apt update -qq >/dev/null 2>&1 && $$apt install -y -qq $(2) >/dev/null 2>&1; } || \
echo "make: could not install $(2) (apt-get needs root or sudo -n and the network); $(3)"
endef

# Chromium for the Playground's browser tests: Debian's package, driven by Playwright (which
# downloads no browser of its own). Without it the browser tests skip and say why.
.PHONY: browser
browser:
	$(call apt_install,chromium chromium-browser,chromium,the Playground's browser tests will skip)

# redis-server for the service tests: each session starts its own on a free port (it never
# touches a running one). Without it those tests fail, saying that redis-server is missing.
.PHONY: redis
redis:
	$(call apt_install,redis-server,redis-server,the service tests will fail: they need a real redis-server)

test: setup browser redis
	$(BIN)/pytest -q

# The suite without its end-to-end tests (marked e2e: real uvicorn, worker and browser processes,
# schemathesis, the hostile sweep, the faults, the benches, and tests that train more than the tiny
# checkpoint): under 3 minutes on 2 cores, not an hour.
test-fast: setup redis
	$(BIN)/pytest -q -m "not e2e"

# The Python that ruff checks and formats; mypy checks the three packages and, strictly, the client.
PY_PATHS := models service benchmarks tests scripts docker clients

lint: setup
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/ruff format --check $(PY_PATHS)
	$(BIN)/mypy models service benchmarks
	$(BIN)/mypy --strict clients/python/atnl_client

format: setup
	$(BIN)/ruff format $(PY_PATHS)
	$(BIN)/ruff check --fix $(PY_PATHS)

bench: setup
	$(BIN)/atnl bench quality --out reports/
	$(BIN)/atnl bench fewshot --out reports/
	$(BIN)/atnl bench labels --out reports/
	$(BIN)/atnl bench service --out reports/

# A bounded soak of `atnl serve` on loopback (3 min of mixed traffic; fails on a 5xx or RSS growth >= 5 %).
soak: setup
	$(BIN)/atnl bench soak --out reports/

# Builds the images and runs docker-compose.yml end to end on the local Docker engine, then
# removes the stack (root; minutes; not part of `make test`): docs/DEPLOYMENT.md.
.PHONY: compose-test
compose-test: setup
	$(BIN)/python scripts/compose_test.py

# The virtual environment and the tools' caches; the model store (var/models), the test
# artifacts and reports/ stay.
clean:
	rm -rf $(VENV) atnl.egg-info .pytest_cache .mypy_cache .ruff_cache
	find models service benchmarks tests scripts docker -name __pycache__ -type d -prune -exec rm -rf {} +
	@echo "make clean: removed $(VENV) and the caches; kept the model store (var/models) and reports/"
