#!/usr/bin/env bash
# Smoke test of the tray app under a virtual display, with a private session bus, a notification
# server (dunst) and a D-Bus monitor that records what reaches it. Checks that the tray starts
# an agent when none runs, opens no window until asked, is a single instance that opens its
# dashboard window when launched again, notifies when a service crashes, keeps the tray when the
# window closes, leaves production running when it quits, reuses a running agent, and restarts
# the agent when it dies. Every wait has a deadline. Screenshots go to tests/artifacts/.
#   tests/tray/smoke.sh TARGET_DIR   (needs homeport, homeport-fixture and homeport-desktop built)
set -euo pipefail
target=${1:?usage: smoke.sh TARGET_DIR}
bin=$target/debug
artifacts=$(cd "$(dirname "$0")/../.." && pwd)/tests/artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
config=$work/homeport.toml
mkdir -p "$work/home"
sed -e "s|@FIXTURE@|$bin/homeport-fixture|g" -e "s|@DEMO@|$work|g" \
    -e 's/8470/18570/g; s/8471/18571/g' "$(dirname "$0")/../../config/demo.toml" >"$config"
export HOMEPORT_CONFIG=$config
# A session bus that activates nothing: no desktop portal (which would mount a FUSE file system
# in HOME), no accessibility bus; only what the test starts runs on it.
cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=$work</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
CONF

