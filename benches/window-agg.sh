#!/usr/bin/env bash
# window-agg (in memory) on 2,000,000 tracking events (~1.4 GB) from a file, against DuckDB
# (read_ndjson, 1 thread and all cores) and jq computing the same final counts; answers compared.
# Then peak RSS at 1 M and 10 M events from `gen-events --rate max`.
# Run from the repo root after `cargo build --release`. COUNT=… to change the size, JQ=0 to skip jq.
set -euo pipefail
BIN=${BIN:-target/release}
COUNT=${COUNT:-2000000}
JQ=${JQ:-1}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x "$BIN/window-agg" ] || { echo "build first: cargo build --release" >&2; exit 1; }
python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb >&2
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }

measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$TMP/time" "$@"
  read -r WALL USER SYS RSS < "$TMP/time"
  CPU=$(echo "$USER + $SYS" | bc -l)
  printf '%-16s %6.2f s wall %6.2f s CPU  %s\n' "$label" "$WALL" "$CPU" "$*"
}

# 10,000 events/s of event time: 2 M events span 200 s, all inside the final 5-minute window,
# so the final counts are per type and tracking id over the whole file.
EVENTS=$TMP/events.jsonl
"$BIN/gen-events" --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count "$COUNT" --seed 1 > "$EVENTS"
MB=$(echo "$(stat -c %s "$EVENTS") / 1000000" | bc -l)
echo "== window-agg: $COUNT events, $(printf '%.0f' "$MB") MB ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"

measure cat bash -c "cat $EVENTS > /dev/null"
CAT=$WALL
measure window-agg bash -c "$BIN/window-agg $EVENTS | tail -1 > $TMP/ours.json"
OURS=$WALL OURS_CPU=$CPU

cat > "$TMP/duck.py" <<'PY'
import json, sys, duckdb
path, threads, start, end = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
con = duckdb.connect()
if threads != "all":
    con.execute(f"SET threads={int(threads)}")
rows = con.execute(f"""
  SELECT value.event, value.trackingId, count(*)
  FROM read_ndjson('{path}', columns={{value: 'STRUCT(event VARCHAR, trackingId VARCHAR, "timestamp" TIMESTAMPTZ)'}})
  WHERE value.timestamp >= TIMESTAMPTZ '{start}' AND value.timestamp < TIMESTAMPTZ '{end}'
  GROUP BY ALL""").fetchall()
names = {"formsubmit": "signup", "click": "user-event"}
out = {}
for event, tid, n in rows:
    out.setdefault(names.get(event, event), {})[tid] = n
print(json.dumps(out, sort_keys=True))
PY
START=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["window_start"])' "$TMP/ours.json")
END=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["window_end"])' "$TMP/ours.json")
measure duckdb-1thread bash -c "python3 $TMP/duck.py $EVENTS 1 $START $END > $TMP/duck1.json"
DUCK1=$WALL
measure duckdb-all bash -c "python3 $TMP/duck.py $EVENTS all $START $END > $TMP/duckall.json"
DUCKALL=$WALL

if [ "$JQ" = 1 ]; then
  JQPROG='reduce inputs as $e ({}; .[{"formsubmit":"signup","click":"user-event"}[$e.value.event] // $e.value.event][$e.value.trackingId] += 1)'
  measure jq bash -c "jq -n -c '$JQPROG' $EVENTS > $TMP/jq.json"
  JQT=$WALL
fi

# Compare the answers: our final line's per-type per-id counts against each tool's.
python3 - "$TMP" "$JQ" <<'PY'
import json, sys
tmp, jq = sys.argv[1], sys.argv[2] == "1"
ours = {t: v["eventsCapturedByTrackingIds"] for t, v in json.load(open(f"{tmp}/ours.json"))["types"].items() if v["eventsCapturedByTrackingIds"]}
others = ["duck1", "duckall"] + (["jq"] if jq else [])
for name in others:
    theirs = json.load(open(f"{tmp}/{name}.json"))
    print(f"answers: window-agg == {name}: {'yes' if theirs == ours else 'NO'}")
    if theirs != ours:
        sys.exit(1)
PY

rate() { echo "$COUNT / $1" | bc -l; }
printf '\n%-22s %10s %12s %10s\n' "" "seconds" "events/s" "MB/s"
printf '%-22s %10.2f %12.0f %10.0f\n' "cat (floor)" "$CAT" "$(rate "$CAT")" "$(echo "$MB / $CAT" | bc -l)"
printf '%-22s %10.2f %12.0f %10.0f\n' "window-agg" "$OURS" "$(rate "$OURS")" "$(echo "$MB / $OURS" | bc -l)"
printf '%-22s %10.2f %12.0f %10.0f\n' "duckdb, 1 thread" "$DUCK1" "$(rate "$DUCK1")" "$(echo "$MB / $DUCK1" | bc -l)"
printf '%-22s %10.2f %12.0f %10.0f\n' "duckdb, all cores" "$DUCKALL" "$(rate "$DUCKALL")" "$(echo "$MB / $DUCKALL" | bc -l)"
[ "$JQ" = 1 ] && printf '%-22s %10.2f %12.0f %10.0f\n' "jq" "$JQT" "$(rate "$JQT")" "$(echo "$MB / $JQT" | bc -l)"
printf '\nwindow-agg CPU: %.2f s for %d events = %.0f events per CPU-second (reader thread included)\n' \
  "$OURS_CPU" "$COUNT" "$(rate "$OURS_CPU")"
printf 'speed-up vs duckdb 1 thread: %.2fx   vs duckdb all cores: %.2fx' \
  "$(echo "$DUCK1 / $OURS" | bc -l)" "$(echo "$DUCKALL / $OURS" | bc -l)"
[ "$JQ" = 1 ] && printf '   vs jq: %.1fx' "$(echo "$JQT / $OURS" | bc -l)"
echo

echo
echo "== peak RSS of window-agg against event count"
for n in 1000000 10000000; do
  CMD="$BIN/gen-events --rate max --count $n | /usr/bin/time -f %M -o $TMP/rss $BIN/window-agg > /dev/null"
  START_NS=$(date +%s%N)
  bash -c "$CMD"
  SECS=$(echo "($(date +%s%N) - $START_NS) / 1000000000" | bc -l)
  printf '%9d events: peak RSS %6d KB  (%.1f s)  %s\n' "$n" "$(cat "$TMP/rss")" "$SECS" "$CMD"
done

echo
echo "== peak RSS of window-agg --minutes 1 when every event brings a new tracking id (1 ms apart)"
# The window holds 60,000 ids at most, so memory must not grow with the stream's length.
for n in 300000 3000000; do
  python3 - "$n" > "$TMP/fresh.jsonl" <<'PY'
import sys, time
n = int(sys.argv[1])
epoch = 1575784800  # 2019-12-08T06:00:00Z
out = sys.stdout
for i in range(n):
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch + i // 1000))
    out.write('{"value":{"event":"click","trackingId":"INF-%09d","timestamp":"%s.%03dZ"}}\n' % (i, s, i % 1000))
PY
  CMD="$BIN/window-agg --minutes 1 fresh.jsonl"
  /usr/bin/time -f %M -o "$TMP/rss" "$BIN/window-agg" --minutes 1 "$TMP/fresh.jsonl" > /dev/null
  printf '%9d fresh ids: peak RSS %6d KB  %s\n' "$n" "$(cat "$TMP/rss")" "$CMD"
done
