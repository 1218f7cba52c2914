"""Ingest one partition: claim its pending files, run them through Spark, commit, move them.

This is the use case behind the ingest assets, free of Dagster so it can be driven and tested
directly. A run takes the settled files of its partition waiting when it starts, in batches of at
most ECOM_INGEST_MAX_FILES_PER_RUN, so a backlog drains in one run. It then stays a warm worker
for its partition: for ECOM_INGEST_MAX_RUN_S after its start it takes files that arrive meanwhile,
waiting up to ECOM_INGEST_LINGER_S for the next one, since a new run costs seconds of process
launch and Spark session before its first batch (docs/decisions.md). It ends early when files of
another partition wait, so one hour's run never holds up the next. Every step is safe to repeat
after a crash (see resources/event_sink.py).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from pyspark.sql import DataFrame, SparkSession

from ecom_assets.monitoring.alerts import raise_batch_alerts
from ecom_assets.monitoring.batches import BatchRecord, quality_status, record_batch
from ecom_assets.monitoring.logs import LogSink
from ecom_assets.reliability import configure_spark_retries, describe_error, guard_for
from ecom_assets.resources.event_files import (
    InputFile,
    is_utf8_name,
    list_input_files,
    move_to_processed,
    printable_name,
    quarantine,
    sha256_of,
)
from ecom_assets.resources.event_reader import ReadableFile, read_event_files
from ecom_assets.resources.event_sink import (
    FileOutcome,
    StagingTables,
    commit_batch,
    prepare_staging,
    stage_routed,
    staged_rows,
)
from ecom_assets.resources.file_ledger import (
    Fingerprinted,
    claim_files,
    mark_failed,
    mark_quarantined,
)
from ecom_assets.resources.spark import tune_for_ingest
from ecom_assets.schema.detection import detect_file
from ecom_assets.settings import QualitySettings, Settings
from ecom_assets.transforms.arrow_routing import FileCounts
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import ValidationRules, validate_events

NON_UTF8_NAME = "the file name is not UTF-8 (the ledger cannot store it): rename the file"
FAILURE_CONNECT_TIMEOUT_S = 3  # recording a failure must not wait long on a server that is down


class PartitionBusyError(RuntimeError):
    """Another run holds the partition; runs of one partition never overlap."""


class StagingMismatchError(RuntimeError):
    """The staging tables hold other row counts than Spark's tasks counted (a task's COPY
    committed twice or not at all): nothing is committed, the batch is retried."""


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
    retries: int = 0
    breakers: dict[str, str] = field(default_factory=dict)
    breaker_transitions: list[str] = field(default_factory=list)

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


def _connect(url: str, timeout_s: int) -> psycopg.Connection:
    """An autocommit connection: each statement of a batch outside its commit stands alone."""
    return psycopg.connect(url, autocommit=True, connect_timeout=timeout_s)


def _lock_key(partition: str) -> int:
    return int.from_bytes(hashlib.sha256(partition.encode()).digest()[:8], "big", signed=True)


LINGER_POLL_S = 0.5
"""How often a lingering run looks for new files: well under the settle time of a file."""


def pending_files(settings: Settings, partition: str, now: datetime) -> list[InputFile]:
    files = list_input_files(settings.input_dir, settings.ingestion.file_settle_s, now)
    return [file for file in files if file.partition == partition]


def next_files(
    settings: Settings,
    partition: str,
    waiting: set[str],
    taken: set[str],
    started: float,
    clock: Callable[[], datetime],
) -> list[InputFile]:
    """The next batch's files; empty when the run should end.

    Files waiting at the run's start (``waiting``) come first, whatever happens. Then, while the
    run is younger than max_run_s and no other partition has files waiting, new arrivals of the
    partition, polled for up to linger_s. A file this run already ``taken`` is never taken again,
    so one that a batch left behind cannot keep a run busy. ``started`` is ``time.monotonic()``.
    """
    ingestion = settings.ingestion
    linger_until = time.monotonic() + ingestion.linger_s
    while True:
        files = list_input_files(settings.input_dir, ingestion.file_settle_s, clock())
        mine = [file for file in files if file.partition == partition and file.name not in taken]
        from_start = [file for file in mine if file.name in waiting]
        if from_start:
            return from_start[: ingestion.max_files_per_run]
        others_wait = any(file.partition != partition for file in files)
        if others_wait or time.monotonic() - started >= ingestion.max_run_s:
            return []
        if mine:
            return mine[: ingestion.max_files_per_run]
        if time.monotonic() >= linger_until:
            return []
        time.sleep(LINGER_POLL_S)


def _no_step(_: str) -> None:
    pass


@dataclass(frozen=True)
class _Batch:
    """One batch attempt's fixed inputs."""

    number: int
    files: list[InputFile]
    started_at: datetime
    on_step: Callable[[str], None]


