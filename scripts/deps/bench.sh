#!/usr/bin/env bash
# Peers the benchmarks in bench/ run side by side with certsmith: lego (Debian).
# certbot comes from the virtualenv (the dev extra). Idempotent; needs root (or sudo) for apt.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s lego >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends lego \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends lego; }
fi
