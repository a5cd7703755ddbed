# make run   installs what the app needs into .venv and starts it on http://127.0.0.1:7860
# make test  installs what the tests need (incl. Debian's chromium for the browser test) and runs them, except `slow` ones
# make test-slow runs only the `slow` tests (full-size parity, load and memory stress); CI runs it after `make test`
# make test-all  runs every test
# make bench runs the benchmarks and writes benchmarks/RESULTS.md
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-slow test-all bench install install-dev chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The project's packages (pyproject.toml) are installed editable: the code
# in this folder is what runs.
$(VENV)/.app-installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.app-installed

install: $(VENV)/.app-installed
install-dev: $(VENV)/.dev-installed

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: install
	$(PY) app.py

test: install-dev chromium
	$(PY) -m pytest -m "not slow"

test-slow: install-dev chromium
	$(PY) -m pytest -m slow

test-all: install-dev chromium
	$(PY) -m pytest

bench: install-dev
	$(PY) -m benchmarks.run_all
