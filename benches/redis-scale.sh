#!/usr/bin/env bash
# Scale over Redis: allocate through one Redis stock, and reprice through one consumer group,
# each with 1, 2 and 4 processes, next to the single-host form.
#
#   cargo build --release && benches/redis-scale.sh [ORDERS=40000] [BOOKS=20000] [TICKS=3]
#
# allocate: ORDERS orders (1-3 items of 4, ids o-N), a stock large enough for all of them.
#   single host: `allocate --inventory stock.json --state state.json < orders` (the file form);
#   Redis: P processes `allocate --inventory redis://…/shop --seed-from stock.json`, each with
#   ORDERS/P of the orders, started together; orders/s = ORDERS / wall time of the slowest.
# reprice: BOOKS books per tick, TICKS ticks 5 s apart, price-api without latency,
#   `--poll-after 1s`. single host: `ticker 5s --count TICKS | reprice --csv books.csv`;
#   Redis: `ticker 5s --count TICKS --redis …` with C consumers `reprice --redis … --group gC`.
#   Per tick: the books priced within the 5 s tick (price "at" - tick "at" < 5 s), and when the
#   last one was priced.
# One redis-server (persistence off) on a free loopback port, started and stopped here. Timing by
# the shell's `time` (wall clock); every command is printed before its figure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
ORDERS=${1:-40000}
BOOKS=${2:-20000}
TICKS=${3:-3}
R=${BIN_DIR:-target/release}
need_bins "$R" allocate ticker reprice price-api data-manager
need redis-server
TMP=$(mktemp -d)
cleanup() {
  for p in ${REDIS:-} ${API:-}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no >/dev/null 2>&1 &
REDIS=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
RURL="redis://127.0.0.1:$PORT"
bench_start "Through Redis: allocate and reprice with 1, 2, 4 processes" "the single-host forms: allocate with a file inventory, ticker piped into one reprice" BIN_DIR "$@"

# ---- allocate -------------------------------------------------------------------------------
python3 - "$TMP" "$ORDERS" <<'PY'
import json, random, sys
d, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(18)
items = ["apple", "pear", "kiwi", "fig"]
stock = [{"name": w, "inventory": {i: n * 4 for i in items}} for w in ("owd", "dm", "bx")]
json.dump(stock, open(f"{d}/stock.json", "w"))
with open(f"{d}/orders.jsonl", "w") as f:
    for k in range(n):
        order = {i: rng.randint(1, 4) for i in rng.sample(items, rng.randint(1, 3))}
        f.write(json.dumps({"id": f"o-{k}", "items": order}) + "\n")
PY
for p in 1 2 4; do
  split -n "l/$p" -d "$TMP/orders.jsonl" "$TMP/orders.$p."
done

wall() { # wall seconds of "$@"
  local TIMEFORMAT='%R' t
  t=$( { time "$@" >/dev/null 2>>"$TMP/err"; } 2>&1 )
  echo "$t"
}
redis_allocate() { # P: run P processes on their shares, together
  local p=$1 pids=() f
  for f in "$TMP"/orders."$p".*; do
    "$R/allocate" --inventory "$RURL/shop$p" --seed-from "$TMP/stock.json" <"$f" >"$f.out" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

bench_text "redis-server $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/') on loopback, persistence off." "### allocate: $ORDERS orders"
rm -f "$TMP/state.json"
{
echo "\$ $R/allocate --inventory $TMP/stock.json --state $TMP/state.json < orders.jsonl" >&2
t=$(wall "$R/allocate" --inventory "$TMP/stock.json" --state "$TMP/state.json" <"$TMP/orders.jsonl")
printf 'file (one host)\t1\t%s s\t%s\n' "$t" "$(ratio "$ORDERS" "$t" %.0f)"
for p in 1 2 4; do
  echo "\$ $p × $R/allocate --inventory $RURL/shop$p --seed-from stock.json < its share" >&2
  t=$(wall redis_allocate "$p")
  answered=$(cat "$TMP"/orders."$p".*.out | wc -l)
  [ "$answered" -eq "$ORDERS" ] || echo "allocate over redis answered $answered of $ORDERS" >&2
  printf 'redis\t%s\t%s s\t%s\n' "$p" "$t" "$(ratio "$ORDERS" "$t" %.0f)"
done
} | bench_table form processes wall "orders/s"

# ---- reprice --------------------------------------------------------------------------------
"$R/price-api" --listen 127.0.0.1:0 --threads 2 2>"$TMP/api.err" &
API=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/api.err" && break; sleep 0.05; done
API_URL=$(grep -o 'http://[0-9.:]*' "$TMP/api.err" | head -1)
python3 benches/gen-prices.py --books "$BOOKS" --steps $((TICKS + 5)) >"$TMP/books.csv"

report() { # NAME CONSUMERS TICKS_JSONL PRICES_JSONL...
  python3 - "$@" <<'PY'
import json, sys
from datetime import datetime
name, consumers, ticks_file, *prices = sys.argv[1:]
ts = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
ticks = {}
for l in open(ticks_file):
    if l.startswith('{"tick"'):
        t = json.loads(l)
        ticks[t["tick"]] = ts(t["at"])
late = {t: [] for t in ticks}
for f in prices:
    for l in open(f):
        p = json.loads(l)
        if "price" in p and p["tick"] in late:
            late[p["tick"]].append(ts(p["at"]) - ticks[p["tick"]])
for t in sorted(ticks):
    xs = late[t]
    within = sum(1 for x in xs if x < 5.0)
    last = f"{max(xs):.2f} s" if xs else "-"
    print(f"{name}\t{consumers}\t{t}\t{within}\t{len(xs)}\t{last}")
PY
}

bench_text "### reprice: $BOOKS books per 5 s tick, $TICKS ticks, --poll-after 1s"
{
echo "\$ $R/ticker 5s --count $TICKS | $R/reprice --csv books.csv --api $API_URL --poll-after 1s" >&2
"$R/ticker" 5s --count "$TICKS" | tee "$TMP/ticks.jsonl" |
  "$R/reprice" --csv "$TMP/books.csv" --api "$API_URL" --poll-after 1s \
    >"$TMP/pipe.jsonl" 2>>"$TMP/err" || true
report "pipe (one host)" 1 "$TMP/ticks.jsonl" "$TMP/pipe.jsonl"
for c in 1 2 4; do
  stream="ticks$c"
  pids=()
  for k in $(seq "$c"); do
    "$R/reprice" --csv "$TMP/books.csv" --api "$API_URL" --poll-after 1s \
      --redis "$RURL/$stream" --group "g$c" --consumer "c$k" \
      >"$TMP/r$c.$k.jsonl" 2>"$TMP/r$c.$k.err" &
    pids+=($!)
  done
  for k in $(seq "$c"); do
    for _ in $(seq 200); do grep -q "of group" "$TMP/r$c.$k.err" && break; sleep 0.05; done
  done
  echo "\$ $R/ticker 5s --count $TICKS --redis $RURL/$stream & $c × $R/reprice --csv books.csv --api $API_URL --poll-after 1s --redis $RURL/$stream --group g$c" >&2
  "$R/ticker" 5s --count "$TICKS" --redis "$RURL/$stream" >"$TMP/ticker$c.out"
  want=$((BOOKS * TICKS))
  for _ in $(seq 600); do
    have=$(redis-cli -p "$PORT" XLEN "{$stream}:prices:g$c")
    [ "$have" -ge "$want" ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid"; done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  redis-cli -p "$PORT" --raw XRANGE "$stream" - + >"$TMP/ticks$c.raw"
  report "redis" "$c" "$TMP/ticks$c.raw" "$TMP"/r"$c".*.jsonl
done
} | bench_table form consumers tick "priced within the tick" priced "last price after tick"
bench_text "load average at the end: $(bench_load)"
