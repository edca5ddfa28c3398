#!/usr/bin/env bash
# The long soak of the repricing loop: hours of 5 s ticks compressed into 10 ms ticks.
#
#   benches/reprice-soak.sh [SECONDS=3600] [PERIOD_MS=10]
#
# price-api (random latency 0..1 ms, 5 % of answers 503) <- reprice (poll after 2 ms, wrapping
# examples/data.csv) <- ticker. Every 30 s it samples RSS, open fds and threads of reprice, its
# data-manager child and price-api; at the end it checks that every tick the ticker emitted ended
# in a price line or an error line, and prints the resource curve. Run from the repo root after
# `cargo build --release`. Files land in $SOAK_DIR (default: a temp dir).
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
SECONDS_TOTAL=${1:-3600}
PERIOD_MS=${2:-10}
R=${BIN_DIR:-target/release}
DIR=${SOAK_DIR:-$(mktemp -d)}
mkdir -p "$DIR"
TICKS=$((SECONDS_TOTAL * 1000 / PERIOD_MS))
need_bins "$R" price-api ticker reprice data-manager
bench_start "reprice soak" "nothing: every tick must end in a price or an error line, resources must stay flat" "BIN_DIR SOAK_DIR" "$@"
echo "# soak: $TICKS ticks of ${PERIOD_MS}ms (= $((TICKS * 5 / 3600)) h at 5 s ticks), files in $DIR"

"$R/price-api" --listen 127.0.0.1:0 --latency 0ms..1ms --fail-rate 0.05 --seed 7 2>"$DIR/api.err" &
API=$!
trap 'kill $API 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$DIR/api.err" 2>/dev/null && break; sleep 0.05; done
URL=$(grep -o 'http://[0-9.:]*' "$DIR/api.err" | head -1)

set -x
"$R/ticker" "${PERIOD_MS}ms" --count "$TICKS" | tee "$DIR/ticks.jsonl" |
  "$R/reprice" --csv examples/data.csv --api "$URL" --poll-after 2ms --at-end wrap \
    >"$DIR/prices.jsonl" 2>"$DIR/reprice.err" &
REPRICE=$!
set +x

sample() { # name pid -> "rss_kb fds threads"
  local pid=$2
  [ -d "/proc/$pid" ] || { echo "- - -"; return; }
  echo "$(awk '/^VmRSS/{print $2}' /proc/$pid/status) $(ls /proc/$pid/fd | wc -l) $(awk '/^Threads/{print $2}' /proc/$pid/status)"
}
echo "elapsed_s reprice_rss_kb reprice_fds reprice_threads dm_rss_kb dm_fds dm_threads api_rss_kb api_fds api_threads" >"$DIR/samples.txt"
START=$(date +%s)
while kill -0 "$REPRICE" 2>/dev/null; do
  DM=$(pgrep -P "$REPRICE" -x data-manager || echo 0)
  echo "$(( $(date +%s) - START )) $(sample reprice "$REPRICE") $(sample dm "$DM") $(sample api "$API")" >>"$DIR/samples.txt"
  for _ in $(seq 30); do kill -0 "$REPRICE" 2>/dev/null || break; sleep 1; done
done
wait "$REPRICE" || true

rc=0
python3 - "$DIR" "$TICKS" > "$DIR/summary.txt" <<'PY' || rc=$?
import json, re, sys
d, total = sys.argv[1], int(sys.argv[2])
emitted, missed = set(), 0
for line in open(f"{d}/ticks.jsonl"):
    t = json.loads(line); emitted.add(t["tick"]); missed += t.get("missed", 0)
priced = set()
for line in open(f"{d}/prices.jsonl"):
    priced.add(json.loads(line)["tick"])
failed, reasons = set(), {}
for line in open(f"{d}/reprice.err"):
    m = re.match(r"reprice: tick (\d+)[: ]", line)
    if m:
        failed.add(int(m.group(1)))
        why = re.sub(r"\d+", "N", line.split(": ", 2)[-1].strip())[:70]
        reasons[why] = reasons.get(why, 0) + 1
lost = sorted(t for t in emitted if t not in priced and t not in failed)
print(f"ticks: {total} due, {len(emitted)} emitted, {missed} reported missed by the ticker")
print(f"priced: {len(priced)}  failed (error line): {len(failed)}  silently lost: {len(lost)}")
for why, n in sorted(reasons.items(), key=lambda x: -x[1]):
    print(f"- {n} × {why}")
rows = [l.split() for l in open(f"{d}/samples.txt")][1:]
with open(f"{d}/curve.tsv", "w") as f:
    for r in rows:
        f.write(f"{r[0]} s\t{r[1]} / {r[2]} / {r[3]}\t{r[4]} / {r[5]} / {r[6]}\t{r[7]} / {r[8]} / {r[9]}\n")
if len(emitted) + missed != total or lost:
    sys.exit(1)
PY
while IFS= read -r line; do bench_text "$line"; done < "$DIR/summary.txt"
bench_text "resources, sampled every 30 s (RSS kB / open fds / threads):"
bench_table elapsed reprice data-manager price-api < "$DIR/curve.tsv"
exit "$rc"
