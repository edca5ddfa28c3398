#!/usr/bin/env bash
# chat-bench: how many chat clients each server sustains by the challenge's rule (a message per
# client every 3 s, every message at every client within 1 s, none lost), measured in one session
# on this machine with the same client:
#   - chat-relay with 1, 2 and 4 workers, broadcasting over Unix sockets;
#   - chat-relay with 1, 2 and 4 workers, broadcasting through Redis pub/sub;
#   - the anchors, written for this benchmark from the challenge's description, each with 2
#     workers broadcasting through Redis pub/sub:
#     - the challenge's Python stack, a gevent-websocket chat server under
#       `gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w 2`
#       (benches/chat-python/chatserver.py);
#     - Node: `ws` under node:cluster (benches/chat-anchors/ws-cluster.js);
#     - Node: Socket.IO under node:cluster with @socket.io/redis-adapter
#       (benches/chat-anchors/socketio.js; chat-bench speaks to it with --protocol socket.io).
# Prints each command, then one table: max clients, the ratio to the best Node stack and to the
# Python stack, p99 at that load, and the CPU of server and client (percent, and µs per delivery).
#
# Run from the repo root after `cargo build --release`. Knobs (environment):
#   CHAT_BENCH_DURATION  chatting time per search step (default 30s = 10 rounds of the rule)
#   CHAT_BENCH_TOLERANCE search precision in percent (default 5)
#   CHAT_BENCH_ONLY      space-separated subset of: relay-unix-1 relay-unix-2 relay-unix-4
#                        relay-redis-1 relay-redis-2 relay-redis-4 python-gevent-2
#                        node-ws-2 node-socketio-2; a relay name may end in a batch window,
#                        e.g. relay-unix-2-200ms (chat-relay --batch-window 200ms; without it,
#                        the relay's default)
# The Node packages (benches/chat-anchors/package.json) are installed with npm into
# target/chat-anchors/, the Python ones into bench-out/venv/; nothing installed is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

REL=target/release
OUT=bench-out/chat-bench
VENV=bench-out/venv
NODE_DIR=target/chat-anchors
DURATION=${CHAT_BENCH_DURATION:-30s}
TOLERANCE=${CHAT_BENCH_TOLERANCE:-5}
ONLY=${CHAT_BENCH_ONLY:-python-gevent-2 node-ws-2 node-socketio-2 relay-unix-1 relay-unix-2 relay-unix-4 relay-redis-1 relay-redis-2 relay-redis-4}
mkdir -p "$OUT"

# --- anchor tools ------------------------------------------------------------------------------
needed=chat-bench
case " $ONLY" in *" relay-"*) needed="$needed chat-relay" ;; esac
for bin in $needed; do
    [ -x "$REL/$bin" ] || cargo build --release --bin "$bin"
done
need redis-server
case " $ONLY" in *" node-"*)
    need node nodejs
    need npm
    if ! cmp -s benches/chat-anchors/package.json "$NODE_DIR/package.json" || [ ! -d "$NODE_DIR/node_modules/socket.io" ]; then
        say "installing the Node stacks into $NODE_DIR"
        mkdir -p "$NODE_DIR"
        cp benches/chat-anchors/package.json "$NODE_DIR/"
        (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
    ;;
esac
case " $ONLY" in *" python-"*)
if [ ! -x "$VENV/bin/gunicorn" ] || ! "$VENV/bin/python" -c 'import geventwebsocket, redis, packaging' 2>/dev/null; then
    say "installing the Python stack into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q gevent gevent-websocket gunicorn redis packaging
fi
;;
esac

# --- helpers -----------------------------------------------------------------------------------
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"

# One search against a running server. Args: name url start "extra chat-bench flags" server-pids...
declare -A MAX P99 SCPU CCPU SUS CUS LOAD CMD
search() {
    local name=$1 url=$2 start=$3 extra=$4; shift 4
    local pids=()
    for p in "$@"; do pids+=(--server-pid "$p"); done
    # shellcheck disable=SC2206 # extra holds flags to split
    local args=("$REL/chat-bench" --url "$url" --search --start "$start" --duration "$DURATION" --tolerance "$TOLERANCE" $extra "${pids[@]}" --plot "$OUT/$name.svg")
    local cmd; cmd=$(printf '%q ' "${args[@]}"); cmd=${cmd% }
    say ""
    say "# $name"
    say "\$ $cmd > $OUT/$name.jsonl"
    CMD[$name]=$cmd
    LOAD[$name]=$(cut -d' ' -f1 /proc/loadavg)
    "${args[@]}" >"$OUT/$name.jsonl" 2>"$OUT/$name.log" || { say "chat-bench failed:"; tail -5 "$OUT/$name.log" >&2; }
    cat "$OUT/$name.jsonl" >&2
    read -r MAX[$name] P99[$name] SCPU[$name] CCPU[$name] SUS[$name] CUS[$name] < <(python3 - "$OUT/$name.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = next((l["max_clients"] for l in lines if "max_clients" in l), 0)
step = next((l for l in lines if l.get("clients") == best and l.get("ok")), {})
fmt = lambda v: "-" if v is None else str(v)
print(best, fmt(step.get("p99_ms")), fmt(step.get("server_cpu_pct")), fmt(step.get("client_cpu_pct")),
      fmt(step.get("server_cpu_us_per_delivery")), fmt(step.get("client_cpu_us_per_delivery")))
PY
)
}

