#!/usr/bin/env bash
# Soak: the release server with the JSON-file store in a temporary directory, under a
# mixed load for --minutes (default 10): 20 steady chatters for the whole run, and waves of 2,000
# WebSocket clients that connect, log in, join one of 20 rooms, say something, DM a chatter and
# leave (a third of them by dropping the socket), plus 20 half-open connections per wave.
# Reports the server's RSS at the start, at its peak and at the end after every client left, and
# its open file descriptors (/proc/PID/fd) at the start and the end; fails unless the sockets
# and fds return to the start's count (the store's open room files apart), RSS at the end is
# within 8 MiB of its warm baseline (idle after the tenth wave: in-memory histories full,
# allocator pools grown; memory must not grow from there), and the chatters lost nothing.
# Finally stops the server with SIGTERM and checks it exits 0. Loopback only.
#
#   scripts/soak.sh                 # 10 minutes
#   scripts/soak.sh --minutes 1     # a quick look
#   scripts/soak.sh -- --wave 3000  # anything after -- goes to examples/soak_load.rs
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$(ulimit -n)" -lt 8192 ]; then
  ulimit -n 8192 2>/dev/null || { echo "ulimit -n is $(ulimit -n); 8192 needed" >&2; exit 1; }
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --example chat_server --example soak_load
bin="$target/release/examples"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/chat_server" --data "$work/data" --tcp off --default-room off --ws 127.0.0.1:0 \
  > "$work/out" 2> "$work/err" &
server_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/^listening \(ws:.*\)$/\1/p' "$work/out")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start:" >&2; cat "$work/err" >&2; exit 1; }

echo "== $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; server $url (pid $server_pid), data in $work/data"
status=0
"$bin/soak_load" --url "$url" --pid "$server_pid" --minutes "$minutes" "${extra[@]}" || status=$?

kill -TERM "$server_pid"
if wait "$server_pid"; then
  echo "== the server stopped on SIGTERM with exit 0; $(du -sh "$work/data" | cut -f1) of data"
else
  echo "== the server did not exit 0 on SIGTERM; its log:" >&2; tail -20 "$work/err" >&2; status=1
fi
server_pid=
exit "$status"
