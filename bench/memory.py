"""Peak RSS of the whole local stack: idle, then while it ingests a backlog.

Starts the stack (`ecom up`, generator off), samples the resident memory of every process of it
(supervisor, PostgreSQL and its backends, Spark Connect and its Python workers, Dagster
webserver, daemon, code server and run processes) for --idle seconds, then drops a backlog of
--events events (v3, --events-per-file per file, 10,000 by default) and samples until it is
committed; prints the largest processes at each peak. The peaks are of summed RSS (a shared page
counts in every process that maps it, so PostgreSQL's shared buffers count once per backend)
and of summed PSS (each shared page counted once, divided among its processes): the stack's
real footprint is the PSS figure.

    .venv/bin/python bench/memory.py [--idle 60] [--events 200000] [--events-per-file 10000]

Ends with one line: RESULT idle_peak_mb=... backlog_peak_mb=... idle_peak_pss_mb=...
backlog_peak_pss_mb=... target_mb=3072 ratio=(the larger RSS peak)/target
"""

from __future__ import annotations

import argparse
import sys
import time

from backlog import generate  # bench/ is the script's directory
from harness import StackUsage, running_stack, wait_committed

TARGET_MB = 3 * 1024
EVENTS_PER_FILE = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle sampling")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--events-per-file", type=int, default=EVENTS_PER_FILE)
    args = parser.parse_args()
    per_file = args.events_per_file
    files = max(1, args.events // per_file)
    with running_stack(generator=False) as stack:
        with StackUsage(stack) as idle:
            time.sleep(args.idle)
        outside = generate(stack, files, per_file)
        with StackUsage(stack) as busy:
            for path in sorted(outside.glob("*.csv")):
                path.rename(stack.input_dir / path.name)
            seconds = wait_committed(stack.url, files, timeout_s=3600)
    idle_mb, busy_mb = idle.peak / 2**20, busy.peak / 2**20
    idle_pss, busy_pss = idle.peak_pss / 2**20, busy.peak_pss / 2**20
    print(f"idle for {args.idle:.0f} s: peak {idle_mb:,.0f} MB RSS, {idle_pss:,.0f} MB PSS\n"
          f"{idle.breakdown()}")  # fmt: skip
    print(f"{files} files x {per_file} events committed in {seconds:.0f} s: "
          f"peak {busy_mb:,.0f} MB RSS, {busy_pss:,.0f} MB PSS\n{busy.breakdown()}")  # fmt: skip
    peak = max(idle_mb, busy_mb)
    print(
        f"RESULT idle_peak_mb={idle_mb:.0f} backlog_peak_mb={busy_mb:.0f} "
        f"idle_peak_pss_mb={idle_pss:.0f} backlog_peak_pss_mb={busy_pss:.0f} "
        f"target_mb={TARGET_MB} ratio={peak / TARGET_MB:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
