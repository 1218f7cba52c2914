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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from pyspark.sql import SparkSession

from ecom_assets.ingest_batch import (
    Batch,
    Committed,
    PartitionBusyError,
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
from ecom_assets.redaction import redact, url_secrets
from ecom_assets.reliability import (
    DependencyUnavailableError,
    Guard,
    configure_spark_retries,
    describe_error,
    guard_for,
    is_platform_fault,
    is_transient_postgres,
    is_transient_spark,
)
from ecom_assets.resources.event_files import (
    InputFile,
    is_utf8_name,
    list_input_files,
    quarantine,
)
from ecom_assets.resources.event_sink import FileOutcome
from ecom_assets.resources.file_ledger import failures_before, mark_failed, mark_quarantined
from ecom_assets.resources.spark_session import live_session
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
    isolated: dict[str, str] = field(default_factory=dict)
    """Files that failed their batch alone and were quarantined (also in ``quarantined``)."""
    deferred: dict[str, str] = field(default_factory=dict)
    """Files that failed their batch alone while nothing else committed: left for a retry."""

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
    suspects: Mapping[str, int] | None = None,
) -> list[InputFile]:
    """The files of the run's batch ``number`` (from 1); empty when the run should end.

    Files waiting at the run's start (``waiting``, as listed then) come first, whatever happens,
    without listing the directory again: a backlog of 10,000 files cost the run a listing per
    batch (stage_batch skips a file that has gone meanwhile). Then, while the run is younger than
    max_run_s and no other partition has files waiting, new arrivals of the partition, polled for
    up to linger_s. A file this run already ``taken`` is never taken again, so one that a batch
    left behind cannot keep a run busy. ``started`` is ``time.monotonic()``. ``control`` ends
    the run early (see RunControl). ``suspects`` (failures by name, see ``order_suspects_last``)
    are batched apart, in ever smaller batches.
    """
    control = control or RunControl()
    if control.stop.is_set():
        return []
    from_start = [file for file in waiting if file.name not in taken]
    if from_start:
        return _batch_of(from_start, settings, number, suspects or {})
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
            return _batch_of(mine, settings, number, {})
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


def suspect_batch_files(failures: int, max_failures: int) -> int:
    """Files a batch of suspects that failed ``failures`` times may hold: a quarter at each
    failure, one at the last failure before quarantine. A file that kills every run reading it
    (nothing is raised, so nothing can be split) is thus alone before it is quarantined, and the
    files that shared its batches fail fewer times than it: none is quarantined with it."""
    return 4 ** max(0, max_failures - 1 - failures)


def order_suspects_last(files: Sequence[InputFile], suspects: Mapping[str, int]) -> list[InputFile]:
    """The files that never failed first, then the suspects, fewest failures first."""
    return sorted(files, key=lambda file: suspects.get(file.name, 0))  # stable: by name within


def _batch_of(
    files: list[InputFile], settings: Settings, number: int, suspects: Mapping[str, int]
) -> list[InputFile]:
    """The first files, up to max_files_per_run and ``batch_budget`` (at least one file); files
    with as many failures as the first only, at most ``suspect_batch_files`` of them."""
    budget = batch_budget(settings, number)
    failures = suspects.get(files[0].name, 0)
    limit = settings.ingestion.max_files_per_run
    if failures:
        limit = min(limit, suspect_batch_files(failures, settings.ingestion.max_file_failures))
    batch: list[InputFile] = []
    for file in files[:limit]:
        if batch and (budget < file.size_bytes or suspects.get(file.name, 0) != failures):
            break
        batch.append(file)
        budget -= file.size_bytes
    return batch


def is_isolatable(exc: BaseException) -> bool:
    """A batch's failure that may be its data's fault: not a dependency's outage, not another
    run holding the partition, not the batch before failing. Such a batch is split until the
    culprit file is alone (``_Run.isolate``)."""
    if isinstance(exc, DependencyUnavailableError | PartitionBusyError | EarlierBatchFailedError):
        return False
    return not (is_transient_postgres(exc) or is_transient_spark(exc) or is_platform_fault(exc))


