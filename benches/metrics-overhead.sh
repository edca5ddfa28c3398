#!/usr/bin/env bash
# metrics-overhead: what scraping chat-relay's GET /metrics every second costs the relay while
# chat-bench runs 3,000 clients against it. Paired runs, alternating which goes first: the same
# relay command and chat-bench step without a scraper, and with a curl loop fetching /metrics once
# a second for the whole step. The figure is the relay's CPU per delivery (chat-bench's
# server_cpu_us_per_delivery, the relay and its workers together); the claim to check is that
# scraping adds less than 1 %.
#
# Run from the repo root, on a quiet machine, under the shared bench lock:
#   flock /work/coord/bench.lock benches/metrics-overhead.sh
# Knobs (environment):
#   METRICS_BENCH_CLIENTS   clients (default 3000)
#   METRICS_BENCH_DURATION  chatting time per run (default 30s)
#   METRICS_BENCH_PAIRS     pairs of runs (default 3)
#   METRICS_BENCH_WORKERS   relay workers (default 2)
# Prints each command, every run's JSON line, then the medians and the difference.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

REL=target/release
OUT=bench-out/metrics-overhead
CLIENTS=${METRICS_BENCH_CLIENTS:-3000}
DURATION=${METRICS_BENCH_DURATION:-30s}
PAIRS=${METRICS_BENCH_PAIRS:-3}
WORKERS=${METRICS_BENCH_WORKERS:-2}
mkdir -p "$OUT"

for bin in chat-relay chat-bench; do
    [ -x "$REL/$bin" ] || cargo build --release --bin "$bin"
done
command -v jq >/dev/null || { say "needs jq"; exit 2; }

RELAY=""; SCRAPER=""
cleanup() {
    [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
    [ -n "$RELAY" ] && kill -TERM "$RELAY" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

# One run: a fresh relay, chat-bench for DURATION, with or without the scraper. Prints the
# relay's CPU per delivery in microseconds.
run() {
    local scrape=$1 port line
    port=$(free_port)
    "$REL/chat-relay" --workers "$WORKERS" --listen "127.0.0.1:$port" --max-connections 20000 \
        </dev/null >/dev/null 2>"$OUT/relay-$scrape.err" &
    RELAY=$!
    wait_port "$port"
    if [ "$scrape" = scrape ]; then
        ( while :; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done ) &
        SCRAPER=$!
    fi
    say "+ chat-bench --url ws://127.0.0.1:$port/chat -n $CLIENTS --duration $DURATION --server-pid $RELAY  # $scrape"
    line=$("$REL/chat-bench" --url "ws://127.0.0.1:$port/chat" -n "$CLIENTS" \
        --duration "$DURATION" --server-pid "$RELAY" 2>>"$OUT/bench.err" | tail -1) || true
    printf '%s %s\n' "$scrape" "$line" >>"$OUT/runs.jsonl"
    say "$scrape $line"
    if [ -n "$SCRAPER" ]; then kill "$SCRAPER" 2>/dev/null || true; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=""; fi
    kill -TERM "$RELAY"; wait "$RELAY" 2>/dev/null || true; RELAY=""
    printf '%s\n' "$line" | jq -r '.server_cpu_us_per_delivery'
}

bench_start "metrics-overhead: scraping /metrics during a $CLIENTS-client run" "the same relay and chat-bench step without a scraper, pairs alternating which goes first" \
    "METRICS_BENCH_CLIENTS METRICS_BENCH_DURATION METRICS_BENCH_PAIRS METRICS_BENCH_WORKERS METRICS_BENCH_SCRAPES" "$@"
: >"$OUT/runs.jsonl"
plain=(); scraped=()
for i in $(seq 1 "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then
        plain+=("$(run plain)"); scraped+=("$(run scrape)")
    else
        scraped+=("$(run scrape)"); plain+=("$(run plain)")
    fi
done
p=$(printf '%s\n' "${plain[@]}" | median)
s=$(printf '%s\n' "${scraped[@]}" | median)
say "load average at the end of the pairs: $(bench_load)"
for i in $(seq 1 "$PAIRS"); do
    first=plain; [ $((i % 2)) = 1 ] || first=scrape
    printf '%s (%s first)\t%s\t%s\t%s\n' "$i" "$first" "${plain[$((i-1))]}" "${scraped[$((i-1))]}" \
        "$(ratio "${scraped[$((i-1))]}" "${plain[$((i-1))]}" %.3f)"
done | bench_table pair "relay µs/delivery, no scraper" "with a scrape every 1 s" ratio
bench_text "relay CPU per delivery ($WORKERS workers, $CLIENTS clients, $DURATION a run), median of $PAIRS: without scraping $p µs, scraping /metrics every 1 s $s µs, difference $(awk -v p="$p" -v s="$s" 'BEGIN { if (p + 0 == 0) print "-"; else printf "%.2f", (s - p) / p * 100 }') %"

# What one scrape costs, measured directly: the relay's CPU (hub and workers, /proc/PID/stat
# ticks of 10 ms) across SCRAPES scrapes of an idle relay. Paired chat-bench runs drift by more
# than 1 % on a shared machine; this figure does not depend on them.
SCRAPES=${METRICS_BENCH_SCRAPES:-2000}
port=$(free_port)
"$REL/chat-relay" --workers "$WORKERS" --listen "127.0.0.1:$port" </dev/null >/dev/null 2>"$OUT/relay-direct.err" &
RELAY=$!
wait_port "$port"
ticks() {
    local t=0 p
    for p in "$RELAY" $(pgrep -P "$RELAY"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
per_scrape() { awk -v t="$1" -v n="$SCRAPES" 'BEGIN {printf "%.0f", (t > 0 ? t : 1) * 10000 / n}'; }
# A new connection per scrape (the curl loop above), then one kept-alive connection (as
# Prometheus scrapes).
before=$(ticks)
say "+ $SCRAPES x curl http://127.0.0.1:$port/metrics  # a connection each"
for _ in $(seq 1 "$SCRAPES"); do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; done
fresh=$(( $(ticks) - before ))
urls=()
for _ in $(seq 1 "$SCRAPES"); do urls+=("http://127.0.0.1:$port/metrics" -o /dev/null); done
before=$(ticks)
say "+ curl http://127.0.0.1:$port/metrics x $SCRAPES  # one kept-alive connection"
curl -s "${urls[@]}"
kept=$(( $(ticks) - before ))
kill -TERM "$RELAY"; wait "$RELAY" 2>/dev/null || true; RELAY=""
{
    printf '%s × `curl http://127.0.0.1:PORT/metrics`, a connection each\t%s\t%s\n' "$SCRAPES" "$(per_scrape "$fresh")" "$fresh"
    printf '`curl http://127.0.0.1:PORT/metrics` × %s, one kept-alive connection\t%s\t%s\n' "$SCRAPES" "$(per_scrape "$kept")" "$kept"
} | bench_table "scrapes of an idle $WORKERS-worker relay" "relay CPU per scrape (µs)" "ticks of 10 ms (hub and workers)"
