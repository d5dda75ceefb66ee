#!/usr/bin/env bash
# Do history reads from the store stall fan-out? Measures a broadcast's p99 delivery latency while
# one client pages through a room's stored history, against the same load without the pager.
#
# A temporary JSON-file store gets MESSAGES messages in room `archive` (examples/fill_history),
# the release server runs on it (no rate limit, WebSocket only) pinned to core 0, chat-load to
# core 1. In that one server session chat-load runs three times with the same load: RECEIVERS
# receivers and SENDERS senders in `general` at RATE messages/s for DURATION s; first alone,
# then with `--pager archive` (one more client reading `archive` 500 messages a page, newest to
# oldest and round again) asking PAGER_RATE pages a second, then with the pager asking each
# page as soon as the last one is answered. The paced run shows whether reads stall the
# broadcasts; the unpaced one what the fastest reader the server serves costs them on a core it
# shares. The page cache is dropped before each run where that is allowed. It prints the runs'
# JSON lines, then each run's p50, p99, pages read and CPU shares (chat-load's own: near 100%
# means the tool, not the server, set the figures), and each pager run's p99 over the alone
# run's. SERVER=PATH runs another server binary instead (an older build, to compare).
#
#   scripts/paging-under-load.sh
#   MESSAGES=10000 RECEIVERS=100 DURATION=3 scripts/paging-under-load.sh   # a quick check
#
# Defaults: MESSAGES=100000, RECEIVERS=1000, SENDERS=10, RATE=200 (0.2 M deliveries/s, the
# latency sweep's lowest load), PAGER_RATE=50 (25,000 messages/s read), DURATION=10. Loopback
# only; each chat-load run is bounded by DURATION plus its drain, and killed after
# DURATION + 120 s.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${MESSAGES:-100000}
receivers=${RECEIVERS:-1000}
senders=${SENDERS:-10}
rate=${RATE:-200}
duration=${DURATION:-10}
pager_rate=${PAGER_RATE:-50}

need_fds=$((2 * (receivers + senders) + 200))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
  ulimit -n "$need_fds" 2>/dev/null || { echo "ulimit -n is $(ulimit -n); $need_fds needed" >&2; exit 1; }
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p chat-load
cargo build --release -q --example chat_server --example fill_history
bin="$target/release"
pin_server=(); pin_load=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0); pin_load=(taskset -c 1)
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/examples/fill_history" --data "$work/data" --room archive --messages "$messages"

"${pin_server[@]}" "${SERVER:-$bin/examples/chat_server}" --data "$work/data" --rate-limit 0 --tcp off \
  --ws 127.0.0.1:0 --max-connections $((receivers + senders + 100)) > "$work/out" 2> "$work/err" &
server_pid=$!
url=
for _ in $(seq 300); do
  url=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$work/out")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then echo "the server did not start:" >&2; cat "$work/err" >&2; exit 1; fi

drop_caches() {
  sync
  if { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then echo "page cache dropped"; else echo "page cache not dropped (not allowed here)"; fi
}

measure() { # $1: label, then extra chat-load options; prints the JSON line
  local label=$1; shift
  timeout $((duration + 120)) "${pin_load[@]}" "$bin/chat-load" --ws "$url" \
    --receivers "$receivers" --senders "$senders" --rate "$rate" --duration "$duration" \
    --room general --pid "$server_pid" --json --label "$label" "$@"
}

echo "== $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; $messages messages in #archive; $receivers receivers, $senders senders, $rate messages/s, $duration s"
echo "== run 1: without the pager ($(drop_caches))"
measure alone | tee "$work/alone"
echo "== run 2: with --pager archive --pager-rate $pager_rate ($(drop_caches))"
measure paced --pager archive --pager-rate "$pager_rate" | tee "$work/paced"
echo "== run 3: with --pager archive, unpaced ($(drop_caches))"
measure unpaced --pager archive | tee "$work/unpaced"

python3 - "$work/alone" "$work/paced" "$work/unpaced" "$pager_rate" <<'EOF'
import json, sys
alone, paced, unpaced = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:4])
def pct(v):
    return "-" if v is None else f"{v:.0f}%"
def opt(v):
    return "-" if v is None else v
print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>6} {'pages':>7} {'messages':>9} "
      f"{'refused':>8} {'server CPU':>11} {'chat-load CPU':>14}")
runs = (("without pager", alone), (f"pager, {sys.argv[4]} pages/s", paced), ("pager, unpaced", unpaced))
for name, r in runs:
    print(f"{name:22} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f} {r['lost']:6} "
          f"{opt(r['pager_pages']):>7} {opt(r['pager_messages']):>9} {opt(r['pager_refused']):>8} "
          f"{pct(r['server_cpu_percent']):>11} {pct(r['load_cpu_percent']):>14}")
for name, r in runs[1:]:
    ratio = r['p99_ms'] / alone['p99_ms'] if alone['p99_ms'] > 0 else float('inf')
    print(f"p99 with the {name.removeprefix('pager, ')} pager / without: {ratio:.2f}")
EOF
