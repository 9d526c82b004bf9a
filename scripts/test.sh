#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, unused dependencies, clippy, the UI's type
# check, unit, integration and end-to-end tests (the end-to-end ones twice: with the Linux and the
# portable process backend), the dashboard's browser tests in headless Chromium, and a smoke test
# of the tray app under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser --databases

cargo fmt --all -- --check
# No dependency that nothing uses.
cargo machete
npm run --silent check
# Before clippy: the tray app (src-tauri) embeds ui/dist when it compiles.
npm run --silent build
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end and browser tests drive the real `homeport` binary: build it first.
cargo build --workspace --bins --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
rust_status=${PIPESTATUS[0]}
# The end-to-end tests again with the portable process backend, the one macOS uses (no
# subreaper, no /proc for port holders): every supervision promise is proven on that path too.
HOMEPORT_PROCESS_BACKEND=portable cargo test --locked -p homeport-tests --test e2e 2>&1 | tee -a "$log"
portable_status=${PIPESTATUS[0]}
node --test --test-reporter=tap tests/browser/ 2>&1 | tee -a "$log"
browser_status=${PIPESTATUS[0]}
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
tests/tray/smoke.sh "$target_dir" 2>&1 | tee -a "$log"
tray_status=${PIPESTATUS[0]}
set -e
echo "Screenshots of the dashboard: tests/artifacts/"
# One closing line for the whole run (cargo prints one per test binary, node its own).
awk '/^test result:/ { p += $4; f += $6 }
     /^# pass / { p += $3 }
     /^# fail / { f += $3 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
[[ $rust_status -eq 0 && $portable_status -eq 0 && $browser_status -eq 0 && $tray_status -eq 0 ]]
