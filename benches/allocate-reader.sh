#!/usr/bin/env bash
# What allocate's fast reader (src/allocate/fast.rs) buys: CPU time per problem line on one thread
# for the fast reader, for the serde_json reader that words every error, and for simd-json's tape
# alone (the shared JSON fast path's floor, before any field is read). Same problems as
# benches/allocate.sh (benches/allocate_gen.py, fixed seed). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${ALLOCATE_READER_PROBLEMS:-100000}
OUT=bench-out/allocate
mkdir -p "$OUT"
problems="$OUT/reader-problems-$N.jsonl"
[ -s "$problems" ] || python3 benches/allocate_gen.py --count "$N" --seed 1 > "$problems"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ALLOCATE_READER_FILE=$problems cargo test --release --lib allocate::tests::reader_cost -- --ignored --nocapture"
ALLOCATE_READER_FILE="$problems" cargo test -q --release --lib allocate::tests::reader_cost -- --ignored --nocapture 2>&1 |
    grep -E '^ |problem lines'
