"""Where the Spark pass of ingestion spends its time, stage by stage, without PostgreSQL.

Generates --files files of --events-per-file v3 events (2 % anomalies) and times, warm and
--repeats times each (stages interleaved within a round), the chain ingest's ``_process`` builds,
one stage more at a time, each as a noop write of every column:

- read: the CSV read alone (read_event_files' options and schema, plus the file name);
- numbered: read_event_files (record numbers, parsing, migration to LATEST, arrival times);
- validated: + validate_events;
- enriched: + enrich_events;
- routed: + route.routed through mapInArrow, each task splitting, CSV-encoding and counting its
  rows as staging does (arrow_routing), without PostgreSQL: ingest's one pass minus the COPY.

Each stage reports its wall time and its tasks' CPU time (from the server's REST API): on a
shared machine CPU time is the steadier figure. With --parsers it also times each field's parser
alone over a cached raw read, minus the bare column. With --connect the benchmark uses a running
Spark Connect server instead of starting one, so that two versions of the code (one put first
on PYTHONPATH) can be compared on the same server, runs interleaved.

    .venv/bin/python bench/profile_spark.py [--files 30] [--events-per-file 10000] [--repeats 3]

Ends with one line: RESULT rows=... <stage>_rows_per_s=... <stage>_cpu_us_per_row=... per stage.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecom_assets.resources.event_reader import ReadableFile, read_event_files, readable_in
from ecom_assets.resources.spark import tune_for_ingest
from ecom_assets.schema.file_checks import MAX_FIELDS
from ecom_assets.schema.parsing import RECORD, parse_field, raw_name, raw_schema
from ecom_assets.schema.versions import LATEST
from ecom_assets.settings import QualitySettings
from ecom_assets.stack.processes import free_port, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect
from ecom_assets.transforms.arrow_routing import routed_rows_counted
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import ValidationRules, validate_events

START = datetime(2025, 1, 1, tzinfo=UTC)


def generate(input_dir: Path, files: int, events: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(input_dir),
         "--log-dir", str(input_dir.parent / "logs"), "--start-time", START.isoformat(),
         "--files", str(files), "--events-per-file", str(events), "--interval", "0.001",
         "--schema", "v3", "--anomaly-rate", "0.02", "--late-rate", "0", "--seed", "1"],
        check=True, capture_output=True,
    )  # fmt: skip


def raw_read(spark: SparkSession, files: list[ReadableFile]) -> DataFrame:
    """The CSV read as read_event_files does it, before record numbers and parsing."""
    record = raw_name(RECORD)
    schema = raw_schema(files[0].header.columns).add(record, "string")
    return (
        spark.read.options(header=True, multiLine=True, escape='"', mode="PERMISSIVE",
                           columnNameOfCorruptRecord=record, maxColumns=MAX_FIELDS)
        .schema(schema)
        .csv([str(file.path) for file in files])
        .withColumn("source_file", F.col("_metadata.file_name"))
    )  # fmt: skip


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


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


def stages(
    spark: SparkSession, ui: SparkUI, files: list[ReadableFile]
) -> dict[str, Callable[[], dict[str, Timing]]]:
    """Each stage's action, returning its timings by name (the last one times two actions)."""
    quality = QualitySettings()
    now = datetime.now(tz=UTC)
    rules = ValidationRules.from_settings(quality, now)

    def validated() -> DataFrame:
        return validate_events(read_event_files(spark, files), rules)

    def enriched() -> DataFrame:
        return enrich_events(validated(), quality.late_watermark_s, processed_at=now)

    def routed_pass() -> dict[str, Timing]:
        counted = routed(enriched()).mapInArrow(routed_rows_counted, "rows long")
        return {"routed": timed(ui, lambda: counted.agg(F.sum("rows")).collect())}

    def noop_of(name: str, frame: Callable[[], DataFrame]) -> Callable[[], dict[str, Timing]]:
        return lambda: {name: timed(ui, lambda: noop(frame()))}

    return {
        "read": noop_of("read", lambda: raw_read(spark, files)),
        "numbered": noop_of("numbered", lambda: read_event_files(spark, files)),
        "validated": noop_of("validated", validated),
        "enriched": noop_of("enriched", enriched),
        "routed": routed_pass,
    }


