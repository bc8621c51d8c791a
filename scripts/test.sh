#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages), checks
# formatting and lints, and runs every test, real servers included.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # Server tests start clusters: keep them from competing for two cores.
  cargo nextest run --locked --no-fail-fast --test-threads 2
  cargo test --locked --doc
else
  cargo test --locked --no-fail-fast -- --test-threads 2
fi