def ingest_partition(
    spark: SparkSession,
    url: str,
    settings: Settings,
    partition: str,
    run_id: str,
    log: LogSink,
    clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    on_step: Callable[[str], None] = _no_step,
) -> IngestReport:
    """Ingest the partition's waiting files, then its arrivals (``next_files``); the run's totals.

    Each batch is one retried, idempotent unit (reliability.Guard). ``on_step`` is called at
    each point where a crash leaves a different state behind (claimed, staged, commit_pending,
    committed, moved); the fault tests kill the process there.
    """
    guard = guard_for(settings.reliability)
    guard.attach(log)
    configure_spark_retries(spark, settings.reliability)
    retries_before, transitions_before = guard.retries, len(guard.transitions)
    report = IngestReport(partition=partition, run_id=run_id)
    started = time.monotonic()
    waiting = {file.name for file in pending_files(settings, partition, clock())}
    taken: set[str] = set()
    try:
        while files := next_files(settings, partition, waiting, taken, started, clock):
            taken.update(file.name for file in files)
            report.batches += 1
            batch = _Batch(report.batches, files, clock(), on_step)
            try:
                record = guard.call(
                    functools.partial(_ingest_batch, spark, url, settings, report, batch, clock),
                    f"[Batch {batch.number}]",
                )
            except Exception as exc:
                _record_failure(url, settings, report, batch, exc, log)
                raise
            if record is not None:  # the batch committed rows, not only moves and quarantines
                _log_success(record, settings, log)
                _raise_alerts(url, settings, record, log)
    finally:
        report.seconds = time.monotonic() - started
        report.retries = guard.retries - retries_before
        report.breakers = guard.states()
        report.breaker_transitions = [
            f"{t.breaker}: {t.old} -> {t.new}" for t in guard.transitions[transitions_before:]
        ]
    return report


def _ingest_batch(
    spark: SparkSession,
    url: str,
    settings: Settings,
    report: IngestReport,
    batch: _Batch,
    clock: Callable[[], datetime],
) -> BatchRecord | None:
    """One attempt at a batch, on its own connection: safe to repeat after any failure.

    Returns the committed batch's record, None when no file of it had rows to commit.
    """
    began = time.monotonic()
    with _connect(url, settings.database.db_connect_timeout_s) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(report.partition),))
        if not locked.fetchone()[0]:
            raise PartitionBusyError(f"another run is ingesting partition {report.partition}")
        files = []
        for file in batch.files:
            if not file.path.exists():
                continue  # a repeated attempt skips what the failed one already moved away
            if is_utf8_name(file.name):
                files.append(file)
                continue
            quarantine(file.path, settings.quarantine_dir, {"reason": NON_UTF8_NAME})
            report.quarantined[printable_name(file.name)] = NON_UTF8_NAME
        claim = claim_files(
            conn, report.run_id, [Fingerprinted(f, sha256_of(f.path)) for f in files]
        )
        batch.on_step("claimed")
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
                readable.append(ReadableFile.landed(item.file.path, header, item.file.modified_at))
                continue
            quarantine(item.file.path, settings.quarantine_dir, header.as_dict())
            mark_quarantined(conn, item.file.name, header.reason)
            report.quarantined[item.file.name] = header.reason
        if not readable:
            return None
        record = _process(spark, conn, url, settings, report, readable, batch, clock, began)
    for file in readable:
        move_to_processed(file.path, settings.processed_dir, report.partition)
        batch.on_step("moved")
    return record


def _process(
    spark: SparkSession,
    conn: psycopg.Connection,
    url: str,
    settings: Settings,
    report: IngestReport,
    readable: list[ReadableFile],
    batch: _Batch,
    clock: Callable[[], datetime],
    began: float,
) -> BatchRecord:
    tables = StagingTables.for_partition(report.partition)
    prepare_staging(conn, tables)
    events = routed(event_plan(spark, readable, settings.quality, clock()))
    outcomes = _outcomes(stage_routed(events, url, tables), readable, began)
    batch.on_step("staged")
    counted = (
        sum(outcome.rows_valid for outcome in outcomes),
        sum(outcome.rows_invalid for outcome in outcomes),
    )
    staged = staged_rows(conn, tables)
    if staged != counted:
        raise StagingMismatchError(
            f"staged {staged[0]} valid / {staged[1]} invalid rows, "
            f"counted {counted[0]} / {counted[1]}"
        )
    with conn.transaction():
        inserted = commit_batch(conn, tables, report.run_id, report.partition, outcomes)
        record = _batch_record(conn, report, batch, outcomes)
        record_batch(conn, record, settings.quality.min_validity)
        batch.on_step("commit_pending")
    batch.on_step("committed")
    report.add(outcomes, inserted)
    return record


