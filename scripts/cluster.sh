#!/usr/bin/env bash
# Starts a cluster on this machine for a person to try: one Redis and NODES bundled servers
# (default 3) on loopback, all one chat. Node i listens on WebSocket port WS_PORT+i and line
# port TCP_PORT+i (defaults 8765 and 9999: node 0 has the single server's usual ports). Ctrl-C
# stops everything; nothing is left behind but the Redis directory under /tmp, which is removed.
#
#   scripts/cluster.sh                 # Redis on a free port, 3 nodes
#   NODES=5 scripts/cluster.sh         # 5 nodes
#   REDIS=redis://127.0.0.1:6379/0 scripts/cluster.sh   # use a Redis that is already running
#
# Then, in other terminals:  nc 127.0.0.1 9999   (node 0, lines)
#                            open http://127.0.0.1:8766/ (node 1, the browser page)
# Needs redis-server (Debian: apt-get install redis-server) unless REDIS is given.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${NODES:-3}
ws_port=${WS_PORT:-8765}
tcp_port=${TCP_PORT:-9999}

cargo build --release -q --example chat_server
server="${CARGO_TARGET_DIR:-target}/release/examples/chat_server"

pids=()
dir=$(mktemp -d /tmp/chat-cluster.XXXXXX)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

redis=${REDIS:-}
if [ -z "$redis" ]; then
  if ! command -v redis-server >/dev/null; then
    echo "redis-server is not installed (Debian: apt-get install redis-server), or give REDIS=redis://HOST:PORT/DB" >&2
    exit 1
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
    --appendfsync everysec --daemonize no --logfile "$dir/redis.log" &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$port" ping >/dev/null || { echo "redis did not start; see $dir/redis.log" >&2; exit 1; }
  redis="redis://127.0.0.1:$port/0"
fi
echo "redis: $redis"

for i in $(seq 0 $((nodes - 1))); do
  "$server" --redis "$redis" --ws "127.0.0.1:$((ws_port + i))" --tcp "127.0.0.1:$((tcp_port + i))" \
    2> "$dir/node$i.log" > >(sed -u "s/^/node $i: /") &
  pids+=($!)
done
echo "logs: $dir/node*.log; Ctrl-C stops the cluster"
wait
