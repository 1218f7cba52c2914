"""Helpers of the fault tests: a generated backlog with its truth, and the exactly-once audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.settings import Settings
from ecom_assets_tests.test_generator_support import generate_files


@dataclass(frozen=True)
class Backlog:
    """Generated files of one partition and what must land: the generator's truth."""

    partition: str
    files: int
    rows: int
    events: int
    dead_letters: int


def generate_backlog(settings: Settings, truth_dir: Path, files: int, events: int) -> Backlog:
    """Files of one hourly partition, 10 % anomalies.

    They start at most 10 minutes ago and within the current hour: one partition, and the
    generator's future-time anomalies (1 h or more ahead of its clock) stay in the future.
    """
    now = datetime.now(tz=UTC)
    start = max(now.replace(minute=0, second=0, microsecond=0), now - timedelta(minutes=10))
    generate_files(settings.input_dir, settings.log_dir, start, "--truth-dir", str(truth_dir),
                   "--interval", "1", "--files", str(files), "--events-per-file", str(events),
                   "--schema", "mixed", "--seed", "5", "--anomaly-rate", "0.1")  # fmt: skip
    truths = [json.loads(path.read_text()) for path in sorted(truth_dir.glob("*.json"))]
    rows = sum(t["rows"] for t in truths)
    invalid = sum(t["invalid"] for t in truths)
    return Backlog(
        partition=start.strftime(PARTITION_FORMAT),
        files=len(truths),
        rows=rows,
        events=rows - invalid - sum(t["replayed"] for t in truths),
        dead_letters=invalid,
    )


@dataclass(frozen=True)
class Landed:
    """Where a backlog's rows ended, counted in PostgreSQL and on disk."""

    events: int
    dead_letters: int
    rows_read: int
    files_committed: int
    metric_rows_per_file: set[int]
    staging_tables: int
    left_in_input: int
    processed: int


def landed(url: str, settings: Settings) -> Landed:
    with psycopg.connect(url) as conn:

        def one(query: str) -> int:
            return conn.execute(query).fetchone()[0]

        per_file = conn.execute(
            "SELECT DISTINCT n FROM (SELECT count(*) AS n FROM data_quality_metrics "
            "GROUP BY source_file) AS counts"
        ).fetchall()
        return Landed(
            events=one("SELECT count(*) FROM ecommerce_events"),
            dead_letters=one("SELECT count(*) FROM dead_letter_events"),
            rows_read=one("SELECT coalesce(sum(rows_read), 0) FROM data_quality_metrics"),
            files_committed=one("SELECT count(*) FROM ingest_files WHERE status = 'committed'"),
            metric_rows_per_file={row[0] for row in per_file},
            staging_tables=one("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stage_%'"),
            left_in_input=len(list(settings.input_dir.glob("*.csv"))),
            processed=len(list(settings.processed_dir.glob("*/*.csv"))),
        )


def exactly_once(backlog: Backlog) -> Landed:
    """What `landed` must report after the backlog was ingested once, whatever happened on the way:
    every row in one table, one metrics row per file, no staging left, every file processed."""
    return Landed(
        events=backlog.events,
        dead_letters=backlog.dead_letters,
        rows_read=backlog.rows,
        files_committed=backlog.files,
        metric_rows_per_file={1},
        staging_tables=0,
        left_in_input=0,
        processed=backlog.files,
    )


class RecordingLog:
    """A LogSink keeping its lines, to assert what a run said about its faults."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("INFO", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("WARNING", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("ERROR", msg))

    def text(self) -> str:
        return "\n".join(f"{level} {msg}" for level, msg in self.lines)
