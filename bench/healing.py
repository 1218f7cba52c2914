"""Time from a part's death to ingestion flowing again, on a real stack that heals itself.

Starts an isolated `ecom up` (generator on, a file every ECOM_GENERATOR_INTERVAL_S, 1 s by
default here), waits until files flow into `ecommerce_events`, then for each target in turn
SIGKILLs it once: PostgreSQL's postmaster, the Spark Connect server's JVM, the run pool. For
each it reports when the supervisor said the part was restarted (its stack log) and when the
first rows of a generator file stamped after the kill were in `ecommerce_events`, both counted
from the kill. A baseline (no kill: a moment, then the first rows of a file stamped after it)
gives the floor: the generator's interval plus the usual file-to-rows latency.

    .venv/bin/python bench/healing.py [--targets postgresql,spark,run_pool] [--set ECOM_X=V]

One line per target: RESULT target=<name> restarted_s=... flowing_s=...
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from harness import Stack, add_settings_option, running_stack, stack_settings

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.local import embedded_postgres
from ecom_assets.stack.processes import group_members
from ecom_assets.stack.supervisor import read_state

FLOWING_TIMEOUT_S = 400.0
"""Long enough for a run that failed with its dependency to be requested again
(ECOM_INGEST_RETRY_AFTER_S, 120 s by default) and more."""


def rows_after(url: str, moment: datetime) -> int:
    """Rows from generator files stamped after moment (names sort in time order)."""
    first = "events_" + moment.strftime("%Y%m%dT%H%M%S%fZ")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            query = "SELECT count(*) FROM ecommerce_events WHERE source_file > %s"
            return conn.execute(query, (first,)).fetchone()[0]
    except psycopg.OperationalError:
        return 0


def seconds_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            return float("nan")
        time.sleep(interval_s)
    return time.monotonic() - started


def stack_log(stack: Stack) -> str:
    return "".join(path.read_text() for path in sorted(stack.log_dir.glob("stack_*.log")))


def victim(stack: Stack, target: str) -> int:
    """The pid whose SIGKILL is the target's death."""
    settings = load_settings(paths=PathSettings(home=stack.home))
    if target == "postgresql":
        pid = embedded_postgres(settings).postmaster_pid()
        assert pid is not None, "no postmaster"
        return pid
    state = read_state(settings)
    assert state is not None, "no stack.json"
    if target == "run_pool":
        return state.groups["run pool"]
    for pid in group_members(state.groups["spark"]):  # the JVM, not its launcher script
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[0].endswith(b"/java"):
            return pid
    raise RuntimeError("no Spark Connect JVM")


def restarted_line(target: str) -> re.Pattern[str]:
    part = target.replace("_", " ")
    return re.compile(rf"\[heal\] {re.escape(part)}\s+restarted in")


def measure(stack: Stack, target: str) -> tuple[float, float]:
    """(seconds to the supervisor's restart, seconds to rows of a file written after the
    kill), both from the kill, watched together (ingestion may resume before the restart)."""
    line = restarted_line(target)
    heals_before = len(line.findall(stack_log(stack)))
    pid = victim(stack, target)
    killed_at = datetime.now(tz=UTC)
    began = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    restarted: float | None = None
    flowing: float | None = None
    while time.monotonic() - began < FLOWING_TIMEOUT_S and None in (restarted, flowing):
        now = time.monotonic() - began
        if restarted is None and len(line.findall(stack_log(stack))) > heals_before:
            restarted = now
        if flowing is None and rows_after(stack.url, killed_at) > 0:
            flowing = now
        time.sleep(0.2)
    for entry in ingest_problems(stack, killed_at):
        print("  " + entry)
    return (
        math.nan if restarted is None else restarted,
        math.nan if flowing is None else flowing,
    )


def ingest_problems(stack: Stack, since: datetime) -> list[str]:
    """The ingest log's warnings and errors since the kill: why ingestion stalled."""
    text = "".join(path.read_text() for path in sorted(stack.log_dir.glob("ingest_*.log")))
    stamp = since.strftime("%Y-%m-%d %H:%M:%S")
    return [
        line[:220]
        for line in text.splitlines()
        if line[:19] >= stamp and ("| WARNING" in line or "| ERROR" in line)
    ][:15]


def settle(stack: Stack) -> float:
    """Seconds from now to rows of a file stamped after now: the floor of every measure."""
    now = datetime.now(tz=UTC)
    return seconds_until(lambda: rows_after(stack.url, now) > 0, FLOWING_TIMEOUT_S, 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="postgresql,spark,run_pool")
    parser.add_argument("--interval", default="1", help="generator interval, seconds")
    add_settings_option(parser)
    args = parser.parse_args()
    env = {"ECOM_GENERATOR_INTERVAL_S": args.interval} | stack_settings(args)
    with running_stack(generator=True, **env) as stack:
        if math.isnan(settle(stack)):
            raise RuntimeError("ingestion does not flow on the fresh stack")
        baselines = [settle(stack) for _ in range(3)]
        print(f"RESULT target=baseline flowing_s={','.join(f'{b:.1f}' for b in baselines)}")
        for target in args.targets.split(","):
            time.sleep(10)  # steady again: runs lingering, nothing restarting
            restarted, flowing = measure(stack, target)
            print(
                f"RESULT target={target} restarted_s={restarted:.1f} flowing_s={flowing:.1f}",
                flush=True,
            )
            settle(stack)
        print("stack log, heal lines:")
        for line in stack_log(stack).splitlines():
            if "[heal]" in line or "ALERT" in line:
                print("  " + line)


if __name__ == "__main__":
    main()
