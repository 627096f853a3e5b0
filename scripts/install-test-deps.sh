#!/usr/bin/env bash
# Installs the real components the test suite starts: Pebble (from Debian 13, for ARI),
# lighttpd, openssl, curl. Idempotent; needs root (or sudo) for apt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=()
for pkg in lighttpd openssl curl psmisc iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
pebble_ok=0
if dpkg -s pebble >/dev/null 2>&1; then
  v=$(dpkg-query -W -f='${Version}' pebble)
  dpkg --compare-versions "$v" ge 2.6 && pebble_ok=1
fi

if [ ${#need[@]} -gt 0 ] || [ "$pebble_ok" = 0 ]; then
  if [ "$pebble_ok" = 0 ]; then
    # Debian 12's Pebble (2.4) has no ARI; Debian 13's (2.6+) has it and installs on Debian 12.
    # Reuse the mirror this machine is already configured with.
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" != trixie ] && [ ! -f /etc/apt/sources.list.d/certsmith-trixie.sources ]; then
      mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
      if [ -z "$mirror" ]; then
        mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
      fi
      case "$mirror" in
        */ubuntu*|"") echo "cannot find a Debian mirror to fetch Pebble 2.6 from" >&2; exit 1 ;;
      esac
      $SUDO tee /etc/apt/sources.list.d/certsmith-trixie.sources >/dev/null <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
      # Only Pebble comes from trixie; nothing else is upgraded.
      $SUDO tee /etc/apt/preferences.d/certsmith-trixie >/dev/null <<PREF
Package: *
Pin: release n=trixie
Pin-Priority: 100
PREF
    fi
  fi
  $SUDO apt-get update -qq
  [ ${#need[@]} -gt 0 ] && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  if [ "$pebble_ok" = 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t trixie pebble
  fi
fi
# lighttpd must not hold port 80 for the tests: they start their own instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet lighttpd 2>/dev/null; then
  $SUDO systemctl stop lighttpd || true
  $SUDO systemctl disable lighttpd >/dev/null 2>&1 || true
fi
pkill -x lighttpd 2>/dev/null || true

# Feature-specific system packages (trust stores, browsers, ...): one script per feature.
for extra in "$here"/scripts/deps/*.sh; do
  [ -e "$extra" ] && bash "$extra"
done

"$here/scripts/install.sh" --dev
