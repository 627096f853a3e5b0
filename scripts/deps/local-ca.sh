#!/usr/bin/env bash
# Real clients and trust-store tools the local CA tests use: certutil (NSS), headless Chromium,
# Node.js, OpenSSL, curl, the CA bundle tooling, and mkcert for the side-by-side benchmark.
# Java (keytool) is optional: certsmith's java store is used only when keytool exists.
# Idempotent; needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in libnss3-tools chromium nodejs ca-certificates openssl curl mkcert; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" \
    || { $SUDO apt-get update -qq \
         && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; }
fi
