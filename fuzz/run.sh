#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 60); exits non-zero on the first crash,
# hang or leak, leaving the input in fuzz/artifacts/<target>/ and the log beside it.
#
#   bash fuzz/run.sh [SECONDS]
#
# Installs what it needs: a nightly toolchain (rustup) and cargo-fuzz (`cargo install
# cargo-fuzz --locked`, about a minute on a fresh 2-core machine). New corpus entries
# land in fuzz/corpus/<target>/ next to the seed-* files (git keeps only the seeds).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: bash fuzz/run.sh [SECONDS]" >&2; exit 2; }
targets=(decode_request primary_stream)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "=== installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "=== installing cargo-fuzz"
  start=$(date +%s)
  cargo install cargo-fuzz --locked
  echo "cargo-fuzz installed in $(($(date +%s) - start)) s"
fi

echo "=== building the fuzz targets"
cargo +nightly fuzz build

mkdir -p fuzz/artifacts
for t in "${targets[@]}"; do
  echo "=== fuzzing $t for ${secs} s"
  log=fuzz/artifacts/$t.log
  # -timeout: one input running 10 s is a hang (the stream target panics on its own
  # after 2 s without an answer). libFuzzer's output goes to the log; a summary here.
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -timeout=10 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
    grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true
  else
    echo "!!! $t failed; the end of $log:"
    tail -n 120 "$log"
    exit 1
  fi
done
echo "=== fuzzing passed: ${targets[*]}, ${secs} s each"
