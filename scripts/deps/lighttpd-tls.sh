#!/usr/bin/env bash
# lighttpd's TLS module (a separate Debian package): the test fixture's TLS mode serves the
# combined PEM that certsmith deploys. Idempotent; needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s lighttpd-mod-openssl >/dev/null 2>&1; then
  # Same version as the installed lighttpd (no upgrade from another suite).
  v=$(dpkg-query -W -f='${Version}' lighttpd 2>/dev/null || true)
  pkg=lighttpd-mod-openssl
  [ -n "$v" ] && pkg="lighttpd-mod-openssl=$v"
  $SUDO apt-get install -y -qq --no-install-recommends "$pkg" \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$pkg"; }
fi