class CulpritsNotIsolatedError(RuntimeError):
    """Files failed alone while nothing else of the run committed: the fault may be the
    platform's, not theirs, so they are released for a retry (counted) instead of quarantined."""


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
    suspects = _suspects(url, settings, waiting, log)
    waiting = order_suspects_last(waiting, suspects)
    taken: set[str] = set()
    try:
        in_flight = settings.ingestion.commits_in_flight
        with ThreadPoolExecutor(in_flight, thread_name_prefix="ecom-commit") as committer:
            while files := next_files(
                settings, partition, waiting, taken, started, clock, run.report.batches + 1,
                control, suspects,
            ):  # fmt: skip
                taken.update(file.name for file in files)
                run.stage_and_submit(run.new_batch(files, on_step), committer)
            run.finish()  # a failed batch's _guarded has already finished the ones before it
        run.retry_deferred(on_step, control)
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


def _suspects(
    url: str, settings: Settings, waiting: Sequence[InputFile], log: LogSink
) -> dict[str, int]:
    """``failures_before`` of the waiting files; none if PostgreSQL does not answer (the first
    batch then fails, and is retried, as it would anyway)."""
    try:
        with connect(url, settings.database.db_connect_timeout_s) as conn:
            names = [file.name for file in waiting if is_utf8_name(file.name)]
            return failures_before(conn, names)  # the run quarantines the other names
    except psycopg.Error as exc:
        log.warning(f"failures of waiting files not read: {describe_error(exc)}")
        return {}


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
    committed_any: bool = False
    """A batch of this run committed: the platform works, so a file failing alone is a culprit."""

    def __post_init__(self) -> None:
        timeout = self.settings.database.db_connect_timeout_s
        self.lock = PartitionLock(self.url, timeout, self.report.partition)

    def new_batch(self, files: list[InputFile], on_step: Callable[[str], None]) -> Batch:
        self.report.batches += 1
        return Batch(self.report.batches, files, self.clock(), on_step)

    def stage_and_submit(self, batch: Batch, committer: ThreadPoolExecutor) -> None:
        """Stage the batch (earlier ones commit meanwhile), then commit it in the background
        once fewer than ``commits_in_flight`` commits are left."""
        try:
            staged = self._guarded(batch, functools.partial(self._stage, batch))
        except Exception as exc:
            if not is_isolatable(exc):
                raise
            self.isolate(batch, exc)
            return
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
            try:
                committed = self._guarded(batch, functools.partial(self._stage_and_commit, batch))
            except Exception as redo_exc:
                if not is_isolatable(redo_exc):
                    raise
                self.isolate(batch, redo_exc)
                return
        if committed is not None:
            self._completed(committed)

    def _completed(self, committed: Committed) -> None:
        self.committed_any = True
        self.report.add(committed.outcomes, committed.inserted)
        _log_success(committed.record, self.settings, self.log)
        _raise_alerts(self.url, self.settings, committed.record, self.log)

    def isolate(self, batch: Batch, exc: Exception) -> None:
        """Split a batch that failed for a reason that may be its data's, halves committing on
        their own, until each failing file is alone (``_culprit``): one file can no longer hold
        up the others. The batches still committing have finished (``_guarded``)."""
        files = [file for file in batch.files if file.path.exists()]
        if len(files) <= 1:
            for file in files:
                self._culprit(batch, file, exc)
            return
        self.log.warning(
            f"[Batch {batch.number}] FAILED - {describe_error(exc)}; splitting its "
            f"{len(files)} files to isolate the cause"
        )
        half = len(files) // 2
        for part in (files[:half], files[half:]):
            self._isolated_attempt(self.new_batch(part, batch.on_step))

    def _isolated_attempt(self, batch: Batch) -> None:
        """Stage and commit ``batch`` at once (nothing else commits meanwhile); isolate again if
        it fails for a reason that may be its data's."""
        try:
            committed = self._guarded(batch, functools.partial(self._stage_and_commit, batch))
        except Exception as exc:
            if not is_isolatable(exc):
                raise
            self.isolate(batch, exc)
            return
        if committed is not None:
            self._completed(committed)

    def _culprit(self, batch: Batch, file: InputFile, exc: Exception) -> None:
        """A file that failed alone: quarantined with the error as its reason if this run
        committed something (the platform works), else released for a retry, counted."""
        reason = f"failed alone in batch {batch.number}: {describe_error(exc)}"
        if not self.committed_any:
            self.log.warning(f"[Batch {batch.number}] {file.name} {reason}; retried later")
            self.report.deferred[file.name] = reason
            _release(self.url, self.report.run_id, file.name, reason, self.log)
            return
        self.log.error(f"[Batch {batch.number}] QUARANTINED {file.name}: {reason}")
        with connect(self.url, self.settings.database.db_connect_timeout_s) as conn:
            quarantine(file.path, self.settings.quarantine_dir, {"reason": reason})
            mark_quarantined(conn, file.name, reason)
        self.report.quarantined[file.name] = reason
        self.report.isolated[file.name] = reason
        self.report.deferred.pop(file.name, None)

    def retry_deferred(self, on_step: Callable[[str], None], control: RunControl) -> None:
        """Once something committed, try each deferred file alone once more (it is then
        quarantined if it fails again); if nothing did, fail the run: the files are released
        and the next run tries them again, up to ECOM_INGEST_MAX_FILE_FAILURES."""
        if not self.report.deferred or control.stop.is_set():
            return
        if self.committed_any:
            waiting = pending_files(self.settings, self.report.partition, self.clock())
            deferred = [file for file in waiting if file.name in self.report.deferred]
            self.report.deferred.clear()  # a deferred file gone meanwhile needs nothing more
            for file in deferred:  # each alone; _culprit quarantines it if it fails again
                self._isolated_attempt(self.new_batch([file], on_step))
        if self.report.deferred:
            names = ", ".join(sorted(self.report.deferred))
            raise CulpritsNotIsolatedError(
                f"{len(self.report.deferred)} file(s) failed alone and nothing else of the run "
                f"committed; released for a retry: {names[:500]}"
            )

    def _stage(self, batch: Batch) -> Staged:
        spark = live_session(self.spark, self.settings.spark)
        if spark is not self.spark:
            configure_spark_retries(spark, self.settings.reliability)
            self.log.warning(
                f"[Batch {batch.number}] Spark session closed by a restarted server; "
                "continuing in a new one"
            )
            self.spark = spark
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
        """attempt() through the guard's retries and breakers; after the batches committing (if
        any) have ended, a failure is raised, and recorded unless the caller isolates it."""
        try:
            return self.guard.call(attempt, f"[Batch {batch.number}]")
        except Exception as exc:
            try:
                self.finish()
            finally:
                if not is_isolatable(exc):
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
    reason = redact(describe_error(exc), url_secrets(url))  # stored: the ledger, the UI
    log.error(f"[Batch {batch.number}] FAILED - {reason}")
    try:
        with connect(url, FAILURE_CONNECT_TIMEOUT_S) as conn:
            mark_failed(conn, report.run_id, reason, counted=False)  # an outage: not the files
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


def _release(url: str, run_id: str, file_name: str, reason: str, log: LogSink) -> None:
    """Release one file's claim with its failure counted, if PostgreSQL answers."""
    try:
        with connect(url, FAILURE_CONNECT_TIMEOUT_S) as conn:
            mark_failed(conn, run_id, reason, counted=True, files=[file_name])
    except psycopg.Error as exc:
        log.warning(f"failure of {file_name} not recorded: {describe_error(exc)}")
