#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, clippy, unit, integration and end-to-end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests drive the real `homeport` binary: build it first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
