#!/usr/bin/env bash
# Fuzz smoke for CI: every cargo-fuzz target in fuzz/ replays its stored corpus
# (fuzz/corpus/<target>/) and then fuzzes for a few seconds. Fails if any input panics.
# Installs cargo-fuzz from crates.io if it is missing (bounded to 15 minutes; fails clearly if it
# cannot). Runs on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags,
# and --sanitizer none needs no nightly sanitizer runtime. See fuzz/README.md.
#
#   scripts/fuzz-smoke.sh              # 10 s per target
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-10}

if ! cargo fuzz --version > /dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  if ! timeout 900 cargo install --locked cargo-fuzz; then
    echo "fuzz-smoke: cannot install cargo-fuzz from crates.io (offline, or the build failed);" \
         "install it by hand (cargo install cargo-fuzz) and run again" >&2
    exit 1
  fi
fi
cargo fuzz --version

export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
echo "== building $(echo $targets)"
cargo fuzz build --sanitizer none

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $targets; do
  echo "== $target: the stored corpus, then ${seconds} s of fuzzing"
  mkdir -p "$scratch/$target"
  # New inputs go to the scratch directory (the first one), never into the repository.
  if ! cargo fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      > "$scratch/$target.log" 2>&1; then
    grep -E 'panicked|ERROR|Test unit written' -A4 "$scratch/$target.log" >&2 || tail -40 "$scratch/$target.log" >&2
    failed+=("$target")
    continue
  fi
  grep -E '^stat::number_of_executed_units' "$scratch/$target.log" | sed "s/^/   /"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]} (the input is in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "fuzz-smoke: ok"
