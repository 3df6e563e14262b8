# Ledgerpulse: `make run` starts the product with demo data, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# One stamp per requirements file: `make run` installs the runtime only, `make test` adds the test tools.
STAMP := $(VENV)/.requirements.stamp
TEST_STAMP := $(VENV)/.requirements-test.stamp
PIP := $(BIN)/python -m pip install --disable-pip-version-check --quiet

.PHONY: install install-test run test bench chaos check

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(STAMP): requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	@touch $(STAMP)

$(TEST_STAMP): requirements-test.txt requirements.txt | $(BIN)/python
	$(PIP) -r requirements-test.txt
	@touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

## Start the product with demo data on http://127.0.0.1:8000/ (whole stack when DATABASE_URL and REDIS_URL are set).
run: install
	@scripts/run.sh

## Run the whole test suite (PostgreSQL and Redis on loopback; see README).
# The browser tests with wall-clock deadlines ("reaches another admin within two seconds") run first,
# alone on the machine; everything else then runs on both cores (pytest-xdist). With PYTEST_ARGS,
# one run on both cores of just what was asked for.
# TEST_WORKERS: xdist workers (2, one per core). The two stack groups keep a worker each whatever the number;
# a third worker would only add one for the other files (and a Redis database: TEST_REDIS_DB + worker index).
TIMED_TESTS := tests/dashboard_ui/test_live_dashboard.py
TEST_WORKERS ?= 2
test: install-test
	@scripts/ensure-chromium.sh
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m pytest -q $(TIMED_TESTS)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --ignore=$(TIMED_TESTS)
else
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
endif

## Run every benchmark scenario (bench/*.py, wrk on the Procfile's stack) into one table, bench/RESULTS.md.
# QUICK=1: every scenario at a tiny size (CI), the table to a scratch file; fails if a scenario crashes.
bench: install-test
	$(BIN)/python -m bench.run $(if $(filter 1,$(QUICK)),--quick)

## Soak the real stack with faults (worker kills, Redis restarts, a broker outage); prints one summary line.
chaos: install-test
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

check: install
	DJANGO_DEBUG=false DJANGO_SECRET_KEY=check-only-$$RANDOM$$RANDOM$$RANDOM$$RANDOM $(BIN)/python manage.py check
