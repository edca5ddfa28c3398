#!/usr/bin/env bash
# What allocate's fast reader (src/allocate/fast.rs) buys: CPU time per problem line on one thread
# for the fast reader, for the serde_json reader that words every error, and for simd-json's tape
# alone (the shared JSON fast path's floor, before any field is read). Same problems as
# benches/allocate.sh (benches/allocate_gen.py, fixed seed). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
N=${ALLOCATE_READER_PROBLEMS:-100000}
OUT=bench-out/allocate
mkdir -p "$OUT"
problems="$OUT/reader-problems-$N.jsonl"
[ -s "$problems" ] || python3 benches/allocate_gen.py --count "$N" --seed 1 > "$problems"
bench_start "allocate's reader" "the serde_json reader that words every error (src/allocate/parse.rs) and simd-json's tape alone, on the same lines, one thread" ALLOCATE_READER_PROBLEMS "$@"
echo "\$ ALLOCATE_READER_FILE=$problems cargo test --release --lib allocate::tests::reader_cost -- --ignored --nocapture"
ALLOCATE_READER_FILE="$problems" cargo test -q --release --lib allocate::tests::reader_cost -- --ignored --nocapture \
    > "$OUT/reader-cost.txt" 2>&1 || { cat "$OUT/reader-cost.txt" >&2; exit 1; }
# "  fast reader (src/allocate/fast.rs), complete read:     1321" -> reader, ns per line
grep -E '^  .*: +[0-9]+$' "$OUT/reader-cost.txt" | sed -E 's/^  (.*): +([0-9]+)$/\1\t\2/' |
    bench_table reader "ns per problem line (one thread, best of 5)"
bench_text "$(grep 'problem lines' "$OUT/reader-cost.txt" | sed 's/;.*/./')"
