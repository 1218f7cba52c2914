"""Ingest one partition: claim its pending files, run them through Spark, commit, move them.

This is the use case behind the ingest assets, free of Dagster so it can be driven and tested
directly. A run takes the settled files of its partition waiting when it starts, in batches of at
most ECOM_INGEST_MAX_FILES_PER_RUN, so a backlog drains in one run and a run still ends while new
files keep arriving (the sensor requests another run for those). Every step is safe to repeat
after a crash (see resources/event_sink.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from pyspark.sql import DataFrame, SparkSession

from ecom_assets.monitoring.logs import LogSink
from ecom_assets.partitions import produced_at
from ecom_assets.resources.event_files import (
    InputFile,
    list_input_files,
    move_to_processed,
    quarantine,
    sha256_of,
)
from ecom_assets.resources.event_reader import ReadableFile, read_event_files
from ecom_assets.resources.event_sink import (
    FileOutcome,
    StagingTables,
    commit_batch,
    prepare_staging,
    stage,
)
from ecom_assets.resources.file_ledger import (
    Fingerprinted,
    claim_files,
    mark_failed,
    mark_quarantined,
)
from ecom_assets.schema.detection import detect_file
from ecom_assets.settings import Settings
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    dead_letters,
    file_metrics,
    valid_events,
)
from ecom_assets.transforms.validate import ValidationRules, validate_events


class PartitionBusyError(RuntimeError):
    """Another run holds the partition; runs of one partition never overlap."""


class StagingMismatchError(RuntimeError):
    """Spark staged a different number of rows than it counted: nothing is committed."""


@dataclass
class IngestReport:
    """What one run did to its partition, for run metadata, checks and logs."""

    partition: str
    run_id: str
    batches: int = 0
    files_committed: int = 0
    files_already_committed: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_valid: int = 0
    rows_invalid: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_late: int = 0
    error_counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def validity_rate(self) -> float | None:
        return self.rows_valid / self.rows_read if self.rows_read else None

    def add(self, outcomes: Sequence[FileOutcome], inserted: dict[str, int]) -> None:
        for outcome in outcomes:
            self.files_committed += 1
            self.rows_read += outcome.rows_read
            self.rows_valid += outcome.rows_valid
            self.rows_invalid += outcome.rows_invalid
            self.rows_late += outcome.rows_late
            self.rows_inserted += inserted.get(outcome.source_file, 0)
            self.rows_duplicate += outcome.rows_valid - inserted.get(outcome.source_file, 0)
            self.error_counts.update(outcome.error_counts)


def _lock_key(partition: str) -> int:
    return int.from_bytes(hashlib.sha256(partition.encode()).digest()[:8], "big", signed=True)


def pending_files(settings: Settings, partition: str, now: datetime) -> list[InputFile]:
    files = list_input_files(settings.input_dir, settings.ingestion.file_settle_s, now)
    return [file for file in files if file.partition == partition]


def ingest_partition(
    spark: SparkSession,
    url: str,
    settings: Settings,
    partition: str,
    run_id: str,
    log: LogSink,
    clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
) -> IngestReport:
    """Ingest the settled files of partition waiting at the start; returns this run's totals."""
    report = IngestReport(partition=partition, run_id=run_id)
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(partition),))
        if not locked.fetchone()[0]:
            raise PartitionBusyError(f"another run is ingesting partition {partition}")
        # the files waiting now, no more: new arrivals belong to the next run, so a run ends
        # even while a producer writes faster than one batch takes
        waiting = {file.name for file in pending_files(settings, partition, clock())}
        while True:
            batch = [f for f in pending_files(settings, partition, clock()) if f.name in waiting]
            batch = batch[: settings.ingestion.max_files_per_run]
            if not batch:
                break
            waiting.difference_update(file.name for file in batch)
            report.batches += 1
            _ingest_batch(spark, conn, url, settings, report, batch, log, clock)
    report.seconds = time.monotonic() - started
    return report


