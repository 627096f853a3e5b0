#!/usr/bin/env bash
# Runs the linters and the whole test suite (real Pebble, lighttpd, ... started by the fixtures).
#   scripts/test.sh [PYTEST_ARGS...]         everything (what CI runs)
#   scripts/test.sh --fast [PYTEST_ARGS...]  the linters and the tests that need no server and
#                                            are quick (-m "not servers and not slow", see
#                                            tests/conftest.py): seconds, no servers installed
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
py="$here/.venv/bin/python"
tier=()
if [[ "${1:-}" == "--fast" ]]; then
  shift
  tier=(-m "not servers and not slow")
fi
"$py" -m ruff check src tests bench
"$py" -m ruff format --check src tests bench
"$py" -m mypy
exec "$py" -m pytest -n "${CERTSMITH_TEST_JOBS:-2}" "${tier[@]}" "$@"
