#!/usr/bin/env bash
# window-agg (in memory) on 2,000,000 tracking events (~1.4 GB) from a file, against DuckDB
# (read_ndjson, 1 thread and all cores) and jq computing the same final counts; answers compared.
# Then peak RSS at 1 M and 10 M events from `gen-events --rate max`.
# Run from the repo root after `cargo build --release`. COUNT=… to change the size, JQ=0 to skip jq,
# RSS_COUNTS="1000000 10000000" and FRESH_COUNTS="300000 3000000" for the memory runs.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
BIN=${BIN:-target/release}
COUNT=${COUNT:-2000000}
JQ=${JQ:-1}
RSS_COUNTS=${RSS_COUNTS:-1000000 10000000}
FRESH_COUNTS=${FRESH_COUNTS:-300000 3000000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

need_bins "$BIN" window-agg gen-events
need_py duckdb
need jq
bench_start window-agg "DuckDB \`read_ndjson\` with the three fields declared (1 thread and all cores) and jq \`reduce\`, same answers; \`cat\` as the floor" "COUNT JQ RSS_COUNTS FRESH_COUNTS BIN" "$@"

measure() {
  local label=$1; shift
  timed "$@"
  printf '%-16s %6.2f s wall %6.2f s CPU  %s\n' "$label" "$WALL" "$CPU" "$*"
}

# 10,000 events/s of event time: 2 M events span 200 s, all inside the final 5-minute window,
# so the final counts are per type and tracking id over the whole file.
EVENTS=$TMP/events.jsonl
"$BIN/gen-events" --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count "$COUNT" --seed 1 > "$EVENTS"
MB=$(awk -v b="$(stat -c %s "$EVENTS")" 'BEGIN { print b / 1000000 }')
echo "== window-agg: $COUNT events, $(printf '%.0f' "$MB") MB"

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
measure duckdb-1thread bash -c "$PY $TMP/duck.py $EVENTS 1 $START $END > $TMP/duck1.json"
DUCK1=$WALL
measure duckdb-all bash -c "$PY $TMP/duck.py $EVENTS all $START $END > $TMP/duckall.json"
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

row() { # name seconds
  printf '%s\t%.2f\t%s\t%s\t%s\n' "$1" "$2" "$(ratio "$COUNT" "$2" %.0f)" "$(ratio "$MB" "$2" %.0f)" "$(ratio "$2" "$OURS" %.2f)"
}
bench_text "### window-agg against DuckDB and jq: $COUNT events, $(printf '%.0f' "$MB") MB from a file"
{
  row "\`cat\` (floor)" "$CAT"
  row "\`window-agg events.jsonl\`" "$OURS"
  row "DuckDB \`read_ndjson\`, 1 thread" "$DUCK1"
  row "DuckDB \`read_ndjson\`, all cores" "$DUCKALL"
  if [ "$JQ" = 1 ]; then row "\`jq -n 'reduce inputs as \$e (…)'\`" "$JQT"; fi
} | bench_table command "seconds (wall)" "events/s" "MB/s" "vs window-agg (wall)"
bench_text "window-agg CPU: $(printf '%.2f' "$OURS_CPU") s, $(ratio "$COUNT" "$OURS_CPU" %.0f) events per CPU-second (reader thread included); answers equal DuckDB's$([ "$JQ" = 1 ] && echo " and jq's")."

echo
bench_text "### peak RSS of window-agg against event count"
for n in $RSS_COUNTS; do
  CMD="$BIN/gen-events --rate max --count $n | /usr/bin/time -f %M -o $TMP/rss $BIN/window-agg > /dev/null"
  echo "\$ $CMD" >&2
  START_NS=$(date +%s%N)
  bash -c "$CMD"
  SECS=$(awk -v a="$START_NS" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')
  printf '`gen-events --rate max --count %s \\| window-agg`\t%s\t%.1f\n' "$n" "$(cat "$TMP/rss")" "$SECS"
done | bench_table command "peak RSS (KB)" "seconds"

bench_text "### peak RSS of window-agg --minutes 1 when every event brings a new tracking id (1 ms apart)"
# The window holds 60,000 ids at most, so memory must not grow with the stream's length.
for n in $FRESH_COUNTS; do
  python3 - "$n" > "$TMP/fresh.jsonl" <<'PY'
import sys, time
n = int(sys.argv[1])
epoch = 1575784800  # 2019-12-08T06:00:00Z
out = sys.stdout
for i in range(n):
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch + i // 1000))
    out.write('{"value":{"event":"click","trackingId":"INF-%09d","timestamp":"%s.%03dZ"}}\n' % (i, s, i % 1000))
PY
  /usr/bin/time -f %M -o "$TMP/rss" "$BIN/window-agg" --minutes 1 "$TMP/fresh.jsonl" > /dev/null
  printf '`window-agg --minutes 1 fresh-%s.jsonl`\t%s\t%s\n' "$n" "$n" "$(cat "$TMP/rss")"
done | bench_table command "fresh ids" "peak RSS (KB)"
