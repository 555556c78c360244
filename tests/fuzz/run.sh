#!/usr/bin/env bash
# Run every fuzz target in DIR for SECONDS each, from the committed corpus
# (copied to a scratch directory so new inputs don't dirty the tree).
# usage: tests/fuzz/run.sh BUILD_DIR/tests/fuzz SECONDS
set -euo pipefail
bin_dir=$1
seconds=${2:-10}
src_dir=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=0
for target in "$bin_dir"/fuzz_*; do
  [ -x "$target" ] || continue
  name=${target##*/fuzz_}
  mkdir -p "$scratch/$name"
  if [ -d "$src_dir/corpus/$name" ]; then
    cp -r "$src_dir/corpus/$name/." "$scratch/$name/"
  fi
  echo "fuzz: $name for ${seconds}s"
  if ! "$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
       -print_final_stats=0 "$scratch/$name" >"$scratch/$name.log" 2>&1; then
    tail -40 "$scratch/$name.log"
    echo "fuzz: $name FAILED (crash input above)"
    failed=1
  else
    grep -E '^#[0-9]+.*DONE' "$scratch/$name.log" | tail -1 || true
  fi
done
exit $failed
