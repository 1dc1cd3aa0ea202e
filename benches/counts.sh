#!/usr/bin/env bash
# Costs counted, not timed: instructions (callgrind's total Ir) and system calls (perf's
# raw_syscalls:sys_enter, or strace -f -c where perf cannot count them), the crate against
# a std floor that does the same job (benches/bin/), each side pinned to one CPU
# (taskset -c 0, and chrt -f 1 where permitted). Counts do not move with the machine's
# load as times do: two runs agree to the instruction, but for the pid each launch sends
# (4 or 5 digits, in its request and the lock file), which moves a count by up to 0.2 %.
#   - first launch: `solo run APP --count 0` / `first_launch_floor` (flock the lock file,
#     unlink a stale socket, bind, print the PRIMARY line, unlink, exit);
#   - secondary launch: `solo send APP x` / `launch_floor` (getcwd, getpid, the request,
#     connect, one line each way, print the FORWARDED line), against a running `solo run`;
#   - handoff per launch, in one process (`counts_loop handoff`): `SingleInstance::send`
#     to a `Primary` serving on a thread / a std UnixStream and UnixListener, one request
#     line and one reply line per connection;
#   - LocalServer round trip per connection (`counts_loop rtt`, what `echo rtt` does):
#     LocalSocket and LocalServer / std's UnixStream and UnixListener.
# Per launch and per connection: a run of 2N rounds minus a run of N rounds, divided by N,
# so that the process's own start and end cancel out.
# Prints the figures beside the targets and exits 0 whatever they are: machines differ.
# Usage: benches/counts.sh [--detail] [N]
#   --detail: also each system call's count, crate beside floor (strace -f -c), for the
#   first launch, the secondary launch and the handoff per launch; where the launches'
#   instructions go (the dynamic loader, main, the rest; the imports and relocations the
#   loader processes); and the crate's costliest functions (callgrind_annotate), per
#   launch for the handoff.
#   N: rounds (default 1000). COUNTS_SYSCALLS=strace: strace even where perf can count.
set -euo pipefail
cd "$(dirname "$0")/.."
detail=0
if [ "${1:-}" = --detail ]; then detail=1; shift; fi
n=${1:-1000}

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v strace >/dev/null || missing+=(strace)
if ((${#missing[@]})); then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    echo "counts: could not install ${missing[*]}" >&2
fi
nice cargo build -q --release --example solo --example launch_floor --example first_launch_floor --example counts_loop
bin=target/release/examples

work=$(mktemp -d /tmp/solo-counts.XXXXXX)
primary_pid=
cleanup() {
  if [ -n "$primary_pid" ]; then kill "$primary_pid" 2>/dev/null || true; wait "$primary_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The same bytes wherever the clone is and whatever the caller's environment: the
# programs run from copies in the work directory (argv[0] is forwarded), in it (the cwd
# is), with a fixed environment (its size moves the stack, and with it what memcpy and
# friends execute, by a few instructions).
mkdir "$work/bin" && cp "$bin"/{solo,launch_floor,first_launch_floor,counts_loop} "$work/bin/"
bin=$work/bin
cd "$work"
export XDG_RUNTIME_DIR=$work/run
mkdir -m 700 "$XDG_RUNTIME_DIR"
clean_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR")
pinned=()
if taskset -c 0 true 2>/dev/null; then pinned=(taskset -c 0); fi
if chrt -f 1 true 2>/dev/null; then pinned+=(chrt -f 1); fi
pin=("${clean_env[@]}" "${pinned[@]}")
# perf counts without stopping the threads (strace does, and may change the order they run in).
if [ "${COUNTS_SYSCALLS:-perf}" = perf ] && perf stat -x, -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
  sys_tool=perf
else
  sys_tool=strace
fi

# instructions CMD...: callgrind's total instruction count (every thread, the dynamic
# loader included); empty when it could not count.
instructions() {
  rm -f "$work/cg.out"
  "${pin[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$@" >/dev/null 2>&1 || true
  awk '/^summary:/ {print $2}' "$work/cg.out" 2>/dev/null || true
}
# syscalls CMD...: the number of system calls entered (every thread).
syscalls() {
  if [ $sys_tool = perf ]; then
    "${pin[@]}" perf stat -x, -o "$work/perf.txt" -e raw_syscalls:sys_enter "$@" >/dev/null 2>&1 || true
    awk -F, '/raw_syscalls/ {print $1}' "$work/perf.txt"
  else
    "${pin[@]}" strace -f -c -o "$work/strace.txt" "$@" >/dev/null 2>&1 || true
    awk '$NF == "total" {print $4}' "$work/strace.txt"
  fi
}
# per_round COUNTER WHAT SIDE: the count of N rounds of `counts_loop WHAT SIDE`, per round.
per_round() {
  local counter=$1 what=$2 side=$3 a b
  a=$($counter "$bin/counts_loop" "$what" "$side" "$n" "$work/loop-a")
  rm -rf "$work/loop-a"
  b=$($counter "$bin/counts_loop" "$what" "$side" $((2 * n)) "$work/loop-b")
  rm -rf "$work/loop-b"
  [ -z "${COUNTS_DEBUG:-}" ] || echo "counts: $counter $what $side: $n rounds $a, $((2 * n)) rounds $b" >&2
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / n}'
}

first_crate=("$bin/solo" run counts.First --count 0)
first_floor=("$bin/first_launch_floor" "$XDG_RUNTIME_DIR/floor-first.sock")
# Measured as an app's first launch usually is, with the lock file left by an earlier one
# (the very first also creates it, and the crate sets its sticky bit: one fchmod more).
"${clean_env[@]}" "${first_crate[@]}" >/dev/null
"${clean_env[@]}" "${first_floor[@]}" >/dev/null
"${clean_env[@]}" "$bin/solo" run counts.Second > "$work/primary.out" 2>&1 &
primary_pid=$!
for _ in $(seq 200); do [ -s "$work/primary.out" ] && break; sleep 0.05; done
sock=$(awk '/^PRIMARY / {print $2; exit}' "$work/primary.out")
[ -n "$sock" ] || { echo "counts: the primary did not start: $(cat "$work/primary.out")" >&2; exit 1; }
send_crate=("$bin/solo" send counts.Second x)
send_floor=("$bin/launch_floor" "$sock" x)
# Each floor does the crate's job: the same line out.
a=$("${clean_env[@]}" "${send_crate[@]}" 2>&1 || true)
b=$("${clean_env[@]}" "${send_floor[@]}" 2>&1 || true)
[ "$a" = "$b" ] || printf 'counts: the floor says %s where the crate says %s\n' "$b" "$a" >&2

# row TITLE INSTR_CRATE INSTR_FLOOR INSTR_TARGET SYS_CRATE SYS_FLOOR SYS_TARGET: a table row;
# a target is "<= X" or "= X".
row() {
  awk -v t="$1" -v ic="$2" -v if_="$3" -v it="$4" -v sc="$5" -v sf="$6" -v st="$7" '
    function num(x,   s, p, ip, fr, out) {
      if (x == "") return "n/a"
      s = (x == int(x) || x >= 100) ? sprintf("%d", x + 0.5) : sprintf("%.1f", x)
      p = index(s, "."); ip = p ? substr(s, 1, p - 1) : s; fr = p ? substr(s, p) : ""
      for (out = ""; length(ip) > 3; ip = substr(ip, 1, length(ip) - 3)) out = "," substr(ip, length(ip) - 2) out
      return ip out fr
    }
    function cell(c, f, target,   r, op, lim, ok) {
      if (c == "" || f == "" || f == 0) return sprintf("%s / %s | n/a | %s", num(c), num(f), target)
      r = c / f; split(target, p, " "); op = p[1]; lim = p[2]
      ok = (op == "<=") ? (r <= lim + 0.005) : (r < lim + 0.005 && r > lim - 0.005)
      return sprintf("%s / %s | %.2f | %s %s", num(c), num(f), r, target, ok ? "met" : "missed")
    }
    BEGIN { printf "| %s | %s | %s |\n", t, cell(ic, if_, it), cell(sc, sf, st) }'
}

printf 'solo-instance, counted: crate / std floor (benches/bin/)\n'
printf -- '- instructions: valgrind --tool=callgrind, total Ir (every thread; the dynamic loader included)\n'
printf -- '- system calls: %s (every thread)\n' \
  "$([ $sys_tool = perf ] && echo "perf stat -e raw_syscalls:sys_enter" || echo "strace -f -c")"
printf -- '- each side pinned (%s), with a fixed environment, cwd and argv[0]\n' "${pinned[*]:-not pinned: no taskset}"
printf -- '- per launch and per connection: (a run of %d rounds - a run of %d) / %d, so that the\n' $((2 * n)) "$n" "$n"
printf '  process start and end cancel out\n\n'
printf '| measure | instructions, crate / floor | ratio | target | system calls, crate / floor | ratio | target |\n'
printf '|---|---|---|---|---|---|---|\n'
row "first launch: \`solo run APP --count 0\` / \`first_launch_floor\`" \
  "$(instructions "${first_crate[@]}")" "$(instructions "${first_floor[@]}")" "<= 1.10" \
  "$(syscalls "${first_crate[@]}")" "$(syscalls "${first_floor[@]}")" "<= 1.15"
row "secondary launch: \`solo send APP x\` / \`launch_floor\`" \
  "$(instructions "${send_crate[@]}")" "$(instructions "${send_floor[@]}")" "<= 1.10" \
  "$(syscalls "${send_crate[@]}")" "$(syscalls "${send_floor[@]}")" "<= 1.05"
row "handoff per launch, in one process (\`counts_loop handoff\`)" \
  "$(per_round instructions handoff crate)" "$(per_round instructions handoff floor)" "<= 3.0" \
  "$(per_round syscalls handoff crate)" "$(per_round syscalls handoff floor)" "<= 1.35"
row "LocalServer round trip per connection (\`counts_loop rtt\`)" \
  "$(per_round instructions rtt crate)" "$(per_round instructions rtt floor)" "<= 1.5" \
  "$(per_round syscalls rtt crate)" "$(per_round syscalls rtt floor)" "= 1.0"

[ $detail = 1 ] || exit 0

# side_by_side TITLE CRATE_STRACE FLOOR_STRACE [DIVISOR_FILES...]: each system call's
# count, crate beside floor, the largest differences first.
strace_c() { # strace_c OUT CMD...
  local out=$1; shift
  "${pin[@]}" strace -f -c -o "$out" "$@" >/dev/null 2>&1 || true
}
side_by_side() {
  printf '\n%s\n' "$1"
  printf '%-18s %8s %8s %8s\n' "system call" crate floor extra
  awk -v n="${4:-1}" -v total="$work/total" '
    FILENAME != last { file++; last = FILENAME }
    $1 ~ /^[0-9.]+$/ && $NF != "total" { calls[$NF, file] += $4; names[$NF] = 1 }
    END {
      same = ""
      for (s in names) {
        c = (calls[s, 1] - calls[s, 3]) / n; f = (calls[s, 2] - calls[s, 4]) / n
        tc += c; tf += f
        if (c != f) printf "%-18s %8.4g %8.4g %+8.4g\n", s, c, f, c - f
        else if (c != 0) same = same " " s " " c
      }
      printf "%-18s %8.4g %8.4g %+8.4g\n", "(total)", tc, tf, tc - tf > total
      if (same != "") printf "the same on both sides:%s\n", same > total
    }' "$2" "$3" "${5:-/dev/null}" "${6:-/dev/null}" | sort -k4,4gr -k1,1
  cat "$work/total" | fold -s -w 100
}
printf '\nSystem calls by name (strace -f -c), crate beside floor, the extra ones first.\n'
strace_c "$work/s-first-crate" "${first_crate[@]}"
strace_c "$work/s-first-floor" "${first_floor[@]}"
side_by_side "first launch" "$work/s-first-crate" "$work/s-first-floor"
strace_c "$work/s-send-crate" "${send_crate[@]}"
strace_c "$work/s-send-floor" "${send_floor[@]}"
side_by_side "secondary launch" "$work/s-send-crate" "$work/s-send-floor"
for side in crate floor; do
  strace_c "$work/s-h1-$side" "$bin/counts_loop" handoff $side "$n" "$work/loop-a"
  rm -rf "$work/loop-a"
  strace_c "$work/s-h2-$side" "$bin/counts_loop" handoff $side $((2 * n)) "$work/loop-b"
  rm -rf "$work/loop-b"
done
side_by_side "handoff per launch (under strace, which changes the order threads run in)" \
  "$work/s-h2-crate" "$work/s-h2-floor" "$n" "$work/s-h1-crate" "$work/s-h1-floor"

# inclusive FILE: each function's instructions, callees included, as "COUNT NAME" lines
# (callgrind_annotate --inclusive=yes; names without the object and the crate's prefix).
inclusive() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk '/^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
      c = $1; gsub(/,/, "", c); name = $0
      sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", name); sub(/ \[[^]]*\]$/, "", name); sub(/^\?\?\?:/, "", name)
      gsub(/solo_instance::/, "", name); if (!(name in seen)) { seen[name] = 1; print c, name } }' || true
}
# split FILE MAIN: the dynamic loader's instructions, MAIN's (the program's own work) and
# the rest (std's runtime set-up, exit).
split_cost() {
  inclusive "$1" | awk -v main="$2" -v total="$3" '
    $2 == "./elf/./elf/rtld.c:_dl_start" { ld = $1 } $2 == main { m = $1 }
    END { printf "%9d %9d %9d", ld, m, total - ld - m }'
}
if command -v callgrind_annotate >/dev/null; then
  printf '\nWhere the instructions go (callgrind, callees included)\n'
  printf '%-34s %9s %9s %9s %9s\n' "" loader main rest total
  for m in first send; do
    for side in crate floor; do
      if [ $m = first ]; then
        if [ $side = crate ]; then cmd=("${first_crate[@]}"); main=solo::main; else cmd=("${first_floor[@]}"); main=first_launch_floor::main; fi
      else
        if [ $side = crate ]; then cmd=("${send_crate[@]}"); main=solo::main; else cmd=("${send_floor[@]}"); main=launch_floor::main; fi
      fi
      total=$(instructions "${cmd[@]}")
      cp "$work/cg.out" "$work/cg-$m-$side.out"
      printf '%-34s %s %9d\n' "$([ $m = first ] && echo "first launch" || echo "secondary launch"), $side" \
        "$(split_cost "$work/cg-$m-$side.out" "$main" "$total")" "$total"
    done
  done
  if command -v readelf >/dev/null; then
    printf '\nThe dynamic loader looks up every imported symbol and applies every relocation at\n'
    printf 'each start (full RELRO):\n'
    for b in solo first_launch_floor launch_floor; do
      printf '%-20s %4d libc symbols imported, %5d relocations\n' "$b" \
        "$(readelf --dyn-syms -W "$bin/$b" | grep -c ' UND ' || true)" "$(readelf -r -W "$bin/$b" | grep -c 'R_X86_64' || true)"
    done
  fi
  for m in first send; do
    printf '\n%s, crate: the costliest functions, callees included\n' "$([ $m = first ] && echo "first launch" || echo "secondary launch")"
    inclusive "$work/cg-$m-crate.out" | awk '$2 !~ /^(std::|core::|\.\/|\(below|main$|0x|solo::main)/' | awk 'NR <= 14'
  done
  # The handoff per launch: a run of 2N rounds minus a run of N, function by function.
  for k in a b; do
    rounds=$([ $k = a ] && echo "$n" || echo $((2 * n)))
    instructions "$bin/counts_loop" handoff crate "$rounds" "$work/loop-$k" >/dev/null
    rm -rf "$work/loop-$k"
    inclusive "$work/cg.out" > "$work/handoff-$k.txt"
  done
  printf '\nhandoff per launch, crate: the costliest functions per launch, callees included\n'
  awk -v n="$n" 'FNR == 1 { f++ } { c = $1; $1 = ""; sub(/^ /, ""); if (f == 1) a[$0] = c; else d = c - a[$0]; if (f == 2) printf "%9.0f %s\n", d / n, $0 }' \
    "$work/handoff-a.txt" "$work/handoff-b.txt" | sort -k1,1gr |
    awk '$2 !~ /^(std::|core::|\(below|main$|0x|counts_loop::|\.\/nptl|\.\/csu|<std::)/' | awk 'NR <= 22'
fi
exit 0
