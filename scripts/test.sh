#!/usr/bin/env bash
# Runs the linters and the whole test suite (real Pebble, lighttpd, ... started by the fixtures).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
py="$here/.venv/bin/python"
"$py" -m ruff check src tests bench
"$py" -m mypy
exec "$py" -m pytest -n "${CERTSMITH_TEST_JOBS:-2}" "$@"
