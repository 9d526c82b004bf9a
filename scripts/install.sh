#!/usr/bin/env bash
# Installs Homeport from this checkout for the current user, without root:
#   PREFIX/lib/homeport/homeport            the CLI and agent (stripped release build)
#   PREFIX/lib/homeport/homeport-shim       the per-service log holder the agent starts
#   PREFIX/lib/homeport/homeport-desktop    the tray app (unless --no-tray)
#   PREFIX/lib/homeport/ui/                 the dashboard the agent serves to browsers
#   PREFIX/bin/homeport, homeport-desktop   links on PATH (PREFIX defaults to ~/.local)
#   PREFIX/share/man/man1/homeport*.1       the manual pages
#   completions for bash and fish, where those shells look for them
# The binaries stay together in one folder, so the agent finds its dashboard beside itself and
# the tray finds the agent. Upgrading is running this again: each file is replaced by a rename,
# so running agents and service shims keep the files they started from; then
# `homeport agent restart` moves the agent to the new binary without stopping any service.
#
#   ./scripts/install.sh [--prefix DIR] [--no-tray]
#   ./scripts/install.sh --from DIR [--ui DIR] [--prefix DIR]   install binaries already built in DIR
#   ./scripts/install.sh --uninstall [--prefix DIR]             remove what this script installed
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="$HOME/.local" tray=1 from="" ui="" uninstall=0
while (($#)); do
    case "$1" in
        --prefix) prefix="$2"; shift ;;
        --no-tray) tray=0 ;;
        --from) from="$2"; shift ;;
        --ui) ui="$2"; shift ;;
        --uninstall) uninstall=1 ;;
        *) echo "install: unknown option $1 (--prefix DIR, --no-tray, --from DIR, --ui DIR, --uninstall)" >&2; exit 2 ;;
    esac
    shift
done
lib="$prefix/lib/homeport"
bin="$prefix/bin"
man="$prefix/share/man/man1"
bash_completions="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
fish_completions="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"

if ((uninstall)); then
    if [[ -x "$lib/homeport" ]] && "$lib/homeport" status >/dev/null 2>&1; then
        echo "install: an agent is running; run \`homeport uninstall\` first (it stops it and removes the units)" >&2
        exit 1
    fi
    rm -rf "$lib"
    rm -f "$bin/homeport" "$bin/homeport-desktop" "$man"/homeport*.1 \
        "$bash_completions/homeport" "$fish_completions/homeport.fish"
    echo "Removed Homeport from $prefix (your config and data are untouched)"
    exit 0
fi

if [[ -z "$from" ]]; then
    ./scripts/setup.sh
    npm run --silent build
    cargo build --release --locked -p homeport-cli --bin homeport -p homeport-shim --bin homeport-shim
    ((tray)) && cargo build --profile desktop --locked -p homeport-desktop
    target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    agent_bin="$target/release/homeport"
    shim_bin="$target/release/homeport-shim"
    tray_bin="$target/desktop/homeport-desktop"
    ui="${ui:-$PWD/ui/dist}"
else
    agent_bin="$from/homeport"
    shim_bin="$from/homeport-shim"
    tray_bin="$from/homeport-desktop"
fi
[[ -x "$agent_bin" ]] || { echo "install: $agent_bin is missing" >&2; exit 1; }

# A new file beside the old one, then a rename over it: never a half-written binary at the path,
# and processes running the old file keep it.
place() {
    local src="$1" dest="$2" mode="$3"
    install -m "$mode" "$src" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
}

mkdir -p "$lib" "$bin" "$man" "$bash_completions" "$fish_completions"
place "$agent_bin" "$lib/homeport" 755
# Without it the agent runs `homeport shim`, the same code in the larger binary.
[[ -x "$shim_bin" ]] && place "$shim_bin" "$lib/homeport-shim" 755
ln -sfn "$lib/homeport" "$bin/homeport"
if ((tray)) && [[ -x "$tray_bin" ]]; then
    place "$tray_bin" "$lib/homeport-desktop" 755
    ln -sfn "$lib/homeport-desktop" "$bin/homeport-desktop"
fi
if [[ -n "$ui" && -f "$ui/index.html" ]]; then
    rm -rf "$lib/ui.new.$$"
    cp -r "$ui" "$lib/ui.new.$$"
    rm -rf "$lib/ui.old.$$"
    [[ -d "$lib/ui" ]] && mv "$lib/ui" "$lib/ui.old.$$"
    mv "$lib/ui.new.$$" "$lib/ui"
    rm -rf "$lib/ui.old.$$"
fi
"$lib/homeport" man --out "$man" >/dev/null
"$lib/homeport" completions bash > "$bash_completions/homeport"
"$lib/homeport" completions fish > "$fish_completions/homeport.fish"

echo "Installed Homeport in $lib, linked from $bin"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "Add $bin to your PATH (e.g. in ~/.profile): export PATH=\"$bin:\$PATH\"" ;;
esac
echo "zsh completion: homeport completions zsh > ~/.zfunc/_homeport (with ~/.zfunc in fpath)"
if "$lib/homeport" status >/dev/null 2>&1; then
    echo "An agent is running the previous binary: \`homeport agent restart\` switches it (services keep running)"
fi
