#!/usr/bin/env bash
# allocate benchmark: ALLOCATE_PROBLEMS (default 1,000,000) random problems — 1-10 ordered items,
# 2-20 warehouses (benches/allocate_gen.py, fixed seed) — through `allocate --strategy greedy`,
# `allocate` (cheapest, the default) and the anchor: a straightforward Python implementation of the
# greedy reading (benches/allocate_greedy.py). All three read the same file on stdin and write to a
# file. Prints each figure with its command, rates by wall clock and by CPU time, the ratios against
# Python, and checks that the greedy outputs agree line for line (exit 1 if not).
# Run from the repository root after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

N=${ALLOCATE_PROBLEMS:-1000000}
SEED=${ALLOCATE_SEED:-1}
BIN=target/release/allocate
OUT=bench-out/allocate
need_bins target/release allocate
need python3
mkdir -p "$OUT"
bench_start allocate "a straightforward Python greedy, \`python3 benches/allocate_greedy.py\` (json module, dicts), on the same file; its output must equal the greedy's" "ALLOCATE_PROBLEMS ALLOCATE_SEED" "$@"

problems="$OUT/problems-$N-seed$SEED.jsonl"
if [ ! -s "$problems" ]; then
    echo "# python3 benches/allocate_gen.py --count $N --seed $SEED > $problems"
    python3 benches/allocate_gen.py --count "$N" --seed "$SEED" > "$problems.part"
    mv "$problems.part" "$problems"
fi
echo "input: $N problems, $(( $(stat -c %s "$problems") / 1000000 )) MB ($problems)"
echo

# measure NAME OUTFILE CMD... : run CMD < problems > OUTFILE, record wall and CPU seconds.
declare -A WALLS CPUS
measure() {
    local name=$1 out=$2; shift 2
    echo "\$ $* < $problems > $out"
    timed "$@" < "$problems" > "$out" 2> "$out.stderr"
    WALLS[$name]=$WALL
    CPUS[$name]=$CPU
}
measure greedy "$OUT/greedy.jsonl" "$BIN" --strategy greedy
measure cheapest "$OUT/cheapest.jsonl" "$BIN"
measure python "$OUT/python-greedy.jsonl" python3 benches/allocate_greedy.py

row() { # name command
    local w=${WALLS[$1]} c=${CPUS[$1]} vs="1x"
    [ "$1" = python ] || vs="$(ratio "${WALLS[python]}" "$w" %.1fx) / $(ratio "${CPUS[python]}" "$c" %.1fx)"
    printf '%s\t%.2f s\t%s\t%.2f s\t%s\t%s\n' "$2" "$w" "$(ratio "$N" "$w" %.0f)" "$c" "$(ratio "$N" "$c" %.0f)" "$vs"
}
{
    row greedy "\`target/release/allocate --strategy greedy\`"
    row cheapest "\`target/release/allocate\` (cheapest)"
    row python "\`python3 benches/allocate_greedy.py\`"
} | bench_table "command (\`… < $problems > out\`)" wall "problems/s" CPU "problems/s per CPU-second" "vs Python (wall / CPU)"
bench_text "CPU is user + sys. targets: greedy >= 500000/s, cheapest >= 100000/s"
echo

# What the exact solver buys: warehouses per shipment (count of `":{` = one per warehouse).
paste -d '\t' "$OUT/greedy.jsonl" "$OUT/cheapest.jsonl" | awk -F'\t' '
    { g = gsub(/":\{/, "", $1); c = gsub(/":\{/, "", $2); G += g; C += c
      if (g > 0) shipped++; if (c < g) fewer++; if (c > g) more++ }
    END { printf "shippable problems: %d of %d; warehouses used: greedy %d, cheapest %d; cheapest uses fewer in %d problems, more in %d\n", shipped, NR, G, C, fewer, more }'

if cmp -s "$OUT/greedy.jsonl" "$OUT/python-greedy.jsonl"; then
    bench_text "check: allocate --strategy greedy and the Python greedy agree on all $N lines"
else
    differ=$(paste -d '\t' "$OUT/greedy.jsonl" "$OUT/python-greedy.jsonl" | awk -F'\t' '$1 != $2' | wc -l)
    echo "check FAILED: $differ lines differ between $OUT/greedy.jsonl and $OUT/python-greedy.jsonl" >&2
    exit 1
fi
