#!/usr/bin/env bash
# The DNS servers the dns-01 tests start on loopback (tests/support/dns/): BIND 9 (named, rndc,
# tsig-keygen, nsupdate, dig) and PowerDNS with its SQLite backend (pdns_server, pdnsutil).
# The tests run their own instances on port 53 of extra loopback addresses, so the system
# services are stopped and disabled afterwards: a system named listening on every interface
# would grab those addresses too. Idempotent; needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in bind9 bind9-utils bind9-dnsutils pdns-server pdns-backend-sqlite3 sqlite3 iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  # policy-rc.d 101: the packages' postinst must not start the services (port 53).
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
# systemd starts the services when the packages are installed (policy-rc.d aside): stop them
# and keep them from coming back at boot.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for svc in named pdns; do
    if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
      $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi
# Without systemd (containers) a postinst may still have started them through init scripts.
for pidfile in /run/named/named.pid /run/pdns/pdns.pid; do
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && $SUDO kill "$pid" 2>/dev/null || true
  fi
done
exit 0