display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
bus_pid=""
helpers=()
tray_sid=""
sessions=()
cleanup() {
    for sid in "${sessions[@]}"; do pkill -KILL -s "$sid" 2>/dev/null || true; done
    for pid in "${helpers[@]}"; do kill "$pid" 2>/dev/null || true; done
    # SIGTERM makes the agent stop every service before it exits.
    local pid
    pid=$(agent_pid 2>/dev/null || true)
    if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    [[ -n $bus_pid ]] && kill "$bus_pid" 2>/dev/null
    kill "$xvfb" 2>/dev/null || true
    # In case a portal got started anyway: it mounts a FUSE file system in HOME.
    while read -r _ mnt _; do
        [[ $mnt == "$work"/* ]] && { fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
    done </proc/mounts
    rm -rf "$work" || true
}
trap cleanup EXIT

fail() {
    echo "not ok - $*" >&2
    "$bin/homeport" status >&2 || true
    tail -n 20 "$work/desktop.log" "$work/data/agent.log" "$work/notify.log" >&2 2>/dev/null || true
    screenshot failure
    echo "# fail 1"
    exit 1
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what (waited ${deadline}s)"
        sleep 0.2
    done
}
screenshot() {
    xwd -root -silent -display "$display" | convert xwd:- "$artifacts/tray-$1.png" 2>/dev/null || true
}
agent_pid() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$work/data/agent.json"; }
status_json() { "$bin/homeport" status --json; }
healthy() { [[ $(status_json) == *'"state": "healthy"'* ]]; }
web_pid() {
    status_json | /usr/bin/python3 -c 'import json, sys
print(next(s["pid"] for s in json.load(sys.stdin)["services"]
           if s["key"] == {"app": "demo", "env": "production", "service": "web"} and s["pid"]))'
}
tray_running() { pgrep -s "$tray_sid" -f homeport-desktop; }
# Titles of the app's windows ("Homeport", then "Homeport · Healthy" once the page has data).
windows() { xwininfo -display "$display" -root -tree | grep -oE '"Homeport( · [^"]*)?"' || true; }
window_titled() { windows | grep -qx "\"$1\""; }
no_window() { [[ -z $(windows) ]]; }
notified() { grep -q "$1" "$work/notify.log"; }
start_tray() {
    # Its own session, so that cleanup ends whatever it leaves behind.
    setsid env NO_AT_BRIDGE=1 HOME="$work/home" DISPLAY="$display" \
        "$bin/homeport-desktop" "$@" >>"$work/desktop.log" 2>&1 &
    tray_sid=$!
    disown
    sessions+=("$tray_sid")
    wait_for 30 "the tray app starts" tray_running
}

wait_for 10 "Xvfb comes up" xdpyinfo -display "$display"
read -r bus_address bus_pid < <(dbus-daemon --config-file="$work/bus.conf" --fork --print-address=1 --print-pid=1 | paste -sd' ')
export DBUS_SESSION_BUS_ADDRESS=$bus_address
cat >"$work/dunstrc" <<'RC'
[global]
font = Sans 10
width = 360
offset = 12x12
frame_width = 1
frame_color = "#9ca3af"
transparency = 0
[urgency_normal]
background = "#ffffff"
foreground = "#111827"
timeout = 0
[urgency_critical]
background = "#fee2e2"
foreground = "#7f1d1d"
timeout = 0
RC
DISPLAY=$display dunst -config "$work/dunstrc" >"$work/dunst.log" 2>&1 &
helpers+=($!)
dbus-monitor "interface='org.freedesktop.Notifications',member='Notify'" >"$work/notify.log" 2>&1 &
helpers+=($!)
wait_for 10 "dunst owns the notification service" \
    dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetNameOwner string:org.freedesktop.Notifications

start_tray
wait_for 60 "the tray starts an agent whose services become healthy" healthy
echo "ok - the tray started the agent"
first_agent=$(agent_pid)

wait_for 10 "the tray is ready" grep -q "tray ready" "$work/desktop.log"
no_window || fail "the tray opened window(s) nobody asked for: $(windows)"
echo "ok - no window until asked"

first_tray=$(tray_running)
env NO_AT_BRIDGE=1 HOME="$work/home" DISPLAY="$display" timeout 20 "$bin/homeport-desktop" --open settings \
    >>"$work/second.log" 2>&1 || fail "a second launch did not hand over and exit: $(cat "$work/second.log")"
[[ $(tray_running) == "$first_tray" ]] || fail "the second launch replaced the first tray"
wait_for 20 "the first tray opens its dashboard window" window_titled "Homeport"
wait_for 20 "the window's page reaches the agent" window_titled "Homeport · Healthy"
sleep_until=$((SECONDS + 2)); while ((SECONDS < sleep_until)); do sleep 0.5; done # let it paint
screenshot dashboard
echo "ok - a second launch hands over: the first opens the dashboard window, which reads the agent"

pid=$(web_pid) || fail "no pid for demo/production/web"
kill -9 "$pid"
wait_for 30 "a notification about the crash" notified "demo/production/web crashed"
sleep_until=$((SECONDS + 1)); while ((SECONDS < sleep_until)); do sleep 0.2; done # let it paint
screenshot notification
echo "ok - a crash is notified"

window_id=$(xwininfo -display "$display" -root -tree | grep '"Homeport · ' | awk '{print $1}' | head -n1)
/usr/bin/python3 "$(dirname "$0")/close_window.py" "$display" "$window_id" || fail "cannot ask the window to close"
wait_for 20 "the window closes" no_window
sleep_until=$((SECONDS + 2)); while ((SECONDS < sleep_until)); do sleep 0.5; done
tray_running >/dev/null || fail "closing the window quit the tray"
echo "ok - closing the window keeps the tray"

pkill -TERM -s "$tray_sid" -f homeport-desktop
wait_for 20 "the tray app exits" bash -c "! pgrep -s $tray_sid -f homeport-desktop"
wait_for 30 "production is healthy after the crash" healthy
echo "ok - quitting the tray leaves production running"

starts() { grep -c "no agent answered" "$work/desktop.log" || true; }
[[ $(starts) -eq 1 ]] || fail "the first tray started $(starts) agents"
start_tray --minimized
# The tray polls every 2 s: give it three polls to (wrongly) start a second agent.
sleep_until=$((SECONDS + 6))
while ((SECONDS < sleep_until)); do sleep 0.5; done
[[ $(agent_pid) == "$first_agent" && $(starts) -eq 1 ]] || fail "the tray started a second agent"
no_window || fail "--minimized opened a window"
echo "ok - the tray reuses a running agent"

kill -9 "$first_agent"
wait_for 40 "the tray restarts a dead agent" bash -c \
    "[[ \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json') != $first_agent ]] && kill -0 \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json')"
wait_for 60 "services are healthy under the restarted agent" healthy
echo "ok - the tray restarts an agent that died"
echo "# pass 8"
