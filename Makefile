# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The GLUE data: AIRTUNE_DATA_DIR if set, else ../shared/data/glue when that folder exists.
ifeq ($(AIRTUNE_DATA_DIR),)
ifneq ($(wildcard ../shared/data/glue),)
export AIRTUNE_DATA_DIR := $(abspath ../shared/data/glue)
endif
endif
export OMP_NUM_THREADS ?= 2

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/airtune run

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

clean:
	rm -rf $(VENV) runs .pytest_cache
