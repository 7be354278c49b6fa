# Maildesk: `make run` sets everything up and starts the portal; `make test` runs the suite.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MAILDESK_PORT ?= 8000
export MAILDESK_PORT

.PHONY: run test lint format bench chaos smoke clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Maildesk needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.run-installed

## run: install, migrate, create demo accounts, start web + worker + emulator on 127.0.0.1
run: $(VENV)/.run-installed
	$(BIN)/python scripts/init_env.py
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --url http://127.0.0.1:$(MAILDESK_PORT)/
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start

## test: the whole test suite (lint and Django's checks first)
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff, Django's checks, and no missing migrations
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the benchmarks (bounded; prints ratios measured side by side; see docs/performance.md)
bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

## chaos: the fault-injection suite against the real pieces (needs PostgreSQL, redis-server)
chaos: $(VENV)/.dev-installed
	$(BIN)/python -m chaos $(CHAOS_ARGS)

## smoke: what a newcomer does: fresh clone, `make run`, log in
smoke:
	bash .ci/smoke-make-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
