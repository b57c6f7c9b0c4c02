#!/usr/bin/env bash
# The test command: set up (idempotent), lint, type-check, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
mkdir -p test-artifacts
.venv/bin/pytest -p no:cacheprovider -q -rs --durations=15 "$@"
