# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench wheel-check clean sidecar

$(STAMP): pyproject.toml $(wildcard examples/*/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+ or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[embedded,test]" $(foreach d,$(wildcard examples/*/pyproject.toml),-e $(dir $(d)))
	touch $(STAMP)

install: $(STAMP)

run: install sidecar
	$(VENV)/bin/guiche run

test: install sidecar
	$(VENV)/bin/ruff check .
	$(PY) -m pytest
	@if command -v node >/dev/null; then cd $(SIDECAR) && node --test test/; fi

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m bench

wheel-check: install
	$(PY) scripts/wheel_check.py

# baileys_bridge: the Node sidecar's npm dependencies (skipped, with a note, without npm)
SIDECAR := plugins/baileys_bridge/sidecar
sidecar: $(SIDECAR)/node_modules/.package-lock.json

$(SIDECAR)/node_modules/.package-lock.json: $(SIDECAR)/package-lock.json
	@if command -v npm >/dev/null; then cd $(SIDECAR) && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: baileys_bridge's sidecar not installed (needs Node 20+)"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info core/*.egg-info
