#!/usr/bin/env bash
# The JSON hot path against the strongest tools for the same jobs, on the same files:
#   window counts:    window-agg --minutes 60 FILE   vs DuckDB read_ndjson (projection pushdown)
#   per-minute stats: minute-stats FILE              vs chDB file(…, JSONEachRow)
#   problems:         allocate --strategy greedy     (problems per second)
# on 2 cores and on 1 core (taskset -c 0, DuckDB threads=1, chDB max_threads=1). Answers are
# compared with DuckDB's first (exit 1 if they differ); then PAIRS alternating pairs (ours, anchor)
# per job and core count, medians of wall and CPU seconds and of the pairwise ratios, each with its
# command; peak RSS of ours; and floors: cat (reading), wc -l (reading and finding every newline),
# window-agg without timestamps and on one core.
#
# Files (fixed seeds, cached in bench-out/json-hot-path/): 2,000,000 seed-shaped tracking events
# (gen-events, tracking profile, 10,000 events/s of event time, 200 s, so the 60-minute window's
# last line holds every count) and 5,000,000 metric events with minute-stats' four types at
# ~2,000 events/s (benches/gen_metrics.py). DuckDB and chDB go into bench-out/venv if missing.
# Run from the repository root after `cargo build --release`. TRACKING=, METRICS=, PROBLEMS=,
# PAIRS= change the sizes and the number of pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
OUT=bench-out/json-hot-path
TRACKING=${TRACKING:-2000000}
METRICS=${METRICS:-5000000}
PROBLEMS=${PROBLEMS:-1000000}
PAIRS=${PAIRS:-3}
mkdir -p "$OUT"
for b in window-agg minute-stats allocate gen-events; do
    [ -x "$BIN/$b" ] || { echo "json-hot-path.sh: $BIN/$b is missing; run cargo build --release" >&2; exit 2; }
done
command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc >/dev/null; }

VENV=bench-out/venv
if ! "$VENV/bin/python" -c 'import duckdb, chdb' 2>/dev/null; then
    echo "installing duckdb and chdb into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q duckdb chdb >&2
fi
PY=$VENV/bin/python

events=$OUT/tracking-$TRACKING.jsonl
if [ ! -s "$events" ]; then
    echo "# $BIN/gen-events --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count $TRACKING --seed 1 > $events" >&2
    "$BIN/gen-events" --simulated --start 2019-12-08T06:00:00Z --rate 10000 --count "$TRACKING" --seed 1 > "$events.part"
    mv "$events.part" "$events"
fi
metrics=$OUT/metrics-$METRICS.jsonl
if [ ! -s "$metrics" ]; then
    echo "# python3 benches/gen_metrics.py $METRICS 2000 > $metrics" >&2
    python3 benches/gen_metrics.py "$METRICS" 2000 > "$metrics.part"
    mv "$metrics.part" "$metrics"
fi
problems=$OUT/problems-$PROBLEMS.jsonl
if [ ! -s "$problems" ]; then
    echo "# python3 benches/allocate_gen.py --count $PROBLEMS --seed 1 > $problems" >&2
    python3 benches/allocate_gen.py --count "$PROBLEMS" --seed 1 > "$problems.part"
    mv "$problems.part" "$problems"
fi
mb() { echo "$(stat -c %s "$1") / 1000000" | bc; }

# The anchors' queries, as a user would write them.
cat > "$OUT/duck_window.py" <<'PY'
import json, sys, duckdb
path, threads = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"SET threads={int(threads)}")
rows = con.execute(f"SELECT value.event, value.trackingId, count(*) FROM read_ndjson('{path}') GROUP BY ALL").fetchall()
names = {"formsubmit": "signup", "click": "user-event"}
out = {}
for event, tid, n in rows:
    out.setdefault(names.get(event, event), {})[tid] = n
