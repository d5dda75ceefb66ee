#!/usr/bin/env bash
# Slow consumers, measured: CLIENTS WebSocket clients in one room, SENDERS of them
# saying timestamped messages, and STALLED clients that log in and never read again. Runs the
# measurement twice against a fresh release server each time (server defaults: --outbox 1 MiB,
# write timeout 10 s), first with no stalled clients, then with them, and checks that
#   - the reading clients' p99 delivery latency with stalled clients is within 2x of without,
#   - every reading client received every message, in order, in both runs,
#   - the server disconnected every stalled client (and says after how long).
# Loopback only. Usage:
#   scripts/slow-consumers.sh [--clients N] [--stalled N] [--seconds N] [-- extra slow_consumers options]
# Defaults: 1000 clients, 10 stalled, 10 senders x 2.5 messages/s of 2,000 bytes (50 KB/s to
# every client), 120 s measured (plus 5 s warm-up) per run: about 5 minutes in all. The stalled
# clients' receive buffers are 4 KiB; the server's kernel send buffer still takes up to
# net.ipv4.tcp_wmem's maximum (4 MiB here) before the outbox fills, so at 50 KB/s they are
# disconnected after roughly 80 s + the 10 s write timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=1000
stalled=10
seconds=120
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --stalled) stalled=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

need_fds=$((2 * clients + 200))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
  ulimit -n "$need_fds" 2>/dev/null || { echo "ulimit -n is $(ulimit -n); $need_fds needed" >&2; exit 1; }
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --example chat_server --example slow_consumers
bin="$target/release/examples"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a fresh in-memory server on a free loopback port; sets $url and $server_pid.
start_server() {
  : > "$work/out"
  "$bin/chat_server" --memory --tcp off --ws 127.0.0.1:0 --max-connections $((clients + 100)) \
    > "$work/out" 2> "$work/err" &
  server_pid=$!
  url=
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$work/out")
    [ -n "$url" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start:" >&2; cat "$work/err" >&2; exit 1
}

stop_server() {
  kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=
}

measure() { # $1: stalled clients; prints the run's report, leaves its RESULT line in $work/result
  start_server
  "$bin/slow_consumers" --url "$url" --clients "$clients" --stalled "$1" --seconds "$seconds" \
    --stall-rcvbuf 4096 "${extra[@]}" | tee "$work/run"
  grep '^RESULT' "$work/run" > "$work/result"
  stop_server
}

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$2"; }

echo "== $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "== run 1: $clients clients, none stalled"
measure 0
cp "$work/result" "$work/base"
echo "== run 2: $clients clients, $stalled stalled"
measure "$stalled"
cp "$work/result" "$work/stalled"

base_p99=$(field p99_ms "$work/base")
stalled_p99=$(field p99_ms "$work/stalled")
ratio=$(awk -v a="$stalled_p99" -v b="$base_p99" 'BEGIN { printf "%.2f", a / b }')
ok=true
echo "== p99 without stalled clients ${base_p99} ms, with ${stalled} stalled ${stalled_p99} ms: ratio ${ratio} (must be <= 2)"
awk -v r="$ratio" 'BEGIN { exit !(r <= 2.0) }' || ok=false
for run in base stalled; do
  complete=$(field complete "$work/$run"); readers=$(field readers "$work/$run")
  echo "== $run: $complete/$readers reading clients got every message"
  [ "$complete" = "$readers" ] || ok=false
done
disconnected=$(field disconnected "$work/stalled")
echo "== stalled clients disconnected: $disconnected/$stalled, the last after $(field last_disconnect_s "$work/stalled") s"
[ "$disconnected" = "$stalled" ] || ok=false
if $ok; then echo "PASS"; else echo "FAIL"; exit 1; fi
