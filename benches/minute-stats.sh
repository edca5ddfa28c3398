#!/usr/bin/env bash
# minute-stats against Miller and DuckDB on 5,000,000 seed-like events (4 types, ~2,000 events/s of
# event time). Prints each figure with the command that produced it, the ratios, and checks that
# the three tools agree. Run from the repository root after `cargo build --release`. N=… to change
# the number of events.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
N=${N:-5000000}
OUT=bench-out
BIN=${BIN:-target/release}
mkdir -p "$OUT"
need_bins "$BIN" minute-stats
need mlr miller
need_py duckdb
bench_start "minute-stats against Miller and DuckDB" "Miller 6 (\`mlr --ijsonl … stats1\`) and DuckDB \`read_ndjson\` from Python, all cores; answers checked" "N BIN" "$@"

DATA="$OUT/metrics-$N.jsonl"
if [ ! -s "$DATA" ]; then
  echo "generating $DATA ..." >&2
  python3 benches/gen_metrics.py "$N" 2000 > "$DATA.tmp" && mv "$DATA.tmp" "$DATA"
fi
SIZE_MB=$(( $(stat -c %s "$DATA") / 1000000 ))

# measure NAME LABEL COMMAND: wall seconds and peak RSS (MB) of COMMAND; a table row in ROWS.
ROWS=""
measure() {
  local name=$1 label=$2; shift 2
  echo "\$ $*"
  timed bash -c "$*"
  local rss=$(( RSS / 1024 ))
  printf '%-12s %8.2f s %9s events/s %6d MB peak\n' "$name" "$WALL" "$(ratio "$N" "$WALL" %.0f)" "$rss"
  eval "secs_$name=$WALL"
  ROWS+=$(printf '%s\t%.2f\t%s\t%s MB' "$label" "$WALL" "$(ratio "$N" "$WALL" %.0f)" "$rss")$'\n'
}

echo "minute-stats benchmark: $N events, $SIZE_MB MB"
cat "$DATA" > /dev/null # warm the page cache for every tool alike
measure minute_stats "\`minute-stats metrics-$N.jsonl\`" "$BIN/minute-stats $DATA > $OUT/ms-ours.jsonl"
measure miller "Miller \`mlr --ijsonl --ojsonl put … then stats1 -a count,min,max,mean,p50\`" "mlr --ijsonl --ojsonl put '\$minute = substr(\$timestamp, 0, 15)' then stats1 -i -a count,min,max,mean,p50 -f value -g minute,type $DATA > $OUT/ms-miller.jsonl"
measure duckdb "DuckDB \`read_ndjson\` + \`GROUP BY ALL\` (Python, all cores)" "$PY -c \"
import duckdb
duckdb.sql('SET enable_progress_bar=false')
duckdb.sql('''COPY (SELECT strftime(date_trunc('minute', timestamp), '%Y-%m-%dT%H:%M') AS minute, type,
  min(value) AS min, max(value) AS max, avg(value) AS mean, median(value) AS median
  FROM read_ndjson('$DATA', columns={'type':'VARCHAR','value':'DOUBLE','timestamp':'TIMESTAMP','tags':'VARCHAR'})
  GROUP BY ALL ORDER BY ALL) TO '$OUT/ms-duckdb.jsonl' (FORMAT JSON)''')
\""
agree=$(python3 benches/minute_stats_compare.py "$OUT/ms-ours.jsonl" "$OUT/ms-miller.jsonl" "$OUT/ms-duckdb.jsonl") ||
  { echo "$agree"; exit 1; }
printf '%s' "$ROWS" | bench_table tool "wall" "events/s" "peak RSS"
# shellcheck disable=SC2154 # secs_* are set by measure's eval
bench_text "$N events, $SIZE_MB MB; $(echo "$agree" | paste -sd';' | sed 's/;/; /g'). minute-stats is $(ratio "$secs_miller" "$secs_minute_stats" %.1fx) faster than Miller and $(ratio "$secs_duckdb" "$secs_minute_stats" %.2fx) faster than DuckDB (end to end)."
