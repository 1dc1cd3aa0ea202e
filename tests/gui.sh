#!/usr/bin/env bash
# The GUI examples, run for real under Xvfb (Mesa's software GL for eframe):
#   examples/gui.rs   (winit + softbuffer, feature gui-example)
#   examples/egui.rs  (eframe/egui, feature egui-example)
# For each: the first launch opens a window; a second launch with another file exits 0
# and the first window's pixels change (screenshots with ImageMagick's `import`, compared
# with `compare`); the primary prints the OPEN lines; and while idle, the crate's threads
# in the primary make no context switch at all.
#
#   tests/gui.sh                        # what CI runs
#   tests/gui.sh --update-screenshots   # also writes docs/screenshots/{gui,egui}.png
#
# Installs what it needs (xvfb, imagemagick, Mesa) when missing. Prints one closing line
# "N passed, N failed" and exits non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
update=${1:-}

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v import >/dev/null || need+=(imagemagick)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/x86_64-linux-gnu/dri/llvmpipe_dri.so ] \
  || need+=(libgl1-mesa-dri libegl1)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --quiet --example gui --features gui-example
cargo build --quiet --example egui --features egui-example
bin=$(pwd)/target/debug/examples

work=$(mktemp -d /tmp/solo-gui.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A free display number.
disp=90
while [ -e "/tmp/.X11-unix/X$disp" ] || [ -e "/tmp/.X$disp-lock" ]; do disp=$((disp + 1)); done
Xvfb ":$disp" -screen 0 800x600x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=":$disp" LIBGL_ALWAYS_SOFTWARE=1
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$disp" ] && break; sleep 0.1; done

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }

shot() { import -window root "$1"; }
differs() { # prints the number of differing pixels of two screenshots
  compare -metric AE "$1" "$2" null: 2>&1 >/dev/null | cut -d' ' -f1 || true
}

# Sum of the context switches of the process's crate threads ("solo-instance ...").
crate_switches() {
  local pid=$1 total=0 t
  for t in /proc/"$pid"/task/*; do
    if grep -q '^solo-instance' "$t/comm" 2>/dev/null; then
      total=$((total + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$t/status")))
    fi
  done
  echo "$total"
}

run_example() {
  local name=$1 dir="$work/$1"
  mkdir -p -m 700 "$dir/run" "$dir/cwd"
  export XDG_RUNTIME_DIR="$dir/run"
  cd "$dir/cwd"
  shot "$dir/empty.png"
  "$bin/$name" a.txt >"$dir/primary.out" 2>"$dir/primary.err" &
  local primary=$!
  pids+=("$primary")
  # The window is up once the screen is no longer empty.
  local n=0 drawn=
  for _ in $(seq 150); do
    shot "$dir/first.png"
    n=$(differs "$dir/empty.png" "$dir/first.png")
    if [ "${n:-0}" != 0 ] && grep -q '^PRIMARY ' "$dir/primary.out"; then drawn=1; break; fi
    sleep 0.2
  done
  if [ -z "$drawn" ]; then
    fail "$name: no window within 30 s"; cat "$dir/primary.err"; cd - >/dev/null; return
  fi
  sleep 1 # let it settle (eframe paints a second frame after the first)
  shot "$dir/first.png"

  # Idle: the crate's threads sleep.
  local before after threads
  threads=$(grep -l '^solo-instance' /proc/"$primary"/task/*/comm 2>/dev/null | wc -l)
  [ "$threads" -gt 0 ] || fail "$name: no thread of the crate found in the primary"
  before=$(crate_switches "$primary")
  sleep 2
  after=$(crate_switches "$primary")
  if [ "$before" = "$after" ]; then ok "$name: idle, the crate's $threads threads made no context switch in 2 s"
  else fail "$name: the crate's threads woke $((after - before)) times in 2 s while idle"; fi

  local out rc=0
  out=$(timeout 20 "$bin/$name" b.txt 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then ok "$name: the second launch exits 0 ($out)"
  else fail "$name: the second launch exited $rc: $out"; fi

  local changed=0
  for _ in $(seq 50); do
    shot "$dir/second.png"
    changed=$(differs "$dir/first.png" "$dir/second.png")
    [ "${changed:-0}" != 0 ] && break
    sleep 0.2
  done
  if [ "${changed:-0}" != 0 ]; then ok "$name: the first window changed ($changed pixels) after the second launch"
  else fail "$name: the first window did not change after the second launch"; fi

  if grep -qx "OPEN $dir/cwd/a.txt" "$dir/primary.out" && grep -qx "OPEN $dir/cwd/b.txt" "$dir/primary.out"; then
    ok "$name: the primary printed OPEN for both files"
  else fail "$name: OPEN lines missing: $(cat "$dir/primary.out")"; fi

  if [ "$update" = --update-screenshots ]; then
    mkdir -p "$root/docs/screenshots"
    # The window's corner of the screen (no window manager: it sits at 0,0).
    convert "$dir/second.png" -crop 720x420+0+0 +repage "$root/docs/screenshots/$name.png"
  fi
  kill "$primary" 2>/dev/null || true
  wait "$primary" 2>/dev/null || true
  cd - >/dev/null
}

root=$(pwd)
run_example gui
cd "$root"
run_example egui
cd "$root"

echo "gui: $passed passed, $failed failed"
[ "$failed" = 0 ]
