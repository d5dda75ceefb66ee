#!/usr/bin/env bash
# The browser client's test: a real headless Chromium (Debian's chromium package) driven by
# playwright-core, against the bundled chat_server on a free loopback port.
#
#   bash browser-test/run.sh
#
# Installs what is missing (chromium with apt-get, playwright-core with npm), builds and starts
# the server, runs test.mjs, stops the server. Exits non-zero when the test fails. When a
# package cannot be had at all here, it says why on a SKIP line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

skip() {
  echo "SKIP browser test: $*"
  exit 0
}

# --- what the test needs -------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    skip "no /usr/bin/chromium, and no apt-get to install Debian's chromium package"
  fi
  if [ "$(id -u)" != 0 ]; then
    skip "no /usr/bin/chromium, and installing Debian's chromium package needs root"
  fi
  echo "== installing chromium (apt-get)"
  apt-get update -qq || skip "apt-get update failed, so Debian's chromium package cannot be had"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || skip "apt-get install chromium failed"
fi
[ -x /usr/bin/chromium ] || skip "chromium is installed but /usr/bin/chromium is missing"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
if [ ! -f browser-test/node_modules/playwright-core/package.json ]; then
  echo "== installing playwright-core (npm ci)"
  (cd browser-test && npm ci --no-audit --no-fund --loglevel=error) \
    || skip "npm could not install playwright-core from the npm registry"
fi

# --- the server ------------------------------------------------------------------------------
echo "== building the bundled server"
cargo build --quiet --example chat_server
target_dir=${CARGO_TARGET_DIR:-$root/target}
server=$target_dir/debug/examples/chat_server

work=$(mktemp -d)
server_pid=
cleanup() {
  for pid in "$server_pid" "$(cat "$work/restarted.pid" 2>/dev/null || true)"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      # Bounded: the server shuts down gracefully within a few seconds.
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  exec 3<&- 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkfifo "$work/out"
# A store on disk, so that accounts registered in the test survive the restart it does; a JWT
# secret, so that the page's token login (#token=…) can be tried.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/jwt-secret"
"$server" --data "$work/data" --jwt-secret-file "$work/jwt-secret" --ws 127.0.0.1:0 --tcp off \
  >"$work/out" 2>"$work/server.log" &
server_pid=$!
exec 3<"$work/out"
line=
if ! IFS= read -r -t 60 line <&3 || [[ $line != "listening ws://127.0.0.1:"* ]]; then
  echo "the server did not start (it said: ${line:-nothing})" >&2
  cat "$work/server.log" >&2
  exit 1
fi
# Keep reading what it prints, so that it never blocks on a full pipe.
cat <&3 >/dev/null &
port=${line#listening ws://127.0.0.1:}
port=${port%%/*}
echo "== server up: $line"

# --- the test --------------------------------------------------------------------------------
echo "== browser test (headless $(/usr/bin/chromium --version 2>/dev/null | head -n1))"
status=0
CHAT_URL="http://127.0.0.1:$port/" \
  CHAT_SERVER_BIN="$server" CHAT_SERVER_PID="$server_pid" CHAT_SERVER_PIDFILE="$work/restarted.pid" \
  CHAT_SERVER_DATA="$work/data" CHAT_JWT_SECRET_FILE="$work/jwt-secret" \
  node browser-test/test.mjs || status=$?
if [ "$status" != 0 ]; then
  echo "browser test failed; the server's log:" >&2
  tail -n 40 "$work/server.log" >&2
fi
exit "$status"
