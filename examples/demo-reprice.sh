#!/usr/bin/env bash
# The repricing loop live, and each part killed and restarted while the others keep going.
# `make demo-reprice` runs it after `cargo build --release`; ticks are 1 s here (5 s in earnest).
set -euo pipefail
R=${BIN_DIR:-target/release}
DIR=$(mktemp -d)
FIFO=$DIR/ticks.fifo
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(port)
API_ARGS=(--listen "127.0.0.1:$PORT" --latency 50ms..300ms --fail-rate 0.05)
start_api() { "$R/price-api" "${API_ARGS[@]}" & API=$!; PIDS+=("$API"); sleep 0.3; }
start_reprice() {
  "$R/reprice" --csv examples/data.csv --api "http://127.0.0.1:$PORT" --poll-after 300ms "$FIFO" &
  REPRICE=$!; PIDS+=("$REPRICE")
}

say "price-api ${API_ARGS[*]} &"
start_api
say "ticker 1s --out $FIFO &   (keeps ticking with no reader)"
"$R/ticker" 1s --out "$FIFO" & PIDS+=("$!")
sleep 2
say "reprice --csv examples/data.csv --api http://127.0.0.1:$PORT --poll-after 300ms $FIFO &"
start_reprice
sleep 4

DM=$(pgrep -P "$REPRICE" -x data-manager)
say "kill -9 data-manager ($DM): reprice restarts it with backoff, ticks go on"
kill -9 "$DM"
sleep 4

say "kill -9 reprice ($REPRICE): the ticker keeps ticking into the FIFO"
kill -9 "$REPRICE"
sleep 3
say "a new reprice picks up the ticks (the first line counts the unread ones)"
start_reprice
sleep 4

say "kill price-api: those ticks report errors, reprice and ticker carry on"
kill "$API"
sleep 3
say "price-api is back on the same port: prices resume"
start_api
sleep 4
say "done"
