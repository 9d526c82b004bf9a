#!/usr/bin/env bash
# What the tray costs while nothing happens, before and after a change, in one run: CPU time
# (utime + stime from /proc) of the tray and of the agent over IDLE seconds, and the loopback
# requests the agent answered meanwhile (`homeport_api_requests_total` of its /metrics), with the
# demo's services running and the tray in the virtual desktop session of the smoke test.
#   tests/tray/idle.sh BASELINE_DIR CANDIDATE_DIR [IDLE_SECONDS]   (default 60)
# Each DIR holds homeport, homeport-desktop and homeport-fixture built the same way (say, the
# debug builds of two commits); the baseline runs first, then the candidate, on one display.
base=${1:?usage: idle.sh BASELINE_DIR CANDIDATE_DIR [IDLE_SECONDS]}
cand=${2:?usage: idle.sh BASELINE_DIR CANDIDATE_DIR [IDLE_SECONDS]}
idle=${3:-60}
bin=$cand
# shellcheck source=session.sh
source "$(dirname "$0")/session.sh"
tick=$(getconf CLK_TCK)

# CPU seconds used so far by the given pids.
cpu() {
    local p total=0
    for p in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    bc -l <<<"$total / $tick"
}
requests() {
    local addr
    addr=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$work/data/agent.json")
    curl -sf -H "Authorization: Bearer $(cat "$work/data/token")" "http://$addr/metrics" |
        awk '/^homeport_api_requests_total / {print $2}'
}

# measure DIR: "tray_cpu_s agent_cpu_s requests" over $idle seconds.
measure() {
    local dir=$1 agent tray r0 r1 a0 a1 t0 t1
    # The CLI of the same build checks on its agent.
    bin=$dir
    "$dir/homeport" --config "$config" agent >/dev/null 2>&1 &
    helpers+=($!)
    wait_for 60 "the demo's services become healthy" healthy
    agent=$(agent_pid)
    : >"$work/desktop.log"
    desktop=$dir/homeport-desktop
    start_tray --minimized
    wait_for 30 "the tray is ready" grep -q "tray ready" "$work/desktop.log"
    tray=$(tray_running)
    pause 10 # connected, first snapshot taken: what follows is the tray sitting all day
    r0=$(requests) a0=$(cpu "$agent") t0=$(cpu "$tray")
    pause "$idle"
    r1=$(requests) a1=$(cpu "$agent") t1=$(cpu "$tray")
    pkill -TERM -s "$tray_sid" -f homeport-desktop
    wait_for 20 "the tray app exits" bash -c "! pgrep -s $tray_sid"
    kill -TERM "$agent"
    wait_for 60 "the agent exits" bash -c "! kill -0 $agent"
    # The second read counts itself.
    echo "$(bc -l <<<"$t1 - $t0") $(bc -l <<<"$a1 - $a0") $((r1 - r0 - 1))"
}

read -r base_tray base_agent base_req < <(measure "$base")
read -r cand_tray cand_agent cand_req < <(measure "$cand")
pct() { bc -l <<<"100 * $1 / $idle" | awk '{printf "%.2f %%", $1}'; }
per_min() { bc -l <<<"60 * $1 / $idle" | awk '{printf "%.0f", $1}'; }
ratio() { bc -l <<<"($2 > 0) * $1 / ($2 + ($2 == 0))" | awk -v b="$2" '{ if (b == 0) print "–"; else printf "%.2f×", $1 }'; }
cat <<TABLE
| idle ${idle} s, tray + agent + the demo | baseline (same run) | homeport | ratio |
|---|---|---|---|
| tray CPU (of one core) | $(pct "$base_tray") | $(pct "$cand_tray") | $(ratio "$cand_tray" "$base_tray") |
| agent CPU (of one core) | $(pct "$base_agent") | $(pct "$cand_agent") | $(ratio "$cand_agent" "$base_agent") |
| loopback requests to the agent per minute | $(per_min "$base_req") | $(per_min "$cand_req") | $(ratio "$cand_req" "$base_req") |
TABLE
