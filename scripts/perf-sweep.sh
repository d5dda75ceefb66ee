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
#    The whole sweep is made REPEATS times (3), one after the other, so that each load's runs
#    are spread over the minutes the sweep takes: on a shared machine one run's p99 can move by
#    a third. Latency is to be read as a ratio to the floor: the script prints, per load, each
#    server's median p99 over the repeats, the ratio of the medians, and the range of the ratios
#    of single repeats (each to the floor of its own repeat), then every run's CPU shares.
#
# Every result also carries the server's and chat-load's CPU shares and `load_tool_bound` (true
# when chat-load used over 90% of its core: that run's figures may be chat-load's limit, not the
# server's), and `contended` (true when other processes used over 10% of one core meanwhile: on a
# shared machine, those figures are noisy; the server's and chat-load's cores' busy % say more).
# Results go to perf/results.jsonl (one JSON line per run; OUT overrides); the plot to
# docs/fanout.svg (SVG overrides; it shows the median of the repeats). Loopback only; every run
# is bounded by --duration. The default sweep takes 10 to 15 minutes.
#
#   scripts/perf-sweep.sh [SECONDS]        # default 10 s per run
#   SIZES= LOADS="200000 1000000" REPEATS=1 scripts/perf-sweep.sh 8   # the floor sweep, once
#   LOAD_ARGS=--in-phase scripts/perf-sweep.sh   # more chat-load options for every run
#   SERVER=/tmp/chat_server scripts/perf-sweep.sh  # another build of the server (to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
sizes=${SIZES-"10 100 1000"}
loads=${LOADS-"200000 500000 1000000 2000000 3000000"}
sweep_receivers=${SWEEP_RECEIVERS:-1000}
repeats=${REPEATS:-3}
out=${OUT:-perf/results.jsonl}
svg=${SVG:-docs/fanout.svg}
mkdir -p "$(dirname "$out")" "$(dirname "$svg")"
: > "$out"

cargo build --release -q -p chat-load
cargo build --release -q --example chat_server
target_dir=${CARGO_TARGET_DIR:-target}
server=${SERVER:-$target_dir/release/examples/chat_server}
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

for repeat in $(seq "$repeats"); do
  for deliveries in $loads; do
    rate=$(( deliveries / sweep_receivers )); [ "$rate" -ge 1 ] || rate=1
    for what in "floor tcp" "chat tcp" "chat ws"; do
      # shellcheck disable=SC2086 # two words on purpose: kind and transport
      run $what "$sweep_receivers" --rate "$rate" --label "sweep" | tee -a "$out"
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sweep = [r for r in runs if r["label"] == "sweep"]
def fmt(v, unit="%"):
    return "?" if v is None else f"{v:.0f}{unit}"
def median(values):
    return statistics.median(values) if values else None
kinds = [("floor", "tcp"), ("chat", "tcp"), ("chat", "ws")]
if sweep:
    print("\noffered deliveries/s, server, transport: median p50 and p99 over the repeats, "
          "the ratio of the medians to the floor's, and the range of single repeats' p99 ratios")
for rate in sorted({r["rate"] for r in sweep}):
    at = [r for r in sweep if r["rate"] == rate]
    # The n-th run of each kind at this load belongs to the n-th repeat.
    by_kind = {k: [r for r in at if (r.get("server", "chat"), r["transport"]) == k] for k in kinds}
    floor = by_kind[("floor", "tcp")]
    f50, f99 = median([r["p50_ms"] for r in floor]), median([r["p99_ms"] for r in floor])
    for (server, transport), rs in by_kind.items():
        if not rs:
            continue
        p50, p99 = median([r["p50_ms"] for r in rs]), median([r["p99_ms"] for r in rs])
        ratio = ""
        if server != "floor" and f50 and f99:
            singles = [r["p99_ms"] / f["p99_ms"] for r, f in zip(rs, floor) if f["p99_ms"] > 0]
            spread = f", single repeats {min(singles):.1f}-{max(singles):.1f}x" if singles else ""
            ratio = f" ({p50 / f50:.1f}x, {p99 / f99:.1f}x{spread})"
        bound = sum(1 for r in rs if r.get("load_tool_bound"))
        print(f"{rate * rs[0]['receivers']:>9} {server:>5} {transport:>3}: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms{ratio}, {len(rs)} runs, "
              f"{bound} load-tool-bound, lost {sum(r['lost'] for r in rs)}")
if sweep:
    print("\nevery run: p99, CPU shares (others: every other process, in % of one core)")
for r in sweep:
    flags = "  LOAD-TOOL-BOUND" if r.get("load_tool_bound") else ""
    flags += "  CONTENDED" if r.get("contended") else ""
    print(f"{r['rate'] * r['receivers']:>9} {r.get('server', 'chat'):>5} {r['transport']:>3}: "
          f"p99 {r['p99_ms']:.2f} ms, {r['deliveries_per_s']:.0f} deliveries/s, "
          f"server {fmt(r.get('server_cpu_share_percent'))} of {r.get('server_cores')} core(s), "
          f"chat-load {fmt(r.get('load_cpu_share_percent'))} of {r.get('load_cores')} core(s), "
          f"others {fmt(r.get('others_cpu_percent'))}, cores busy "
          f"{fmt(r.get('server_cores_busy_percent'))}/{fmt(r.get('load_cores_busy_percent'))}{flags}")
PY
python3 scripts/plot.py "$out" "$svg"
echo "wrote $out and $svg"