print(json.dumps(out, sort_keys=True))
PY
cat > "$OUT/duck_minutes.py" <<'PY'
import json, sys, duckdb
path, threads = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"SET threads={int(threads)}")
rows = con.execute(f"""SELECT strftime(date_trunc('minute', "timestamp"::TIMESTAMP), '%Y-%m-%dT%H:%M'), type,
  min(value), max(value), avg(value), median(value) FROM read_ndjson('{path}') GROUP BY ALL ORDER BY ALL""").fetchall()
for m, t, lo, hi, mean, med in rows:
    print(json.dumps({"minute": m, "type": t, "min": lo, "max": hi, "mean": mean, "median": med}))
PY
cat > "$OUT/chdb_minutes.py" <<'PY'
import sys, chdb
path, threads = sys.argv[1], sys.argv[2]
print(chdb.query(f"""SELECT formatDateTime(toStartOfMinute(parseDateTime64BestEffort(timestamp, 6)), '%Y-%m-%dT%H:%i') AS minute,
  type, min(value) AS min, max(value) AS max, avg(value) AS mean, quantileExactInclusive(0.5)(value) AS median
  FROM file('{path}', JSONEachRow, 'type String, value Float64, timestamp String')
  GROUP BY minute, type ORDER BY minute, type SETTINGS max_threads={int(threads)}""", "JSONEachRow"), end="")
PY

echo "json-hot-path: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "files: $events ($(mb "$events") MB), $metrics ($(mb "$metrics") MB), $problems ($(mb "$problems") MB)"
cat "$events" "$metrics" "$problems" > /dev/null # into the page cache, for every tool alike

# Answers first.
"$BIN/window-agg" --minutes 60 "$events" | tail -1 > "$OUT/window-ours.json"
"$PY" "$OUT/duck_window.py" "$events" 2 > "$OUT/window-duck.json"
"$PY" - "$OUT/window-ours.json" "$OUT/window-duck.json" <<'PY'
import json, sys
ours = {t: v["eventsCapturedByTrackingIds"] for t, v in json.load(open(sys.argv[1]))["types"].items() if v["eventsCapturedByTrackingIds"]}
theirs = json.load(open(sys.argv[2]))
print("answers: window-agg == DuckDB:", "yes" if ours == theirs else "NO")
sys.exit(0 if ours == theirs else 1)
PY
"$BIN/minute-stats" "$metrics" > "$OUT/minutes-ours.jsonl"
"$PY" "$OUT/duck_minutes.py" "$metrics" 2 > "$OUT/minutes-duck.jsonl"
"$PY" "$OUT/chdb_minutes.py" "$metrics" 2 > "$OUT/minutes-chdb.jsonl"
"$PY" - "$OUT/minutes-ours.jsonl" "$OUT/minutes-duck.jsonl" "$OUT/minutes-chdb.jsonl" <<'PY'
import json, sys
def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
want = {}
for line in open(sys.argv[1]):
    s = json.loads(line)
    for a in s["aggs"]:
        want[(s["period_start"][:16], a["name"])] = (a["min"], a["max"], a["mean"], a["median"])
ok = True
for name, path in (("DuckDB", sys.argv[2]), ("chDB", sys.argv[3])):
    got = {}
    for line in open(path):
        r = json.loads(line)
        got[(r["minute"], r["type"])] = (r["min"], r["max"], r["mean"], r["median"])
    same = set(got) == set(want) and all(all(close(x, y) for x, y in zip(got[k], want[k])) for k in want)
    print(f"answers: minute-stats == {name} ({len(want)} minute-type aggregates):", "yes" if same else "NO")
    ok = ok and (same or name != "DuckDB")
sys.exit(0 if ok else 1)
PY
"$BIN/allocate" --strategy greedy < "$problems" > "$OUT/greedy.jsonl"
python3 benches/allocate_greedy.py < "$problems" | cmp -s - "$OUT/greedy.jsonl" &&
    echo "answers: allocate --strategy greedy == the Python greedy on all $PROBLEMS lines" ||
    { echo "answers: allocate greedy differs from benches/allocate_greedy.py" >&2; exit 1; }
echo

