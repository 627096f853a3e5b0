#!/usr/bin/env bash
# The web servers certsmith installs into (tests/test_servers_*.py start their own instances on
# loopback ports from a copy of Debian's stock layout) and testssl.sh for the TLS report:
# nginx, apache2, lighttpd + lighttpd-mod-openssl, testssl.sh. The system services are stopped
# and disabled afterwards: nothing of ours holds ports 80/443. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in nginx apache2 lighttpd testssl.sh; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ! dpkg -s lighttpd-mod-openssl >/dev/null 2>&1; then
  # Same version as the installed lighttpd (no upgrade from another suite).
  v=$(dpkg-query -W -f='${Version}' lighttpd 2>/dev/null || true)
  if [ -n "$v" ]; then need+=("lighttpd-mod-openssl=$v"); else need+=(lighttpd-mod-openssl); fi
fi
if [ ${#need[@]} -gt 0 ]; then
  # policy-rc.d 101: the packages' postinst must not start the services (ports 80/443).
  nopolicy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    nopolicy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" \
    || { $SUDO apt-get update -qq \
         && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
    || { [ "$nopolicy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$nopolicy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi
for svc in nginx apache2 lighttpd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
# Without systemd (containers) a postinst may still have started them through init scripts.
for pidfile in /run/nginx.pid /run/apache2/apache2.pid /run/lighttpd.pid; do
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && $SUDO kill "$pid" 2>/dev/null || true
  fi
done
exit 0
