# The README's commands. Everything installs into .venv from scratch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: install install-dev demo dev test test-fast lint format image bench validate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: SQLite app database, small seed, every job and asset run in-process
demo: install
	$(BIN)/ops-platform demo $(DEMO_ARGS)

## dev: the Dagster UI (and daemon) on the demo's instance: http://127.0.0.1:3000
dev: install
	$(BIN)/python -m ops_platform.local_instance
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## lint: ruff format and ruff check, as CI enforces them
lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

## format: rewrite the tree the way `lint` wants it
format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## test: lint, then every test, on SQLite and Postgres
test: lint
	@test -x /usr/bin/chromium || echo "make test: /usr/bin/chromium is missing, so the browser tests will be SKIPPED; install it with: sudo apt-get install chromium (bash .ci/run does), or use make test-fast" >&2
	$(BIN)/pytest

## test-fast: the unit and database tests only, without end-to-end processes or a browser
test-fast: lint
	$(BIN)/pytest -m "not e2e"

## image: the one container image (podman or docker), built with no registry
image: install-dev
	PYTHON=$(CURDIR)/$(BIN)/python deploy/image/build.sh $(IMAGE)

## bench: scale benchmarks on Postgres (OPS_BENCH_POSTGRES_URL), not part of `make test`
bench: install-dev
	$(BIN)/python -m benchmarks

validate: install
	$(BIN)/dagster definitions validate -m ops_platform.definitions

clean:
	rm -rf .dagster .ops_platform
