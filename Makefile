# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install services bench clean

$(BIN)/dispatcher: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(BIN)/dispatcher

demo: install
	$(BIN)/python scripts/demo.py

services:
	bash scripts/ensure-services.sh

test: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install services
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .run dispatcher.db dispatcher.db-*
