#!/usr/bin/env bash
# The footprint figures of the README's "Footprint", side by side in one run: three
# stripped release hello worlds (benches/footprint/*.rs: plain, with solo-instance from
# this checkout, with the single-instance crate from crates.io), each in a fresh temporary
# project with its own target directory. For each: the stripped binary's size and what it
# adds to the plain one, the crates it compiles (cargo tree, normal dependencies, the
# project itself not counted), and its clean release build's wall time (dependencies
# downloaded first, so only compiling is timed). Then `cargo bloat --release --crates` of
# the solo-instance one: which crates take its space.
#
#   bash benches/footprint.sh                 (installs cargo-bloat if missing)
#   bash benches/footprint.sh OTHER_CHECKOUT  (adds a row for that checkout of the crate,
#                                              e.g. an older commit's worktree: before/after)
#
# Byte sizes and crate counts do not move with load; build times do (the machine's other
# work shares the cores): read them side by side, from one run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v cargo-bloat >/dev/null || cargo install --quiet --locked cargo-bloat

project() { # name, program (benches/footprint/<program>.rs), dependency line
  mkdir -p "$work/$1/src"
  cp "$repo/benches/footprint/$2.rs" "$work/$1/src/main.rs"
  cat >"$work/$1/Cargo.toml" <<TOML
[package]
name = "hello"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$3

[profile.release]
strip = true

[workspace]
TOML
  (cd "$work/$1" && cargo fetch --quiet)
}
rows=(plain solo single_instance)
project plain plain ""
project solo solo "solo-instance = { path = \"$repo\" }"
project single_instance single_instance 'single-instance = "0.3"'
if (($#)); then
  project solo_other solo "solo-instance = { path = \"$(cd "$1" && pwd)\" }"
  rows=(plain solo solo_other single_instance)
fi

printf '%-16s %10s %10s %7s %9s\n' hello "bytes" "added" crates "build s"
base=
for p in "${rows[@]}"; do
  cd "$work/$p"
  start=$(date +%s.%N)
  cargo build --release --quiet
  end=$(date +%s.%N)
  size=$(stat -c %s target/release/hello)
  base=${base:-$size}
  crates=$(cargo tree -e normal --prefix none --no-dedupe | sort -u | grep -vc "^hello v" || true)
  printf '%-16s %10d %10d %7d %9.1f\n' "$p" "$size" $((size - base)) "$crates" "$(echo "$end - $start" | bc)"
done
echo
echo "cargo bloat --release --crates (hello with solo-instance):"
# cargo bloat reads symbols: the same build, not stripped.
cd "$work/solo" && CARGO_PROFILE_RELEASE_STRIP=false cargo bloat --release --crates -n 12 2>/dev/null
