"""Chaos: a backlog ingested by a real `ecom up` while its parts are killed, row by row audited.

Writes a backlog (the generator's files with anomalies, other shops' files, hand-written odd and
broken files), ingests a copy undisturbed in-process (its own PostgreSQL and Spark Connect) for
the truth, then drops the backlog into a throwaway `ecom up` in --rounds slices; in each round it
kills -9 one target (a run worker, PostgreSQL's postmaster, the Spark Connect JVM, the `ecom up`
supervisor: round-robin from a seeded offset) at a seeded random moment, and restarts as a user
would (waits --heal-wait-s for the stack to heal itself, else `ecom down` + `ecom up`). Once every
file has left input/, it compares every event (id and a hash of its values), every dead letter
(file, line, codes, raw record), the quarantined files and each file's metrics with the truth,
and checks that every record Python's csv module reads landed exactly once.
(ecom_assets_tests/chaos_support.py has the details; test_chaos.py is the suite's short run.)

    .venv/bin/python bench/chaos.py [--rounds 12] [--seed N] [--files 24] [--events 400]

Replay a failure with the seed it printed. Ends with one line:
RESULT rounds=... kills_<target>=... rows_checked=... differences=... recovery_s_median=...
recovery_s_max=...
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ecom_assets.resources.spark_session import TOKEN_ENV
from ecom_assets_tests.chaos_support import (
    TARGETS,
    ChaosPlan,
    account,
    backlog_start,
    chaos_against_stack,
    copies_of,
    csv_records,
    differences,
    ingest_truth,
    kill_leftovers,
    truth_services,
    write_backlog,
)


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--files", type=int, default=24, help="generated files (+ 8 others)")
    parser.add_argument("--events", type=int, default=400, help="events per generated file")
    parser.add_argument("--heal-wait-s", type=float, default=90.0)
    parser.add_argument("--kill-window-s", type=float, default=8.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's home to inspect")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    say(f"[chaos] seed {seed} (replay: --seed {seed} --rounds {args.rounds} --files {args.files} "
        f"--events {args.events})")  # fmt: skip

    root = Path(tempfile.mkdtemp(prefix="ecom-chaos-"))
    root.chmod(0o755)  # the embedded PostgreSQL may run as another user
    home = root / "stack"
    home.mkdir(mode=0o755)
    try:
        backlog = write_backlog(root / "backlog", seed, args.files, args.events, backlog_start())
        records, unreadable = csv_records(backlog)
        say(f"[chaos] backlog: {len(backlog)} files, {len(records)} records (csv module)")
        began = time.monotonic()
        with truth_services() as (spark, url):
            truth = ingest_truth(spark, url, root / "truth", backlog)
        problems = account(records, unreadable, truth)
        say(f"[chaos] truth in {time.monotonic() - began:.1f} s: {len(truth.events)} events, "
            f"{len(truth.dead_letters)} dead letters, {len(truth.quarantined)} quarantined; "
            f"independent count: {len(problems)} problem(s)")  # fmt: skip
        for problem in problems:
            say(f"  truth: {problem}")

        plan = ChaosPlan(
            rounds=args.rounds, seed=seed, kill_window_s=args.kill_window_s,
            heal_wait_s=args.heal_wait_s, drain_timeout_s=900, settle_timeout_s=120,
        )  # fmt: skip
        try:
            outcome = chaos_against_stack(home, backlog, plan, say)
        finally:
            kill_leftovers(home)
        report, got = outcome.report, outcome.got
        if outcome.left:
            say("[chaos] LEFT RUNNING after ecom down:\n  " + "\n  ".join(outcome.left))
        found, other_copy = differences(truth, got, copies_of(records))
        found += account(records, unreadable, got)
        for line in found:
            say(f"  DIFFERENCE {line}")
        recoveries = [kill.recovery_s for kill in report.kills if kill.recovery_s is not None]
        never = sum(kill.recovery_s is None for kill in report.kills)
        by_target = report.kills_by_target()
        say(f"[chaos] rounds {len(report.kills)}; kills "
            + ", ".join(f"{t} {by_target.get(t, 0)}" for t in TARGETS)
            + f"; restarts (down+up) {report.restarts}; rows checked {got.rows} "
            f"({len(got.events)} events, {len(got.dead_letters)} dead letters) and "
            f"{len(records)} records counted; differences {len(found)}; events stored from "
            f"another of their copies {other_copy}")  # fmt: skip
        for target in TARGETS:
            kills = [k for k in report.kills if k.target == target]
            if kills:
                say(f"  {target}: healthy again after "
                    + ", ".join(f"{k.back_s:.1f}" for k in kills)
                    + " s; next file committed after "
                    + ", ".join("never" if k.recovery_s is None else f"{k.recovery_s:.1f}"
                                for k in kills)
                    + f" s ({'/'.join(sorted({k.restarted for k in kills}))})")  # fmt: skip
        say(f"  drained the rest in {report.drained_s:.1f} s; never recovered: {never}")
        median = statistics.median(recoveries) if recoveries else float("nan")
        say(
            f"RESULT seed={seed} rounds={len(report.kills)} "
            + " ".join(f"kills_{t}={by_target.get(t, 0)}" for t in TARGETS)
            + f" rows_checked={got.rows} records={len(records)} differences={len(found)}"
            f" truth_problems={len(problems)} recovery_s_median={median:.1f}"
            f" recovery_s_max={max(recoveries, default=float('nan')):.1f} never_recovered={never}"
        )
        return 0 if not found and not problems and not never else 1
    finally:
        kill_leftovers(home)
        if args.keep:
            say(f"[chaos] kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    # the truth's Spark server takes this token and its session presents it, as in the suite
    # (conftest.py); the stack uses its own installation's token
    os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(32))
    sys.exit(main())
