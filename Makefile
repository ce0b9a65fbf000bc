# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench wheel-check clean

$(STAMP): pyproject.toml $(wildcard examples/*/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+ or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[embedded,test]" $(foreach d,$(wildcard examples/*/pyproject.toml),-e $(dir $(d)))
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/guiche run

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m bench

wheel-check: install
	$(PY) scripts/wheel_check.py

clean:
	rm -rf $(VENV) build dist *.egg-info core/*.egg-info
