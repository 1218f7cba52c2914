"""One batch of a partition's files, in two phases that ingest.py overlaps across batches.

``stage_batch`` claims the files, quarantines what cannot be read and runs the one Spark pass
that COPYs valid rows and dead letters into the batch's staging tables; ``commit_staged`` checks
the staged rows against Spark's counts and moves them in ONE transaction with the metrics and
the ledger, then moves the files. The run commits batches N and N+1 at once while Spark stages
batch N+2, so staging slots rotate, and the run (not each batch) holds the partition's lock
(``PartitionLock``). Every step is safe to repeat after a crash (see resources/event_sink.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from pyspark.sql import SparkSession

from ecom_assets.monitoring.batches import BatchRecord, record_batch
from ecom_assets.resources.catalogue import read_catalogue
from ecom_assets.resources.event_files import (
    InputFile,
    is_utf8_name,
    move_to_processed,
    printable_name,
    quarantine,
)
from ecom_assets.resources.event_reader import ReadableFile, file_names
from ecom_assets.resources.event_sink import (
    STAGING_SLOTS,
    FileOutcome,
    StagingTables,
    commit_batch,
    drop_staging,
    prepare_staging,
    stage_routed,
    staged_rows,
)
from ecom_assets.resources.file_ledger import (
    Failures,
    Fingerprinted,
    claim_files,
    mark_quarantined,
)
from ecom_assets.resources.pgpass import pgpass_file
from ecom_assets.schema.contract import Contract
from ecom_assets.schema.detection import scan_file
from ecom_assets.settings import Settings
from ecom_assets.transforms.arrow_routing import FileCounts
from ecom_assets.transforms.file_rows import FileRows

NON_UTF8_NAME = "the file name is not UTF-8 (the ledger cannot store it): rename the file"
NAME_REUSED = "a file of this name was already ingested with different content; rename it"


class PartitionBusyError(RuntimeError):
    """Another run holds the partition; runs of one partition never overlap."""


class StagingMismatchError(RuntimeError):
    """The staging tables hold other row counts than Spark's tasks counted (a task's COPY
    committed twice, or staging lost in a server crash): nothing is committed."""


def connect(url: str, timeout_s: int) -> psycopg.Connection:
    """An autocommit connection: each statement outside a commit stands alone."""
    return psycopg.connect(url, autocommit=True, connect_timeout=timeout_s)


class PartitionLock:
    """The run's hold on its partition: a session advisory lock on a connection of its own.

    Held by the run rather than by each batch's connection, since one batch's commit and the
    next one's staging run at once on two connections. ``ensure`` is called at the start of
    every batch attempt: it takes the lock again if the connection was lost (a PostgreSQL
    restart releases it), and fails if another run took it meanwhile.
    """

    def __init__(self, url: str, timeout_s: int, partition: str) -> None:
        self._url, self._timeout_s, self._partition = url, timeout_s, partition
        self._conn: psycopg.Connection | None = None
        self._first = True

    def ensure(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return
            except psycopg.Error:
                self.release()
        conn = connect(self._url, self._timeout_s)
        key = int.from_bytes(
            hashlib.sha256(self._partition.encode()).digest()[:8], "big", signed=True
        )
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            conn.close()
            raise PartitionBusyError(f"another run is ingesting partition {self._partition}")
        self._conn = conn
        if self._first:  # a crashed run's staging, in any slot, is ours to drop
            self._drop_staging(conn)
            self._first = False

    def drop_staging(self) -> None:
        """Drop the run's staging at its end (a commit leaves its own to the slot's next batch,
        which a later commit may still read); if PostgreSQL is gone, the next run does."""
        if self._conn is None:
            return
        try:
            self._drop_staging(self._conn)
        except psycopg.Error:
            self.release()

    def _drop_staging(self, conn: psycopg.Connection) -> None:
        for slot in range(STAGING_SLOTS):
            drop_staging(conn, StagingTables.for_partition(self._partition, slot))

    def release(self) -> None:
        """Unlock, then close: a closed connection's backend lets the lock go only when it has
        exited, after close() returns, and the partition's next run (at once, in the same
        process) found it still held."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # a lost connection holds nothing
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class Batch:
    """One batch's fixed inputs; staging slots rotate, so the batches committing and the one
    staging never share one."""

    number: int
    files: list[InputFile]
    started_at: datetime
    on_step: Callable[[str], None]

    @property
    def slot(self) -> int:
        return self.number % STAGING_SLOTS


@dataclass
class Staged:
    """What staging a batch did: files quarantined or already committed, rows staged."""

    batch: Batch
    began: float
    readable: list[ReadableFile] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    already_committed: int = 0


@dataclass(frozen=True)
class Committed:
    """A committed batch: its record, its files' counts and the rows each file inserted."""

    record: BatchRecord
    outcomes: list[FileOutcome]
    inserted: dict[str, int]


