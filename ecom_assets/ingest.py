"""Ingest one partition: claim its pending files, run them through Spark, commit, move them.

This is the use case behind the ingest assets, free of Dagster so it can be driven and tested
directly. A run takes the settled files of its partition waiting when it starts, in batches of at
most ECOM_INGEST_MAX_FILES_PER_RUN files and ECOM_INGEST_MAX_BATCH_MB, so a backlog drains in one
run; it commits two batches at once while Spark stages the next (ingest_batch.py). It then
stays a warm worker for its partition: for ECOM_INGEST_MAX_RUN_S after its start it takes files
that arrive meanwhile, waiting up to ECOM_INGEST_LINGER_S for the next one, since a new run costs
seconds of process launch and Spark session before its first batch (docs/decisions.md). It ends
early when files of another partition wait, so one hour's run never holds up the next, and when
its caller asks (``RunControl``: the run is being stopped, or the code it runs has changed). Each
committed batch is handed to ``on_commit`` at once, so the caller can report it while the run goes
on. Every step is safe to repeat after a crash (see resources/event_sink.py).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from pyspark.sql import SparkSession

from ecom_assets.ingest_batch import (
    Batch,
    Committed,
    PartitionLock,
    Staged,
    StagingTables,
    commit_staged,
    connect,
    stage_batch,
)
from ecom_assets.monitoring.alerts import raise_batch_alerts
from ecom_assets.monitoring.batches import BatchRecord, quality_status, record_batch
from ecom_assets.monitoring.logs import LogSink
from ecom_assets.reliability import Guard, configure_spark_retries, describe_error, guard_for
from ecom_assets.resources.event_files import InputFile, list_input_files
from ecom_assets.resources.event_sink import FileOutcome
from ecom_assets.resources.file_ledger import mark_failed
from ecom_assets.schema.contract import Contract
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.settings import Settings

FAILURE_CONNECT_TIMEOUT_S = 3  # recording a failure must not wait long on a server that is down
T = TypeVar("T")


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
    rows_warned: int = 0
    warning_counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    retries: int = 0
    breakers: dict[str, str] = field(default_factory=dict)
    breaker_transitions: list[str] = field(default_factory=list)
    stopped: bool = False
    """The run ended because it was asked to stop (RunControl.stop)."""
    files_left: int = 0
    """Files of the partition still waiting when a stopped run ended: the next run's."""

    @property
    def validity_rate(self) -> float | None:
        return self.rows_valid / self.rows_read if self.rows_read else None

    def add_staged(self, staged: Staged) -> None:
        self.quarantined.update(staged.quarantined)
        self.files_already_committed += staged.already_committed

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
            self.rows_warned += outcome.rows_warned
            self.warning_counts.update(outcome.warning_counts)


LINGER_POLL_S = 0.5
"""How often a lingering run looks for new files: well under the settle time of a file."""


