# c3-app: the two commands are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-js typecheck bench install assets lint format clean lock upgrade

# Exactly the locked set (versions and sha256 hashes, wheels only). When the lock changes,
# .venv is rebuilt from scratch, so a package dropped from the lock leaves it too.
$(STAMP): requirements-dev.lock.txt requirements.lock.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary :all: \
		-r requirements-dev.lock.txt
	@touch $(STAMP)

install: $(STAMP)

# Regenerate the lock files after editing requirements*.txt (keeps current versions where
# the ranges allow); `make upgrade` moves every package to the newest version in its range.
lock:
	bash scripts/lock_requirements.sh

upgrade:
	bash scripts/lock_requirements.sh --upgrade

# The chat page's Markdown, sanitiser and highlighter come from npm (never a CDN).
assets:
	@bash scripts/build_assets.sh

# Migrate the local SQLite database, ensure demo/demo, serve c3-app on :8000 and
# c3-app-stream on :8001 (STREAM_API_URL points at it). Ctrl-C stops both.
run: install assets
	$(BIN)/python scripts/run_local.py

# Lint, format check, types, then the whole suite (unit, integration on real servers,
# browser), on PYTEST_WORKERS pytest-xdist workers: each test file is one unit of work,
# except tests/e2e/ and tests/integration/faults/, which each run as one unit
# (tests/conftest.py: work_unit_of). `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2
test: install assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) typecheck
	$(MAKE) test-js
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# The chat page's ES modules (stream client, state predicates) under Node's own runner.
test-js:
	node --test tests/js/*.test.mjs

# mypy over the project's code (what it checks: [tool.mypy] in pyproject.toml). Its django-stubs
# plugin imports the settings, so it gets a development configuration and no `.env`.
typecheck: install
	C3_ENV_FILE=/nonexistent/.env DEBUG=true $(BIN)/mypy

# The performance table (bench/README.md): about 5 minutes; needs PostgreSQL at 127.0.0.1.
bench: install
	@mkdir -p test-artifacts
	$(BIN)/python -m bench.run --json test-artifacts/bench.json

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .ruff_cache .mypy_cache
