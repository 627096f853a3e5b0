#!/usr/bin/env bash
# sslyze, the TLS judge of the tests (its Mozilla "intermediate" check against the proxy and the
# three installs). It pins an older cryptography than acme needs, so it lives in a virtualenv
# of its own (.venv-sslyze, on the distribution's Python) and the tests run it as a command.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv="$here/.venv-sslyze"
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=${PYTHON:-python3}; fi
if [ -x "$venv/bin/sslyze" ]; then exit 0; fi
if ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python$ver-venv" \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q 'sslyze>=6.1,<7'
