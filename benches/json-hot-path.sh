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
# shellcheck source=benches/lib.sh
. benches/lib.sh
BIN=${BIN:-target/release}
OUT=bench-out/json-hot-path
TRACKING=${TRACKING:-2000000}
METRICS=${METRICS:-5000000}
PROBLEMS=${PROBLEMS:-1000000}
PAIRS=${PAIRS:-3}
mkdir -p "$OUT"
need_bins "$BIN" window-agg minute-stats allocate gen-events
need bc
bench_start "JSON hot path: window-agg against DuckDB, minute-stats against chDB" "DuckDB \`read_ndjson\` (window counts; per-minute stats) and chDB \`file(…, JSONEachRow)\` (per-minute stats), threads set to the cores used, alternating pairs; answers checked first" "TRACKING METRICS PROBLEMS PAIRS BIN" "$@"

need_py duckdb chdb

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

echo "files: $events ($(mb "$events") MB), $metrics ($(mb "$metrics") MB), $problems ($(mb "$problems") MB)"
cat "$events" "$metrics" "$problems" > /dev/null # into the page cache, for every tool alike

# Answers first.
"$BIN/window-agg" --minutes 60 "$events" | tail -1 > "$OUT/window-ours.json"
"$PY" "$OUT/duck_window.py" "$events" 2 > "$OUT/window-duck.json"
answers=()
answers+=("$("$PY" - "$OUT/window-ours.json" "$OUT/window-duck.json" <<'PY'
import json, sys
ours = {t: v["eventsCapturedByTrackingIds"] for t, v in json.load(open(sys.argv[1]))["types"].items() if v["eventsCapturedByTrackingIds"]}
theirs = json.load(open(sys.argv[2]))
print("answers: window-agg == DuckDB:", "yes" if ours == theirs else "NO")
sys.exit(0 if ours == theirs else 1)
PY
)") || { printf '%s\n' "${answers[@]}"; exit 1; }
"$BIN/minute-stats" "$metrics" > "$OUT/minutes-ours.jsonl"
"$PY" "$OUT/duck_minutes.py" "$metrics" 2 > "$OUT/minutes-duck.jsonl"
"$PY" "$OUT/chdb_minutes.py" "$metrics" 2 > "$OUT/minutes-chdb.jsonl"
answers+=("$("$PY" - "$OUT/minutes-ours.jsonl" "$OUT/minutes-duck.jsonl" "$OUT/minutes-chdb.jsonl" <<'PY'
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
)") || { printf '%s\n' "${answers[@]}"; exit 1; }
"$BIN/allocate" --strategy greedy < "$problems" > "$OUT/greedy.jsonl"
python3 benches/allocate_greedy.py < "$problems" | cmp -s - "$OUT/greedy.jsonl" ||
    { echo "answers: allocate greedy differs from benches/allocate_greedy.py" >&2; exit 1; }
answers+=("answers: allocate --strategy greedy == the Python greedy on all $PROBLEMS lines")
printf '%s\n' "${answers[@]}"
echo

# run NAME CMD: one run, appending "wall cpu rss_kb" to $OUT/NAME.times.
run() {
    local name=$1; shift
    timed bash -c "$* > /dev/null"
    echo "$WALL $CPU $RSS" >> "$OUT/$name.times"
}
col() { awk -v c="$2" '{ print $c }' "$OUT/$1.times"; }

# pair JOB OURS ANCHOR OURS_CMD ANCHOR_CMD: PAIRS alternating runs; a table row of the medians
# (wall and CPU seconds, ours' peak RSS) and of the pairwise ratios, on stdout; commands on stderr.
pair() {
    local job=$1 ours_name=$2 anchor_name=$3 ours=$4 anchor=$5
    say "\$ $ours"
    say "\$ $anchor"
    rm -f "$OUT/ours.times" "$OUT/anchor.times"
    for _ in $(seq "$PAIRS"); do
        run ours "$ours"
        run anchor "$anchor"
    done
    local wr cr
    wr=$(paste -d' ' <(col ours 1) <(col anchor 1) | awk '{ print $1 / $2 }' | median)
    cr=$(paste -d' ' <(col ours 2) <(col anchor 2) | awk '{ print $1 / $2 }' | median)
    printf '%s\t%s\t%.2f s, %.2f s CPU, %d MB\t%s\t%.2f s, %.2f s CPU\t%.2f\t%.2f\n' "$job" "$ours_name" \
        "$(col ours 1 | median)" "$(col ours 2 | median)" "$(( $(col ours 3 | sort -n | tail -1) / 1024 ))" \
        "$anchor_name" "$(col anchor 1 | median)" "$(col anchor 2 | median)" "$wr" "$cr"
}