# run NAME CMD: one run, appending "wall cpu rss_kb" to $OUT/NAME.times.
run() {
    local name=$1; shift
    /usr/bin/time -f '%e %U %S %M' -o "$OUT/time" bash -c "$*" > /dev/null
    read -r wall user sys rss < "$OUT/time"
    echo "$wall $(echo "$user + $sys" | bc -l) $rss" >> "$OUT/$name.times"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$OUT/$1.times"; }

# pair JOB OURS_CMD ANCHOR_CMD: PAIRS alternating runs, then the medians and the pairwise ratios.
pair() {
    local job=$1 ours=$2 anchor=$3
    rm -f "$OUT/ours.times" "$OUT/anchor.times"
    for _ in $(seq "$PAIRS"); do
        run ours "$ours"
        run anchor "$anchor"
    done
    local wr cr
    wr=$(paste -d' ' <(col ours 1) <(col anchor 1) | awk '{ print $1 / $2 }' | median)
    cr=$(paste -d' ' <(col ours 2) <(col anchor 2) | awk '{ print $1 / $2 }' | median)
    printf '%-36s ours %6.2f s wall %6.2f s CPU %5d MB peak | anchor %6.2f s wall %6.2f s CPU | ours/anchor: wall %.2f, CPU %.2f\n' \
        "$job" "$(col ours 1 | median)" "$(col ours 2 | median)" "$(( $(col ours 3 | sort -n | tail -1) / 1024 ))" \
        "$(col anchor 1 | median)" "$(col anchor 2 | median)" "$wr" "$cr"
    echo "    ours:   $ours"
    echo "    anchor: $anchor"
}

echo "== $PAIRS pairs each (ours, anchor, alternating); medians"
pair "window counts, 2 cores" "$BIN/window-agg --minutes 60 $events" "$PY $OUT/duck_window.py $events 2"
pair "window counts, 1 core" "taskset -c 0 $BIN/window-agg --minutes 60 $events" "taskset -c 0 $PY $OUT/duck_window.py $events 1"
pair "per-minute stats, 2 cores" "$BIN/minute-stats $metrics" "$PY $OUT/chdb_minutes.py $metrics 2"
pair "per-minute stats, 1 core" "taskset -c 0 $BIN/minute-stats $metrics" "taskset -c 0 $PY $OUT/chdb_minutes.py $metrics 1"
pair "per-minute stats vs DuckDB, 2 cores" "$BIN/minute-stats $metrics" "$PY $OUT/duck_minutes.py $metrics 2"

echo
echo "== allocate --strategy greedy, $PAIRS runs; median"
rm -f "$OUT/greedy.times"
for _ in $(seq "$PAIRS"); do run greedy "$BIN/allocate --strategy greedy < $problems"; done
g=$(col greedy 1 | median)
printf 'allocate greedy: %.2f s wall, %.0f problems/s, %d MB peak\n    %s\n' "$g" "$(echo "$PROBLEMS / $g" | bc -l)" \
    "$(( $(col greedy 3 | sort -n | tail -1) / 1024 ))" "$BIN/allocate --strategy greedy < $problems"

echo
echo "== floors, $PAIRS runs; median wall (CPU)"
floor() {
    local name=$1; shift
    rm -f "$OUT/floor.times"
    for _ in $(seq "$PAIRS"); do run floor "$*"; done
    printf '%-44s %6.2f s (%5.2f s CPU)   %s\n' "$name" "$(col floor 1 | median)" "$(col floor 2 | median)" "$*"
}
floor "cat, tracking file" "cat $events"
floor "cat, metrics file" "cat $metrics"
floor "wc -l, tracking file" "wc -l $events"
floor "window-agg, --clock arrival (no timestamps)" "$BIN/window-agg --minutes 60 --clock arrival $events"
floor "window-agg, 1 core" "taskset -c 0 $BIN/window-agg --minutes 60 $events"
echo "targets: window-agg <= 0.6x DuckDB wall on 2 cores and <= 0.8x on 1 core; minute-stats <= 0.35x chDB wall on 2 and 1 cores; allocate greedy >= 800,000 problems/s; peak memory < 50 MB"
