# Two entry points, each creating its own virtual environment when needed:
#   make run   NODE=central [ARGS="--start-pub-hello 30"]   start a node (embedded broker by default)
#   make test                                                 the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE   ?= central
HOME_DIR ?= node-home/$(NODE)
ARGS   ?=

.PHONY: run test lint typecheck ci clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# `make run` needs the runtime dependencies only; `make test` and the linters add the test
# tools (which include them). Each stamp is redone when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/steward-otp run --node-name $(NODE) --home $(HOME_DIR) $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench examples

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict src tests

ci: test lint typecheck

clean:
	rm -rf $(VENV) node-home .pytest_cache .mypy_cache .ruff_cache .hypothesis
