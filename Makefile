# All set-up is here so that a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: test-random setup system-deps node-deps py-deps js demo demo-terminal test lint bench mutate clean

setup: system-deps node-deps py-deps

# Chromium for the browser tests (Playwright cannot download browsers here), found by the
# same rule as the tests (tests/support/tools.py): $PARTYWIDGET_CHROMIUM, else Debian's
# /usr/bin/chromium, installed here when we are root. Otherwise the browser tests skip;
# with PARTYWIDGET_REQUIRE_ALL=1 (CI) a missing Chromium stops the build instead.
export PARTYWIDGET_CHROMIUM ?= /usr/bin/chromium
REQUIRE_ALL := $(filter-out 0,$(PARTYWIDGET_REQUIRE_ALL))

system-deps:
	@test -x "$(PARTYWIDGET_CHROMIUM)" || { \
	  if [ "$$(id -u)" = 0 ] && [ "$(PARTYWIDGET_CHROMIUM)" = /usr/bin/chromium ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif [ -n "$(REQUIRE_ALL)" ]; then \
	    echo "no Chromium at $(PARTYWIDGET_CHROMIUM), and PARTYWIDGET_REQUIRE_ALL forbids skipping the browser tests (install it as root, or set PARTYWIDGET_CHROMIUM)" >&2; exit 1; \
	  else echo "no Chromium at $(PARTYWIDGET_CHROMIUM): browser tests will be skipped (run as root, apt-get install chromium, or set PARTYWIDGET_CHROMIUM)"; fi; }
	@test -x "$(PARTYWIDGET_CHROMIUM)" || [ -z "$(REQUIRE_ALL)" ]

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-deps: node_modules/.package-lock.json

$(VENV)/.installed: pyproject.toml node_modules/.package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

py-deps: $(VENV)/.installed

js: node-deps
	npm run build

lint: py-deps
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/mypy
	tsc --noEmit -p .

# The README's test command: everything, from scratch.
test: setup js lint
	$(PY) -m pytest -q -p no:cacheprovider

# The suite in random order (pytest-randomly); a failure prints the seed to reuse.
test-random: setup js
	$(PY) -m pytest -q -p no:cacheprovider -p randomly

# The README's main job: JupyterLab on the quickstart notebook; the widget starts the
# embedded room server itself. Root needs --allow-root; no browser here just prints the URL.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
demo: setup js
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 $(ROOT_FLAG) notebooks/01_quickstart.ipynb

# Terminal-only main job for machines without a browser.
demo-terminal: setup js
	$(VENV)/bin/partywidget demo

bench: setup js
	$(PY) -m benchmarks

# Mutation testing over the modules that carry the README's promises (list and test map in
# pyproject's [tool.mutmut]); not part of `make test`. One worker: it shares the machine.
# Verdicts are cached in mutants/, so a second run only redoes what changed. Writes
# artifacts/mutation/report.md; docs/mutation.md explains every survivor.
# One module at a time: make mutate MUTANTS='partywidget.server.wire_rules*'
MUTMUT ?= $(VENV)/bin/mutmut
MUTANTS ?=
mutate: py-deps
	PYTHONPATH=$(CURDIR)/tools $(MUTMUT) run --max-children 1 $(if $(MUTANTS),"$(MUTANTS)",)
	$(PY) tools/mutation_report.py

clean:
	rm -rf $(VENV) node_modules src/partywidget/static mutants
