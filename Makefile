# Two commands for a newcomer: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint models bench-engine bench-load clean

$(STAMP): requirements-torch.txt requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps zennit==0.5.1
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m service

models: $(STAMP)
	$(BIN)/python -m models.train

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench-engine: $(STAMP)
	$(BIN)/python -m bench.engine

bench-load: $(STAMP)
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
