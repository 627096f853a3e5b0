#!/usr/bin/env bash
# The proxy's peers and probes: wrk (load generator), nginx and Caddy (bench/proxy.py runs them
# side by side with certsmith proxy), testssl.sh (TLS configuration audit). Idempotent; needs
# root (or sudo) for apt. Their packaged services are stopped: the tests start their own.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in wrk nginx caddy testssl.sh curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" \
    || { $SUDO apt-get update -qq \
         && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; }
fi
# Packaged nginx/Caddy must not hold ports 80/443 (the proxy tests and the benchmark bind them).
for svc in nginx caddy; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
exit 0
