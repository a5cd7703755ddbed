# make run   installs what the app needs into .venv and starts it on http://127.0.0.1:7860
# make test  installs what the tests need (incl. Debian's chromium for the browser test) and runs them
# make bench runs the benchmarks and writes benchmarks/RESULTS.md
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install install-dev chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.app-installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.app-installed

install: $(VENV)/.app-installed
install-dev: $(VENV)/.dev-installed

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: install
	$(PY) app.py

test: install-dev chromium
	$(PY) -m pytest

bench: install-dev
	$(PY) benchmarks/run_all.py
