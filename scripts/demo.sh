#!/usr/bin/env bash
# Sets up Homeport, builds it, and runs the agent with a demo config that manages the fixture app:
# a production environment (web + worker, autostarted) and a beta one (started on demand).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent build
cargo build --release --locked --bin homeport --bin homeport-shim --bin homeport-fixture

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/homeport"
demo_dir="${XDG_DATA_HOME:-$HOME/.local/share}/homeport-demo"
mkdir -p "$demo_dir"
config="$demo_dir/homeport.toml"
sed -e "s|@FIXTURE@|$target_dir/release/homeport-fixture|g" -e "s|@DEMO@|$demo_dir|g" config/demo.toml > "$config"

if "$bin" --config "$config" status >/dev/null 2>&1; then
    echo "The demo agent is already running."
else
    "$bin" --config "$config" config check
    # The binary runs from the build folder, so it is told where the dashboard's files are
    # (an installed one finds them beside itself). --detach returns once the agent answers.
    HOMEPORT_UI_DIR="$PWD/ui/dist" "$bin" --config "$config" agent --detach >/dev/null
    for _ in $(seq 1 100); do
        if "$bin" --config "$config" status --json 2>/dev/null | grep -q '"state": "healthy"'; then break; fi
        sleep 0.1
    done
fi
"$bin" --config "$config" status
cat <<EOT

Homeport is supervising the demo app. Try:
  export HOMEPORT_CONFIG=$config PATH="$target_dir/release:\$PATH"
  homeport status                      # the table above
  homeport dashboard                   # the dashboard in your browser
  curl http://127.0.0.1:8470/          # the demo web service
  homeport logs demo -f                # live logs (Ctrl-C to stop following)
  homeport start demo/beta             # bring up the beta environment beside production
  homeport stop demo                   # stop every demo service
  homeport agent stop                  # stop the agent (and its services)
EOT
