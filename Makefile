# Two commands for a newcomer: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: serve test lint models bench-engine bench-transformer bench-load bench-text bench-faithfulness clean

# What serving needs, every package pinned (requirements.txt holds torch's and FastAPI's dependencies too).
$(RUNTIME): requirements-torch.txt requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	! $(BIN)/pip check | grep -vE '^(zennit|lxt) [^ ]+ requires|^No broken requirements'  # test oracles: --no-deps
	touch $(RUNTIME)

# Test, lint and training tools on top.
$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps zennit==0.5.1
	$(BIN)/pip install --quiet --no-deps lxt==2.1
	touch $(DEV)

serve: $(RUNTIME)
	$(BIN)/python -m service

models: $(DEV)
	$(BIN)/python -m models.train

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench-engine: $(DEV)
	$(BIN)/python -m bench.engine

bench-transformer: $(DEV)
	$(BIN)/python -m bench.transformer

bench-load: $(DEV)
	$(BIN)/python -m bench.load

bench-text: $(DEV)
	$(BIN)/python -m bench.text_load

bench-faithfulness: $(DEV)
	$(BIN)/python -m bench.faithfulness

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
