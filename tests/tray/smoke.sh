#!/usr/bin/env bash
# Smoke test of the tray app under a virtual display: it starts an agent when none runs, opens
# no window, reuses a running agent instead of starting a second one, restarts the agent when it
# dies, and leaves production running when it quits. Every wait has a deadline.
#   tests/tray/smoke.sh TARGET_DIR   (needs homeport, homeport-fixture and homeport-desktop built)
set -euo pipefail
target=${1:?usage: smoke.sh TARGET_DIR}
bin=$target/debug
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
tray_sid=""
sessions=()
cleanup() {
    for sid in "${sessions[@]}"; do pkill -KILL -s "$sid" 2>/dev/null || true; done
    # SIGTERM makes the agent stop every service before it exits.
    local pid
    pid=$(agent_pid 2>/dev/null || true)
    if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
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
    tail -n 20 "$work/desktop.log" "$work/data/agent.log" >&2 2>/dev/null || true
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
agent_pid() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$work/data/agent.json"; }
healthy() { [[ $("$bin/homeport" status --json) == *'"state": "healthy"'* ]]; }
tray_running() { pgrep -s "$tray_sid" -f homeport-desktop; }
start_tray() {
    # Its own session, so that cleanup also ends the session bus and what it activated.
    setsid env NO_AT_BRIDGE=1 HOME="$work/home" DISPLAY="$display" dbus-run-session --config-file="$work/bus.conf" -- \
        "$bin/homeport-desktop" >>"$work/desktop.log" 2>&1 &
    tray_sid=$!
    disown
    sessions+=("$tray_sid")
    wait_for 30 "the tray app starts" tray_running
}

wait_for 10 "Xvfb comes up" xdpyinfo -display "$display"

start_tray
wait_for 60 "the tray starts an agent whose services become healthy" healthy
echo "ok - the tray started the agent"
first_agent=$(agent_pid)

windows=$(xwininfo -display "$display" -root -children | grep -c '"Homeport"' || true)
[[ $windows -eq 0 ]] || fail "the tray opened $windows window(s) nobody asked for"
echo "ok - no window until asked"

pkill -TERM -s "$tray_sid" -f homeport-desktop
wait_for 20 "the tray app exits" bash -c "! pgrep -s $tray_sid -f homeport-desktop"
healthy || fail "production stopped when the tray quit"
echo "ok - quitting the tray leaves production running"

starts() { grep -c "no agent answered" "$work/desktop.log" || true; }
[[ $(starts) -eq 1 ]] || fail "the first tray started $(starts) agents"
start_tray
# The tray polls every 2 s: give it three polls to (wrongly) start a second agent.
wait_for 10 "the second tray connects" tray_running
sleep_until=$((SECONDS + 6))
while ((SECONDS < sleep_until)); do sleep 0.5; done
[[ $(agent_pid) == "$first_agent" && $(starts) -eq 1 ]] || fail "the tray started a second agent"
echo "ok - the tray reuses a running agent"

kill -9 "$first_agent"
wait_for 40 "the tray restarts a dead agent" bash -c \
    "[[ \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json') != $first_agent ]] && kill -0 \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json')"
wait_for 60 "services are healthy under the restarted agent" healthy
echo "ok - the tray restarts an agent that died"
echo "# pass 5"
