# Every target sets the project up first on a fresh machine (scripts/setup.sh, into .venv), so a newcomer needs
# nothing but `make reproduce` (the main job) and `make test` (the tests).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# the notebooks run two at a time, one thread each: on a 2-core machine this beats two threads each
JOBS ?= 2
ARGS ?=
PORT ?= 8000
# make bench: BENCH_DEVICE=cuda times on a GPU (scripts without a --device option measure the CPU only and are
# skipped then); BENCH_ARGS go to every script (e.g. BENCH_ARGS='--threads 2')
BENCH_DEVICE ?=
BENCH_ARGS ?=

.PHONY: help setup browser test lint reproduce bench docs serve notebooks export clean
help:
	@echo "make reproduce  # the main job: headline experiments at the fast default, results/ (ARGS='--full' etc.)"
	@echo "make test       # every notebook under nbdev_test + the pytest suite (install, doc site, browser)"
	@echo "make lint       # ruff on the library, scripts, benchmarks and studies (make test runs it too)"
	@echo "make setup      # only the set-up: .venv with torch, nbdev 2 stack, learn2learn 0.2.0, symmetries -e"
	@echo "make browser    # only chromium + chromedriver for the doc-site test (make test runs it; never fails)"
	@echo "make bench      # the timing benchmarks bench/bench_*.py -> bench/results/ (minutes; BENCH_DEVICE=cuda on a GPU)"
	@echo "make docs       # the doc site, built offline into docs/"
	@echo "make serve      # build the doc site and serve it at http://127.0.0.1:8000/ (search needs a server; PORT=N)"
	@echo "make notebooks  # execute every notebook in place (saved outputs are what the docs show)"

setup: $(VENV)/.setup-done
$(VENV)/.setup-done: scripts/setup.sh requirements-dev.txt setup.py settings.ini
	bash scripts/setup.sh

# only the doc-site test needs a browser: `make test` installs it (as root, with apt-get), the main job never does.
# It never fails; without a browser the doc-site test fails with a message that says what to install.
browser:
	@bash scripts/setup.sh --browser

test: setup browser
	$(PY) -m pytest -n $(JOBS) --dist loadgroup tests

lint: setup
	$(PY) -m ruff check .

reproduce: setup
	$(BIN)/symmetries_reproduce $(ARGS)

# the timing benchmarks only (the Benchmarks page reads their JSON); training studies live in studies/
bench: setup
	@set -e; for script in bench/bench_*.py; do \
	  if [ -n "$(BENCH_DEVICE)" ] && ! $(PY) $$script --help | grep -q -- --device; then \
	    echo "== $$script: skipped (it has no --device option: it measures the CPU only)"; continue; fi; \
	  echo "== $(PY) $$script $(if $(BENCH_DEVICE),--device $(BENCH_DEVICE)) $(BENCH_ARGS)"; \
	  $(PY) $$script $(if $(BENCH_DEVICE),--device $(BENCH_DEVICE)) $(BENCH_ARGS); \
	done

docs: setup
	$(PY) scripts/build_docs.py

serve: docs
	$(PY) scripts/build_docs.py --serve --port $(PORT)

notebooks: setup
	$(PY) scripts/run_notebooks.py

export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

clean:
	rm -rf _proc docs/*.html docs/site_libs results .pytest_cache
