#!/usr/bin/env bash
# Measures fan-out on this machine, as the README's "Performance" section reports it.
#
# For each transport and room size: the release server pinned to core 0 (in-memory store, no
# rate limit), chat-load pinned to core 1, one room, 10 senders, 64-byte texts, closed loop
# (window 64) for the maximum; then a fixed rate of half that maximum for the latency
# percentiles. Results go to perf/results.jsonl (one JSON line per run); the plot to
# docs/fanout.svg. Loopback only; every run is bounded by --duration.
#
#   scripts/perf-sweep.sh [SECONDS]        # default 10 s per run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
sizes=${SIZES:-"10 100 1000"}
out=perf/results.jsonl
mkdir -p perf docs
: > "$out"

cargo build --release -q -p chat-load
cargo build --release -q --example chat_server
server=target/release/examples/chat_server
load=target/release/chat-load
cores=$(nproc)
pin_server=(); pin_load=()
if [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0); pin_load=(taskset -c 1)
fi

run() { # transport receivers extra-args...
  local transport=$1 receivers=$2; shift 2
  local log; log=$(mktemp)
  "${pin_server[@]}" "$server" --memory --rate-limit 0 --max-connections 60000 \
      --ws 127.0.0.1:0 --tcp 127.0.0.1:0 >"$log" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do grep -q '^listening tcp' "$log" && break; sleep 0.1; done
  local ws tcp
  ws=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$log")
  tcp=$(sed -n 's/^listening tcp:\/\/\(.*\)$/\1/p' "$log")
  local target=(--ws "$ws")
  [ "$transport" = tcp ] && target=(--tcp "$tcp")
  "${pin_load[@]}" "$load" "${target[@]}" --receivers "$receivers" --senders 10 --size 64 \
      --duration "$seconds" --pid "$pid" --json "$@"
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$log"
}

for transport in ws tcp; do
  for receivers in $sizes; do
    line=$(run "$transport" "$receivers" --label max)
    echo "$line" | tee -a "$out"
    rate=$(python3 -c "import json,sys; print(max(1, int(json.loads(sys.argv[1])['messages_per_s'] / 2)))" "$line")
    run "$transport" "$receivers" --rate "$rate" --label half | tee -a "$out"
  done
done
python3 scripts/plot.py "$out" docs/fanout.svg
echo "wrote $out and docs/fanout.svg"
