#!/usr/bin/env bash
# load-monitor benchmark: records/s ingested over HTTP with gen-events --post (one record per
# request, and batched) against wrk's raw request rate on the same route; report latency with
# 10,000 servers holding a full day; memory per server. Run from the repo root after
# `cargo build --release`. Every figure is printed with the command that produced it.
# DURATION= (default 10s) is each wrk and poster run; SERVERS= (default 10000) the report's servers.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

BIN=${BIN:-target/release}
DURATION=${DURATION:-10s}
SERVERS=${SERVERS:-10000}
need_bins "$BIN" load-monitor gen-events
need wrk
# Table rows: measurement, result, command.
ROWS=()
row() { ROWS+=("$(printf '%s\t%s\t%s' "$@")"); }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Start a load-monitor with the given flags; sets PORT and LM_PID.
start_monitor() {
  local log=$WORK/monitor.$RANDOM.err
  "$BIN/load-monitor" --listen 127.0.0.1:0 "$@" 2>"$log" &
  LM_PID=$!
  PIDS+=("$LM_PID")
  for _ in $(seq 200); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [[ -n $PORT ]] && return 0
    sleep 0.05
  done
  echo "load-monitor did not start:" >&2; cat "$log" >&2; exit 1
}
stop_monitor() { kill -TERM "$LM_PID"; wait "$LM_PID" 2>/dev/null || true; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# Records/s from the poster's summary line.
poster_rate() { grep -o '[0-9]* records/s' "$1" | grep -o '^[0-9]*'; }

bench_start load-monitor "wrk's raw request rate on the same route (\`wrk -t2 -c32\`, benches/load-monitor-post.lua)" "DURATION SERVERS BIN" "$@"
echo "# (a shared machine: other jobs run beside this benchmark; compare the ratios, not the absolute numbers)"
echo

# 1. Ingest, one record per request: the poster and wrk on the same route, same server count.
start_monitor
cmd="$BIN/gen-events --profile load --servers 1000 --rate max --duration $DURATION --post http://127.0.0.1:$PORT/addserver --concurrency 16"
$cmd 2>"$WORK/post1.err" || { cat "$WORK/post1.err"; exit 1; }
post1=$(poster_rate "$WORK/post1.err")
echo "gen-events --post, 1 record/request:   $post1 records/s"
echo "  \$ $cmd"
row "ingest, 1 record per request, gen-events" "$post1 records/s" "\`${cmd//$BIN\//}\`"
stop_monitor

start_monitor
cmd="wrk -t2 -c32 -d$DURATION -s benches/load-monitor-post.lua http://127.0.0.1:$PORT/addserver -- 1000"
t0=$(cpu_ticks "$LM_PID")
$cmd >"$WORK/wrk1.out"
t1=$(cpu_ticks "$LM_PID")
wrk1=$(awk '/Requests\/sec/ {printf "%d", $2}' "$WORK/wrk1.out")
accepted=$(curl -s "http://127.0.0.1:$PORT/stats" | grep -o '"accepted":[0-9]*' | cut -d: -f2)
echo "wrk POST /addserver, 1 record/request: $wrk1 requests/s ($accepted records accepted in total)"
echo "  \$ $cmd"
echo "  load-monitor's own CPU time: $(( (t1 - t0) * TICK_US / accepted )) us per request (from /proc/PID/stat)"
row "ingest, 1 record per request, wrk (anchor)" "$wrk1 requests/s; load-monitor's own CPU $(( (t1 - t0) * TICK_US / accepted )) µs per request" "\`$cmd\`"
stop_monitor

# 2. Ingest, batched: 500 records per POST /records.
start_monitor
cmd="$BIN/gen-events --profile load --servers 1000 --rate max --count 2000000 --post http://127.0.0.1:$PORT/records --batch 500 --concurrency 4"
$cmd 2>"$WORK/post2.err" || { cat "$WORK/post2.err"; exit 1; }
post2=$(poster_rate "$WORK/post2.err")
echo "gen-events --post --batch 500:          $post2 records/s"
echo "  \$ $cmd"
row "ingest, 500 records per request, gen-events" "$post2 records/s" "\`${cmd//$BIN\//}\`"
stop_monitor
echo
awk -v a="$post1" -v b="$wrk1" -v c="$post2" 'BEGIN {
  printf "ratio poster/wrk, 1 record per request: %.2f\n", a / b
  printf "ratio batched poster/wrk requests:      %.1f records per wrk request\n", c / b
}'
echo

