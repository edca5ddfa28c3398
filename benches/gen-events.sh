#!/usr/bin/env bash
# gen-events throughput: 2,000,000 tracking events at --rate max into /dev/null, in events/s and
# MB/s, wall clock and per CPU-second, against the floor of writing the same bytes with cat.
# Run from the repo root after `cargo build --release`. COUNT=… to change the size.
set -euo pipefail
BIN=${BIN:-target/release}
COUNT=${COUNT:-2000000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x "$BIN/gen-events" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# measure LABEL CMD…: runs CMD under /usr/bin/time, sets WALL and CPU (user+sys) in seconds.
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$TMP/time" "$@"
  read -r WALL USER SYS RSS < "$TMP/time"
  CPU=$(echo "$USER + $SYS" | bc -l)
  printf '%-10s %s\n' "$label" "$*"
}

echo "== gen-events: $COUNT tracking events ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$BIN/gen-events" --rate max --count "$COUNT" --seed 1 > "$TMP/events.jsonl"
BYTES=$(stat -c %s "$TMP/events.jsonl")
MB=$(echo "$BYTES / 1000000" | bc -l)

measure gen-events bash -c "$BIN/gen-events --rate max --count $COUNT --seed 1 > /dev/null"
GEN_WALL=$WALL GEN_CPU=$CPU
measure cat bash -c "cat $TMP/events.jsonl > /dev/null"
CAT_WALL=$WALL

printf '\n%-34s %12s %12s %14s\n' "" "events/s" "MB/s" "events/CPU-s"
printf '%-34s %12.0f %12.0f %14.0f\n' "gen-events --rate max (wall)" \
  "$(echo "$COUNT / $GEN_WALL" | bc -l)" "$(echo "$MB / $GEN_WALL" | bc -l)" "$(echo "$COUNT / $GEN_CPU" | bc -l)"
printf '%-34s %12.0f %12.0f\n' "cat of the same $(printf '%.0f' "$MB") MB (floor)" \
  "$(echo "$COUNT / $CAT_WALL" | bc -l)" "$(echo "$MB / $CAT_WALL" | bc -l)"
printf '\nratio gen-events / cat (wall time): %.1fx\n' "$(echo "$GEN_WALL / $CAT_WALL" | bc -l)"
printf 'target: >= 1,000,000 events/s on one core: %s (%.0f events per CPU-second)\n' \
  "$( (( $(echo "$COUNT / $GEN_CPU >= 1000000" | bc -l) )) && echo met || echo NOT met)" \
  "$(echo "$COUNT / $GEN_CPU" | bc -l)"
