#!/usr/bin/env bash
# Builds the Debian package of Homeport: the tray app (/usr/bin/homeport-desktop), the CLI and
# agent it starts (/usr/bin/homeport, found beside the tray), the agent's per-service log holder
# (/usr/bin/homeport-shim, found beside the agent), and the dashboard that the agent serves to
# browsers (/usr/share/homeport/ui). Optimised builds; about 15 minutes cold on 2 cores.
#   ./scripts/package.sh        → prints the path of the .deb
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent build
cargo build --release --locked -p homeport-cli --bin homeport -p homeport-shim --bin homeport-shim
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# The bundler's config, merged over src-tauri/tauri.conf.json: files that go in the package
# besides the tray, by absolute path (the target folder may be anywhere).
extra=$(printf '{"bundle":{"linux":{"deb":{"files":{"/usr/bin/homeport":"%s","/usr/bin/homeport-shim":"%s","/usr/share/homeport/ui":"%s"}}}}}' \
    "$target/release/homeport" "$target/release/homeport-shim" "$PWD/ui/dist")
# The tray in the small `desktop` profile (Cargo.toml), the agent in release.
npm run --silent tauri -- build --bundles deb --config "$extra" -- --profile desktop
ls "$target"/desktop/bundle/deb/*.deb
