# Ledgerpulse: `make run` starts the product with demo data, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp

.PHONY: install run test bench chaos check

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

## Start the product with demo data on http://127.0.0.1:8000/ (whole stack when DATABASE_URL and REDIS_URL are set).
run: install
	@scripts/run.sh

## Run the whole test suite (PostgreSQL and Redis on loopback; see README).
test: install
	@scripts/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Run the benchmarks and write bench/RESULTS.md.
bench: install
	$(BIN)/python bench/run.py

## Soak the real stack with faults (worker kills, Redis restarts, a broker outage); prints one summary line.
chaos: install
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

check: install
	DJANGO_DEBUG=false DJANGO_SECRET_KEY=check-only-$$RANDOM$$RANDOM$$RANDOM$$RANDOM $(BIN)/python manage.py check
