# The two commands of the README: `make demo` and `make test`. Both create .venv if missing and
# install the exact versions of requirements.lock (refreshed by `make lock`, see README "Dependencies").
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# The pip that installs the lock and the pip-tools that writes it (pinned: a tool release must not
# change what gets installed).
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
# The GLUE data: AIRTUNE_DATA_DIR if set, else ../shared/data/glue when that folder exists.
ifeq ($(AIRTUNE_DATA_DIR),)
ifneq ($(wildcard ../shared/data/glue),)
export AIRTUNE_DATA_DIR := $(abspath ../shared/data/glue)
endif
endif
export OMP_NUM_THREADS ?= 2

.PHONY: demo test lint install bench lock test-latest clean

# Locked install: every package at its locked version (torch==2.13.0 included), then airtune itself
# without dependencies and without build isolation, so that nothing outside the lock is resolved.
$(STAMP): pyproject.toml $(LOCK)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet "pip==$(PIP_VERSION)"
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/airtune run

test: lint
	$(BIN)/python -m pytest -q

# Lint (ruff.toml) on the whole tree and types (pyproject [tool.mypy]: strict on wireless/,
# allocation/ and lora/ops*), in every make test.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

# Refresh the lock to the newest versions pyproject.toml's ranges allow (then: make test, commit).
lock:
	test -d .venv-lock || $(PY) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet "pip==$(PIP_VERSION)" "pip-tools==$(PIP_TOOLS_VERSION)"
	.venv-lock/bin/pip-compile --quiet --upgrade --extra dev --extra flower --extra tracking --strip-extras --allow-unsafe \
	    --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

# For maintainers, not CI: the suite against the newest releases the ranges allow, in a throw-away
# venv (.venv-latest); the versions it got are written to .venv-latest/versions.txt.
test-latest:
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade -e ".[dev]"
	.venv-latest/bin/pip freeze --exclude-editable > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-lock .venv-latest runs .pytest_cache
