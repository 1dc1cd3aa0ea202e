#!/usr/bin/env bash
# Process-level comparison, side by side in one run (needs Qt 5 dev files and hyperfine;
# installs them on Debian):
#   - `echo rtt` / `echo stream` against the Rust `echo bench-server` and Qt's bench-server,
#     with the Rust client and with Qt's client, interleaved, best round of each;
#   - `solo send` (a secondary launch) against `launch_floor` (getcwd, getpid, the request
#     line, connect, one line each way, the FORWARDED line), run by run in turn
#     (benches/interleave.py);
#   - `solo run APP --count 0` (a first launch: lock, bind, one line, exit) against
#     `first_launch_floor` (flock PATH.lock, unlink a stale socket, bind a std UnixListener
#     at PATH, one line, unlink, exit);
#   - storms of 8/32/128/512 launches at once of one app (`solo run APP --count N-1`: one
#     becomes the primary and serves the others) against as many `launch_floor` clients
#     at once of a running primary;
#   - context switches of an idle LocalServer and an idle primary over a few seconds.
# Usage: benches/compare.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
# Process-level timings run on one CPU, so that the two sides share the same one.
pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)
if ! command -v hyperfine >/dev/null || ! pkg-config --exists Qt5Network 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine qtbase5-dev g++ pkg-config >/dev/null
fi
cargo build -q --release --examples
bin=target/release/examples
qt=target/qt-peer/qt_peer
mkdir -p target/qt-peer
if [ ! -x "$qt" ] || [ tests/qt/qt_peer.cpp -nt "$qt" ]; then
  g++ -O2 -fPIC -std=c++17 tests/qt/qt_peer.cpp -o "$qt" $(pkg-config --cflags --libs Qt5Network Qt5Core)
fi
work=$(mktemp -d /tmp/solo-compare.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # start NAME CMD...: runs CMD, waits for its first line
  local name=$1; shift
  "$@" > "$work/$name.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$work/$name.out" ] && return 0; sleep 0.05; done
  echo "$name did not start: $(cat "$work/$name.out")" >&2; exit 1
}
start rs "$bin/echo" bench-server "$work/rs.sock"
start qt "$qt" bench-server "$work/qt.sock"

best() { sort -g | head -1; }
metric() { "$@" | awk '{print $2}'; }
declare -A res
for _ in $(seq "$rounds"); do
  for server in rs qt; do
    for client in rs qt; do
      c="$bin/echo"; [ $client = qt ] && c=$qt
      res[rtt_${client}_$server]+="$(metric $c rtt "$work/$server.sock" 2000) "
      res[stream_${client}_$server]+="$(metric $c stream "$work/$server.sock" 256) "
    done
  done
done
printf '\nround trip: connect + 1 byte each way + close, mean of 2000, best of %s rounds (us)\n' "$rounds"
printf '%-14s %12s %12s %10s\n' client "Rust server" "Qt server" "Qt/Rust"
for client in rs qt; do
  a=$(tr ' ' '\n' <<<"${res[rtt_${client}_rs]}" | grep . | best)
  b=$(tr ' ' '\n' <<<"${res[rtt_${client}_qt]}" | grep . | best)
  printf '%-14s %12.2f %12.2f %10.2f\n' "$client client" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
done
printf '\nstream: 256 MiB in 64 KiB writes, best of %s rounds (MiB/s)\n' "$rounds"
printf '%-14s %12s %12s %10s\n' client "Rust server" "Qt server" "Rust/Qt"
for client in rs qt; do
  a=$(tr ' ' '\n' <<<"${res[stream_${client}_rs]}" | grep . | sort -gr | head -1)
  b=$(tr ' ' '\n' <<<"${res[stream_${client}_qt]}" | grep . | sort -gr | head -1)
  printf '%-14s %12.1f %12.1f %10.2f\n' "$client client" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{print a/b}')"
done