relay() {
    local name=$1 workers=$2 transport=$3 window=$4
    local port; port=$(free_port)
    local args=(--listen "127.0.0.1:$port" --workers "$workers")
    if [ -n "$window" ]; then args+=(--batch-window "$window"); fi
    local extra=()
    if [ "$transport" = redis ]; then
        args+=(--redis "redis://127.0.0.1:$REDIS_PORT" --channel "bench-$name")
        extra=("$REDIS_PID")
    fi
    say "\$ $REL/chat-relay ${args[*]} < /dev/null > /dev/null"
    # No bot on stdin; stdout, the room's log, is discarded.
    "$REL/chat-relay" "${args[@]}" </dev/null >/dev/null 2>"$OUT/$name.server.log" &
    local pid=$!
    wait_port "$port"
    search "$name" "ws://127.0.0.1:$port/chat" 250 "" "$pid" "${extra[@]}"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

python_gevent() {
    local name=$1 workers=$2
    local port; port=$(free_port)
    local cmd="gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w $workers --bind 127.0.0.1:$port --chdir benches/chat-python chatserver:app"
    say "\$ REDIS_URL=redis://127.0.0.1:$REDIS_PORT CHAT_CHANNEL=bench-$name $VENV/bin/$cmd"
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CHAT_CHANNEL="bench-$name" \
        "$VENV/bin/gunicorn" -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w "$workers" \
        --bind "127.0.0.1:$port" --chdir benches/chat-python --log-level warning chatserver:app \
        2>"$OUT/$name.server.log" &
    local pid=$!
    wait_port "$port"
    search "$name" "ws://127.0.0.1:$port/chat" 50 "" "$pid" "$REDIS_PID"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A Node stack under node:cluster. Args: name script workers path "extra chat-bench flags"
node_stack() {
    local name=$1 script=$2 workers=$3 path=$4 extra=$5
    local port; port=$(free_port)
    local env=(NODE_PATH="$NODE_DIR/node_modules" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CHAT_CHANNEL="bench-$name" WORKERS="$workers" PORT="$port")
    say "\$ ${env[*]} node benches/chat-anchors/$script"
    env "${env[@]}" node "benches/chat-anchors/$script" 2>"$OUT/$name.server.log" &
    local pid=$!
    # node:cluster accepts as soon as one worker listens; measure only once all of them do.
    for _ in $(seq 1 400); do
        [ "$(grep -c listening "$OUT/$name.server.log" 2>/dev/null)" -ge "$workers" ] && break
        sleep 0.05
    done
    wait_port "$port"
    search "$name" "ws://127.0.0.1:$port$path" 50 "$extra" "$pid" "$REDIS_PID"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

bench_start "chat-relay against the Node and Python stacks" "the challenge's Python stack (gevent-websocket under \`gunicorn -w 2\`, Redis pub/sub) and two Node stacks (\`ws\` under node:cluster with Redis; Socket.IO with @socket.io/redis-adapter), 2 workers each, measured by the same chat-bench" "CHAT_BENCH_DURATION CHAT_BENCH_TOLERANCE CHAT_BENCH_ONLY" "$@"
for name in $ONLY; do
    case $name in
        relay-unix-* | relay-redis-*)
            # relay-TRANSPORT-WORKERS[-WINDOW]
            spec=${name#relay-*-}; transport=${name#relay-}; transport=${transport%%-*}
            workers=${spec%%-*}; window=""
            if [ "$spec" != "$workers" ]; then window=${spec#*-}; fi
            relay "$name" "$workers" "$transport" "$window" ;;
        python-gevent-*) python_gevent "$name" "${name##*-}" ;;
        node-ws-*) node_stack "$name" ws-cluster.js "${name##*-}" /chat "" ;;
        node-socketio-*) node_stack "$name" socketio.js "${name##*-}" "/socket.io/?EIO=4&transport=websocket" "--protocol socket.io" ;;
        *) say "unknown configuration $name"; exit 2 ;;
    esac
done
say ""
say "# load average at end: $(bench_load)"

# --- the table ---------------------------------------------------------------------------------
anchor=${MAX[python-gevent-2]:-}
node_best=""
for name in $ONLY; do
    case $name in node-*)
        if [ -z "$node_best" ] || [ "${MAX[$name]}" -gt "$node_best" ]; then node_best=${MAX[$name]}; fi ;;
    esac
done
for name in $ONLY; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${MAX[$name]}" \
        "$(ratio "${MAX[$name]}" "$node_best" %.1fx)" "$(ratio "${MAX[$name]}" "$anchor" %.1fx)" "${P99[$name]}" \
        "${SCPU[$name]}" "${CCPU[$name]}" "${SUS[$name]}" "${CUS[$name]}" "${LOAD[$name]}"
done | bench_table server "max clients" "vs best Node" "vs Python" "p99 at max (ms)" "server CPU %" "client CPU %" \
    "server CPU µs/delivery" "client CPU µs/delivery" "load avg"
bench_text "All figures from the step at max clients. CPU %: percent of one core over the step (server = all its processes, plus redis-server where used). load avg: 1-minute load average when the search started. Duration per step: $DURATION; plots and step lines in $OUT/."