def event_plan(
    spark: SparkSession, files: list[ReadableFile], quality: QualitySettings, now: datetime
) -> DataFrame:
    """The files read, migrated, validated and enriched: every row with its codes, uncached.

    Tunes the session first (``tune_for_ingest``); inside a batch, so that this first call to
    the server is guarded like the rest.
    """
    tune_for_ingest(spark)
    return enrich_events(
        validate_events(
            read_event_files(spark, files), ValidationRules.from_settings(quality, now)
        ),
        late_watermark_s=quality.late_watermark_s,
        processed_at=now,
    )


def _batch_record(
    conn: psycopg.Connection, report: IngestReport, batch: _Batch, outcomes: list[FileOutcome]
) -> BatchRecord:
    """The committed batch as one record; latency as the metrics just computed it."""
    latency = conn.execute(
        "SELECT max(latency_s) FROM data_quality_metrics "
        "WHERE run_id = %s AND source_file = ANY(%s)",
        (report.run_id, [outcome.source_file for outcome in outcomes]),
    ).fetchone()[0]
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.error_counts)
    return BatchRecord(
        run_id=report.run_id,
        batch_no=batch.number,
        partition_key=report.partition,
        started_at=batch.started_at,
        files=len(outcomes),
        rows_read=sum(outcome.rows_read for outcome in outcomes),
        rows_valid=sum(outcome.rows_valid for outcome in outcomes),
        rows_invalid=sum(outcome.rows_invalid for outcome in outcomes),
        max_latency_s=latency,
        error_counts=dict(errors),
    )


def _log_success(record: BatchRecord, settings: Settings, log: LogSink) -> None:
    log.info(
        f"[Batch {record.batch_no}] COMPLETED SUCCESSFULLY - partition {record.partition_key}, "
        f"{record.files} file(s), {record.rows_read} rows ({record.rows_valid} valid, "
        f"{record.rows_invalid} invalid), latency {record.max_latency_s or 0:.1f} s"
    )
    status = quality_status(record.validity_rate, settings.quality.min_validity)
    if status is None:
        return
    line = f"[Batch {record.batch_no}] Quality: {status} - {record.validity_rate:.1%} valid"
    (log.warning if status == "POOR" else log.info)(line)


def _raise_alerts(url: str, settings: Settings, record: BatchRecord, log: LogSink) -> None:
    """Judge the committed batch; a monitoring fault must not fail a batch already committed."""
    try:
        with _connect(url, settings.database.db_connect_timeout_s) as conn:
            raise_batch_alerts(conn, record, settings, log)
    except psycopg.Error as exc:
        log.warning(f"[Batch {record.batch_no}] alerts not evaluated: {describe_error(exc)}")


def _record_failure(
    url: str,
    settings: Settings,
    report: IngestReport,
    batch: _Batch,
    exc: Exception,
    log: LogSink,
) -> None:
    """Log the failed batch, release its files' claims and record it, if PostgreSQL answers."""
    reason = describe_error(exc)
    log.error(f"[Batch {batch.number}] FAILED - {reason}")
    try:
        with _connect(url, FAILURE_CONNECT_TIMEOUT_S) as conn:
            mark_failed(conn, report.run_id, reason)
            failed = BatchRecord(
                run_id=report.run_id,
                batch_no=batch.number,
                partition_key=report.partition,
                started_at=batch.started_at,
                status="failed",
                files=len(batch.files),
                error=reason,
            )
            record_batch(conn, failed, settings.quality.min_validity)
    except psycopg.Error as db_exc:
        log.warning(f"[Batch {batch.number}] failure not recorded: {describe_error(db_exc)}")


def _outcomes(
    counts: dict[str, FileCounts], readable: list[ReadableFile], began: float
) -> list[FileOutcome]:
    """The tasks' counts per file, with a zero row for files that had a header but no rows."""
    elapsed = time.monotonic() - began
    outcomes = []
    for file in readable:
        counted = counts.get(file.path.name, FileCounts())
        outcomes.append(
            FileOutcome(
                source_file=file.path.name,
                schema_version=file.header.version.name if file.header.version else None,
                rows_read=counted.rows_read,
                rows_valid=counted.rows_valid,
                rows_invalid=counted.rows_invalid,
                rows_late=counted.rows_late,
                error_counts=dict(counted.error_counts),
                landed_at=file.landed_at,
                processing_s=elapsed,
            )
        )
    return outcomes