# 3. Report latency with 10,000 servers, each with a full hour of minutes and a full day of hours.
start_monitor --snapshot "$WORK/state.jsonl"
rss0=$(rss_kib "$LM_PID")
now=$(date +%s)
awk -v n=$SERVERS -v now="$now" 'BEGIN {
  for (s = 0; s < n; s++) {
    for (m = 0; m < 60; m++) printf "{\"server\":\"server%05d\",\"cpu\":%.1f,\"ram\":%.1f,\"dt\":%d}\n", s, (s + m) % 100, (s * 7 + m) % 100, now - m * 60
    for (h = 1; h < 24; h++) printf "{\"server\":\"server%05d\",\"cpu\":%.1f,\"ram\":%.1f,\"dt\":%d}\n", s, (s + h) % 100, (s * 3 + h) % 100, now - h * 3600
  }
}' >"$WORK/day.jsonl"
split -l 10000 "$WORK/day.jsonl" "$WORK/chunk."
for f in "$WORK"/chunk.*; do
  curl -s --fail -o /dev/null --data-binary "@$f" "http://127.0.0.1:$PORT/records"
done
servers=$(curl -s "http://127.0.0.1:$PORT/stats" | grep -o '"servers":[0-9]*' | cut -d: -f2)
rss1=$(rss_kib "$LM_PID")
rows=$(curl -s "http://127.0.0.1:$PORT/report/server00042" | grep -o '\]' | wc -l)
echo "loaded $servers servers, $(wc -l <"$WORK/day.jsonl") records (the report of one server has $((rows - 2)) rows)"
memory=$(awk -v a="$rss0" -v b="$rss1" -v n="$servers" 'BEGIN {
  printf "%.0f bytes per server (RSS %.1f MiB empty, %.1f MiB with %d servers)", (b - a) * 1024 / n, a/1024, b/1024, n }')
echo "memory: $memory (rings: 84 buckets x 48 bytes = 4032)"
echo "  (RSS read from /proc/PID/status before and after loading)"
cmd="wrk -t2 -c8 -d$DURATION --latency -s benches/load-monitor-report.lua http://127.0.0.1:$PORT -- $SERVERS"
t0=$(cpu_ticks "$LM_PID")
$cmd >"$WORK/wrk2.out"
t1=$(cpu_ticks "$LM_PID")
report=$(awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {
  printf "%d requests/s, p50 %s, p99 %s", rps, p50, p99 }' "$WORK/wrk2.out")
echo "GET /report/<random of $SERVERS>: $report"
echo "  \$ $cmd"
reports=$(awk '/requests in/ {print $1}' "$WORK/wrk2.out")
echo "  load-monitor's own CPU time: $(( (t1 - t0) * TICK_US / reports )) us per report (from /proc/PID/stat)"
row "report, $SERVERS servers with a full day (84 rows each), 8 connections" "$report; load-monitor's own CPU $(( (t1 - t0) * TICK_US / reports )) µs per report" "\`$cmd\`"
cmd="wrk -t1 -c1 -d$DURATION --latency -s benches/load-monitor-report.lua http://127.0.0.1:$PORT -- $SERVERS"
$cmd >"$WORK/wrk3.out"
report=$(awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {
  printf "%d requests/s, p50 %s, p99 %s", rps, p50, p99 }' "$WORK/wrk3.out")
echo "GET /report/<random of $SERVERS>, one at a time: $report"
echo "  \$ $cmd"
row "report, one request at a time" "$report" "\`$cmd\`"
row memory "$memory" "RSS from \`/proc/PID/status\` before and after loading $(wc -l <"$WORK/day.jsonl") records"
start=$(date +%s.%N)
stop_monitor
end=$(date +%s.%N)
stop=$(awk -v a="$start" -v b="$end" -v s="$(stat -c %s "$WORK/state.jsonl")" 'BEGIN {
  printf "%.2f s, %.1f MiB file", b - a, s / 1048576 }')
echo "graceful stop with the snapshot of $SERVERS servers: $stop"
row "graceful stop with snapshot, $SERVERS servers" "$stop" "\`kill -TERM\`"
printf '%s\n' "${ROWS[@]}" | bench_table measurement result command
bench_text "ratio poster/wrk, 1 record per request: $(ratio "$post1" "$wrk1" %.2f); load average at the end: $(bench_load)"
