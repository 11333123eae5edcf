# kamwatch: `make run` starts everything on one machine, `make test` installs and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: install run demo test test-fast lint format bench soak schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	@rm -f $(VENV)/.installed-*; touch $@

run: install
	$(BIN)/kamwatch run

demo: install
	$(BIN)/kamwatch run --demo

test: install
	bash deploy/ensure-tools.sh
	$(BIN)/kamwatch schemas --check
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services kamwatch

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas: install
	$(BIN)/kamwatch schemas

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

soak: install
	KAMWATCH_SOAK=1 $(BIN)/python -m pytest -q -m soak

clean:
	rm -rf var/ .pytest_cache build *.egg-info
