"""Backlog throughput through the real Dagster job, against the raw PostgreSQL sink ceiling.

For each shape (100 files x 10,000 events, then 10,000 files x 100 by default) it starts the
whole stack (`ecom up`, generator off), generates the events (v3, 2 % anomalies) beside the input
directory, renames them all into it at once, and times the sensor-launched runs until every
file is committed. Then, in the same stack, the sink ceiling: the committed events, COPY'd
(CSV) into an UNLOGGED staging table and moved with INSERT ... ON CONFLICT into an identical,
empty, indexed and constrained table, in one transaction (the best of three, each after a
CHECKPOINT). While it ingests, the stack's processes are sampled: peak RSS and PSS, and the
CPU seconds each part used (Spark's JVM and its Python workers, PostgreSQL, Dagster and its
runs), which tell where the time of a CPU-bound ingest goes. It also prints how long the sensor
and the run launch took before the first file was claimed, and when each batch began staging
and ran its last statement before COMMIT (its record's time), counted from the drop.

    .venv/bin/python bench/backlog.py [--events 1000000] [--shapes 10000,100] [--repeats 3]

Each run also prints the CPU seconds per 1M rows of each part group (PostgreSQL, Spark's JVM,
its Python workers, Dagster and its runs) and of the ceiling (PostgreSQL and the COPY client),
and their ratio: a wall ratio on a shared 2-core machine swings with the hour, CPU per row does
not. Ends with one line of the medians over the repeats: RESULT <shape>_rows_per_s=...
<shape>_ceiling_rows_per_s=... <shape>_ratio=... <shape>_cpu_<group>=... <shape>_cpu=...
<shape>_ceiling_cpu=... <shape>_cpu_ratio=... for each shape, peak_rss_mb=... peak_pss_mb=...
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from harness import (  # bench/ is the script's dir
    Stack,
    StackUsage,
    WaitSampler,
    add_settings_option,
    cpu_between,
    cpu_by_group,
    running_stack,
    stack_settings,
    wait_committed,
)

from ecom_assets.stack.run_launcher import PooledRunLauncher


def generate(stack: Stack, files: int, events_per_file: int) -> Path:
    """Write the backlog beside data/input (same file system), untimed; files 1 ms apart in
    simulated time, so every event lies in the past and in one partition."""
    outside = stack.input_dir.parent / "backlog"
    start = datetime.now(tz=UTC) - timedelta(minutes=30)
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(outside),
         "--log-dir", str(stack.log_dir), "--start-time", start.isoformat(),
         "--files", str(files), "--events-per-file", str(events_per_file), "--interval", "0.001",
         "--schema", "v3", "--anomaly-rate", "0.02", "--late-rate", "0", "--seed", "1"],
        env=stack.env, check=True, capture_output=True,
    )  # fmt: skip
    return outside


CEILING_REPEATS = 3
QUIET_CRON = "0 0 1 1 *"
"""The analytics refresh, once a year: every 5 minutes (the default) it re-aggregated the events
table on the same two cores during some ingests and not others (69 against 84 s for the same
backlog). Neither the ingest nor the ceiling includes it."""


@dataclass(frozen=True)
class Ceiling:
    """The best sink run: rows, seconds, and the CPU seconds it cost by part group
    (harness.CPU_GROUPS, PostgreSQL's processes being nearly all of it) plus the client's
    COPY ("bench client": this thread, which only sends bytes)."""

    rows: int
    seconds: float
    cpu: dict[str, float]


def ceiling(stack: Stack) -> Ceiling:
    """COPY -> staging -> ON CONFLICT of the committed events: the best of CEILING_REPEATS, each
    after a CHECKPOINT into a new empty table. One measurement right after the ingest varied
    from 33,000 to 52,000 rows/s (the checkpoint and autovacuum that the ingest's writes set
    off); the best is the ceiling."""
    with psycopg.connect(stack.url) as conn:
        buffer = io.BytesIO()
        with conn.cursor().copy("COPY ecommerce_events TO STDOUT (FORMAT csv)") as copy:
            for chunk in copy:
                buffer.write(chunk)
        conn.commit()
        runs = [_sink_once(stack, conn, buffer.getvalue()) for _ in range(CEILING_REPEATS)]
    print(f"  sink ceiling runs: {', '.join(f'{run.seconds:.1f} s' for run in runs)}", flush=True)
    return min(runs, key=lambda run: run.seconds)


def _sink_once(stack: Stack, conn: psycopg.Connection, rows_csv: bytes) -> Ceiling:
    conn.execute("DROP TABLE IF EXISTS ceiling_events, ceiling_stage")
    conn.execute("CREATE TABLE ceiling_events (LIKE ecommerce_events INCLUDING ALL)")
    conn.execute("CREATE UNLOGGED TABLE ceiling_stage (LIKE ecommerce_events INCLUDING DEFAULTS)")
    conn.commit()
    conn.autocommit = True
    conn.execute("CHECKPOINT")
    conn.autocommit = False
    before, client = stack.usage_by_process(), time.thread_time()
    started = time.monotonic()
    with conn.cursor().copy("COPY ceiling_stage FROM STDIN (FORMAT csv)") as copy:
        copy.write(rows_csv)
    rows = conn.execute(
        "INSERT INTO ceiling_events SELECT * FROM ceiling_stage ON CONFLICT (event_id) DO NOTHING"
    ).rowcount
    conn.commit()
    seconds = time.monotonic() - started
    used = cpu_between(before, stack.usage_by_process())
    # only PostgreSQL works for the ceiling: the rest of the stack idles meanwhile
    client_s = time.thread_time() - client
    cpu = {"postgresql": cpu_by_group(used)["postgresql"], "bench client": client_s}
    return Ceiling(rows, seconds, cpu)


LAUNCH_EVENTS = {
    "PIPELINE_ENQUEUED": "queued",
    "PIPELINE_STARTING": "launching",
    "PIPELINE_START": "run process started",
    "STEP_START": "step started",
}
"""The first run's launch events, as Dagster's event log stores them (runs were pipelines)."""


def launch_timeline(url: str, dropped: datetime) -> list[tuple[str, float]]:
    """When the sensor created the first run and that run's launch events, in seconds from the
    drop, from Dagster's storage (the `dagster` database beside ours)."""
    since = dropped.replace(tzinfo=None)  # Dagster stores naive UTC
    with psycopg.connect(url, dbname="dagster") as conn:
        first = conn.execute(
            "SELECT run_id, create_timestamp FROM runs WHERE create_timestamp >= %s "
            "ORDER BY create_timestamp LIMIT 1",
            (since,),
        ).fetchone()
        if first is None:
            return []
        events = conn.execute(
            "SELECT dagster_event_type, min(timestamp) FROM event_logs "
            "WHERE run_id = %s AND dagster_event_type = ANY(%s) GROUP BY 1 ORDER BY 2",
            (first[0], list(LAUNCH_EVENTS)),
        ).fetchall()
    named = [("run created", first[1]), *((LAUNCH_EVENTS[name], at) for name, at in events)]
    return [(name, (at - since).total_seconds()) for name, at in named]


def launch_path(url: str, dropped: datetime) -> str:
    """How the first run's worker started: the pooled launcher's engine event, if any."""
    since = dropped.replace(tzinfo=None)
    with psycopg.connect(url, dbname="dagster") as conn:
        event = conn.execute(
            "SELECT event FROM event_logs WHERE timestamp >= %s "
            "AND dagster_event_type = 'ENGINE_EVENT' AND event LIKE %s ORDER BY id LIMIT 1",
            (since, f"%[{PooledRunLauncher.__name__}]%"),
        ).fetchone()
    if event is None:
        return "by Dagster's code server (no pooled launcher)"
    found = re.search(rf"\[{PooledRunLauncher.__name__}\] ([^\"]*)", event[0])
    return found.group(1) if found else "by the pooled launcher"


def run_shape(
    total_events: int, events_per_file: int, waits: bool, settings: dict[str, str]
) -> dict[str, float]:
    files = total_events // events_per_file
    quiet = {"ECOM_DAGSTER_ANALYTICS_CRON": QUIET_CRON}
    with running_stack(generator=False, **quiet, **settings) as stack:
        outside = generate(stack, files, events_per_file)
        print(f"{files} files x {events_per_file} events generated; dropping them", flush=True)
        sampler = WaitSampler(stack.url) if waits else nullcontext()
        with StackUsage(stack) as usage, sampler:
            dropped = datetime.now(tz=UTC)
            for path in sorted(outside.glob("*.csv")):
                path.rename(stack.input_dir / path.name)
            seconds = wait_committed(stack.url, files, timeout_s=3600)
        with psycopg.connect(stack.url) as conn:
            rows, runs = conn.execute(
                "SELECT sum(rows_read), count(DISTINCT run_id) FROM data_quality_metrics"
            ).fetchone()
            first_claim = conn.execute("SELECT min(claimed_at) FROM ingest_files").fetchone()[0]
            batches = conn.execute(
                "SELECT batch_no, files, rows_read, started_at - %s, finished_at - %s "
                "FROM ingest_batches ORDER BY run_id, batch_no",
                (dropped, dropped),
            ).fetchall()
        launch = launch_timeline(stack.url, dropped)
        launched = launch_path(stack.url, dropped)
        sink = ceiling(stack)
    rate, ceiling_rate = rows / seconds, sink.rows / sink.seconds
    ceiling_rows, ceiling_s = sink.rows, sink.seconds
    launch_s = (first_claim - dropped).total_seconds()
    print(
        f"{files} x {events_per_file}: {rows:,} rows in {seconds:.1f} s by {runs} run(s) = "
        f"{rate:,.0f} rows/s; sink ceiling {ceiling_rows:,} rows in {ceiling_s:.1f} s = "
        f"{ceiling_rate:,.0f} rows/s; ratio {rate / ceiling_rate:.2f}; "
        f"peak RSS {usage.peak / 2**20:,.0f} MB (PSS {usage.peak_pss / 2**20:,.0f} MB)\n"
        f"  of which {launch_s:.1f} s from the drop to the first claim (sensor tick, run "
        f"launch); from there {rows / (seconds - launch_s):,.0f} rows/s",
        flush=True,
    )
    print("  " + ", ".join(f"{step} {at:.2f} s" for step, at in launch), flush=True)
    print(f"  run worker: {launched}", flush=True)
    for number, batch_files, batch_rows, began, committed in batches:
        print(
            f"  batch {number}: {batch_files} files, {batch_rows:,} rows, staging from "
            f"{began.total_seconds():.1f} s, commit's statements done at "
            f"{committed.total_seconds():.1f} s",
            flush=True,
        )
    cpu = usage.cpu_by_part()
    print(
        f"  CPU while ingesting: {sum(cpu.values()):.0f} s in {seconds:.0f} s "
        f"on {os.cpu_count()} cores",
        flush=True,
    )
    for part, cpu_s in sorted(cpu.items(), key=lambda item: item[1], reverse=True):
        print(f"    {cpu_s:6.1f} s  {cpu_s / rows * 1e6:5.1f} us/row  {part}", flush=True)
    per_million = {group: cpu_s / rows * 1e6 for group, cpu_s in cpu_by_group(cpu).items()}
    sink_per_million = {group: cpu_s / sink.rows * 1e6 for group, cpu_s in sink.cpu.items()}
    ingest_cpu, sink_cpu = sum(per_million.values()), sum(sink_per_million.values())
    print(
        "  CPU s per 1M rows: ingest "
        + ", ".join(f"{group} {cpu_s:.1f}" for group, cpu_s in per_million.items())
        + f" = {ingest_cpu:.1f}; ceiling "
        + ", ".join(f"{group} {cpu_s:.1f}" for group, cpu_s in sink_per_million.items())
        + f" = {sink_cpu:.1f}; ingest / ceiling {ingest_cpu / sink_cpu:.2f}",
        flush=True,
    )
    if isinstance(sampler, WaitSampler):
        print("  active backends of ecom, share of samples by wait and statement:", flush=True)
        for line in sampler.top():
            print("    " + line, flush=True)
    return {
        "rows_per_s": rate,
        "ceiling_rows_per_s": ceiling_rate,
        "ratio": rate / ceiling_rate,
        **{f"cpu_{_key(group)}": cpu_s for group, cpu_s in per_million.items()},
        "cpu": ingest_cpu,
        "ceiling_cpu": sink_cpu,
        "cpu_ratio": ingest_cpu / sink_cpu,
        "peak_rss_mb": usage.peak / 2**20,
        "peak_pss_mb": usage.peak_pss / 2**20,
    }


def _key(group: str) -> str:
    return group.replace(" ", "_")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs of one shape: CPU per row is steady from run to
    run, wall ratios swing with the hour (#23), and a median drops one odd run."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="10000,100", help="events per file, comma-separated")
    parser.add_argument(
        "--waits", action="store_true", help="sample the backends' wait events (10 per s)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each shape; RESULT gives their medians"
    )
    add_settings_option(parser)
    args = parser.parse_args()
    settings = stack_settings(args)
    results = {}
    for size in map(int, args.shapes.split(",")):
        runs = [run_shape(args.events, size, args.waits, settings) for _ in range(args.repeats)]
        results[size] = medians(runs)
        print(
            f"{args.events // size} x {size}, median of {len(runs)}: "
            + ", ".join(f"{key} {value:,.2f}" for key, value in results[size].items()),
            flush=True,
        )
    figures = " ".join(
        f"f{size}_{key}={value:.0f}" if key.endswith("_per_s") else f"f{size}_{key}={value:.2f}"
        for size, result in results.items()
        for key, value in result.items()
        if not key.startswith("peak_")
    )
    peak = max(result["peak_rss_mb"] for result in results.values())
    peak_pss = max(result["peak_pss_mb"] for result in results.values())
    print(
        f"RESULT events={args.events} {figures} peak_rss_mb={peak:.0f} peak_pss_mb={peak_pss:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
