#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, clippy, the UI's type check, unit,
# integration and end-to-end tests, and the dashboard's browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
npm run --silent check
npm run --silent build

# The end-to-end and browser tests drive the real `homeport` binary: build it first.
cargo build --workspace --bins --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
rust_status=${PIPESTATUS[0]}
node --test --test-reporter=tap tests/browser/ 2>&1 | tee -a "$log"
browser_status=${PIPESTATUS[0]}
set -e
echo "Screenshots of the dashboard: tests/artifacts/"
# One closing line for the whole run (cargo prints one per test binary, node its own).
awk '/^test result:/ { p += $4; f += $6 }
     /^# pass / { p += $3 }
     /^# fail / { f += $3 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
[[ $rust_status -eq 0 && $browser_status -eq 0 ]]
