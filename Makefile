# c3-app: the two commands are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench install assets lint format clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

# The chat page's Markdown, sanitiser and highlighter come from npm (never a CDN).
assets:
	@bash scripts/build_assets.sh

# Migrate the local SQLite database, ensure demo/demo, serve c3-app on :8000 and
# c3-app-stream on :8001 (STREAM_API_URL points at it). Ctrl-C stops both.
run: install assets
	$(BIN)/python scripts/run_local.py

# Lint, format check, then the whole suite (unit, integration on real servers, browser).
test: install assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

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
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .ruff_cache
