"""Where a staging task's time goes, stage by stage, without PostgreSQL.

Generates --files files of --events-per-file v3 events (2 % anomalies), then times:

- in this process, on Arrow, each stage of what a staging task does with its files (CPU time
  of this process, median of --repeats): read (CSV records, parsing, migration to LATEST),
  + validated, + enriched, + routed (``route.routed``), + split (events and dead letters as the
  CSV text COPY reads, counts per file: ``arrow_routing.route_batches``);
- through Spark: the whole pass ingest runs (``file_names`` -> ``routing_counter``, the
  staging tasks minus the COPY), its wall time and the JVM tasks' CPU time (from the server's
  REST API; the Python workers' CPU is not in it).

With --parsers it also times each field's parser alone. With --connect the benchmark uses a
running Spark Connect server instead of starting one.

    .venv/bin/python bench/profile_spark.py [--files 30] [--events-per-file 10000] [--repeats 3]

Ends with one line: RESULT rows=... <stage>_cpu_us_per_row=... spark_rows_per_s=...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyspark.sql import SparkSession

from ecom_assets.resources.event_reader import file_names, latest_events, readable_in
from ecom_assets.resources.event_sink import routing_counter, run_tasks
from ecom_assets.resources.spark_session import TOKEN_ENV, session_builder
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.schema.csv_records import read_records
from ecom_assets.schema.parsing import parse_field
from ecom_assets.schema.versions import LATEST
from ecom_assets.settings import QualitySettings
from ecom_assets.stack.processes import free_port, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect
from ecom_assets.transforms.arrow_routing import route_batches
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.file_rows import FileRows
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import validate_events
from generator.catalog import demo_catalogue

START = datetime(2025, 1, 1, tzinfo=UTC)


def generate(input_dir: Path, files: int, events: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(input_dir),
         "--log-dir", str(input_dir.parent / "logs"), "--start-time", START.isoformat(),
         "--files", str(files), "--events-per-file", str(events), "--interval", "0.001",
         "--schema", "v3", "--anomaly-rate", "0.02", "--late-rate", "0", "--seed", "1"],
        check=True, capture_output=True,
    )  # fmt: skip


@dataclass(frozen=True)
class SparkUI:
    """The REST API of the server's application, for task CPU time (steadier than wall time)."""

    url: str
    app: str

    @classmethod
    def of(cls, spark: SparkSession) -> SparkUI:
        """The UI among ports 4040-4059 whose application is this session's."""
        app = spark.conf.get("spark.app.id")
        for port in range(4040, 4060):
            url = f"http://127.0.0.1:{port}/api/v1/applications"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if any(entry["id"] == app for entry in json.load(response)):
                        return cls(url, app)
            except (OSError, ValueError):  # nothing there, or not a Spark UI
                continue
        raise RuntimeError(f"no Spark UI of {app} on ports 4040-4059")

    def stages(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/{self.app}/stages", timeout=30) as response:  # noqa: S310
            return json.load(response)


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def timed(ui: SparkUI, action: Callable[[], object]) -> Timing:
    """Wall time of an action and the executor CPU time of the stages it ran.

    Stages are told apart by id: the UI keeps only the latest ones (spark.ui.retainedStages).
    """
    before = max((stage["stageId"] for stage in ui.stages()), default=-1)
    began = time.perf_counter()
    action()
    wall = time.perf_counter() - began
    time.sleep(0.3)  # the UI's status store catches up with the listener bus asynchronously
    cpu_ns = sum(stage["executorCpuTime"] for stage in ui.stages() if stage["stageId"] > before)
    return Timing(wall, cpu_ns / 1e9)


def arrow_stages(rows: FileRows) -> dict[str, Callable[[], object]]:
    """Each stage as a function of the files' bytes, read once beforehand."""
    contents = [(file, file.path.read_bytes()) for file in rows.files.values()]

    def read() -> pa.Table:
        return latest_events(contents)

    def validated() -> pa.Table:
        return validate_events(read(), rows.rules)

    def enriched() -> pa.Table:
        return enrich_events(validated(), rows.rules, rows.late_watermark_s)

    def routed_rows() -> pa.Table:
        return routed(enriched())

    def split() -> object:
        return route_batches(routed_rows().combine_chunks().to_batches(), len, len)

    return {
        "read": read,
        "validated": validated,
        "enriched": enriched,
        "routed": routed_rows,
        "split": split,
    }


def cpu_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median CPU time of this process over ``repeats`` runs of ``action``."""
    samples = []
    for _ in range(repeats):
        began = time.process_time()
        action()
        samples.append(time.process_time() - began)
    return statistics.median(samples)


def parser_cpu(rows: FileRows, repeats: int) -> dict[str, float]:
    """Median CPU seconds of each field's parser alone over the files' raw columns."""
    files = list(rows.files.values())
    raw = read_records([file.path.read_bytes() for file in files], files[0].header.columns)
    return {
        f.name: cpu_seconds(lambda f=f: parse_field(raw.column(f.name), f), repeats)
        for f in LATEST.fields
    }


def spark_pass(url: str, token: str | None, rows: FileRows, repeats: int) -> Timing:
    """Median wall time and JVM task CPU of the staging pass minus the COPY, warm."""
    spark = session_builder(url, token).create()
    ui = SparkUI.of(spark)
    files = list(rows.files.values())

    def action() -> object:
        return run_tasks(file_names(spark, files), routing_counter(rows))

    action()  # warm up: Python workers, imports, file listing
    timings = [timed(ui, action) for _ in range(repeats)]
    spark.stop()
    return Timing(
        statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
    )


def run(url: str, token: str | None, data: Path, repeats: int, parsers: bool) -> dict[str, float]:
    """Print and return the figures of one data set."""
    files = readable_in(data)
    # the default contract over the demo catalogue: every rule runs, as under `make run`
    file_rows = FileRows.of(
        files, load_contract(), demo_catalogue(), QualitySettings(), datetime.now(tz=UTC)
    )
    stages = arrow_stages(file_rows)
    rows = stages["read"]().num_rows  # also warms up: imports, compiled regexes
    figures: dict[str, float] = {}
    print(f"{rows:,} rows in {len(files):,} files; CPU of this process, median of {repeats}:")
    for name, action in stages.items():
        per_row = cpu_seconds(action, repeats) / rows * 1e6
        figures[f"{name}_cpu_us_per_row"] = per_row
        print(f"  {name:10s} {per_row:6.2f} us/row (cumulative)")
    if parsers:
        print("each field's parser alone, CPU:")
        for name, cpu in parser_cpu(file_rows, repeats).items():
            print(f"  {name:14s} {cpu / rows * 1e6:6.3f} us/row")
    spark = spark_pass(url, token, file_rows, repeats)
    figures["spark_rows_per_s"] = rows / spark.wall
    figures["spark_jvm_cpu_us_per_row"] = spark.cpu / rows * 1e6
    print(
        f"Spark pass (file_names -> routing_counter), median of {repeats}: {spark.wall:.2f} s, "
        f"{rows / spark.wall:,.0f} rows/s; JVM task CPU {spark.cpu / rows * 1e6:.2f} us/row"
    )
    figures["rows"] = rows
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--events-per-file", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parsers", action="store_true", help="also time each field's parser")
    parser.add_argument(
        "--connect",
        help="sc://localhost:PORT of a running server (default: start one); its token from "
        'SPARK_CONNECT_AUTHENTICATE_TOKEN, e.g. "$(cat .ecom/spark-connect.token)"',
    )
    parser.add_argument("--data", type=Path, help="directory of generated files to reuse")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ecom-bench-spark-"))
    data = args.data or home / "input"
    if not any(data.glob("*.csv")):
        generate(data, args.files, args.events_per_file)
    server = None if args.connect else LocalSparkConnect(root=home / "spark", port=free_port())
    process = server.start() if server else None
    try:
        if server and process:
            server.wait_ready(process, timeout_s=180)
        url = args.connect or (server.url if server else "")
        token = server.token if server else os.environ.get(TOKEN_ENV)
        figures = run(url, token, data, args.repeats, args.parsers)
    finally:
        if process:
            stop_group(process.pid)
        shutil.rmtree(home, ignore_errors=True)
    print("RESULT " + " ".join(f"{name}={value:.2f}" for name, value in figures.items()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ECOM_ENV_FILE", os.devnull)  # defaults, not the developer's .env
    sys.exit(main())
