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

.PHONY: help venv run test bench lint fmt stop-redis clean distclean

help:
	@echo "make run         set up and serve on http://$(HOST):$(PORT) (admin at /admin/)"
	@echo "make test        ruff, ruff format --check, mypy, makemigrations --check, pytest"
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
run: $(STAMP) $(SECRET_DEPS)
	@REDIS_URL="$$(scripts/ensure-redis)"; export REDIS_URL; \
	export SECURE_COOKIES="$${SECURE_COOKIES:-false}"; \
	$(BIN)/python manage.py migrate --noinput; \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0; \
	echo "Admin: http://$(HOST):$(PORT)/admin/"; \
	echo "Create an admin user: $(CREATESUPERUSER)"; \
	exec $(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan off

test: $(STAMP) $(SECRET_DEPS)
	@REDIS_URL="$$(scripts/ensure-redis)"; export REDIS_URL; \
	step() { printf '==> %s\n' "$$*"; "$$@"; }; \
	step $(BIN)/ruff check .; \
	step $(BIN)/ruff format --check .; \
	step $(BIN)/mypy; \
	step env DJANGO_SETTINGS_MODULE=tests.settings \
	  $(BIN)/python manage.py makemigrations --check --dry-run; \
	scripts/ensure-test-packages; \
	step $(BIN)/pytest

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
	rm -rf $(VENV) $(RUN_DIR) staticfiles .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -f db.sqlite3
