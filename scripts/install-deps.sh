#!/usr/bin/env bash
# Installs the Debian packages flyplan's local provider and tests need, only
# when something is missing. Idempotent; needs root (or sudo).
set -euo pipefail

packages=(postgresql-15 postgresql-15-auto-failover pg-auto-failover-cli haproxy pkg-config libssl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
