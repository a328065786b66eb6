# Set up, run and test the masking proxy. Needs GNU make, bash and Python 3.11 (Debian 12's).
#   make run    serve on http://$(HOST):$(PORT)
#   make test   lint, type-check, check migrations and run the tests

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Each can come from the environment or the command line; empty means the default.
PYTHON := $(or $(PYTHON),python3)
HOST := $(or $(HOST),127.0.0.1)
PORT := $(or $(PORT),8000)
RUN_DIR := $(or $(RUN_DIR),.run)
# scripts/ensure-redis keeps its private Redis under the same directory.
export RUN_DIR

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_SECRET_KEY_FILE := $(RUN_DIR)/secret_key

# Unless the caller brings SECRET_KEY or SECRET_KEY_FILE, use a secret generated once for this
# checkout. Settings refuse to load without one when DJANGO_DEBUG is off, and mypy's Django
# plugin loads them too.
ifeq ($(strip $(SECRET_KEY)$(SECRET_KEY_FILE)),)
SECRET_KEY_FILE := $(DEV_SECRET_KEY_FILE)
export SECRET_KEY_FILE
SECRET_DEPS := $(DEV_SECRET_KEY_FILE)
CREATESUPERUSER := SECRET_KEY_FILE=$(DEV_SECRET_KEY_FILE) $(BIN)/python manage.py createsuperuser
else
CREATESUPERUSER := $(BIN)/python manage.py createsuperuser (with the same SECRET_KEY or SECRET_KEY_FILE)
endif

.PHONY: help venv run serve test bench lint fmt stop-redis clean distclean

