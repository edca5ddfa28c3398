#!/usr/bin/env bash
# window-agg on Memcached: 4 concurrent writers x 1,000,000 tracking events (10 s buckets, 5-minute
# window) into one local memcached, in total events/s and Memcached requests per event, against
# the same 4 writers in memory; the shared summary is checked against one in-memory run over all
# events. Run from the repo root after `cargo build --release`. PER_WRITER=… to change the size.
set -euo pipefail
BIN=${BIN:-target/release}
PER_WRITER=${PER_WRITER:-1000000}
WRITERS=4
TMP=$(mktemp -d)
MC_PID=""
cleanup() { [ -n "$MC_PID" ] && kill "$MC_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

[ -x "$BIN/window-agg" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v memcached >/dev/null || { apt-get update -qq && apt-get install -y -qq memcached >/dev/null; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
memcached -u nobody -l 127.0.0.1 -p "$PORT" -U 0 -m 256 & MC_PID=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
MC=127.0.0.1:$PORT

# Each writer gets its own 1 M events over the same 100 s of event time (10,000 events/s each).
for i in $(seq $WRITERS); do
  "$BIN/gen-events" --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count "$PER_WRITER" --seed "$i" > "$TMP/events$i.jsonl"
done
TOTAL=$((WRITERS * PER_WRITER))
echo "== window-agg --memcached: $WRITERS writers x $PER_WRITER events ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"

run_writers() {  # run_writers EXTRA-FLAGS…: the writers concurrently; prints wall seconds
  local start end
  start=$(date +%s%N)
  for i in $(seq $WRITERS); do
    "$BIN/window-agg" "$@" "$TMP/events$i.jsonl" > "$TMP/out$i.jsonl" 2> "$TMP/err$i.txt" &
  done
  wait
  end=$(date +%s%N)
  echo "($end - $start) / 1000000000" | bc -l
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

printf '\n%-34s %10s %14s %22s\n' "" "seconds" "events/s" "memcached req/event"
printf '%-34s %10.2f %14.0f %22s\n' "4 writers, in memory" "$MEM" "$(echo "$TOTAL / $MEM" | bc -l)" "-"
printf '%-34s %10.2f %14.0f %22.5f\n' "4 writers, one memcached" "$SHARED" "$(echo "$TOTAL / $SHARED" | bc -l)" "$(echo "$REQUESTS / $TOTAL" | bc -l)"
printf '\nmemcached requests: %d for %d events (target < 0.01 per event: %s); memcached / in-memory time: %.2fx\n' \
  "$REQUESTS" "$TOTAL" "$( (( $(echo "$REQUESTS / $TOTAL < 0.01" | bc -l) )) && echo met || echo NOT met)" \
  "$(echo "$SHARED / $MEM" | bc -l)"
