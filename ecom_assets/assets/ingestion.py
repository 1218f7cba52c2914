"""The ingest assets: one hourly partition of events, dead letters and quality metrics.

One multi-asset, because one Spark pass produces all three. The step reports each batch the
moment it commits, with the checks' verdict on what it committed, so the UI follows PostgreSQL
within seconds while the run lingers for its hour.
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime

import queue
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import dagster as dg
import psycopg
from dagster_pyspark import LazyPySparkResource

from ecom_assets.checks import CHECK_SPECS, as_evaluations, evaluate_checks, load_partition_quality
from ecom_assets.code_files import CodeWatch
from ecom_assets.ingest import IngestReport, RunControl, ingest_partition
from ecom_assets.ingest_batch import Committed
from ecom_assets.monitoring.logs import LogSink, Tee, ingest_logger
from ecom_assets.partitions import ingest_partitions
from ecom_assets.reliability import DependencyUnavailableError, describe_error
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.schema.contract import Contract
from ecom_assets.schema.contract_file import contract_markdown, load_contract
from ecom_assets.settings import ReliabilitySettings, Settings


def _code_table(counts: Counter[str], rows_read: int, column: str) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({column: code, "rows": count, "share": count / rows_read})
            for code, count in counts.most_common()
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(column, "string"),
                dg.TableColumn("rows", "int"),
                dg.TableColumn("share", "float"),
            ]
        ),
    )


SOURCE_FILES_LISTED = 50
"""A batch's materialization lists this many of its files; ``files`` gives the count."""


def batch_metadata(committed: Committed) -> dict[str, object]:
    """What a person reads in the UI about one committed batch of a partition."""
    record = committed.record
    outcomes = committed.outcomes
    names = [outcome.source_file for outcome in outcomes]
    errors: Counter[str] = Counter(record.error_counts)
    warnings: Counter[str] = Counter(record.warning_counts)
    inserted = sum(committed.inserted.values())
    return {
        "batch": record.batch_no,
        "files": record.files,
        "source_files": dg.MetadataValue.json(names[:SOURCE_FILES_LISTED]),
        "rows_read": record.rows_read,
        "rows_valid": record.rows_valid,
        "rows_invalid": record.rows_invalid,
        "rows_inserted": inserted,
        "rows_duplicate": record.rows_valid - inserted,
        "rows_late": sum(outcome.rows_late for outcome in outcomes),
        "rows_warned": record.rows_warned,
        "validity_rate": record.validity_rate if record.validity_rate is not None else 1.0,
        "error_breakdown": _code_table(errors, record.rows_read, "error_code"),
        "warning_breakdown": _code_table(warnings, record.rows_read, "warning_code"),
        "latency_s": round(float(record.max_latency_s or 0.0), 3),
    }


def run_summary(report: IngestReport) -> str:
    """The run's totals, for its log: each batch already reported its own."""
    return (
        f"partition {report.partition}: {report.batches} batch(es), "
        f"{report.files_committed} file(s) committed, {report.files_already_committed} already "
        f"committed, {len(report.quarantined)} quarantined; {report.rows_read} rows "
        f"({report.rows_valid} valid, {report.rows_invalid} invalid, {report.rows_warned} with "
        f"warnings) in {report.seconds:.1f} s; retries {report.retries}; breakers "
        + ", ".join(f"{name} {state}" for name, state in sorted(report.breakers.items()))
        + "".join(f"; {transition}" for transition in report.breaker_transitions)
        + (f"; stopped with {report.files_left} file(s) left" if report.stopped else "")
        + "".join(f"; ISOLATED {name}: {reason}" for name, reason in report.isolated.items())
    )