def _ingest_batch(
    spark: SparkSession,
    conn: psycopg.Connection,
    url: str,
    settings: Settings,
    report: IngestReport,
    batch: list[InputFile],
    log: LogSink,
    clock: Callable[[], datetime],
) -> None:
    began = time.monotonic()
    claim = claim_files(conn, report.run_id, [Fingerprinted(f, sha256_of(f.path)) for f in batch])
    for item in claim.already_committed:
        move_to_processed(item.file.path, settings.processed_dir, item.file.partition)
        report.files_already_committed += 1
    for item in claim.name_reused:
        reason = "a file of this name was already ingested with different content; rename it"
        quarantine(item.file.path, settings.quarantine_dir, {"reason": reason})
        report.quarantined[item.file.name] = reason
    readable = []
    for item in claim.to_process:
        header = detect_file(item.file.path)
        if header.ingestible:
            arrived_at = produced_at(item.file.name, item.file.modified_at)
            readable.append(
                ReadableFile(item.file.path, header, arrived_at, landed_at=item.file.modified_at)
            )
            continue
        quarantine(item.file.path, settings.quarantine_dir, header.as_dict())
        mark_quarantined(conn, item.file.name, header.reason)
        report.quarantined[item.file.name] = header.reason
    if not readable:
        return
    try:
        outcomes, inserted = _process(spark, conn, url, settings, report, readable, clock, began)
    except Exception as exc:
        mark_failed(conn, report.run_id, f"{type(exc).__name__}: {exc}")
        raise
    report.add(outcomes, inserted)
    for file in readable:
        move_to_processed(file.path, settings.processed_dir, report.partition)
    log.info(
        f"[Batch {report.batches}] {len(readable)} file(s), "
        f"{sum(o.rows_read for o in outcomes)} rows committed in {time.monotonic() - began:.2f} s"
    )


def _process(
    spark: SparkSession,
    conn: psycopg.Connection,
    url: str,
    settings: Settings,
    report: IngestReport,
    readable: list[ReadableFile],
    clock: Callable[[], datetime],
    began: float,
) -> tuple[list[FileOutcome], dict[str, int]]:
    now = clock()
    rules = ValidationRules.from_settings(settings.quality, now)
    events = enrich_events(
        validate_events(read_event_files(spark, readable), rules),
        late_watermark_s=settings.quality.late_watermark_s,
        processed_at=now,
    ).cache()
    try:
        tables = StagingTables.for_partition(report.partition)
        prepare_staging(conn, tables)
        outcomes = _outcomes(file_metrics(events), readable, began)
        staged_valid = stage(valid_events(events), url, tables.events, EVENT_COLUMNS)
        staged_dead = stage(dead_letters(events), url, tables.dead_letters, DEAD_LETTER_COLUMNS)
        counted_valid = sum(outcome.rows_valid for outcome in outcomes)
        counted_dead = sum(outcome.rows_invalid for outcome in outcomes)
        if (staged_valid, staged_dead) != (counted_valid, counted_dead):
            raise StagingMismatchError(
                f"staged {staged_valid} valid / {staged_dead} invalid rows, "
                f"counted {counted_valid} / {counted_dead}"
            )
        inserted = commit_batch(
            conn,
            tables,
            EVENT_COLUMNS,
            DEAD_LETTER_COLUMNS,
            report.run_id,
            report.partition,
            outcomes,
        )
    finally:
        events.unpersist()
    return outcomes, inserted


def _outcomes(metrics: DataFrame, readable: list[ReadableFile], began: float) -> list[FileOutcome]:
    """Spark's per-file counts, with a zero row for files that had a header but no rows."""
    by_file = {row["source_file"]: row for row in metrics.collect()}
    elapsed = time.monotonic() - began
    outcomes = []
    for file in readable:
        row = by_file.get(file.path.name)
        outcomes.append(
            FileOutcome(
                source_file=file.path.name,
                schema_version=file.header.version.name if file.header.version else None,
                rows_read=row["rows_read"] if row else 0,
                rows_valid=row["rows_valid"] if row else 0,
                rows_invalid=row["rows_invalid"] if row else 0,
                rows_late=row["rows_late"] if row else 0,
                error_counts=_codes(row["error_counts"]) if row else {},
                landed_at=file.landed_at,
                processing_s=elapsed,
            )
        )
    return outcomes


def _codes(error_counts: str) -> dict[str, int]:
    """file_metrics' JSON object of code -> rows."""
    return {code: int(rows) for code, rows in json.loads(error_counts).items()}
