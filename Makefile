# One entry point for everything. Targets install what they need into .venv first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-slow test-all lint fmt bench demo clean browser

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install strangler with its dev extras

test: $(STAMP)  ## run the test suite against real embedded servers (skips the slow tests)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)  ## only the slow tests: the chaos harness's short run, the long fuzzing run
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)  ## the whole suite, slow tests included
	$(BIN)/pytest $(PYTEST_ARGS)

browser:  ## Debian's Chromium for the dashboard's browser tests (they skip without it)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }
	@chromium --version

lint: $(STAMP)  ## ruff (lint + format check), mypy --strict on src/, and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## the benchmarks (figures go in README.md)
	$(BIN)/python bench/stores.py
	$(BIN)/python bench/facade.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/follow.py
	$(BIN)/python bench/chaos.py

demo: $(STAMP)  ## start embedded MongoDB + Postgres with legacy data and the schema applied
	$(BIN)/strangler demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts .strangler-demo
