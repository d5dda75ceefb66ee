#!/usr/bin/env bash
# Measures a cluster (bundled servers on one Redis) against a single server, on this machine.
#
# Pinning on 2 cores: every server and Redis on core 0, chat-load on core 1. So a cluster's
# figures are of the same one core as the single server's: they say what replaying every input
# on every node, and Redis, cost, not what more machines would add. Redis runs fresh for each
# configuration: `--save "" --appendonly yes --appendfsync FSYNC` (default everysec). Nodes run
# with `--rate-limit 0`; WebSocket throughout.
#
# (a) Fan-out: RECEIVERS (1,000) receivers in one room, 10 senders (all on node 0), 64-byte
#     texts, in three configurations: `memory` (one plain server, --memory: the baseline),
#     `cluster1` (one node on Redis), `cluster3` (NODES nodes, default 3, receivers spread
#     round-robin). Closed loop first (label "max": the most deliveries/s), then a fixed rate
#     (label "rate": p50/p99), the same for all three: RATE, or half the lowest of the three
#     maxima; then half that rate (label "rate-half"). A fixed rate costs a cluster more per
#     message than a closed loop, which batches (see the "us/dlv" column).
# (b) Redis: with every cluster run, the Redis commands per message (INFO commandstats) and
#     Redis's CPU.
# (c) Idle: IDLE (50,000) idle logged-in connections spread over IDLE_NODES (3) nodes, run
#     with --max-connections 20000 --default-room off (each node holds under 20,000), opened by
#     as many chat-load processes as the open-file limit needs; RSS per connection per node.
#     Beside it, a plain --memory server holding IDLE/IDLE_NODES connections (the baseline),
#     and a cluster where node 0 alone holds that many (what remote users cost the others).
#
# Before each run the script waits (at most QUIET_WAIT s) for the machine to be quiet.
#
# Every run is bounded (chat-load's --duration, and `timeout` around every command); loopback
# only. Each result is one JSON line appended to perf/cluster.jsonl (OUT overrides) with the
# fields `config`, `fsync`, `stamp` (this run of the script) and `nodes_n` (servers started)
# added. The table at the end is of this run only. Nodes' stderr goes to a temporary directory;
# lines at WARN or ERROR, and nodes that died, are reported at the end, and the directory is kept
# if there were any.
#
#   scripts/cluster-perf.sh [SECONDS]          # default 10 s per load run
#   NODES=4 IDLE_NODES=4 scripts/cluster-perf.sh 8
#   SKIP_IDLE=1 RATE=500 scripts/cluster-perf.sh
#   SKIP_LOAD=1 scripts/cluster-perf.sh        # only (c)
#   KEEP_LOGS=1 scripts/cluster-perf.sh        # keep the servers' output and Redis's files
#   CONFIGS="memory cluster3" RATE=300 SKIP_IDLE=1 scripts/cluster-perf.sh   # rerun two of (a)
#   SERVER=/tmp/chat_server SKIP_LOAD=1 scripts/cluster-perf.sh   # another build of the server
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
nodes=${NODES:-3}
receivers=${RECEIVERS:-1000}
idle=${IDLE:-50000}
idle_nodes=${IDLE_NODES:-3}
fsync=${FSYNC:-everysec}
out=${OUT:-perf/cluster.jsonl}
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$(dirname "$out")"
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }

cargo build --release -q -p chat-load
cargo build --release -q --example chat_server
target_dir=${CARGO_TARGET_DIR:-target}
server=${SERVER:-$target_dir/release/examples/chat_server}
load=$target_dir/release/chat-load
pin_server=(); pin_load=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0); pin_load=(taskset -c 1)
fi

dir=$(mktemp -d /tmp/cluster-perf.XXXXXX)
pids=()          # every process this script started and has not stopped
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -e "$dir/trouble" ] || [ -n "${KEEP_LOGS:-}" ]; then
    echo "logs kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Waits until the machine is quiet (under QUIET_PERCENT, default 15, % of one core busy over
