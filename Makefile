# Two entry points: `make serve` runs the vault on its embedded default,
# `make test` runs the whole suite. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench bench-ledger bench-outside bench-sweep soak fuzz clean tools

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

# shellcheck for tests/ops and openssl for the local RFC 3161 TSA (Debian packages), ganache
# for the EVM anchor tests (npm, pinned by tools/ganache/package-lock.json): a test whose
# tool is missing skips, or fails when CI=true
tools:
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } || echo "shellcheck not installed: its test will skip (fail under CI=true)" >&2
	@command -v openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; } || echo "openssl not installed: the RFC 3161 tests will skip (fail under CI=true)" >&2
	@test -x tools/ganache/node_modules/.bin/ganache || npm ci --no-audit --no-fund --prefix tools/ganache || echo "ganache not installed (needs node and npm): the EVM tests will skip (fail under CI=true)" >&2

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python -m ops.bench $(BENCH_ARGS)

# The ledger's figures: integration rate (SQLite, PostgreSQL), receipts and
# consistency proofs at 1,000,000 leaves, proof sizes, and 32-client uploads
# against BASELINE_SRC (a checkout of an earlier release) when it is set.
bench-ledger: $(VENV)/.installed
	$(BIN)/python -m ops.bench ledger $(if $(BASELINE_SRC),--baseline-src $(BASELINE_SRC)) $(BENCH_ARGS)

# Figures, no targets: checkpoint-to-cosigned latency with two `vault witness serve`
# processes (quorum 2), and the anchors' receipt sizes, gas and daily cost on the local
# RFC 3161 TSA and ganache (`make tools`; not measured when missing).
bench-outside: $(VENV)/.installed
	$(BIN)/python -m ops.bench outside $(BENCH_ARGS)

# Figures and one target: client p50/p99 (100 KB uploads and lists, 8 clients) with the
# integrity sweep off and on over 10,000 seeded documents (p99 within 20 %), the sweep's
# pace, and the time of a full pass.
bench-sweep: $(VENV)/.installed
	$(BIN)/python -m ops.bench sweep $(BENCH_ARGS)

soak: $(VENV)/.installed
	$(BIN)/python -m ops.soak $(SOAK_ARGS)

# The suite's schemathesis test (tests/system/test_fuzz.py) run long: FUZZ_SECONDS of
# fuzzing (about 20 minutes) on a fresh seed; the figures are printed and kept in var/.
FUZZ_SECONDS ?= 1200
fuzz: $(VENV)/.installed
	mkdir -p var
	VAULT_FUZZ_SECONDS=$(FUZZ_SECONDS) VAULT_FUZZ_EXAMPLES=$${VAULT_FUZZ_EXAMPLES:-1000} \
	VAULT_FUZZ_SEED=$${VAULT_FUZZ_SEED:-$$(date +%s)} VAULT_FUZZ_REPORT=var/fuzz-report.txt \
	$(BIN)/pytest -p no:cacheprovider -q -s tests/system/test_fuzz.py

clean:
	rm -rf $(VENV) var .pytest_cache
