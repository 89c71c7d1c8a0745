# Two entry points: `make serve` runs the vault on its embedded default,
# `make test` runs the whole suite. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench soak clean tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: $(VENV)/.installed
	$(BIN)/vault serve

test: $(VENV)/.installed tools
	$(BIN)/pytest $(PYTEST_ARGS)

# shellcheck for tests/ops (Debian package); without it that test skips, or fails when CI=true
tools:
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } || echo "shellcheck not installed: its test will skip (fail under CI=true)" >&2

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python -m ops.bench $(BENCH_ARGS)

soak: $(VENV)/.installed
	$(BIN)/python -m ops.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