# 2 s, while nothing of this script runs), for at most QUIET_WAIT seconds (default 300): on a
# shared machine, a run that starts while someone else builds measures mostly their build. A
# run that had to start anyway is marked `contended` by chat-load.
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-300})) busy
  while :; do
    busy=$(python3 -c '
import os, time
def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(f) - f[3] - f[4]
a = busy(); time.sleep(2); b = busy()
print(int(100 * (b - a) / os.sysconf("SC_CLK_TCK") / 2))')
    [ "$busy" -lt "${QUIET_PERCENT:-15}" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "(the machine is still busy, ${busy}% of one core: running anyway)" >&2; return 0
    fi
    sleep 5
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts Redis in $dir/$1; sets redis_url and redis_pid.
start_redis() {
  local name=$1 port; port=$(free_port)
  mkdir -p "$dir/$name"
  "${pin_server[@]}" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes \
      --appendfsync "$fsync" --dir "$dir/$name" --daemonize no --logfile "$dir/$name/redis.log" &
  redis_pid=$!; pids+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null || { echo "redis did not start: $dir/$name" >&2; touch "$dir/trouble"; exit 1; }
  redis_url="redis://127.0.0.1:$port/0"
}

# Starts one server with the given options, its output in $dir/$1.{out,err}; appends its pid to
# node_pids and its WebSocket URL to node_urls.
start_server() {
  local name=$1; shift
  "${pin_server[@]}" "$server" --ws 127.0.0.1:0 --tcp off --rate-limit 0 "$@" \
      >"$dir/$name.out" 2>"$dir/$name.err" &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 300); do grep -qs '^listening ws' "$dir/$name.out" && break; sleep 0.1; done
  local url; url=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$dir/$name.out")
  if [ -z "$url" ]; then
    echo "$name did not start; its stderr:" >&2; cat "$dir/$name.err" >&2; touch "$dir/trouble"; exit 1
  fi
  node_pids+=("$pid"); node_urls+=("$url")
}

# Starts configuration $1 (memory, clusterN, or idle-memory / idle-clusterN) with the extra
# server options that follow: fresh processes, and a fresh Redis in a directory of its own.
# Files are named after the start's number and the configuration (3-cluster3-node1.err).
starts=0
start_config() {
  local config=$1; shift
  node_pids=(); node_urls=(); redis_url=; redis_pid=
  starts=$((starts + 1))
  local name="$starts-$config"
  case $config in
    *memory) start_server "$name-server" --memory "$@" ;;
    *cluster*)
      local n=${config##*cluster}
      start_redis "$name-redis"
      for i in $(seq 0 $((n - 1))); do
        start_server "$name-node$i" --redis "$redis_url" "$@"
      done ;;
  esac
}

# Stops what start_config started (SIGTERM, then SIGKILL after 10 s); notes nodes that had died.
stop_config() {
  local config=$1 pid
  for pid in "${node_pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "!! $config: server $pid had exited before the end (stderr in $dir)" >&2; touch "$dir/trouble"
    fi
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${node_pids[@]}" ${redis_pid:+"$redis_pid"}; do
    [ "$pid" = "$redis_pid" ] && kill -TERM "$pid" 2>/dev/null
    timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=(); for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done; pids=("${keep[@]}")
  done
}

# Adds the script's fields to chat-load's JSON line and appends it to $out.
record() {
  local config=$1 line=$2
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(config=sys.argv[2], fsync=sys.argv[3], stamp=sys.argv[4], nodes_n=int(sys.argv[5])); print(json.dumps(r))' \
      "$line" "$config" "$fsync" "$stamp" "${#node_pids[@]}" | tee -a "$out"
}

# One load run against configuration $1; the rest are chat-load options. Its JSON line is also
# left in $dir/last.json.
load_run() {
  local config=$1; shift
  wait_quiet
  start_config "$config" --max-connections 20000
  local urls pids_list extra=()
  urls=$(IFS=,; echo "${node_urls[*]}"); pids_list=$(IFS=,; echo "${node_pids[*]}")
  [ -n "$redis_url" ] && extra=(--redis "$redis_url" --redis-pid "$redis_pid")
  local line
  line=$(timeout $((${seconds%.*} + 120)) "${pin_load[@]}" "$load" --ws "$urls" --pid "$pids_list" \
      "${extra[@]}" --receivers "$receivers" --senders 10 --size 64 --duration "$seconds" \
      --json "$@") || { echo "!! chat-load failed against $config" >&2; touch "$dir/trouble"; }
  stop_config "$config"
  : > "$dir/last.json"
  [ -n "$line" ] && record "$config" "$line" > "$dir/last.json"
  cat "$dir/last.json"
}

read -r -a configs <<< "${CONFIGS:-memory cluster1 cluster$nodes}"
if [ -z "${SKIP_LOAD:-}" ]; then
  maxima=()
  for config in "${configs[@]}"; do
    load_run "$config" --label max
    [ -s "$dir/last.json" ] && maxima+=("$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["messages_per_s"]))' "$dir/last.json")")
  done
  rate=${RATE:-$(python3 -c 'import sys; print(max(1, min(int(x) for x in sys.argv[1:]) // 2))' "${maxima[@]}")}
  echo "fixed rates: $rate and $(( (rate + 1) / 2 )) messages/s"
  for config in "${configs[@]}"; do
    load_run "$config" --rate "$rate" --label rate
  done
  for config in "${configs[@]}"; do
    load_run "$config" --rate $(( (rate + 1) / 2 )) --label rate-half
  done
fi

if [ -z "${SKIP_IDLE:-}" ]; then
  per_node=$(( (idle + idle_nodes - 1) / idle_nodes ))
  # idle-memory: the baseline, one plain server holding one node's share. idle-clusterN: IDLE
  # spread over every node. idle-remote-clusterN: one node's share, all on node 0, while the
  # other nodes hold none: their growth is what other nodes' users cost a node.
  for config in idle-memory "idle-cluster$idle_nodes" "idle-remote-cluster$idle_nodes"; do
    count=$idle; [ "$config" = "idle-cluster$idle_nodes" ] || count=$per_node
    wait_quiet
    start_config "$config" --max-connections 20000 --default-room off
    urls=$(IFS=,; echo "${node_urls[*]}"); pids_list=$(IFS=,; echo "${node_pids[*]}")
    [[ $config = idle-remote-* ]] && urls=${node_urls[0]}
    line=$(timeout 600 "${pin_load[@]}" "$load" --ws "$urls" --pid "$pids_list" --idle "$count" \
        --json --label idle) || { echo "!! chat-load --idle failed against $config" >&2; touch "$dir/trouble"; }
    stop_config "$config"
    [ -n "$line" ] && record "$config" "$line"
  done
