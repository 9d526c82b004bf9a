#!/usr/bin/env bash
# Installs what building Homeport needs on Debian 12, idempotently: Debian packages (only the
# missing ones), a check of the Rust and Node.js versions, and the UI's npm packages.
#   --browser   also Chromium, Xvfb, D-Bus, dunst and X tools, for the browser and tray tests
#   --bench     also wrk and Caddy for the router's benchmark (Caddy's system service is left
#               disabled: the benchmark starts its own Caddy with its own Caddyfile)
#   --databases also PostgreSQL 15, MariaDB 10.11 and Redis 7.0 for the database tests, installed
#               without starting or enabling their system services: every test (and Homeport
#               itself) starts its own server in its own folder on its own port
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=(build-essential pkg-config git ca-certificates)
# The portable process backend names a port's holder through lsof (the tests run it too).
need_pkgs+=(lsof)
# Local times (backups' `at`, update windows, what the CLI shows) come from the system's time zone
# database; the tests name zones (Europe/Berlin, Asia/Kolkata).
need_pkgs+=(tzdata)
# Remote hosts: the tests start their own sshd (openssh-server) on a loopback port and ship
# releases with rsync; systemd-analyze checks the units `homeport export systemd` writes.
need_pkgs+=(openssh-client openssh-server rsync systemd)
# The tray app (src-tauri) links WebKitGTK and the AppIndicator library.
need_pkgs+=(libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev)
# --browser: Chromium for the dashboard tests; for the tray test a virtual display, a session bus,
# a notification server, screenshots (x11-apps, imagemagick), closing a window politely
# (python3-xlib) and checking autostart entries (desktop-file-utils).
# The router's tests: curl as a client, certutil (libnss3-tools) for the browser's trust store.
# The CLI's tests: tmux (a terminal to drive and capture), and bash, zsh and fish to load the
# completion scripts.
browser=0 bench=0 databases=0
for arg in "$@"; do
    case "$arg" in
        --browser) browser=1 ;;
        --bench) bench=1 ;;
        --databases) databases=1 ;;
        *) echo "setup: unknown option $arg (--browser, --bench, --databases)" >&2; exit 2 ;;
    esac
done
((browser)) && need_pkgs+=(chromium xvfb x11-utils dbus dunst x11-apps imagemagick python3-xlib desktop-file-utils curl libnss3-tools tmux zsh fish)
((bench)) && need_pkgs+=(wrk caddy)
# pg_dump, pg_restore and pgbench come with postgresql-15; mariadb-dump with mariadb-client;
# redis-cli with redis-tools (redis-check-rdb is redis-server's).
db_pkgs=(postgresql-15 mariadb-server mariadb-client redis-server redis-tools)
((databases)) && need_pkgs+=("${db_pkgs[@]}")
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # Packages that bring a system service (openssh-server's sshd on port 22, Caddy, the
    # database servers) must not start it: a policy-rc.d that answers 101 ("action forbidden")
    # while they install, when the system has none (container images ship one: it is left).
    policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
        "${sudo_cmd[@]}" chmod 755 "$policy"
        made_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" || status=$?
    ((made_policy)) && "${sudo_cmd[@]}" rm -f "$policy"
    ((status == 0)) || exit "$status"
    if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
        # The tests run sshd themselves; the system's stays disabled and stopped.
        if command -v systemctl >/dev/null; then
            "${sudo_cmd[@]}" systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
        fi
        "${sudo_cmd[@]}" update-rc.d ssh disable >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null; then
        [[ " ${missing[*]} " == *" caddy "* ]] && { "${sudo_cmd[@]}" systemctl disable --now caddy >/dev/null 2>&1 || true; }
        for unit in postgresql mariadb redis-server; do
            "${sudo_cmd[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
fi
if ((databases)); then
    # Nothing may hold the servers' default ports: a system server there would answer a test
    # that meant to reach its own.
    held=$(ss -Hltn 2>/dev/null | awk '{print $4}' | grep -E ':(5432|3306|6379)$' || true)
    if [[ -n $held ]]; then
        echo "setup: a database server is listening on $(echo $held); stop it (systemctl disable --now postgresql mariadb redis-server) so the tests run only their own" >&2
        exit 1
    fi
fi

version_at_least() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]; }

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing; install Rust 1.95 or newer with rustup (https://rustup.rs)" >&2
    exit 1
fi
rust=$(rustc --version | awk '{print $2}')
version_at_least "$rust" 1.95.0 || { echo "setup: Rust $rust is too old; Homeport needs 1.95 or newer (rustup update)" >&2; exit 1; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: Node.js 20.19 or newer (with npm) is needed to build the dashboard" >&2
    exit 1
fi
node_v=$(node --version | tr -d v)
version_at_least "$node_v" 20.19.0 || { echo "setup: Node.js $node_v is too old; the dashboard build needs 20.19 or newer" >&2; exit 1; }

# The unused-dependency check in scripts/test.sh. cargo-machete rather than cargo-shear: it
# installs with --locked in about 1.5 min on two cores, and the current cargo-shear (1.14) does
# not build on Rust 1.95 (its rust-analyzer parser crates need 1.98).
machete_version=0.9.2
if [[ "$(cargo machete --version 2>/dev/null)" != "$machete_version" ]]; then
    echo "setup: installing cargo-machete $machete_version"
    cargo install --locked --quiet "cargo-machete@$machete_version"
fi

# The lock file pins every package; `npm ci` installs exactly those, from the npm registry.
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
