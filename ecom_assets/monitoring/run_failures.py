"""Run failure alerts: a failed ingest run raises one, a successful run resolves them.

The number of consecutive failures comes from Dagster's run history (the job's latest finished
runs until a success), so it survives restarts and needs no state of its own: the first failure
is a WARNING, ECOM_ALERT_CONSECUTIVE_FAILURES in a row an ERROR. A run that fails because
PostgreSQL is down cannot store its alert, so then the alert is still logged and posted.
The failure's text comes from Dagster's record of the step's exception, which nothing of ours
has worded: it is redacted before it becomes an alert, a log line or a webhook payload.
"""

# no `from __future__ import annotations`: Dagster inspects the sensors' parameter annotations

from collections.abc import Sequence
from itertools import dropwhile

import dagster as dg
import psycopg

from ecom_assets.monitoring.alerts import (
    Alert,
    AlertLevel,
    log_resolved,
    publish,
    resolve_alerts,
    store_alert,
)
from ecom_assets.monitoring.logs import LogSink, Tee, ingest_logger
from ecom_assets.redaction import redact
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.settings import MonitoringSettings, Settings

LOOKBACK_RUNS = 100  # a longer failure streak is reported as this long
MAX_REASON_CHARS = 300
DAGSTER_WRAPPERS = {"RetryRequestedFromPolicy", "DagsterExecutionStepExecutionError"}


def consecutive_failures(statuses: Sequence[dg.DagsterRunStatus]) -> int:
    """Failures at the head of finished runs' statuses, latest first."""
    successes = (i for i, status in enumerate(statuses) if status != dg.DagsterRunStatus.FAILURE)
    return next(successes, len(statuses))


def run_failure_alert(
    job_name: str,
    run_id: str,
    partition: str | None,
    failures: int,
    reason: str,
    monitoring: MonitoringSettings,
) -> Alert:
    level: AlertLevel = "ERROR" if failures >= monitoring.consecutive_failures else "WARNING"
    where = f" for partition {partition}" if partition else ""
    in_a_row = f" ({failures} consecutive failures)" if failures > 1 else ""
    return Alert(
        kind="run_failure",
        level=level,
        message=f"{job_name} run {run_id} failed{where}{in_a_row}: {reason}",
        partition_key=partition,
        run_id=run_id,
        details={"job": job_name, "consecutive_failures": failures, "reason": reason},
    )


def failure_streak(instance: dg.DagsterInstance, job_name: str, run_id: str) -> int:
    """Consecutive failed runs of job_name ending with run_id (at least 1: that run)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
        ),
        limit=LOOKBACK_RUNS,
    )
    from_this = dropwhile(lambda run: run.run_id != run_id, runs)
    return max(1, consecutive_failures([run.status for run in from_this]))


def _one_line(text: str) -> str:
    """One redacted line; redacted first, while each URL still ends its line as it did."""
    return " ".join(redact(text).split())


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The first failed step's error as `OperationalError: connection failed ...`: a dg.Failure's
    description, else the user exception under Dagster's retry wrapper; else the run's message."""
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return _one_line(data.user_failure_data.description)
        error = data.error
        while error is not None and error.cls_name in DAGSTER_WRAPPERS and error.cause:
            error = error.cause
        if error is not None:
            qualified, _, text = error.message.partition(": ")
            short = f"{error.cls_name}: {text}" if qualified.endswith(error.cls_name) else None
            return _one_line(short or error.message)
    return _one_line(context.failure_event.message or "unknown failure")


def _log(settings: Settings, context_log: LogSink) -> LogSink:
    """The ingest log file and the sensor's tick log."""
    return Tee(ingest_logger(settings.log_dir), context_log)


def build_run_failure_sensors(
    job: "dg.UnresolvedAssetJobDefinition",  # quoted: dagster does not export it at runtime
    settings: Settings,
) -> list[dg.SensorDefinition]:
    """The failure sensor (raises run_failure alerts) and the success sensor (resolves them)."""

    @dg.run_failure_sensor(
        name="ingest_failure_sensor",
        monitored_jobs=[job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Raises a run_failure alert for each failed ingest run: WARNING, ERROR after "
        "ECOM_ALERT_CONSECUTIVE_FAILURES in a row.",
    )
    def ingest_failure_sensor(
        context: dg.RunFailureSensorContext, postgres: PostgresResource
    ) -> None:
        run = context.dagster_run
        reason = failure_reason(context)[:MAX_REASON_CHARS]
        failures = failure_streak(context.instance, run.job_name, run.run_id)
        partition = run.tags.get("dagster/partition")
        alert = run_failure_alert(
            run.job_name, run.run_id, partition, failures, reason, settings.monitoring
        )
        log = _log(settings, context.log)
        try:
            with postgres.connection() as conn:
                stored = store_alert(conn, alert)
        except (psycopg.Error, OSError) as exc:
            log.warning(
                f"run_failure alert not stored, PostgreSQL unavailable: {_one_line(str(exc))}"
            )
            stored = alert
        if stored is None:
            log.info(f"run {run.run_id} failed; its {alert.level} run_failure alert is open")
            return
        publish(stored, settings.monitoring, log)

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="ingest_success_sensor",
        monitored_jobs=[job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Resolves the open run_failure alerts when an ingest run succeeds.",
    )
    def ingest_success_sensor(
        context: dg.RunStatusSensorContext, postgres: PostgresResource
    ) -> None:
        with postgres.connection() as conn:
            resolved = resolve_alerts(conn, "run_failure")
        if resolved:
            run = context.dagster_run
            log_resolved(
                _log(settings, context.log),
                "run_failure",
                resolved,
                f"{run.job_name} run {run.run_id} succeeded",
            )

    return [ingest_failure_sensor, ingest_success_sensor]
