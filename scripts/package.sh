#!/usr/bin/env bash
# Builds the Debian package of Homeport: the tray app (/usr/bin/homeport-desktop), the CLI and
# agent it starts (/usr/bin/homeport, found beside the tray), the agent's per-service log holder
# (/usr/bin/homeport-shim, found beside the agent), the dashboard that the agent serves to
# browsers (/usr/share/homeport/ui, found from the binary as ../share/homeport/ui), the manual
# pages and the shell completions. Optimised, stripped builds; about 15 minutes cold on 2 cores.
#   ./scripts/package.sh        → prints the path of the .deb
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent build
# The agent and its log holder in the small `agent` profile (Cargo.toml), the tray in `desktop`.
cargo build --profile agent --locked -p homeport-cli --bin homeport -p homeport-shim --bin homeport-shim
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# The bundler's config, merged over src-tauri/tauri.conf.json: files that go in the package
# besides the tray, by absolute path (the target folder may be anywhere).
# Manual pages (gzipped, as Debian installs them) and completion scripts, from the binary itself.
extras="$target/package-extras"
rm -rf "$extras"
mkdir -p "$extras/man1"
"$target/agent/homeport" man --out "$extras/man1" >/dev/null
gzip -n -9 "$extras"/man1/*.1
"$target/agent/homeport" completions bash > "$extras/homeport.bash"
"$target/agent/homeport" completions zsh > "$extras/_homeport"
"$target/agent/homeport" completions fish > "$extras/homeport.fish"
extra=$(printf '{"bundle":{"linux":{"deb":{"files":{"/usr/bin/homeport":"%s","/usr/bin/homeport-shim":"%s","/usr/share/homeport/ui":"%s","/usr/share/man/man1":"%s","/usr/share/bash-completion/completions/homeport":"%s","/usr/share/zsh/vendor-completions/_homeport":"%s","/usr/share/fish/vendor_completions.d/homeport.fish":"%s"}}}}}' \
    "$target/agent/homeport" "$target/agent/homeport-shim" "$PWD/ui/dist" "$extras/man1" "$extras/homeport.bash" "$extras/_homeport" "$extras/homeport.fish")
npm run --silent tauri -- build --bundles deb --config "$extra" -- --profile desktop
ls "$target"/desktop/bundle/deb/*.deb
