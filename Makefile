# The two quick-start commands:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tokenpool demo

# RUNNER lets CI run the same tests under coverage: make test RUNNER="$(BIN)/coverage run"
RUNNER ?= $(BIN)/python
test: $(STAMP)
	$(RUNNER) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .coverage .coverage.* .mypy_cache .ruff_cache
