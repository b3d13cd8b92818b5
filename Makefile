# The two commands a newcomer needs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/webreducer
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: run test lint bench venv

PIP := $(BIN)/pip install --quiet --disable-pip-version-check

# `make run` needs the runtime only (requirements.txt); `make test` adds the dev toolchain.
$(BIN)/.installed-run: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	touch $@

$(BIN)/.installed: $(BIN)/.installed-run requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# The product: embedded defaults (SQLite, in-process tasks) unless DATABASE_URL/REDIS_URL are set.
# HOST and PORT pick where it serves (127.0.0.1:8000).
run: $(BIN)/.installed-run
	$(BIN)/python manage.py runstack

# The whole suite against real PostgreSQL and Redis, with lint and type checks first.
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/mypy .
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark behind a target of docs/performance.md, one table at the end (~10 minutes;
# never part of `make test`). BENCH_ARGS="--only fairness,realtime" runs some of them.
bench: venv
	$(BIN)/python bench/all.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
