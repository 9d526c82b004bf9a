#!/usr/bin/env bash
# Smoke test of the tray app in a virtual desktop session (see session.sh): it starts an agent
# when none runs, opens no window until asked, is a single instance that opens its dashboard
# window when launched again, notifies when a service crashes, keeps the tray when the window
# closes, leaves production running when it quits, reuses a running agent, and restarts the
# agent when it dies. Every wait has a deadline. Screenshots go to tests/artifacts/.
#   tests/tray/smoke.sh TARGET_DIR   (needs homeport, homeport-fixture and homeport-desktop built)
target=${1:?usage: smoke.sh TARGET_DIR}
bin=$target/debug
# shellcheck source=session.sh
source "$(dirname "$0")/session.sh"

web_pid() {
    status_json | /usr/bin/python3 -c 'import json, sys
print(next(s["pid"] for s in json.load(sys.stdin)["services"]
           if s["key"] == {"app": "demo", "env": "production", "service": "web"} and s["pid"]))'
}

start_tray
wait_for 60 "the tray starts an agent whose services become healthy" healthy
first_agent=$(agent_pid)
# What that agent says goes to its own log, not to /dev/null.
wait_for 10 "the agent it started writes its own log" grep -q "listening on" "$work/data/logs/agent.log"
echo "ok - the tray started the agent, which keeps its own log"

wait_for 10 "the tray is ready" grep -q "tray ready" "$work/desktop.log"
no_window || fail "the tray opened window(s) nobody asked for: $(windows)"
echo "ok - no window until asked"

first_tray=$(tray_running)
tray_env timeout 60 "$desktop" --open settings >>"$work/second.log" 2>&1 ||
    fail "a second launch did not hand over and exit: $(cat "$work/second.log")"
[[ $(tray_running) == "$first_tray" ]] || fail "the second launch replaced the first tray"
wait_for 60 "the first tray opens its dashboard window" some_window
wait_for 60 "the window's page reaches the agent" window_titled "Homeport · Healthy · Settings"
pause 2 # let it paint before the screenshot
screenshot dashboard
echo "ok - a second launch hands over: the first opens the dashboard window, which reads the agent"

window=$(window_process) || fail "the window has no process of its own"
tray_env timeout 60 "$desktop" --open logs >>"$work/second.log" 2>&1 || fail "a third launch did not hand over"
wait_for 30 "the open window moves to the logs" window_titled "Homeport · Healthy · Logs"
[[ $(window_process) == "$window" && $(windows | wc -l) -eq 1 ]] || fail "a second request opened a second window: $(windows)"
screenshot logs
echo "ok - asking again moves the open window instead of opening another"

window_process >/dev/null || fail "the window has no process of its own"
close_window
wait_for 60 "the window closes" no_window
wait_for 20 "the window's process ends, WebKit's with it" bash -c "! pgrep -s $tray_sid -f WebKit"
pause 2 # a tray that quits with its last window would be gone by now
tray_running >/dev/null || fail "closing the window quit the tray"
! window_process >/dev/null || fail "the window's process outlived the window"
echo "ok - closing the window ends its processes and keeps the tray"

pid=$(web_pid) || fail "no pid for demo/production/web"
kill -9 "$pid"
wait_for 30 "a notification about the crash" notified "demo/production/web crashed"
pause 1 # let dunst paint before the screenshot
screenshot notification
echo "ok - a crash is notified"

# A click on it (dunst's default action) opens the window on that service's logs.
dunstctl action 0 || fail "dunst cannot act on the notification"
wait_for 60 "the notification's click opens the service's logs" window_matching "Homeport · .* · Logs"
pause 2
screenshot notification-click
echo "ok - clicking the notification opens the service's logs"

# A backup made elsewhere (the CLI) is told too: it is an event on the agent's stream.
"$bin/homeport" backup demo/production >/dev/null || fail "homeport backup failed"
wait_for 30 "a notification about the backup" notified "Backup of demo/production done"
echo "ok - a backup made from the CLI is notified"

# So is a restore, once.
"$bin/homeport" restore demo/production >/dev/null || fail "homeport restore failed"
wait_for 60 "a notification about the restore" notified "demo/production restored from backup"
[[ $(grep -c "demo/production restored from backup" "$work/notify.log") -eq 1 ]] || fail "the restore was told more than once"
echo "ok - a restore made from the CLI is notified once"

# SIGTERM to the tray alone (its window is open on the logs): the window goes with it.
window_process >/dev/null || fail "the window opened by the notification has no process"
kill -TERM "$(tray_running)"
wait_for 20 "the tray app exits" bash -c "! pgrep -s $tray_sid -f homeport-desktop"
wait_for 30 "its window is gone with it" no_window
wait_for 30 "production is healthy after the crash" healthy
echo "ok - a tray ended by SIGTERM takes its window along and leaves production running"

starts() { grep -c "no agent answered" "$work/desktop.log" || true; }
[[ $(starts) -eq 1 ]] || fail "the first tray started $(starts) agents"
start_tray --minimized
pause 6 # time in which it could (wrongly) start a second agent
[[ $(agent_pid) == "$first_agent" && $(starts) -eq 1 ]] || fail "the tray started a second agent"
no_window || fail "--minimized opened a window"
echo "ok - the tray reuses a running agent"

kill -9 "$first_agent"
wait_for 40 "the tray restarts a dead agent" bash -c \
    "[[ \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json') != $first_agent ]] && kill -0 \$(sed -n 's/.*\"pid\":\([0-9]*\).*/\1/p' '$work/data/agent.json')"
wait_for 60 "services are healthy under the restarted agent" healthy
echo "ok - the tray restarts an agent that died"
echo "# pass 12"