fi

for log in "$dir"/*.err; do
  [ -e "$log" ] || continue
  if grep -qE ' (WARN|ERROR) |panicked' "$log"; then
    echo "!! $(basename "$log"):" >&2; grep -E ' (WARN|ERROR) |panicked' "$log" | head -20 >&2; touch "$dir/trouble"
  fi
done

python3 - "$out" "$stamp" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
runs = [r for r in runs if r.get("stamp") == sys.argv[2]]
def pct(v):
    return "-" if v is None else f"{v:.0f}%"
def get(label, config):
    return next((r for r in runs if r.get("label") == label and r["config"] == config), None)
print(f"\n{sys.argv[2]}, Redis appendfsync {runs[0]['fsync'] if runs else '?'}; servers and Redis "
      "pinned to core 0, chat-load to core 1")
print("(servers: their CPU summed, as a share of core 0; us/dlv: the servers' and Redis's CPU "
      "per delivery, in microseconds)")
print("run       config    deliveries/s  (x mem)  msgs/s  p50 ms  p99 ms  (x mem)      lost  "
      "servers  chat-load  Redis  us/dlv  cmds/msg  others  flags")
for label in ("max", "rate", "rate-half"):
    base = get(label, "memory")
    for r in (r for r in runs if r.get("label") == label):
        ratio_d = f"{r['deliveries_per_s'] / base['deliveries_per_s']:.2f}x" if base and base["deliveries_per_s"] else "?"
        ratio_l = (f"{r['p50_ms'] / base['p50_ms']:.1f}x/{r['p99_ms'] / base['p99_ms']:.1f}x"
                   if base and base["p50_ms"] and base["p99_ms"] else "?")
        cmds = r.get("redis_commands_per_message")
        cpu = (r.get("server_cpu_percent") or 0) + (r.get("redis_cpu_percent") or 0)
        per = 1e4 * cpu / r["deliveries_per_s"] if r["deliveries_per_s"] else 0
        flags = ("TOOL-BOUND " if r.get("load_tool_bound") else "") + ("CONTENDED" if r.get("contended") else "")
        print(f"{label:<9} {r['config']:<9} {r['deliveries_per_s']:>12.0f}  {ratio_d:>7} {r['messages_per_s']:>7.0f} "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}  {ratio_l:>10} {r['lost']:>6}  "
              f"{pct(r.get('server_cpu_share_percent')):>7}  {pct(r.get('load_cpu_share_percent')):>9}  "
              f"{pct(r.get('redis_cpu_share_percent')):>5}  {per:>6.2f}  {'-' if cmds is None else f'{cmds:.2f}':>8}  "
              f"{pct(r.get('others_cpu_percent')):>6}  {flags}")
        for i, n in enumerate(r.get("nodes", [])):
            print(f"{'':<18} node {i}: {n['receivers']} receivers, p50 {n['p50_ms']:.2f} ms, "
                  f"p99 {n['p99_ms']:.2f} ms, CPU {pct(n.get('cpu_percent'))} of one core, "
                  f"RSS {n.get('rss_kib', 0) / 1024:.0f} MiB")
        if r.get("redis_calls"):
            calls = sorted(r["redis_calls"].items(), key=lambda kv: -kv[1])[:6]
            print(f"{'':<18} Redis per message: " + ", ".join(f"{k} {v / max(1, r['sent']):.2f}" for k, v in calls))
idle = [r for r in runs if r.get("label") == "idle"]
base = next((r for r in idle if r["config"] == "idle-memory"), None)
plain = base["kib_per_connection"] if base else 0
for r in idle:
    print(f"idle     {r['config']:<20} {r['connections']} connections in {r['seconds']:.1f} s by "
          f"{r.get('processes', 1)} process(es): servers' RSS +{(r['server_rss_after_kib'] - r['server_rss_before_kib']) / 1024:.0f} MiB, "
          f"{r['kib_per_connection']:.2f} KiB per connection, all servers together")
    for n in r.get("nodes", []):
        where = n["endpoint"] or f"pid {n['pid']} (no endpoint)"
        ratio = f" ({n['kib_per_connection'] / plain:.2f}x the plain server's)" if plain and n["connections"] else ""
        print(f"{'':<18} {where} holds {n['connections']}: RSS +{(n['rss_after_kib'] - n['rss_before_kib']) / 1024:.0f} MiB, "
              f"{n['kib_per_connection']:.2f} KiB per connection it holds{ratio}, "
              f"{n['kib_per_cluster_connection']:.2f} KiB per connection of the cluster")
PY
echo "appended to $out"
