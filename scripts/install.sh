#!/usr/bin/env bash
# Installs certsmith into a virtual environment inside the checkout (.venv) and links the
# `certsmith` command into /usr/local/bin (root) or ~/.local/bin. Works with a PEP 668 system
# Python: nothing is installed into it. `--dev` adds what the tests and linters need.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
# The distribution's Python when there is one: it gets the distribution's security updates
# (another python3 may come first on PATH, e.g. pyenv's). PYTHON=... chooses another.
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=${PYTHON:-python3}; fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if [ ! -x "$venv/bin/python" ]; then
  if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
    # Debian/Ubuntu ship venv separately (python3-venv), not installed by default.
    ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python$ver-venv" \
      || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
  fi
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--dev" ]; then
  "$venv/bin/python" -m pip install -q -e "$here[dev]"
else
  "$venv/bin/python" -m pip install -q -e "$here"
fi
if [ "$(id -u)" = 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; mkdir -p "$bindir"; fi
ln -sf "$venv/bin/certsmith" "$bindir/certsmith"
echo "certsmith installed: $bindir/certsmith -> $venv/bin/certsmith" >&2