export XDG_RUNTIME_DIR=$work/run
mkdir -m 700 "$XDG_RUNTIME_DIR"
start primary "$bin/solo" run bench.Compare
sock=$(awk '{print $2}' "$work/primary.out")
# side_by_side TITLE N_RUNS CMD_A CMD_B [hyperfine options]: ROUNDS interleaved rounds of
# hyperfine (A, then B, N_RUNS runs each), each round's median ratio A/B, and the median
# of the rounds' ratios (the machine's load changes between rounds; a round compares
# like with like).
side_by_side() {
  local title=$1 runs=$2 a=$3 b=$4; shift 4
  printf '\n%s (hyperfine, %s rounds of %s runs, median per round)\n' "$title" "$rounds" "$runs"
  for r in $(seq "$rounds"); do
    "${pin[@]}" hyperfine "$@" --warmup 3 --runs "$runs" --export-json "$work/side.json" "$a" "$b" > /dev/null 2>&1
    python3 - "$work/side.json" <<'PY'
import json, sys
a, b = (x["median"] * 1e3 for x in json.load(open(sys.argv[1]))["results"])
print(f"{a:9.3f} ms {b:9.3f} ms  ratio {a / b:.3f}")
PY
  done | tee "$work/side.txt"
  awk '{print $NF}' "$work/side.txt" | sort -g | awk '{r[NR] = $1} END {printf "median ratio %.3f (rounds from %.3f to %.3f)\n", r[int((NR + 1) / 2)], r[1], r[NR]}'
}

# interleaved ROUNDS x 200 runs: A and B alternate run by run (benches/interleave.py);
# each round prints both medians, the ratio of the medians and the median paired ratio.
interleaved() {
  local title=$1 a=$2 b=$3
  printf '\n%s (interleaved run by run, %s rounds of 200 runs each)\n' "$title" "$rounds"
  for r in $(seq "$rounds"); do "${pin[@]}" python3 benches/interleave.py 200 "$a" "$b"; done | tee "$work/side.txt"
  awk '{print $(NF-2)}' "$work/side.txt" | sort -g | awk '{r[NR] = $1} END {printf "median ratio %.3f (rounds from %.3f to %.3f)\n", r[int((NR + 1) / 2)], r[1], r[NR]}'
}
interleaved "secondary launch: \`solo send\` / launch_floor" \
  "$bin/solo send bench.Compare x" "$bin/launch_floor $sock"
interleaved "first launch: \`solo run APP --count 0\` / first_launch_floor" \
  "$bin/solo run bench.First --count 0" "$bin/first_launch_floor $work/first.sock"
for n in 8 32 128 512; do
  # One becomes the primary and serves the other N-1; the floor: N launch_floor clients
  # of the running primary. Shell loops (hyperfine subtracts the shell's start).
  side_by_side "storm of $n launches at once: \`solo run APP --count $((n - 1))\` x $n / launch_floor x $n" \
    $(( n >= 128 ? 5 : 15 )) \
    "for i in \$(seq $n); do $bin/solo run bench.Storm$n --count $((n - 1)) >/dev/null & done; wait" \
    "for i in \$(seq $n); do $bin/launch_floor $sock & done; wait" -S bash
done

switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
start idle_server "$bin/echo" server "$work/idle.sock" 1
idle_pid=${pids[-1]}
primary_pid=${pids[-2]}
a1=$(switches "$idle_pid"); b1=$(switches "$primary_pid"); sleep 5
a2=$(switches "$idle_pid"); b2=$(switches "$primary_pid")
printf '\nidle for 5 s: context switches of all threads\n'
printf '%-30s %d\n' "LocalServer (echo server)" $((a2 - a1)) "primary (solo run)" $((b2 - b1))

# What an idle primary costs against a bare std listener (first_launch_floor, left in accept).
start idle_primary "$bin/solo" run bench.Idle
start idle_floor "$bin/first_launch_floor" "$work/idle-floor.sock" idle
sleep 1 # past the removal watch's delay
status() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }
printf '\nidle, 1 s after the start: threads, RSS (KiB)\n'
printf '%-34s %3s threads %6s KiB\n' "primary (solo run: main and solo's signal thread)" "$(status "${pids[-2]}" Threads)" "$(status "${pids[-2]}" VmRSS)" \
  "bare std listener (first_launch_floor)" "$(status "${pids[-1]}" Threads)" "$(status "${pids[-1]}" VmRSS)"
