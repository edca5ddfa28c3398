#!/usr/bin/env bash
# minute-stats against Miller and DuckDB on 5,000,000 seed-like events (4 types, ~2,000 events/s of
# event time). Prints each figure with the command that produced it, the ratios, and checks that
# the three tools agree. Run from the repository root after `cargo build --release`.
set -euo pipefail
N=${N:-5000000}
OUT=bench-out
BIN=target/release
mkdir -p "$OUT"
command -v mlr >/dev/null || { apt-get update -qq && apt-get install -y -qq miller >/dev/null; }
python3 -c 'import duckdb' 2>/dev/null || pip install -q duckdb

DATA="$OUT/metrics-$N.jsonl"
if [ ! -s "$DATA" ]; then
  echo "generating $DATA ..." >&2
  python3 benches/gen_metrics.py "$N" 2000 > "$DATA.tmp" && mv "$DATA.tmp" "$DATA"
fi
SIZE_MB=$(( $(stat -c %s "$DATA") / 1000000 ))

# measure NAME COMMAND: wall seconds and peak RSS (MB) of COMMAND via GNU time.
measure() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$OUT/$name.rss" bash -c "$*"
  t1=$(date +%s.%N)
  local secs rss
  secs=$(echo "$t1 - $t0" | bc -l)
  rss=$(( $(cat "$OUT/$name.rss") / 1024 ))
  printf '%-12s %8.2f s %9.0f events/s %6d MB peak   $ %s\n' "$name" "$secs" "$(echo "$N / $secs" | bc -l)" "$rss" "$*"
  eval "secs_$name=$secs"
}

echo "minute-stats benchmark: $N events, $SIZE_MB MB, $(nproc) cores, $(date -u +%FT%TZ)"
cat "$DATA" > /dev/null # warm the page cache for every tool alike
measure minute_stats "$BIN/minute-stats $DATA > $OUT/ms-ours.jsonl"
measure miller "mlr --ijsonl --ojsonl put '\$minute = substr(\$timestamp, 0, 15)' then stats1 -i -a count,min,max,mean,p50 -f value -g minute,type $DATA > $OUT/ms-miller.jsonl"
measure duckdb "python3 -c \"
import duckdb
duckdb.sql('SET enable_progress_bar=false')
duckdb.sql('''COPY (SELECT strftime(date_trunc('minute', timestamp), '%Y-%m-%dT%H:%M') AS minute, type,
  min(value) AS min, max(value) AS max, avg(value) AS mean, median(value) AS median
  FROM read_ndjson('$DATA', columns={'type':'VARCHAR','value':'DOUBLE','timestamp':'TIMESTAMP','tags':'VARCHAR'})
  GROUP BY ALL ORDER BY ALL) TO '$OUT/ms-duckdb.jsonl' (FORMAT JSON)''')
\""
python3 benches/minute_stats_compare.py "$OUT/ms-ours.jsonl" "$OUT/ms-miller.jsonl" "$OUT/ms-duckdb.jsonl"
printf 'ratio: minute-stats is %.1fx faster than Miller and %.2fx faster than DuckDB (end to end)\n' \
  "$(echo "$secs_miller / $secs_minute_stats" | bc -l)" "$(echo "$secs_duckdb / $secs_minute_stats" | bc -l)"
