#!/usr/bin/env bash
# The tray app's figures for docs/benchmarks.md: time from launch to tray ready, and memory (PSS
# and RSS of all its processes, WebKit's included) with the tray only, with the dashboard window
# open, and after closing it. Baselines from the same run: an X client that connects to the same
# display and exits (launch time), and the tray-only figure (memory).
#   tests/tray/bench.sh TARGET_DIR [PROFILE] [RUNS]   (default: the desktop profile, 5 runs)
# Needs homeport and homeport-fixture built in release, and homeport-desktop in PROFILE:
#   npm run build && cargo build --release --bins && cargo build --profile desktop -p homeport-desktop
target=${1:?usage: bench.sh TARGET_DIR [PROFILE] [RUNS]}
bin=$target/release
desktop=$target/${2:-desktop}/homeport-desktop
runs=${3:-5}
# shellcheck source=session.sh
source "$(dirname "$0")/session.sh"

now() { date +%s.%N; }
# Seconds from $1 (epoch seconds) to the tray's "tray ready" log line (RFC 3339, UTC, µs).
ready_after() {
    local line stamp
    line=$(grep -a "tray ready" "$work/desktop.log" | tail -n1 | sed 's/\x1b\[[0-9;]*m//g')
    stamp=$(awk '{print $1}' <<<"$line")
    python3 -c 'import sys, datetime
t = datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp()
print(f"{t - float(sys.argv[2]):.3f}")' "$stamp" "$1"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# "PSS RSS" in MB, summed over every process of the tray's session (main + WebKit children).
memory() {
    local pss=0 rss=0 p v
    for p in $(pgrep -s "$tray_sid"); do
        v=$(awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p+0, r+0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
        pss=$((pss + ${v% *}))
        rss=$((rss + ${v#* }))
    done
    [[ -n ${BENCH_VERBOSE:-} ]] && for p in $(pgrep -s "$tray_sid"); do
        echo "  $(cat /proc/$p/comm) $(grep -E '^(Pss|Rss):' /proc/$p/smaps_rollup | tr -s ' ' | tr '\n' ' ')" >&2
    done
    printf '%.1f %.1f %d\n' "$(bc -l <<<"$pss/1024")" "$(bc -l <<<"$rss/1024")" "$(pgrep -s "$tray_sid" | wc -l)"
}
stop_tray() {
    pkill -TERM -s "$tray_sid" -f homeport-desktop
    wait_for 20 "the tray app exits" bash -c "! pgrep -s $tray_sid"
}

# The agent first, so that launches measure the tray alone.
"$bin/homeport" --config "$config" agent >/dev/null 2>&1 &
helpers+=($!)
wait_for 60 "the demo's services become healthy" healthy

baseline=() launch=()
for _ in $(seq 1 "$runs"); do
    t0=$(now); xdpyinfo -display "$display" >/dev/null; t1=$(now)
    baseline+=("$(bc -l <<<"$t1 - $t0")")
    : >"$work/desktop.log"
    t0=$(now)
    start_tray
    wait_for 30 "the tray is ready" grep -q "tray ready" "$work/desktop.log"
    launch+=("$(ready_after "$t0")")
    stop_tray
done
base_ms=$(printf '%s\n' "${baseline[@]}" | median | awk '{printf "%.0f", $1 * 1000}')
launch_ms=$(printf '%s\n' "${launch[@]}" | median | awk '{printf "%.0f", $1 * 1000}')

start_tray
wait_for 30 "the tray is ready" grep -q "tray ready" "$work/desktop.log"
pause 10 # idle, as it sits all day
read -r tray_pss tray_rss tray_n < <(memory)
tray_env "$desktop" --open dashboard >/dev/null 2>&1
wait_for 30 "the window's page reaches the agent" window_titled "Homeport · Healthy · Overview"
pause 10
read -r open_pss open_rss open_n < <(memory)
close_window
wait_for 20 "the window closes" no_window
pause 10
read -r closed_pss closed_rss closed_n < <(memory)
stop_tray

ratio() { bc -l <<<"$1 / $2" | awk '{printf "%.2f×", $1}'; }
cat <<TABLE
| benchmark | baseline (same run) | homeport | ratio | goal |
|---|---|---|---|---|
| launch → tray ready (median of $runs) | ${base_ms} ms (xdpyinfo: connect to the display and exit) | ${launch_ms} ms | $(ratio "$launch_ms" "$base_ms") | ≤ 1 s |
| tray only, idle (all processes) | – | ${tray_pss} MB PSS, ${tray_rss} MB RSS, ${tray_n} process(es) | – | ≤ 60 MB PSS |
| dashboard window open | tray only ${tray_pss} MB PSS | ${open_pss} MB PSS, ${open_rss} MB RSS, ${open_n} processes | $(ratio "$open_pss" "$tray_pss") | – |
| after closing the window | tray only ${tray_pss} MB PSS | ${closed_pss} MB PSS, ${closed_rss} MB RSS, ${closed_n} process(es) | $(ratio "$closed_pss" "$tray_pss") | ≤ 1.10× |
TABLE