@contextmanager
def cached(df: DataFrame) -> Iterator[DataFrame]:
    df = df.cache()
    df.count()
    try:
        yield df
    finally:
        df.unpersist()


def parser_cpu(
    spark: SparkSession, ui: SparkUI, files: list[ReadableFile], repeats: int
) -> dict[str, float]:
    """Median CPU seconds of each field's parser alone over a cached raw read, minus the bare
    column's."""
    samples: dict[str, list[float]] = {f.name: [] for f in LATEST.fields}
    with cached(raw_read(spark, files)) as raw:
        for _ in range(repeats):
            for f in LATEST.fields:
                bare = raw.select(f.name)
                parsed = raw.select(parse_field(F.col(f.name), f))
                cpu = (
                    timed(ui, lambda p=parsed: noop(p)).cpu - timed(ui, lambda b=bare: noop(b)).cpu
                )
                samples[f.name].append(cpu)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(url: str, data: Path, rows: int, repeats: int, parsers: bool) -> dict[str, Timing]:
    spark = SparkSession.builder.remote(url).create()
    tune_for_ingest(spark)  # the session settings ingest runs with
    ui = SparkUI.of(spark)
    files = readable_in(data)
    actions = stages(spark, ui, files)
    for action in actions.values():  # warm up: JIT, class loading, file listing
        action()
    samples: dict[str, list[Timing]] = {}
    for _ in range(repeats):
        for action in actions.values():
            for name, timing in action().items():
                samples.setdefault(name, []).append(timing)
    medians = {
        name: Timing(
            statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
        )
        for name, timings in samples.items()
    }
    print(f"{rows:,} rows, medians of {repeats} warm runs; noop writes of every column:")
    print(f"  {'stage':10s} {'wall s':>7s} {'rows/s':>10s} {'task CPU s':>10s} {'CPU us/row':>10s}")
    for name, t in medians.items():
        per_row = t.cpu / rows * 1e6
        print(f"  {name:10s} {t.wall:7.2f} {rows / t.wall:10,.0f} {t.cpu:10.2f} {per_row:10.2f}")
    if parsers:
        print("each field's parser alone (cached raw read, minus the bare column), task CPU:")
        for name, cpu in parser_cpu(spark, ui, files, repeats).items():
            print(f"  {name:14s} {cpu:6.2f} s  {cpu / rows * 1e6:6.2f} us/row")
    spark.stop()
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--events-per-file", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parsers", action="store_true", help="also time each field's parser")
    parser.add_argument("--connect", help="sc:// URL of a running server (default: start one)")
    parser.add_argument("--data", type=Path, help="directory of generated files to reuse")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ecom-bench-spark-"))
    data = args.data or home / "input"
    if not any(data.glob("*.csv")):
        generate(data, args.files, args.events_per_file)
    paths = list(data.glob("*.csv"))
    rows = sum(1 for path in paths for _ in path.open()) - len(paths)  # minus the headers
    server = None if args.connect else LocalSparkConnect(root=home / "spark", port=free_port())
    process = server.start() if server else None
    try:
        if server and process:
            server.wait_ready(process, timeout_s=180)
        url = args.connect or (server.url if server else "")
        medians = run(url, data, rows, args.repeats, args.parsers)
    finally:
        if process:
            stop_group(process.pid)
        shutil.rmtree(home, ignore_errors=True)
    rates = " ".join(
        f"{name}_rows_per_s={rows / t.wall:.0f} {name}_cpu_us_per_row={t.cpu / rows * 1e6:.2f}"
        for name, t in medians.items()
    )
    print(f"RESULT rows={rows} {rates}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ECOM_ENV_FILE", os.devnull)  # defaults, not the developer's .env
    sys.exit(main())
