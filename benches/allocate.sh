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

N=${ALLOCATE_PROBLEMS:-1000000}
SEED=${ALLOCATE_SEED:-1}
BIN=target/release/allocate
OUT=bench-out/allocate
[ -x "$BIN" ] || { echo "allocate.sh: $BIN is missing; run cargo build --release first" >&2; exit 2; }
if ! command -v python3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 >/dev/null
fi
mkdir -p "$OUT"

problems="$OUT/problems-$N-seed$SEED.jsonl"
if [ ! -s "$problems" ]; then
    echo "# python3 benches/allocate_gen.py --count $N --seed $SEED > $problems"
    python3 benches/allocate_gen.py --count "$N" --seed "$SEED" > "$problems.part"
    mv "$problems.part" "$problems"
fi
echo "input: $N problems, $(( $(stat -c %s "$problems") / 1000000 )) MB ($problems)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# measure NAME OUTFILE CMD... : run CMD < problems > OUTFILE, record wall and CPU seconds.
declare -A WALL CPU
measure() {
    local name=$1 out=$2; shift 2
    echo "# $* < $problems > $out"
    local TIMEFORMAT='%R %U %S' times
    times=$( { time "$@" < "$problems" > "$out" 2> "$out.stderr"; } 2>&1 )
    read -r wall user sys <<< "$times"
    WALL[$name]=$wall
    CPU[$name]=$(echo "$user + $sys" | bc -l)
    printf '%-9s wall %7.2f s  %9.0f problems/s   cpu %7.2f s  %9.0f problems/s\n\n' "$name" \
        "$wall" "$(echo "$N / $wall" | bc -l)" "${CPU[$name]}" "$(echo "$N / ${CPU[$name]}" | bc -l)"
}
command -v bc >/dev/null || { echo "allocate.sh: needs bc" >&2; exit 2; }

measure greedy "$OUT/greedy.jsonl" "$BIN" --strategy greedy
measure cheapest "$OUT/cheapest.jsonl" "$BIN"
measure python "$OUT/python-greedy.jsonl" python3 benches/allocate_greedy.py

ratio() { printf '%.1fx' "$(echo "$1 / $2" | bc -l)"; }
echo "speed-up over the Python greedy (same input, same machine, same run):"
echo "  allocate --strategy greedy: $(ratio "${WALL[python]}" "${WALL[greedy]}") by wall clock, $(ratio "${CPU[python]}" "${CPU[greedy]}") by CPU time"
echo "  allocate (cheapest):        $(ratio "${WALL[python]}" "${WALL[cheapest]}") by wall clock, $(ratio "${CPU[python]}" "${CPU[cheapest]}") by CPU time"
echo "targets: greedy >= 500000/s, cheapest >= 100000/s"
echo

# What the exact solver buys: warehouses per shipment (count of `":{` = one per warehouse).
paste -d '\t' "$OUT/greedy.jsonl" "$OUT/cheapest.jsonl" | awk -F'\t' '
    { g = gsub(/":\{/, "", $1); c = gsub(/":\{/, "", $2); G += g; C += c
      if (g > 0) shipped++; if (c < g) fewer++; if (c > g) more++ }
    END { printf "shippable problems: %d of %d; warehouses used: greedy %d, cheapest %d; cheapest uses fewer in %d problems, more in %d\n", shipped, NR, G, C, fewer, more }'

if cmp -s "$OUT/greedy.jsonl" "$OUT/python-greedy.jsonl"; then
    echo "check: allocate --strategy greedy and the Python greedy agree on all $N lines"
else
    differ=$(paste -d '\t' "$OUT/greedy.jsonl" "$OUT/python-greedy.jsonl" | awk -F'\t' '$1 != $2' | wc -l)
    echo "check FAILED: $differ lines differ between $OUT/greedy.jsonl and $OUT/python-greedy.jsonl" >&2
    exit 1
fi
