#!/usr/bin/env bash
# price-api throughput with wrk, per endpoint, against nginx answering the same JSON from its
# config (the anchor: a C server doing no work at all), both on 2 threads/workers on this machine.
#
#   cargo build --release && benches/price-api.sh [DURATION=10s] [CONNECTIONS=64]
#
# wrk runs on the same 2 cores as the server, so absolute numbers are a floor; read the ratios.
set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
CONNS=${2:-64}
R=${BIN_DIR:-target/release}
HERE=$(cd "$(dirname "$0")" && pwd)
need_bins "$R" price-api
need wrk
need nginx nginx-light || need nginx
bench_start "price-api with wrk, against nginx" "nginx answering the same JSON from its config (2 workers, a C server doing no work), same wrk" BIN_DIR "$@"
TMP=$(mktemp -d)
cleanup() { kill "${API:-}" "${NGINX:-}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

"$R/price-api" --listen 127.0.0.1:0 --threads 2 2>"$TMP/api.err" &
API=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/api.err" && break; sleep 0.05; done
URL=$(grep -o 'http://[0-9.:]*' "$TMP/api.err" | head -1)
curl -s -XPOST "$URL/register-request" >/dev/null   # id 1 exists
curl -s -XPOST "$URL/register-request" >/dev/null   # id 2 exists

NPORT=$(free_port)
cat >"$TMP/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP;
  server {
    listen 127.0.0.1:$NPORT;
    location /request-data/ { default_type application/json; return 200 '{"sold":true}'; }
    location /register-request { default_type application/json; return 200 '{"id":1}'; }
  }
}
CONF
nginx -c "$TMP/nginx.conf" &
NGINX=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$NPORT/request-data/2" >/dev/null && break; sleep 0.05; done

rps() { # command... -> requests/s
  echo "\$ $*" >&2
  local out
  out=$("$@")
  echo "$out" >&2
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
declare -A RESULT
for target in price-api nginx; do
  base=$URL; [ $target = nginx ] && base="http://127.0.0.1:$NPORT"
  RESULT[$target-get]=$(rps wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$base/request-data/2")
  RESULT[$target-post]=$(rps wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$HERE/price-api-post.lua" "$base/register-request")
done
RSS=$(awk '/^VmRSS/{print $2}' /proc/$API/status)
for ep in get post; do
  name="GET /request-data/2"; [ $ep = post ] && name="POST /register-request"
  a=${RESULT[price-api-$ep]}; n=${RESULT[nginx-$ep]}
  printf '%s\t%s\t%s\t%s\n' "$name" "$a" "$n" "$(ratio "$a" "$n")"
done | bench_table endpoint "price-api req/s" "nginx (static JSON) req/s" "price-api / nginx"
bench_text "wrk \`-t2 -c$CONNS -d$DURATION\`; price-api RSS after $(curl -s "$URL/health" | grep -o "[0-9]*" | head -1) registrations: ${RSS} kB"
