#!/usr/bin/env bash
# gen-events throughput: 2,000,000 tracking events at --rate max into /dev/null, in events/s and
# MB/s, wall clock and per CPU-second, against the floor of writing the same bytes with cat.
# Run from the repo root after `cargo build --release`. COUNT=… to change the size.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
BIN=${BIN:-target/release}
COUNT=${COUNT:-2000000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
need_bins "$BIN" gen-events

bench_start gen-events "\`cat\` writing the same bytes (the floor)" "COUNT BIN" "$@"
"$BIN/gen-events" --rate max --count "$COUNT" --seed 1 > "$TMP/events.jsonl"
MB=$(awk -v b="$(stat -c %s "$TMP/events.jsonl")" 'BEGIN { print b / 1000000 }')

gen="$BIN/gen-events --rate max --count $COUNT --seed 1 > /dev/null"
echo "\$ $gen"
timed bash -c "$gen"
GEN_WALL=$WALL GEN_CPU=$CPU
echo "\$ cat events.jsonl > /dev/null"
timed bash -c "cat $TMP/events.jsonl > /dev/null"
CAT_WALL=$WALL

echo "gen-events throughput: $COUNT tracking events"
{
  printf '`%s`\t%s\t%s\t%s\n' "${gen#"$BIN"/}" "$(ratio "$COUNT" "$GEN_WALL" %.0f)" "$(ratio "$MB" "$GEN_WALL" %.0f)" "$(ratio "$COUNT" "$GEN_CPU" %.0f)"
  printf '`cat` of the same %.0f MB (floor)\t%s\t%s\t\n' "$MB" "$(ratio "$COUNT" "$CAT_WALL" %.0f)" "$(ratio "$MB" "$CAT_WALL" %.0f)"
} | bench_table command "events/s (wall)" "MB/s" "events per CPU-second"
bench_text "gen-events / cat (wall time): $(ratio "$GEN_WALL" "$CAT_WALL" %.1fx); target >= 1,000,000 events per CPU-second: $(awk -v c="$COUNT" -v t="$GEN_CPU" 'BEGIN { print (t > 0 && c / t >= 1000000) ? "met" : "NOT met" }')"
