#!/usr/bin/env bash
# window-agg on Memcached: 4 concurrent writers x 1,000,000 tracking events (10 s buckets, 5-minute
# window) into one local memcached, in total events/s and Memcached requests per event, against
# the same 4 writers in memory; the shared summary is checked against one in-memory run over all
# events. Run from the repo root after `cargo build --release`. PER_WRITER=… to change the size.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
BIN=${BIN:-target/release}
PER_WRITER=${PER_WRITER:-1000000}
WRITERS=4
TMP=$(mktemp -d)
MC_PID=""
cleanup() { [ -n "$MC_PID" ] && kill "$MC_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

need_bins "$BIN" window-agg gen-events
need memcached
bench_start "window-agg on Memcached" "the same 4 writers in memory; the shared summary must equal one in-memory run over all files" "PER_WRITER BIN" "$@"

PORT=$(free_port)
memcached -u nobody -l 127.0.0.1 -p "$PORT" -U 0 -m 256 & MC_PID=$!
wait_port "$PORT"
MC=127.0.0.1:$PORT

# Each writer gets its own 1 M events over the same 100 s of event time (10,000 events/s each).
for i in $(seq $WRITERS); do
  "$BIN/gen-events" --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count "$PER_WRITER" --seed "$i" > "$TMP/events$i.jsonl"
done
TOTAL=$((WRITERS * PER_WRITER))
echo "== window-agg --memcached: $WRITERS writers x $PER_WRITER events, memcached $(memcached -V | cut -d' ' -f2)"

run_writers() {  # run_writers EXTRA-FLAGS…: the writers concurrently; prints wall seconds
  local start end
  start=$(date +%s%N)
  for i in $(seq $WRITERS); do
    "$BIN/window-agg" "$@" "$TMP/events$i.jsonl" > "$TMP/out$i.jsonl" 2> "$TMP/err$i.txt" &
  done
  wait
  end=$(date +%s%N)
  awk -v a="$start" -v b="$end" 'BEGIN { print (b - a) / 1e9 }'
}

MEM=$(run_writers)
echo "in memory:  $WRITERS x $BIN/window-agg events\$i.jsonl  (concurrently)"
SHARED=$(run_writers --memcached "$MC")
echo "memcached:  $WRITERS x $BIN/window-agg --memcached $MC events\$i.jsonl  (concurrently)"
REQUESTS=$(cat "$TMP"/err*.txt | sed -n 's/.*memcached: \([0-9]*\) requests for.*/\1/p' | paste -sd+ | bc)

"$BIN/window-agg" --read --memcached "$MC" > "$TMP/shared.json"
"$BIN/window-agg" "$TMP"/events*.jsonl | tail -1 > "$TMP/alone.json"
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
shared, alone = (json.load(open(f"{tmp}/{n}.json")) for n in ("shared", "alone"))
same = shared == alone
total = sum(t["totalEventsCaptured"] for t in shared["types"].values())
print(f"answers: memcached summary == one in-memory run over all files: {'yes' if same else 'NO'} ({total} events in the window)")
sys.exit(0 if same else 1)
PY

{
  printf '%s × `window-agg events$i.jsonl` (in memory)\t%.2f\t%s\t\n' "$WRITERS" "$MEM" "$(ratio "$TOTAL" "$MEM" %.0f)"
  printf '%s × `window-agg --memcached 127.0.0.1:PORT events$i.jsonl`\t%.2f\t%s\t%s (%s requests for %s events)\n' "$WRITERS" "$SHARED" \
    "$(ratio "$TOTAL" "$SHARED" %.0f)" "$(ratio "$REQUESTS" "$TOTAL" %.5f)" "$REQUESTS" "$TOTAL"
} | bench_table run "seconds (wall)" "events/s (total)" "Memcached requests per event"
bench_text "target < 0.01 Memcached requests per event: $(awk -v r="$REQUESTS" -v t="$TOTAL" 'BEGIN { print (r / t < 0.01) ? "met" : "NOT met" }'); memcached / in-memory time: $(ratio "$SHARED" "$MEM" %.2fx)"