echo "== $PAIRS pairs each (ours, anchor, alternating); medians"
T=$(basename "$events") M=$(basename "$metrics")
{
    pair "window counts, 2 cores" "\`window-agg --minutes 60 $T\`" "DuckDB \`read_ndjson\` + \`GROUP BY ALL\`, threads=2" \
        "$BIN/window-agg --minutes 60 $events" "$PY $OUT/duck_window.py $events 2"
    pair "window counts, 1 core" "\`taskset -c 0 window-agg --minutes 60 $T\`" "DuckDB, threads=1, \`taskset -c 0\`" \
        "taskset -c 0 $BIN/window-agg --minutes 60 $events" "taskset -c 0 $PY $OUT/duck_window.py $events 1"
    pair "per-minute stats, 2 cores" "\`minute-stats $M\`" "chDB \`file(…, JSONEachRow, …)\`, max_threads=2" \
        "$BIN/minute-stats $metrics" "$PY $OUT/chdb_minutes.py $metrics 2"
    pair "per-minute stats, 1 core" "\`taskset -c 0 minute-stats $M\`" "chDB, max_threads=1, \`taskset -c 0\`" \
        "taskset -c 0 $BIN/minute-stats $metrics" "taskset -c 0 $PY $OUT/chdb_minutes.py $metrics 1"
    pair "per-minute stats against DuckDB, 2 cores" "\`minute-stats $M\`" "DuckDB \`read_ndjson\`, threads=2" \
        "$BIN/minute-stats $metrics" "$PY $OUT/duck_minutes.py $metrics 2"
} | bench_table job ours "ours: wall, CPU, peak RSS" anchor "anchor: wall, CPU" "ours / anchor (wall)" "ours / anchor (CPU)"
bench_text "$PAIRS alternating pairs per job, medians; ratios are the medians of the pairwise ratios. $(printf '%s\n' "${answers[@]}" | paste -sd';' | sed 's/;/; /g')."

echo
echo "== allocate --strategy greedy, $PAIRS runs; median"
rm -f "$OUT/greedy.times"
say "\$ $BIN/allocate --strategy greedy < $problems"
for _ in $(seq "$PAIRS"); do run greedy "$BIN/allocate --strategy greedy < $problems"; done
g=$(col greedy 1 | median)
printf '`allocate --strategy greedy < %s`\t%.2f s\t%s\t%d MB\n' "$(basename "$problems")" "$g" "$(ratio "$PROBLEMS" "$g" %.0f)" \
    "$(( $(col greedy 3 | sort -n | tail -1) / 1024 ))" | bench_table command "wall (median)" "problems/s" "peak RSS"

echo
echo "== floors, $PAIRS runs; median wall (CPU)"
floor() {
    local name=$1; shift
    say "\$ $*"
    rm -f "$OUT/floor.times"
    for _ in $(seq "$PAIRS"); do run floor "$*"; done
    printf '%s\t%.2f s\t%.2f s\n' "$name" "$(col floor 1 | median)" "$(col floor 2 | median)"
}
{
    floor "\`cat\`, tracking file" "cat $events"
    floor "\`cat\`, metrics file" "cat $metrics"
    floor "\`wc -l\`, tracking file" "wc -l $events"
    floor "\`window-agg --minutes 60 --clock arrival\` (no timestamps)" "$BIN/window-agg --minutes 60 --clock arrival $events"
    floor "\`window-agg\`, 1 core" "taskset -c 0 $BIN/window-agg --minutes 60 $events"
} | bench_table floor "wall (median)" "CPU (median)"
bench_text "targets: window-agg <= 0.6x DuckDB wall on 2 cores and <= 0.8x on 1 core; minute-stats <= 0.35x chDB wall on 2 and 1 cores; allocate greedy >= 800,000 problems/s; peak memory < 50 MB"
