#!/usr/bin/env python3
"""Times two commands side by side, run after run: A, B, B, A, A, B, ... so that a change
in the machine's load hits both alike (hyperfine runs all of A, then all of B).

    interleave.py RUNS 'A ARGS...' 'B ARGS...'

Each command is started with posix_spawn (no shell), its stdout to /dev/null, and timed
from the spawn to the end of its wait. Prints both medians, the ratio of the medians,
and the median of the ratios of each A run to the B run next to it.
Pin it to one CPU (taskset -c 0) for process-level timings."""
import os
import statistics
import sys
import time


def run(argv):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    _, status = os.waitpid(pid, 0)
    took = time.perf_counter_ns() - start
    if status != 0:
        sys.exit(f"{' '.join(argv)}: exit status {status}")
    return took


def main():
    runs, a, b = int(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
    for _ in range(max(3, runs // 50)):  # warm-up
        run(a)
        run(b)
    ta, tb = [], []
    for i in range(runs):
        if i % 2:
            ta.append(run(a))
            tb.append(run(b))
        else:
            tb.append(run(b))
            ta.append(run(a))
    ma, mb = statistics.median(ta), statistics.median(tb)
    paired = statistics.median(x / y for x, y in zip(ta, tb))
    print(f"{ma / 1e3:9.1f} us {mb / 1e3:9.1f} us  ratio {ma / mb:.3f}  paired {paired:.3f}")


main()
