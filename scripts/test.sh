#!/usr/bin/env bash
# The test command (CI runs it through .ci/run on a fresh clone): set up (idempotent),
# lint, type-check, then the fast tier, then the integration tier, each with its wall time.
#
#   scripts/test.sh                      everything (what CI runs)
#   scripts/test.sh fast [ARGS...]       the fast tier only: tests/unit, no services, < 60 s
#   scripts/test.sh integration [ARGS...]  the integration tier only: real Orthanc, DICOM
#                                        associations, MLflow stores, Chromium, the fuzz targets
#   scripts/test.sh [ARGS...]            both tiers, ARGS passed to pytest (a file, -k, -x, ...)
#
# Tiers are pytest markers: tests/conftest.py marks tests/integration and tests/fuzz as
# ``integration``; ``slow`` tests run in the integration tier too.
set -euo pipefail
cd "$(dirname "$0")/.."

FAST='not integration and not slow'
INTEGRATION='integration or slow'

tiers=(fast integration)
case "${1:-}" in
  fast | integration) tiers=("$1"); shift ;;
  all) shift ;;
esac

bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
mkdir -p test-artifacts

# run_tier NAME MARKER [PYTEST_ARGS...]: pytest on one tier, then "== NAME tier: <summary> in N s".
run_tier() {
  local name=$1 marker=$2 log rc summary start=$SECONDS
  shift 2
  echo "== $name tier (-m \"$marker\")"
  log=$(mktemp)
  set +e
  .venv/bin/pytest -p no:cacheprovider -q -rs --durations=10 -m "$marker" "$@" | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary=$(grep -E '^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s' "$log" | tail -1 |
    sed -E 's/^=+ //; s/ in [0-9.]+s.*$//' || true)
  rm -f "$log"
  echo "== $name tier: ${summary:-no tests ran} in $((SECONDS - start)) s"
  # With extra arguments (one file, -k ...) a tier may select nothing: that is not a failure.
  if [ "$rc" -eq 5 ] && [ $# -gt 0 ]; then rc=0; fi
  return "$rc"
}

status=0
for tier in "${tiers[@]}"; do
  if [ "$tier" = fast ]; then
    run_tier fast "$FAST" "$@" || status=$?
  else
    run_tier integration "$INTEGRATION" "$@" || status=$?
  fi
done
exit "$status"
