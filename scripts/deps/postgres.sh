#!/usr/bin/env bash
# The PostgreSQL server the PostgreSQL store's tests run (tests/support/postgres.py): Debian's
# postgresql (initdb, postgres, pg_dump under /usr/lib/postgresql/<version>/bin). The tests
# start a throw-away cluster of their own on a loopback port, so the Debian service (and the
# cluster its postinst creates) is not needed: it is stopped and disabled afterwards.
# Idempotent; needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s postgresql >/dev/null 2>&1; then
  # policy-rc.d 101: the package's postinst must not start the service.
  nopolicy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    nopolicy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends postgresql \
    || { $SUDO apt-get update -qq \
         && $SUDO apt-get install -y -qq --no-install-recommends postgresql; } \
    || { [ "$nopolicy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$nopolicy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
# Without systemd (containers) the postinst may still have started the cluster it created.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" = online ]; then
      $SUDO pg_ctlcluster "$ver" "$name" stop || true
    fi
  done
fi
exit 0
