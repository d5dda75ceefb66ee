#!/usr/bin/env bash
# Measures fan-out on this machine, as the README's "Performance" section reports it.
#
# The server under test (the release chat server, in-memory store, no rate limit) runs pinned
# to core 0 and chat-load pinned to core 1; one room, 10 senders, 64-byte texts.
#
# 1. Throughput: for each transport and room size (SIZES), closed loop (window 2048) for the
#    maximum, then a fixed rate of half that maximum for the latency percentiles (labels "max"
#    and "half").
# 2. Latency against the floor: at SWEEP_RECEIVERS receivers (1,000), for each offered load in
#    LOADS (deliveries/s, 0.2 M to 3 M; rate = deliveries/s / receivers), the floor
#    (`chat-load floor`, a minimal single-threaded line fan-out, pinned to core 0 like the
#    server) over TCP, then the chat server over lines and over WebSocket, with the same
#    receivers, senders and rate (label "sweep"; the field "server" is "floor" or "chat").
#    Latency is to be read as a ratio to the floor measured in the same run; the script prints
#    those ratios, and every run's CPU shares, at the end.
#
# Every result also carries the server's and chat-load's CPU shares and `load_tool_bound` (true
# when chat-load used over 90% of its core: that run's figures may be chat-load's limit, not the
# server's), and `contended` (true when other processes used over 10% of one core meanwhile: on a
# shared machine, those figures are noisy; the server's and chat-load's cores' busy % say more). Results go to perf/results.jsonl (one JSON line per run; OUT overrides); the plot
# to docs/fanout.svg (SVG overrides). Loopback only; every run is bounded by --duration.
#
#   scripts/perf-sweep.sh [SECONDS]        # default 10 s per run
#   SIZES= LOADS="200000 1000000" scripts/perf-sweep.sh 8    # only the floor sweep, two loads
#   LOAD_ARGS=--in-phase scripts/perf-sweep.sh   # more chat-load options for every run
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
sizes=${SIZES-"10 100 1000"}
loads=${LOADS-"200000 500000 1000000 2000000 3000000"}
sweep_receivers=${SWEEP_RECEIVERS:-1000}
out=${OUT:-perf/results.jsonl}
svg=${SVG:-docs/fanout.svg}
mkdir -p "$(dirname "$out")" "$(dirname "$svg")"
: > "$out"

cargo build --release -q -p chat-load
cargo build --release -q --example chat_server
target_dir=${CARGO_TARGET_DIR:-target}
server=$target_dir/release/examples/chat_server
load=$target_dir/release/chat-load
cores=$(nproc)
pin_server=(); pin_load=()
if [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0); pin_load=(taskset -c 1)
fi

run() { # chat|floor transport receivers extra-args...
  local kind=$1 transport=$2 receivers=$3; shift 3
  local log; log=$(mktemp)
  if [ "$kind" = floor ]; then
    "${pin_server[@]}" "$load" floor --listen 127.0.0.1:0 >"$log" 2>/dev/null &
  else
    "${pin_server[@]}" "$server" --memory --rate-limit 0 --max-connections 60000 \
        --ws 127.0.0.1:0 --tcp 127.0.0.1:0 >"$log" 2>/dev/null &
  fi
  local pid=$!
  for _ in $(seq 100); do grep -q '^listening tcp' "$log" && break; sleep 0.1; done
  local ws tcp
  ws=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$log")
  tcp=$(sed -n 's/^listening tcp:\/\/\(.*\)$/\1/p' "$log")
  local target=(--ws "$ws")
  [ "$transport" = tcp ] && target=(--tcp "$tcp")
  # shellcheck disable=SC2086 # LOAD_ARGS is split into words on purpose
  "${pin_load[@]}" "$load" "${target[@]}" --receivers "$receivers" --senders 10 --size 64 \
      --duration "$seconds" --pid "$pid" --server-kind "$kind" --json ${LOAD_ARGS:-} "$@"
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$log"
}

for transport in ws tcp; do
  for receivers in $sizes; do
    line=$(run chat "$transport" "$receivers" --label max)
    echo "$line" | tee -a "$out"
    rate=$(python3 -c "import json,sys; print(max(1, int(json.loads(sys.argv[1])['messages_per_s'] / 2)))" "$line")
    run chat "$transport" "$receivers" --rate "$rate" --label half | tee -a "$out"
  done
done

for deliveries in $loads; do
  rate=$(( deliveries / sweep_receivers )); [ "$rate" -ge 1 ] || rate=1
  for what in "floor tcp" "chat tcp" "chat ws"; do
    # shellcheck disable=SC2086 # two words on purpose: kind and transport
    run $what "$sweep_receivers" --rate "$rate" --label sweep | tee -a "$out"
  done
done

python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sweep = [r for r in runs if r["label"] == "sweep"]
if sweep:
    print("\noffered deliveries/s, server, transport: p50, p99 (x the floor's), CPU shares "
          "(others: every other process, in % of one core)")
def fmt(v, unit="%"):
    return "?" if v is None else f"{v:.0f}{unit}"
for rate in sorted({r["rate"] for r in sweep}):
    at = [r for r in sweep if r["rate"] == rate]
    floor = next((r for r in at if r.get("server") == "floor"), None)
    for r in at:
        ratio = ""
        if floor and r is not floor and floor["p50_ms"] > 0 and floor["p99_ms"] > 0:
            ratio = f" ({r['p50_ms'] / floor['p50_ms']:.1f}x, {r['p99_ms'] / floor['p99_ms']:.1f}x)"
        bound = "  LOAD-TOOL-BOUND" if r.get("load_tool_bound") else ""
        bound += "  CONTENDED" if r.get("contended") else ""
        print(f"{rate * r['receivers']:>9} {r.get('server', 'chat'):>5} {r['transport']:>3}: "
              f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms{ratio}, "
              f"{r['deliveries_per_s']:.0f} deliveries/s, lost {r['lost']}, "
              f"server {fmt(r.get('server_cpu_share_percent'))} of {r.get('server_cores')} core(s), "
              f"chat-load {fmt(r.get('load_cpu_share_percent'))} of {r.get('load_cores')} core(s), "
              f"others {fmt(r.get('others_cpu_percent'))}, cores busy "
              f"{fmt(r.get('server_cores_busy_percent'))}/{fmt(r.get('load_cores_busy_percent'))}{bound}")
PY
python3 scripts/plot.py "$out" "$svg"
echo "wrote $out and $svg"
