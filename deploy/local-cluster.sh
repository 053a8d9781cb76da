#!/usr/bin/env bash
# Starts, on this machine: nats-server, three gateways (each also serving
# the chat page), two chat workers and nginx in front with sticky hashing.
# Prints the URL; Ctrl-C stops everything it started.
#
#   deploy/local-cluster.sh            # then open http://localhost:3000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in nats-server nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "local-cluster: $tool is missing (apt-get install -y nats-server nginx)" >&2
    exit 1
  }
done
PATH="$PATH:/usr/sbin"

cargo build -q -p sio-demo
bin=target/debug
run=$(mktemp -d)
chmod 755 "$run"
pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap stop EXIT INT TERM

nats-server -a 127.0.0.1 -p 4222 >"$run/nats.log" 2>&1 &
pids+=($!)
sleep 0.5

for port in 3001 3002 3003; do
  SIO_DEMO_WORKERS=0 "$bin/sio-demo" --listen "127.0.0.1:$port" --nats nats://127.0.0.1:4222 \
    --trust-proxy >"$run/gateway-$port.log" 2>&1 &
  pids+=($!)
done
for n in 1 2; do
  "$bin/chat-worker" nats://127.0.0.1:4222 >"$run/worker-$n.log" 2>&1 &
  pids+=($!)
done

mkdir -p "$run/nginx/tmp"
cp deploy/nginx/nginx.conf "$run/nginx/"
nginx -p "$run/nginx" -c nginx.conf -g 'daemon off;' &
pids+=($!)

echo "local-cluster: chat on http://localhost:3000 (nginx → gateways on 3001-3003 → NATS → 2 workers); logs in $run; Ctrl-C stops"
wait
