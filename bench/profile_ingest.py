"""Where one partition's ingest spends its time: phases of ingest_partition and Spark's jobs.

Starts a throwaway PostgreSQL and Spark Connect server (as `ecom up` does), generates --files
files of --events-per-file v3 events (2 % anomalies), ingests them with the asset's code path
(`ingest_partition`) twice (a cold JVM, then a second backlog on the warm one), and prints the
time between the steps ingest_partition reports and the Spark jobs of each pass from Spark's
REST API (the jobs' own durations, longest first).

    .venv/bin/python bench/profile_ingest.py [--files 100] [--events-per-file 10000]

Ends with one line: RESULT cold_rows_per_s=... warm_rows_per_s=...
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from ecom_assets.ingest import ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.resources.spark_session import session_builder
from ecom_assets.settings import IngestionSettings, PathSettings, load_settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets.stack.processes import free_port, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect


def spark_ui() -> str:
    """The UI of the one Spark running here: the first port from 4040 that answers its API."""
    for port in range(4040, 4050):
        ui = f"http://127.0.0.1:{port}"
        try:
            urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=10).close()  # noqa: S310
        except OSError:
            continue
        return ui
    raise RuntimeError("no Spark UI on ports 4040-4049")


def spark_jobs(ui: str) -> list[dict]:
    with urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=10) as response:  # noqa: S310
        app = json.load(response)[0]["id"]
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/jobs", timeout=10) as response:  # noqa: S310
        return json.load(response)


def job_seconds(job: dict) -> float:
    """A finished job's duration; 0 for one still running (the REST API has no end yet)."""
    if "completionTime" not in job:
        return 0.0
    parse = lambda text: datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fGMT")  # noqa: E731
    return (parse(job["completionTime"]) - parse(job["submissionTime"])).total_seconds()


def generate(input_dir: Path, files: int, events: int, seed: int, start: datetime) -> None:
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(input_dir),
         "--log-dir", str(input_dir.parent / "logs"), "--start-time", start.isoformat(),
         "--files", str(files), "--events-per-file", str(events), "--interval", "0.001",
         "--schema", "v3", "--anomaly-rate", "0.02", "--late-rate", "0", "--seed", str(seed)],
        check=True, capture_output=True,
    )  # fmt: skip


def profile_pass(spark, url, settings, partition, run_id, ui, seen_jobs: set[int]) -> float:
    marks: list[tuple[str, float]] = [("start", time.monotonic())]
    report = ingest_partition(
        spark, url, settings, partition, run_id, logging.getLogger("profile"),
        on_step=lambda step: marks.append((step, time.monotonic())),
    )  # fmt: skip
    marks.append(("end", time.monotonic()))
    rate = report.rows_read / report.seconds
    print(f"\n{run_id}: {report.rows_read:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s)")
    for (_, begin), (step, end) in itertools.pairwise(marks):
        if step != "moved" or end - begin > 0.05:
            print(f"  -> {step:16s} {end - begin:7.2f} s")
    jobs = [job for job in spark_jobs(ui) if job["jobId"] not in seen_jobs]
    seen_jobs.update(job["jobId"] for job in jobs)
    print(f"  Spark jobs: {len(jobs)}, {sum(map(job_seconds, jobs)):.1f} s in all; longest:")
    for job in sorted(jobs, key=job_seconds, reverse=True)[:6]:
        print(f"    {job_seconds(job):6.2f} s  {job['numTasks']:4d} tasks  {job['name'][:70]}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--events-per-file", type=int, default=10_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ecom-bench-profile-"))
    home.chmod(0o755)
    os.environ["ECOM_ENV_FILE"] = str(home / "absent.env")
    server = EmbeddedPostgres(root=home / "pg", port=free_port())
    spark_server = LocalSparkConnect(root=home / "spark", port=free_port())
    server.start()
    process = spark_server.start()
    try:
        spark_server.wait_ready(process, timeout_s=180)
        ui = spark_ui()
        url = server.url("postgres")
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn, discover_migrations())
        settings = load_settings(
            paths=PathSettings(home=home),
            ingestion=IngestionSettings(file_settle_s=0, linger_s=0, max_run_s=0),
        )
        spark = session_builder(spark_server.url, spark_server.token).create()
        seen: set[int] = set()
        rates = []
        now = datetime.now(tz=UTC)
        start = max(now.replace(minute=0, second=0, microsecond=0), now - timedelta(minutes=10))
        for seed, run_id in ((1, "cold"), (2, "warm")):
            generate(settings.input_dir, args.files, args.events_per_file, seed, start)
            partition = start.strftime(PARTITION_FORMAT)
            rates.append(profile_pass(spark, url, settings, partition, run_id, ui, seen))
        spark.stop()
    finally:
        stop_group(process.pid)
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"RESULT cold_rows_per_s={rates[0]:.0f} warm_rows_per_s={rates[1]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
