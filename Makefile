# Every target prints what it did in a line or a table; bad input gets one line and a non-zero exit.
# DB=<name> restricts a migrate-* target to one database of src/core/databases.py; VERBOSE=1 prints a failure's traceback.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_WORKERS ?= 3
FUZZ_EXAMPLES ?= 300
MIGRATE := $(PY) -m src.migrate

.DEFAULT_GOAL := help
# The migrate-* targets are not listed: a pattern rule is never used for a phony target.
.PHONY: help install lock dev-server serve test openapi fuzz lint mail-worker create-admin audit-relay audit-prune audit-verify audit-stream soak abuse bench drill audit-drill relay-drill

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-19s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@if test -x $(PY); then $(PY) -m src.migrate --targets; else echo "  migrate-*           make install first: the migrate targets are listed from src/migrate/commands.py"; fi

# Both locks are made from pyproject.toml by pip-compile: pinned, with hashes, and naming no package index.
LOCK := $(PY) -m piptools compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

$(VENV)/.installed: requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11 or newer is needed (PYTHON=$(PYTHON))")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	@touch $@
	@echo "virtual environment ready: $(VENV)"

install: $(VENV)/.installed ## Create the virtual environment from requirements-dev.lock (the service and its tooling)

lock: install ## Pin pyproject.toml's dependencies: requirements.lock (the service) and requirements-dev.lock (with tooling)
	@$(LOCK) --output-file requirements.lock pyproject.toml
	@$(LOCK) --extra dev --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml
	@echo "wrote requirements.lock and requirements-dev.lock; make install applies them"

dev-server: install migrate-post-deploy ## Migrate (post-deploy revisions too), then serve with reload on HOST:PORT (default 127.0.0.1:8000)
	$(PY) -m uvicorn src.main:app --reload --host $(HOST) --port $(PORT)

serve: install ## Serve as in production on HOST:PORT: no reload, WEB_CONCURRENCY workers, request limits
	@$(PY) -m src.serve --host $(HOST) --port $(PORT)

# Tests write compiled modules even under PYTHONDONTWRITEBYTECODE: without them each worker, and each
# make call or server a test starts, compiles the project and the test plugins again (a fifth more CPU).
TEST_ENV := PYTHONDONTWRITEBYTECODE= SETTINGS_FILE=config/test.env

test: install ## Run the tests (PostgreSQL ones skip unless the server answers; REQUIRE_POSTGRES=1 makes that a failure)
	@$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

openapi: install ## Write openapi.json, the API's contract as the app serves it (a test fails when it differs)
	@$(TEST_ENV) $(PY) -m src.api.contract

fuzz: install ## Schemathesis, all checks, every phase (stateful too), FUZZ_EXAMPLES=300 inputs each, both dialects
	@$(TEST_ENV) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -n $(TEST_WORKERS) tests/api/test_openapi.py -q

lint: install ## ruff (lint and format check), mypy and migrate-lint
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy src tests bench
	@$(MIGRATE) lint

# One rule for every migrate-* target: python -m src.migrate runs the command of that name in
# src/migrate/commands.py, which reads its Make variables (DB=, MSG=, ...) from the environment.
migrate-%: install
	@$(MIGRATE) $*

mail-worker: install ## Send the queued mail that is due once, or every interval with LOOP=1 (the app sends it too)
	@$(PY) -m src.account_jobs mail $(if $(filter 1,$(LOOP)),--loop)

create-admin: install ## Make the account with EMAIL= an admin of the service (may deactivate accounts)
	@$(PY) -m src.account_jobs create-admin --email "$(EMAIL)"

audit-relay: install ## Deliver outbox events to the audit database once, or every interval with LOOP=1
	@$(PY) -m src.audit_jobs relay $(if $(filter 1,$(LOOP)),--loop)

audit-prune: install ## Delete audit events recorded more than DAYS=N days ago, in batches
	@$(PY) -m src.audit_jobs prune --days "$(DAYS)"

audit-verify: install ## Walk the audit hash chains (one workspace's with WORKSPACE=id); fails at the first event that does not fit
	@$(PY) -m src.audit_jobs verify --workspace "$(WORKSPACE)"

audit-stream: install ## New audit events as NDJSON on stdout from where the last run stopped (POSITION=file, FOLLOW=1 keeps going)
	@$(PY) -m src.audit_jobs stream --position "$(or $(POSITION),var/audit-stream.position)" $(if $(filter 1,$(FOLLOW)),--follow)

soak: install ## Mixed traffic on PostgreSQL for SOAK_SECONDS (90) with the audit database stopped a while; checks nothing is lost
	@$(PY) -m bench.soak

abuse: install ## Floods (log-ins, sign-ups, silent sockets, probes) against make serve on PostgreSQL: a bystander's latency in each (ABUSE_SECONDS=10)
	@$(PY) -m bench.abuse

bench: install ## wrk against the API served as in production, ratios to a bare FastAPI ping (BENCH_DB=sqlite, BENCH_OUT=)
	@$(PY) -m bench

drill: install ## Migrations on 300,000 PostgreSQL users with a reader and a writer: the worst wait of each (DRILL_ROWS=)
	@$(PY) -m bench.drill

audit-drill: install ## The audit trail's reads at 100k, 1M and 5M PostgreSQL events, and a year's prune (AUDIT_DRILL_SIZES=)
	@$(PY) -m bench.audit_scale

relay-drill: install ## The relay of make serve draining RELAY_BACKLOG=500000 PostgreSQL events: its rate, and PATCH latency idle and meanwhile
	@$(PY) -m bench.relay_drain
