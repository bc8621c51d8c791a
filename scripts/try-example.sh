#!/usr/bin/env bash
# One command to try flyplan: installs what is missing, builds, and applies
# examples/fly.toml on the local provider (a real HA PostgreSQL cluster on
# this machine), then shows its status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --locked
bin=target/release/flyplan

# The example reads the operator password from PG_PASSWORD; keep one per
# machine so a second run plans no rotation.
state="${FLYPLAN_HOME:-}"
if [ -z "$state" ]; then
  if [ "$(id -u)" = 0 ]; then state=/var/lib/flyplan; else state="${XDG_DATA_HOME:-$HOME/.local/share}/flyplan"; fi
fi
mkdir -p "$state"
if [ -z "${PG_PASSWORD:-}" ]; then
  if [ ! -s "$state/example-password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$state/example-password")
  fi
  PG_PASSWORD="$(cat "$state/example-password")"
  export PG_PASSWORD
fi

"$bin" --state-dir "$state" validate -c examples/fly.toml
"$bin" --state-dir "$state" apply -c examples/fly.toml --auto-approve
"$bin" --state-dir "$state" status -c examples/fly.toml
echo
echo "Plan again (should say No changes):"
"$bin" --state-dir "$state" plan -c examples/fly.toml --detailed-exitcode
