#!/usr/bin/env bash
# Scale: many books repriced on each 5 s tick by one reprice process.
#
#   cargo build --release && benches/reprice-scale.sh [BOOKS="10000 30000"] [TICKS=3]
#
# For each book count: a CSV with a Book column (generated here, never committed), price-api
# without latency, `ticker 5s --count TICKS | reprice --poll-after 1s`; per tick it reports how many
# books got their price line within the tick (price "at" - tick "at" < 5 s) and how late the last
# one was. The anchor is wrk against the same price-api: reprice needs 2 requests per book, so
# "books/s × 2 ÷ wrk req/s" is the share of the server's measured capacity reprice drives.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
BOOKS=${1:-10000 30000}
TICKS=${2:-3}
R=${BIN_DIR:-target/release}
HERE=$(cd "$(dirname "$0")" && pwd)
need_bins "$R" price-api ticker reprice data-manager
need wrk
bench_start "reprice: many books per 5 s tick" "wrk against the same price-api (\`wrk -t2 -c64 -d5s\`); reprice needs two requests per book" BIN_DIR "$@"
TMP=$(mktemp -d)
cleanup() { kill "${API:-}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

"$R/price-api" --listen 127.0.0.1:0 --threads 2 2>"$TMP/api.err" &
API=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/api.err" && break; sleep 0.05; done
URL=$(grep -o 'http://[0-9.:]*' "$TMP/api.err" | head -1)
curl -s -XPOST "$URL/register-request" >/dev/null; curl -s -XPOST "$URL/register-request" >/dev/null

echo "\$ wrk -t2 -c64 -d5s $URL/request-data/2"
WRK_OUT=$(wrk -t2 -c64 -d5s "$URL/request-data/2")
echo "$WRK_OUT"
WRK=$(awk '/Requests\/sec/ {print $2}' <<<"$WRK_OUT")

for n in $BOOKS; do
  python3 "$HERE/gen-prices.py" --books "$n" --steps $((TICKS + 5)) >"$TMP/books.csv"
  CMD="$R/ticker 5s --count $TICKS | $R/reprice --csv $TMP/books.csv --api $URL --poll-after 1s --max-connections 64"
  echo "\$ $CMD" >&2
  "$R/ticker" 5s --count "$TICKS" | tee "$TMP/ticks.jsonl" |
    "$R/reprice" --csv "$TMP/books.csv" --api "$URL" --poll-after 1s --max-connections 64 \
      >"$TMP/prices.jsonl" 2>"$TMP/reprice.err" || true
  python3 - "$TMP" "$n" "$WRK" <<'PY'
import json, sys
from datetime import datetime
d, books, wrk = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ts = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
ticks = {json.loads(l)["tick"]: ts(json.loads(l)["at"]) for l in open(f"{d}/ticks.jsonl")}
late = {t: [] for t in ticks}
for l in open(f"{d}/prices.jsonl"):
    p = json.loads(l)
    late[p["tick"]].append(ts(p["at"]) - ticks[p["tick"]])
errs = [l for l in open(f"{d}/reprice.err") if l.startswith("reprice: tick ")]
for t in sorted(ticks):
    xs = late[t]
    within = sum(1 for x in xs if x < 5.0)
    failed = sum(1 for l in errs if l.startswith(f"reprice: tick {t} ") or l.startswith(f"reprice: tick {t}:"))
    last = max(xs) if xs else float("nan")
    rate = len(xs) / last if xs else 0
    print(f"{books}\t{t}\t{within}\t{failed}\t{last:.2f} s\t{rate:.0f}\t{2 * rate / wrk:.2f}")
PY
done | bench_table books tick "priced within the 5 s tick" "failed (error line: skipped, still in flight)" "last price after tick" "books/s" "2 × books/s ÷ wrk req/s"
bench_text "anchor: \`wrk -t2 -c64 -d5s\` against the same price-api, $WRK req/s; reprice needs two requests per book."