def stage_batch(
    spark: SparkSession,
    url: str,
    settings: Settings,
    partition: str,
    run_id: str,
    lock: PartitionLock,
    batch: Batch,
    now: Callable[[], datetime],
    contract: Contract,
) -> Staged:
    """One attempt at staging a batch under ``contract`` and the catalogue loaded now: safe to
    repeat after any failure."""
    staged = Staged(batch, time.monotonic())
    lock.ensure()
    with connect(url, settings.database.db_connect_timeout_s) as conn:
        files = []
        for file in batch.files:
            if not file.path.exists():
                continue  # a repeated attempt skips what the failed one already moved away
            if is_utf8_name(file.name):
                files.append(file)
                continue
            quarantine(file.path, settings.quarantine_dir, {"reason": NON_UTF8_NAME})
            staged.quarantined[printable_name(file.name)] = NON_UTF8_NAME
        scans = {file.name: scan_file(file.path, settings.ingestion.max_file_mb) for file in files}
        fingerprinted = [Fingerprinted(file, scans[file.name].sha256) for file in files]
        claim = claim_files(conn, run_id, fingerprinted)
        batch.on_step("claimed")
        for item in claim.already_committed:
            move_to_processed(item.file.path, settings.processed_dir, item.file.partition)
            staged.already_committed += 1
        for item in claim.name_reused:
            quarantine(item.file.path, settings.quarantine_dir, {"reason": NAME_REUSED})
            staged.quarantined[item.file.name] = NAME_REUSED
        for item in claim.to_process:
            if (gave_up := _gave_up(claim.failures.get(item.file.name), settings)) is not None:
                quarantine(item.file.path, settings.quarantine_dir, {"reason": gave_up})
                mark_quarantined(conn, item.file.name, gave_up)
                staged.quarantined[item.file.name] = gave_up
                continue
            header = scans[item.file.name].header
            if header.ingestible:
                landed = ReadableFile.landed(
                    item.file.path, header, item.file.modified_at, item.sha256
                )
                staged.readable.append(landed)
                continue
            quarantine(item.file.path, settings.quarantine_dir, header.as_dict())
            mark_quarantined(conn, item.file.name, header.reason)
            staged.quarantined[item.file.name] = header.reason
        if staged.readable:
            tables = StagingTables.for_partition(partition, batch.slot)
            prepare_staging(conn, tables)
            catalogue = read_catalogue(conn)
            rows = FileRows.of(staged.readable, contract, catalogue, settings.quality, now())
            names = file_names(spark, staged.readable)
            passfile = pgpass_file(settings.paths.state)
            counts = stage_routed(names, url, tables, rows, passfile)
            staged.outcomes = _outcomes(counts, staged.readable, staged.began)
    return staged


def _gave_up(failures: Failures | None, settings: Settings) -> str | None:
    """The quarantine reason of a file that failed ECOM_INGEST_MAX_FILE_FAILURES times."""
    limit = settings.ingestion.max_file_failures
    if failures is None or failures.count < limit:
        return None
    return (
        f"failed {failures.count} times (ECOM_INGEST_MAX_FILE_FAILURES={limit}); "
        f"last: {failures.last_error or 'unknown'}"
    )


def commit_staged(
    url: str,
    settings: Settings,
    partition: str,
    run_id: str,
    staged: Staged,
    earlier: StagingTables | None = None,
    after_earlier: Callable[[], None] | None = None,
) -> Committed:
    """Commit a staged batch, then move its files; a failed commit is retried as the whole
    batch (a repeated commit would not know what its first attempt did).

    The batch before it may be committing at the same time: this one leaves it the events that
    it staged too (``earlier``), and sends its COMMIT only after ``after_earlier`` returned, which
    waits for that batch's commit and raises if it failed. So batches commit in order, and no
    event is counted as held by an earlier batch that did not commit."""
    batch, outcomes = staged.batch, staged.outcomes
    tables = StagingTables.for_partition(partition, batch.slot)
    with connect(url, settings.database.db_connect_timeout_s) as conn:
        counted = (
            sum(outcome.rows_valid for outcome in outcomes),
            sum(outcome.rows_invalid for outcome in outcomes),
        )
        in_staging = staged_rows(conn, tables)
        if in_staging != counted:
            raise StagingMismatchError(
                f"staged {in_staging[0]} valid / {in_staging[1]} invalid rows, "
                f"counted {counted[0]} / {counted[1]}"
            )
        with conn.transaction():
            committed = commit_batch(conn, tables, run_id, partition, outcomes, earlier)
            outcomes = committed.outcomes  # a conflicting duplicate counts as invalid
            record = _batch_record(conn, run_id, partition, batch, outcomes)
            record_batch(conn, record, settings.quality.min_validity)
            batch.on_step("commit_pending")
            if after_earlier is not None:
                after_earlier()
        batch.on_step("committed")
    for file in staged.readable:
        move_to_processed(file.path, settings.processed_dir, partition)
        batch.on_step("moved")
    return Committed(record, outcomes, committed.inserted)


def _batch_record(
    conn: psycopg.Connection,
    run_id: str,
    partition: str,
    batch: Batch,
    outcomes: list[FileOutcome],
) -> BatchRecord:
    """The committed batch as one record; latency as the metrics just computed it."""
    latency = conn.execute(
        "SELECT max(latency_s) FROM data_quality_metrics "
        "WHERE run_id = %s AND source_file = ANY(%s)",
        (run_id, [outcome.source_file for outcome in outcomes]),
    ).fetchone()[0]
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.error_counts)
        warnings.update(outcome.warning_counts)
    return BatchRecord(
        run_id=run_id,
        batch_no=batch.number,
        partition_key=partition,
        started_at=batch.started_at,
        files=len(outcomes),
        rows_read=sum(outcome.rows_read for outcome in outcomes),
        rows_valid=sum(outcome.rows_valid for outcome in outcomes),
        rows_invalid=sum(outcome.rows_invalid for outcome in outcomes),
        max_latency_s=latency,
        error_counts=dict(errors),
        rows_warned=sum(outcome.rows_warned for outcome in outcomes),
        warning_counts=dict(warnings),
    )


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
                rows_warned=counted.rows_warned,
                warning_counts=dict(counted.warning_counts),
                unknown_columns=file.header.extra,
            )
        )
    return outcomes