help:
	@echo "make run         set up and serve on http://$(HOST):$(PORT) (admin at /admin/)"
	@echo "make serve       production: WORKERS pre-forked workers on $(HOST):$(PORT), graceful stop"
	@echo "make test        ruff, ruff format --check, mypy, makemigrations --check, pytest"
	@echo "                 (on SQLite, then on PostgreSQL when one is reachable)"
	@echo "make bench       run the benchmarks (python -m bench)"
	@echo "make lint        ruff check and ruff format --check"
	@echo "make fmt         ruff format and ruff check --fix"
	@echo "make stop-redis  stop the private Redis started from $(RUN_DIR), if any"
	@echo "make clean       remove .venv, $(RUN_DIR), staticfiles and tool caches"
	@echo "make distclean   clean, and remove the development database db.sqlite3"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "make: this project needs Python 3.11; '$(PYTHON)' is not (try make PYTHON=python3.11)" >&2; \
	  exit 1; }
	@if ! $(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	  rm -rf $(VENV); \
	  if ! $(PYTHON) -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "make: $(PYTHON) cannot create a virtualenv: installing Debian's python3-venv" >&2; \
	      apt-get update -qq; \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	      $(PYTHON) -m venv $(VENV); \
	    else \
	      echo "make: $(PYTHON) cannot create a virtualenv: install Debian's python3-venv" \
	        "package (apt-get install python3-venv) and run make again" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(DEV_SECRET_KEY_FILE):
	@mkdir -p $(@D)
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@.tmp
	@mv $@.tmp $@ && chmod 600 $@
	@echo "make: generated a development SECRET_KEY in $@"

# Plain HTTP here, so cookies are not marked Secure unless SECURE_COOKIES says otherwise.
# Both run and serve use uvicorn's httptools protocol with this project's bounds on requests
# and clients (config/http.py, the HTTP_* settings); without --http there are none. --ws none:
# no WebSocket protocol is loaded, and no connection leaves those bounds.
run: $(STAMP) $(SECRET_DEPS)
	@REDIS_URL="$$(scripts/ensure-redis)"; export REDIS_URL; \
	export SECURE_COOKIES="$${SECURE_COOKIES:-false}"; \
	$(BIN)/python manage.py migrate --noinput; \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0; \
	echo "Admin: http://$(HOST):$(PORT)/admin/"; \
	echo "Create an admin user: $(CREATESUPERUSER)"; \
	exec $(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan on \
	  --http config.http:BoundedHttpProtocol --ws none --no-access-log

# Production: the caller's environment as it is (no generated secret, no private Redis; it
# checks the migrations but does not apply them: run `manage.py migrate` once per release).
# On SIGTERM (make passes it on) the workers stop accepting connections, let running requests
# finish for up to SHUTDOWN_GRACE_SECONDS, write their audit records and exit. Proxy headers
# (client address and scheme from FORWARDED_ALLOW_IPS) only when TRUST_X_FORWARDED_PROTO is on.
# gunicorn imports the application once and forks the workers from it (config/serving.py).
serve: $(STAMP)
	@if [ -n "$(SECRET_DEPS)" ]; then \
	  echo "make serve: set SECRET_KEY or SECRET_KEY_FILE (make serve never generates one)" >&2; \
	  exit 1; \
	fi; \
	$(BIN)/python manage.py migrate --check --skip-checks >/dev/null || { \
	  echo "make serve: the database has unapplied migrations or did not answer;" \
	    "run $(BIN)/python manage.py migrate first" >&2; \
	  exit 1; }; \
	HOST=$(HOST) PORT=$(PORT) exec $(BIN)/gunicorn -c python:config.serving config.asgi:application

# pytest runs twice: on SQLite, then on the PostgreSQL scripts/ensure-postgres finds
# (TEST_DATABASE_URL, or one on 127.0.0.1:5432). Without one, that run is skipped and the
# output says why. Unless FUZZ_EXAMPLES is set, the second run fuzzes 2,000 bodies, not 10,000.
test: $(STAMP) $(SECRET_DEPS)
	@REDIS_URL="$$(scripts/ensure-redis)"; export REDIS_URL; \
	step() { printf '==> %s\n' "$$*"; "$$@"; }; \
	step $(BIN)/ruff check .; \
	step $(BIN)/ruff format --check .; \
	step $(BIN)/mypy; \
	step env DJANGO_SETTINGS_MODULE=tests.settings \
	  $(BIN)/python manage.py makemigrations --check --dry-run; \
	scripts/ensure-test-packages; \
	scripts/ensure-claude-code; \
	echo "==> $(BIN)/pytest on SQLite"; \
	env -u DATABASE_URL $(BIN)/pytest; \
	status=0; DATABASE_URL="$$(scripts/ensure-postgres)" || status=$$?; \
	if [ "$$status" = 3 ]; then \
	  echo "==> SKIPPED $(BIN)/pytest on PostgreSQL: no PostgreSQL to use (the reason is above)"; \
	  exit 0; \
	fi; \
	[ "$$status" = 0 ] || exit "$$status"; \
	export DATABASE_URL; \
	if [ -z "$${FUZZ_EXAMPLES:-}" ]; then \
	  export FUZZ_EXAMPLES=2000; \
	  echo "==> $(BIN)/pytest on PostgreSQL, with FUZZ_EXAMPLES=2000 (10,000 on SQLite)"; \
	else \
	  echo "==> $(BIN)/pytest on PostgreSQL"; \
	fi; \
	$(BIN)/pytest

# The benchmarks start their own redis-server (never the shared one): ensure-redis only
# installs it when missing. BENCH_ARGS picks benchmarks and flags: BENCH_ARGS="--quick engine".
bench: $(STAMP) $(SECRET_DEPS)
	@command -v redis-server >/dev/null || scripts/ensure-redis >/dev/null; \
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt; \
	exec $(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

stop-redis:
	@pidfile=$(RUN_DIR)/redis/redis.pid; \
	if [ -f "$$pidfile" ] && pid="$$(cat "$$pidfile")" && \
	   grep -q redis-server "/proc/$$pid/comm" 2>/dev/null; then \
	  kill "$$pid"; \
	  for _ in $$(seq 50); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
	  echo "make: stopped the private redis-server (pid $$pid)"; \
	else \
	  echo "make: no private redis-server is running from $(RUN_DIR)"; \
	fi

clean: stop-redis
	rm -rf $(VENV) $(RUN_DIR) staticfiles e2e/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -f db.sqlite3
