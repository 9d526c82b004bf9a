# A desktop session for the tray app's tests, sourced by smoke.sh and bench.sh: a virtual
# display (Xvfb), a private session bus that activates nothing, a notification server (dunst)
# and a D-Bus monitor recording the notifications that reach it, a temp HOME and config (the
# demo, on ports of its own). Everything started here ends in `cleanup`, which runs on exit.
# Needs: $bin (the folder of homeport, homeport-fixture and homeport-desktop); $desktop may name
# another homeport-desktop.
set -euo pipefail
desktop=${desktop:-$bin/homeport-desktop}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
artifacts=$root/tests/artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
config=$work/homeport.toml
mkdir -p "$work/home"
# Two ports the kernel just gave out (held together, so they differ) and took back: free, so two
# runs at once do not clash.
read -r port_a port_b < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
sed -e "s|@FIXTURE@|$bin/homeport-fixture|g" -e "s|@DEMO@|$work|g" \
    -e "s/8470/$port_a/g; s/8471/$port_b/g" "$root/config/demo.toml" >"$config"
export HOMEPORT_CONFIG=$config
# No desktop portal (it would mount a FUSE file system in HOME), no accessibility bus: only
# what the test starts runs on this bus.
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

# Xvfb picks a free display number itself and writes it to the descriptor: two runs at once
# (a developer's and CI's) never share a display.
exec {display_fd}>"$work/display"
Xvfb -displayfd "$display_fd" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
exec {display_fd}>&-
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
    tail -n 20 "$work/desktop.log" "$work/data/logs/agent.log" "$work/notify.log" >&2 2>/dev/null || true
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
# pause SECONDS: a fixed wait where the test measures or lets something settle, not a guess
# at when a condition holds.
pause() {
    local until=$((SECONDS + $1))
    while ((SECONDS < until)); do sleep 0.2; done
}
screenshot() {
    xwd -root -silent -display "$display" | convert xwd:- "$artifacts/tray-$1.png" 2>/dev/null || true
}
agent_pid() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$work/data/agent.json"; }
status_json() { "$bin/homeport" status --json; }
healthy() { [[ $(status_json) == *'"state": "healthy"'* ]]; }
# The tray's process, and its dashboard window's (`homeport-desktop --window …`), by pid.
desktop_process() {
    local p want=$1
    for p in $(pgrep -s "$tray_sid" -f homeport-desktop); do
        if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- ' --window '; then
            [[ $want == window ]] && { echo "$p"; return 0; }
        else
            [[ $want == tray ]] && { echo "$p"; return 0; }
        fi
    done
    return 1
}
tray_running() { desktop_process tray; }
window_process() { desktop_process window; }
# Titles of the app's windows ("Homeport", then "Homeport · Healthy · Logs" once the page has data).
windows() { xwininfo -display "$display" -root -tree | grep -oE '"Homeport( · [^"]*)?"' || true; }
window_titled() { windows | grep -qx "\"$1\""; }
window_matching() { windows | grep -qxE "\"$1\""; }
no_window() { [[ -z $(windows) ]]; }
some_window() { [[ -n $(windows) ]]; }
close_window() {
    local id
    id=$(xwininfo -display "$display" -root -tree | grep -E '"Homeport( · [^"]*)?"' | awk '{print $1}' | head -n1)
    /usr/bin/python3 "$root/tests/tray/close_window.py" "$display" "$id" || fail "cannot ask the window to close"
}
notified() { grep -q "$1" "$work/notify.log"; }
tray_env() { env NO_AT_BRIDGE=1 HOME="$work/home" DISPLAY="$display" "$@"; }
start_tray() {
    # Its own session: its WebKit processes are easy to find, and cleanup ends them all.
    setsid env NO_AT_BRIDGE=1 HOME="$work/home" DISPLAY="$display" \
        "$desktop" "$@" >>"$work/desktop.log" 2>&1 &
    tray_sid=$!
    disown
    sessions+=("$tray_sid")
    wait_for 30 "the tray app starts" tray_running
}

wait_for 10 "Xvfb chooses a display" test -s "$work/display"
display=:$(head -n1 "$work/display")
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
