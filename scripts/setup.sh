#!/usr/bin/env bash
# Installs what building Homeport needs on Debian 12, idempotently: Debian packages (only the
# missing ones) and a check that the Rust toolchain is new enough.
set -euo pipefail

need_pkgs=(build-essential pkg-config git ca-certificates)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing; install Rust 1.95 or newer with rustup (https://rustup.rs)" >&2
    exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [[ "$(printf '%s\n1.95.0\n' "$have" | sort -V | head -n1)" != "1.95.0" ]]; then
    echo "setup: Rust $have is too old; Homeport needs 1.95 or newer (rustup update)" >&2
    exit 1
fi