def step_retry_policy(reliability: ReliabilitySettings) -> dg.RetryPolicy:
    """Transient faults (DependencyUnavailableError) retry the step after the breaker's pause."""
    return dg.RetryPolicy(
        max_retries=reliability.step_retries,
        delay=reliability.step_retry_delay_s,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


INGEST_TABLES = {
    "ecommerce_events": "Valid click-stream events, one row per event_id.",
    "dead_letter_events": "Invalid rows with every error code and the raw record, to replay.",
    "data_quality_metrics": "One row per ingested file and run: counts, validity, error codes.",
}


REPORT_POLL_S = 0.1
"""How often the step looks for committed batches to report: well inside the UI's seconds."""
CODE_LOOK_S = 2.0
"""How often a running step looks whether the code location's files changed."""


def build_ingest_assets(
    settings: Settings, upstream: list[dg.AssetKey], contract: Contract | None = None
) -> dg.AssetsDefinition:
    """The partitioned ingest multi-asset; ``contract`` (default: the one ECOM_CONTRACT_FILE
    names) judges the rows, and the UI shows it as ecommerce_events' metadata.

    Each batch is reported as it commits: a materialization of the three assets for the
    partition, then the checks' evaluations over the batch's files (docs/decisions.md 53). The
    run's end reports nothing more. A stop request (``ecom down``, Ctrl-C, a terminate from the UI)
    lets the batches in flight commit; the run then ends SUCCESS when nothing of its hour was
    left waiting, CANCELED otherwise (decision 54)."""
    contract = contract or load_contract(settings.paths.contract)
    contract_metadata = {
        "contract": dg.MetadataValue.md(contract_markdown(contract)),
        "contract_file": contract.source,
    }

    @dg.multi_asset(
        name="ingest_events",
        specs=[
            dg.AssetSpec(
                key,
                group_name="ingestion",
                deps=upstream,
                kinds={"spark", "postgres"},
                description=description,
                metadata=contract_metadata if key == "ecommerce_events" else None,
                skippable=True,  # materialized per committed batch, not by the step's outputs
            )
            for key, description in INGEST_TABLES.items()
        ],
        partitions_def=ingest_partitions,
        retry_policy=step_retry_policy(settings.reliability),
    )
    def ingest_events(
        context: dg.AssetExecutionContext,
        pyspark: LazyPySparkResource,
        postgres: PostgresResource,
    ):
        partition = context.partition_key
        log = Tee(ingest_logger(settings.log_dir), context.log)
        commits: queue.SimpleQueue[Committed] = queue.SimpleQueue()
        control = RunControl()
        interrupted: BaseException | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="ecom-ingest") as worker:
            run = worker.submit(
                ingest_partition, pyspark.spark_session, postgres.resolved_url(), settings,
                partition, context.run.run_id, log, contract=contract, on_commit=commits.put,
                control=control,
            )  # fmt: skip
            try:
                for committed in follow_commits(run, commits, control):
                    yield from batch_events(committed, postgres, settings, partition, log)
            except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as stop:
                interrupted = stop  # asked to stop: let the batches in flight commit
                mark_canceling(context)
                log.info(f"partition {partition}: stop requested, finishing the batches in flight")
            finally:
                control.stop.set()  # whatever ends the step ends the run (a no-op once it has)
            if interrupted is not None:
                for committed in follow_commits(run, commits, control):
                    yield from batch_events(committed, postgres, settings, partition, log)
        report = run_report(run, partition)
        log.info(run_summary(report))
        if interrupted is not None and report.files_left:
            raise interrupted  # CANCELED: files of the hour were left for the next run

    return ingest_events


def follow_commits(
    run: Future[IngestReport], commits: queue.SimpleQueue[Committed], control: RunControl
) -> Iterator[Committed]:
    """The run's committed batches as they come, until it ends. When the code location's files
    change meanwhile, the run is asked to stop taking new arrivals: the next run takes them, with
    the new code."""
    code = CodeWatch()
    next_look = time.monotonic() + CODE_LOOK_S
    while True:
        try:
            yield commits.get(timeout=REPORT_POLL_S)
            continue
        except queue.Empty:
            pass
        if run.done() and commits.empty():  # every commit is queued before the run ends
            return
        if time.monotonic() >= next_look and not control.stop_lingering.is_set():
            next_look = time.monotonic() + CODE_LOOK_S
            if code.changed():
                control.stop_lingering.set()


def run_report(run: Future[IngestReport], partition: str) -> IngestReport:
    """The run's report; a failure becomes one Dagster retries only when it is transient."""
    try:
        return run.result()
    except DependencyUnavailableError:
        raise  # transient: the retry policy tries the step again
    except Exception as exc:
        # bad data, a constraint or a bug: repeating the step would fail the same way
        raise dg.Failure(
            description=f"partition {partition} failed: {describe_error(exc)}",
            allow_retries=False,
        ) from exc


def batch_events(
    committed: Committed,
    postgres: PostgresResource,
    settings: Settings,
    partition: str,
    log: LogSink,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A committed batch's materializations, then its checks over the batch's files, read back
    from PostgreSQL (a monitoring fault leaves the checks unreported, never the batch)."""
    metadata = batch_metadata(committed)
    for key in INGEST_TABLES:
        yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
    files = [outcome.source_file for outcome in committed.outcomes]
    batch = committed.record.batch_no
    try:
        with postgres.connection() as conn:
            quality = load_partition_quality(conn, partition, files)
    except psycopg.Error as exc:
        log.warning(f"[Batch {batch}] checks not evaluated: {describe_error(exc)}")
        return
    scope = {"scope": f"batch {batch} of this run", "files": len(files)}
    yield from as_evaluations(evaluate_checks(quality, settings.quality), partition, scope)


def mark_canceling(context: dg.AssetExecutionContext) -> None:
    """A stop Dagster did not request (a signal from `ecom down` or a shell) is still a stop: the
    run ends CANCELED, as after a terminate from the UI, not FAILURE; or SUCCESS, when it was
    only lingering (a CANCELING run whose step succeeds ends SUCCESS)."""
    run = context.instance.get_run_by_id(context.run.run_id)
    if run is not None and run.status != dg.DagsterRunStatus.CANCELING:
        context.instance.report_run_canceling(run, message="Stop requested by a signal.")


def build_ingest_checks(settings: Settings) -> dg.AssetChecksDefinition:
    """The same checks, executed from the UI for a whole partition as PostgreSQL holds it now
    (ingest runs log them per batch instead, and do not plan them)."""

    @dg.multi_asset_check(specs=CHECK_SPECS, name="ingest_checks", can_subset=True)
    def ingest_checks(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
        with postgres.connection() as conn:
            quality = load_partition_quality(conn, context.partition_key)
        for result in evaluate_checks(quality, settings.quality):
            if result.check_key in context.selected_asset_check_keys:
                yield result.with_metadata({"scope": "the whole partition", **result.metadata})

    return ingest_checks
