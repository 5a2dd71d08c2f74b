"""Run one command and write its own wall time and rusage as JSON; not part of the worker.

    python -I -S bench/_rusage.py OUT.json COMMAND...

Linux gives a child's ru_maxrss at least the RSS of the process that started it (the high-water
mark survives fork and exec), so a benchmark that has grown would inflate small children's peaks.
This launcher is small (a bare interpreter, ~8 MiB), so that floor stays below anything measured.
"""

import json
import os
import sys
import time


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(out, "w") as f:
        json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
                   "returncode": os.waitstatus_to_exitcode(status)}, f)


if __name__ == "__main__":
    main()
