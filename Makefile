# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench wheel-check clean sidecar browser

$(STAMP): pyproject.toml $(wildcard examples/*/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11+ or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[embedded,test]" $(foreach d,$(wildcard examples/*/pyproject.toml),-e $(dir $(d)))
	touch $(STAMP)

install: $(STAMP)

run: install sidecar
	$(VENV)/bin/guiche run

# The console's browser tests drive the system's Chromium (Playwright never downloads one):
# install Debian's package when missing; without it those tests skip and say why.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { command -v apt-get >/dev/null && \
	    { $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }; }; } || \
	  echo "chromium could not be installed: the console's browser tests will skip"

test: install sidecar browser
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
