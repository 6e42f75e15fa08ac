# Two commands do everything: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests need: Chromium for the UI test (never a browser download of
# Playwright's own), redis-server as the Celery stack's broker, docker-compose to validate
# docker-compose.yaml (`config` needs no Docker engine), nginx in front of the demo sites and
# the corpus (HTTP/1.1, gzip, chunked: served as production servers serve them), tinyproxy as
# a site's proxy.
DEBIAN_TOOLS := /usr/bin/chromium /usr/bin/redis-server /usr/bin/docker-compose /usr/sbin/nginx \
  /usr/bin/tinyproxy
DEBIAN_PACKAGES := chromium fonts-liberation redis-server docker-compose nginx-light tinyproxy
export PYTHONPATH := $(CURDIR)/plugins

.PHONY: run test test-fast test-unit lint format counts coverage coverage-matrix preview bench clean install

install: $(STAMP)

# Runtime pins (requirements.txt, all the image installs) plus the dev and test tools.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# `make run DATE=2026-08-04` or `make run FROM=2026-08-03 TO=2026-08-07` runs those trading
# dates for every DAG (default: each region's latest); other options in RUN_ARGS (docs/running-locally.md).
run: $(STAMP)  ## start PostgreSQL, the demo sites and Airflow; run every DAG once
	$(PY) -m dev.devenv run $(if $(DATE),--date '$(DATE)') $(if $(FROM),--from '$(FROM)') \
	  $(if $(TO),--to '$(TO)') $(RUN_ARGS)

# Three tiers (docs/testing.md): tests/unit start no service; tests/integration and tests/dags
# get PostgreSQL and the demo sites (dag.test()); tests/stack boot a real Airflow stack
# (scheduler, api-server, browser; and a CeleryExecutor one with redis-server and two workers).
# `make test` runs them all, the stack tier beside the other two (dev/testtiers.py), each
# listing its 15 slowest tests at the end; CI runs `make test`.
test: $(STAMP) $(DEBIAN_TOOLS)  ## lint, then every tier
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m dev.testtiers --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)  ## lint, then everything but the stack tier
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -m "not stack" $(PYTEST_ARGS)

test-unit: $(STAMP)  ## the unit tier alone: no service, seconds
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Installed together when any is missing (as root; otherwise say what to run).
$(DEBIAN_TOOLS) &:
	@test "$$(id -u)" = 0 || { echo "$@ is missing: the tests need Debian's" \
	  "$(DEBIAN_PACKAGES); run: sudo apt-get install $(DEBIAN_PACKAGES)" >&2; exit 1; }
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES)

counts: $(STAMP)  ## rows per site and region in the `make run` warehouse
	$(PY) -m dev.devenv counts

# `make coverage ARGS="--days 40 --site equities"`: the Coverage page's matrix of the `make run`
# stack in the terminal. When a trading day shown is missing or failed it exits non-zero, and
# its last line says why: the reason goes through a file into $(error), not make's own
# "Error 1" line after the matrix (coverage-matrix's recipe succeeds whenever it wrote one).
STATE := $(or $(OFFPEAK_STATE_DIR),.local)
COVERAGE_WHY := $(STATE)/coverage.why
coverage: coverage-matrix  ## which trading dates each site and region has, in the terminal
	@$(if $(shell cat $(COVERAGE_WHY) 2>/dev/null),$(error $(shell cat $(COVERAGE_WHY))))

coverage-matrix: $(STAMP)
	@mkdir -p $(STATE) && rm -f $(COVERAGE_WHY)
	@if test -f $(STATE)/airflow.env; then source $(STATE)/airflow.env && $(PY) -m offpeak.coverage --why-file $(COVERAGE_WHY) $(ARGS) || test -s $(COVERAGE_WHY); \
	else echo "no $(STATE)/airflow.env: start the stack with make run first" > $(COVERAGE_WHY); fi

# `make preview SITE=include/config/sites/x.yaml REGION=americas [DATE=…] [BASE_URL=…]`: what a
# site's YAML would load, with no scheduler and no warehouse (docs/adding-a-site.md).
preview: $(STAMP)  ## fetch a site's first pages and print the rows, rejects and checks
	@test -n "$(SITE)" -a -n "$(REGION)" || { echo "usage: make preview SITE=<site yaml> REGION=<region> [DATE=YYYY-MM-DD] [BASE_URL=http://...]" >&2; exit 2; }
	$(PY) -m offpeak.preview '$(SITE)' --region '$(REGION)' $(if $(DATE),--date '$(DATE)') \
	  $(if $(BASE_URL),--base-url '$(BASE_URL)')

lint: $(STAMP)
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## remove the venv and all local state (databases, data, logs)
	rm -rf $(VENV) .local .pytest_cache test-artifacts

bench: $(STAMP)  ## every performance target against its anchor; writes docs/benchmarks.md
	$(PY) tests/bench/run.py
