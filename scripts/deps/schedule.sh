#!/usr/bin/env bash
# tests/test_schedule.py checks the rendered units with systemd's own parser
# (`systemd-analyze verify`), which Debian ships in the systemd package. Systemd need not run.
set -euo pipefail
command -v systemd-analyze >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends systemd