@dataclass
class RunControl:
    """How a caller ends a run early, from another thread.

    ``stop``: take no further batch (the ones staging or committing finish); the run is being
    stopped. ``stop_lingering``: take no further arrival, only the files waiting at the start;
    the code the run executes has changed, so the next run should take the new files.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    stop_lingering: threading.Event = field(default_factory=threading.Event)


def pending_files(settings: Settings, partition: str, now: datetime) -> list[InputFile]:
    files = list_input_files(settings.input_dir, settings.ingestion.file_settle_s, now)
    return [file for file in files if file.partition == partition]


def next_files(
    settings: Settings,
    partition: str,
    waiting: Sequence[InputFile],
    taken: set[str],
    started: float,
    clock: Callable[[], datetime],
    number: int,
    control: RunControl | None = None,
) -> list[InputFile]:
    """The files of the run's batch ``number`` (from 1); empty when the run should end.

    Files waiting at the run's start (``waiting``, as listed then) come first, whatever happens,
    without listing the directory again: a backlog of 10,000 files cost the run a listing per
    batch (stage_batch skips a file that has gone meanwhile). Then, while the run is younger than
    max_run_s and no other partition has files waiting, new arrivals of the partition, polled for
    up to linger_s. A file this run already ``taken`` is never taken again, so one that a batch
    left behind cannot keep a run busy. ``started`` is ``time.monotonic()``. ``control`` ends
    the run early (see RunControl).
    """
    control = control or RunControl()
    if control.stop.is_set():
        return []
    from_start = [file for file in waiting if file.name not in taken]
    if from_start:
        return _batch_of(from_start, settings, number)
    ingestion = settings.ingestion
    linger_until = time.monotonic() + ingestion.linger_s
    while True:
        files = list_input_files(settings.input_dir, ingestion.file_settle_s, clock(), taken)
        mine = [file for file in files if file.partition == partition]
        others_wait = any(file.partition != partition for file in files)
        too_old = time.monotonic() - started >= ingestion.max_run_s
        if others_wait or too_old or control.stop.is_set() or control.stop_lingering.is_set():
            return []
        if mine:
            return _batch_of(mine, settings, number)
        if time.monotonic() >= linger_until:
            return []
        time.sleep(LINGER_POLL_S)


RAMP_BATCHES = 3
"""A run's first batches take 1/8, 1/4 and 1/2 of ECOM_INGEST_MAX_BATCH_MB: the first commit
cannot start before the first batch is staged, and a small first batch starts the commits, the
bound of a backlog, seconds earlier (docs/decisions.md 41)."""


def batch_budget(settings: Settings, number: int) -> int:
    """Bytes of files batch ``number`` (from 1) of a run may take."""
    return (settings.ingestion.max_batch_mb << 20) >> max(0, RAMP_BATCHES + 1 - number)


def _batch_of(files: list[InputFile], settings: Settings, number: int) -> list[InputFile]:
    """The first files, up to max_files_per_run and ``batch_budget`` (at least one file)."""
    budget = batch_budget(settings, number)
    batch: list[InputFile] = []
    for file in files[: settings.ingestion.max_files_per_run]:
        if batch and budget < file.size_bytes:
            break
        batch.append(file)
        budget -= file.size_bytes
    return batch


def _no_step(_: str) -> None:
    pass


def _no_report(_: Committed) -> None:
    pass


def ingest_partition(
    spark: SparkSession,
    url: str,
    settings: Settings,
    partition: str,
    run_id: str,
    log: LogSink,
    clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    on_step: Callable[[str], None] = _no_step,
    contract: Contract | None = None,
    on_commit: Callable[[Committed], None] = _no_report,
    control: RunControl | None = None,
) -> IngestReport:
    """Ingest the partition's waiting files, then its arrivals (``next_files``); the run's totals.

    Rows are judged by ``contract``, by default the file ECOM_CONTRACT_FILE names (read at the
    run's start, so an edited contract applies from the next run on).

    Each batch's staging is one retried, idempotent unit (reliability.Guard); its commit runs in
    a thread while the next batch stages, and a failed commit is retried as the whole batch.
    ``on_step`` is called at each point where a crash leaves a different state behind (claimed,
    staged, commit_pending, committed, moved); the fault tests kill the process there.
    ``on_commit`` receives each committed batch as soon as it is committed, from the thread that
    committed it; ``control`` ends the run early.
    """
    guard = guard_for(settings.reliability)
    guard.attach(log)
    configure_spark_retries(spark, settings.reliability)
    retries_before, transitions_before = guard.retries, len(guard.transitions)
    if contract is None:
        contract = load_contract(settings.paths.contract)
    report = IngestReport(partition, run_id)
    control = control or RunControl()
    run = _Run(spark, url, settings, report, guard, log, clock, contract, on_commit)
    started = time.monotonic()
    waiting = pending_files(settings, partition, clock())
    taken: set[str] = set()
    try:
        in_flight = settings.ingestion.commits_in_flight
        with ThreadPoolExecutor(in_flight, thread_name_prefix="ecom-commit") as committer:
            while files := next_files(
                settings, partition, waiting, taken, started, clock, run.report.batches + 1,
                control,
            ):  # fmt: skip
                taken.update(file.name for file in files)
                run.report.batches += 1
                batch = Batch(run.report.batches, files, clock(), on_step)
                run.stage_and_submit(batch, committer)
            run.finish()  # a failed batch's _guarded has already finished the ones before it
        if control.stop.is_set():
            run.report.stopped = True
            run.report.files_left = len(pending_files(settings, partition, clock()))
    finally:
        run.lock.drop_staging()
        run.lock.release()
        report = run.report
        report.seconds = time.monotonic() - started
        report.retries = guard.retries - retries_before
        report.breakers = guard.states()
        report.breaker_transitions = [
            f"{t.breaker}: {t.old} -> {t.new}" for t in guard.transitions[transitions_before:]
        ]
    return run.report


class EarlierBatchFailedError(RuntimeError):
    """The batch before did not commit, so this one, committing beside it, did not either."""


@dataclass
class _Run:
    """One run's state: up to ``commits_in_flight`` batches committing in the background, in
    order, while the next stages (docs/decisions.md 43 and 48)."""

    spark: SparkSession
    url: str
    settings: Settings
    report: IngestReport
    guard: Guard
    log: LogSink
    clock: Callable[[], datetime]
    contract: Contract
    on_commit: Callable[[Committed], None]
    lock: PartitionLock = field(init=False)
    committing: deque[tuple[Staged, Future[Committed]]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        timeout = self.settings.database.db_connect_timeout_s
        self.lock = PartitionLock(self.url, timeout, self.report.partition)

    def stage_and_submit(self, batch: Batch, committer: ThreadPoolExecutor) -> None:
        """Stage the batch (earlier ones commit meanwhile), then commit it in the background
        once fewer than ``commits_in_flight`` commits are left."""
        staged = self._guarded(batch, functools.partial(self._stage, batch))
        self.finish(keep=self.settings.ingestion.commits_in_flight - 1)
        self.report.add_staged(staged)
        if not staged.readable:
            return  # only moves and quarantines: nothing to commit
        batch.on_step("staged")
        earlier, after_earlier = None, None
        if self.committing:  # the batch before is still committing: leave it its events
            before, future = self.committing[-1]
            earlier = StagingTables.for_partition(self.report.partition, before.batch.slot)
            after_earlier = functools.partial(_wait_for_commit, before.batch, future)
        commit = functools.partial(
            commit_staged, self.url, self.settings, self.report.partition, self.report.run_id,
            staged, earlier, after_earlier,
        )  # fmt: skip
        self.committing.append((staged, committer.submit(self._reported, commit)))

    def _reported(self, commit: Callable[[], Committed]) -> Committed:
        committed = commit()
        self.on_commit(committed)
        return committed

    def finish(self, keep: int = 0) -> None:
        """Wait for the oldest batches committing until ``keep`` are left; redo a batch whole
        if its commit failed."""
        while len(self.committing) > keep:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        staged, future = self.committing.popleft()
        batch = staged.batch
        try:
            committed: Committed | None = future.result()
        except Exception as exc:
            self.log.warning(
                f"[Batch {batch.number}] commit failed, staging it again: {describe_error(exc)}"
            )
            committed = self._guarded(batch, functools.partial(self._stage_and_commit, batch))
        if committed is not None:
            self.report.add(committed.outcomes, committed.inserted)
            _log_success(committed.record, self.settings, self.log)
            _raise_alerts(self.url, self.settings, committed.record, self.log)

    def _stage(self, batch: Batch) -> Staged:
        report = self.report
        return stage_batch(
            self.spark, self.url, self.settings, report.partition, report.run_id, self.lock,
            batch, self.clock, self.contract,
        )  # fmt: skip

    def _stage_and_commit(self, batch: Batch) -> Committed | None:
        staged = self._stage(batch)
        self.report.add_staged(staged)
        if not staged.readable:
            return None
        batch.on_step("staged")
        report = self.report
        commit = functools.partial(
            commit_staged, self.url, self.settings, report.partition, report.run_id, staged
        )
        return self._reported(commit)

    def _guarded(self, batch: Batch, attempt: Callable[[], T]) -> T:
        """attempt() through the guard's retries and breakers; a failure is recorded, after
        the batch committing (if any) has ended, and raised."""
        try:
            return self.guard.call(attempt, f"[Batch {batch.number}]")
        except Exception as exc:
            try:
                self.finish()
            finally:
                _record_failure(self.url, self.settings, self.report, batch, exc, self.log)
            raise


def _wait_for_commit(batch: Batch, future: Future[Committed]) -> None:
    """Wait for ``batch``'s commit; raise if it failed (it is then redone, and so is the next)."""
    try:
        future.result()
    except Exception as exc:
        raise EarlierBatchFailedError(f"batch {batch.number} did not commit") from exc


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
        with connect(url, settings.database.db_connect_timeout_s) as conn:
            raise_batch_alerts(conn, record, settings, log)
    except psycopg.Error as exc:
        log.warning(f"[Batch {record.batch_no}] alerts not evaluated: {describe_error(exc)}")


def _record_failure(
    url: str,
    settings: Settings,
    report: IngestReport,
    batch: Batch,
    exc: Exception,
    log: LogSink,
) -> None:
    """Log the failed batch, release its files' claims and record it, if PostgreSQL answers."""
    reason = describe_error(exc)
    log.error(f"[Batch {batch.number}] FAILED - {reason}")
    try:
        with connect(url, FAILURE_CONNECT_TIMEOUT_S) as conn:
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
