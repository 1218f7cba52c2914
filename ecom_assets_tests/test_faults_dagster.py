"""Faults through Dagster: transient ones are retried by the step's retry policy, the rest fail
at once with a clear message; successful batches reach the ingest log file and the run log."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.jobs import build_ingest_job
from ecom_assets.monitoring.logs import INGEST_LOG_PREFIX, log_file
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.settings import ReliabilitySettings, Settings, SparkSettings
from ecom_assets.stack.processes import free_port
from ecom_assets_tests.test_ingest_dagster import generate

pytestmark = pytest.mark.integration

FAST = ReliabilitySettings(
    retry_attempts=2,
    retry_initial_delay_s=0.01,
    breaker_failure_threshold=10,
    step_retries=2,
    step_retry_delay_s=0,
)


def run_ingest(settings: Settings, postgres_url: str, spark_url: str, partition: str):
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    resources = {
        "postgres": PostgresResource(url=postgres_url),
        "pyspark": spark_resource(SparkSettings(remote=spark_url)),
    }
    definitions = dg.Definitions(
        assets=[database_schema, ingest], jobs=[build_ingest_job(ingest)], resources=resources
    )
    instance = dg.DagsterInstance.ephemeral()
    result = definitions.resolve_job_def("ingest_job").execute_in_process(
        partition_key=partition,
        instance=instance,
        raise_on_error=False,
    )
    return result, instance


def step_events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list:
    return [event for event in result.all_events if event.event_type == kind]


def test_postgres_unreachable_is_retried_by_the_step_policy_then_fails_clearly(
    ingest_settings: Settings, spark_server
) -> None:
    settings = ingest_settings.model_copy(update={"reliability": FAST})
    partition = generate(settings, "--files", "2", "--events-per-file", "10")
    secret = "s3cret-never-logged"  # noqa: S105 - a fake credential to look for in the logs
    refused = f"postgresql://ecom:{secret}@127.0.0.1:{free_port()}/ecom"
    started = time.time()
    result, instance = run_ingest(settings, refused, spark_server.url, partition)
    assert not result.success
    assert len(step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == FAST.step_retries
    failure = step_events(result, dg.DagsterEventType.STEP_FAILURE)[-1]
    message = failure.step_failure_data.error.to_string()
    assert (
        "DependencyUnavailableError: [Batch 1]: PostgreSQL unreachable after 2 attempt" in message
    )
    assert len(list(settings.input_dir.glob("*.csv"))) == 2  # the files wait for the next run
    # the credentials are in the URL only: no log line, no error, no metadata carries them
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    logged += [event.message or "" for event in result.all_events]
    logged.append(log_file(settings.log_dir, INGEST_LOG_PREFIX, started).read_text())
    assert "ERROR    | [Batch 1] FAILED - DependencyUnavailableError" in logged[-1]
    assert not [text for text in logged if secret in text]


def test_a_non_transient_failure_is_not_retried(
    ingest_settings: Settings, migrated_database_url: str, spark_server
) -> None:
    settings = ingest_settings.model_copy(update={"reliability": FAST})
    partition = generate(settings, "--files", "1", "--events-per-file", "10")
    key = int.from_bytes(hashlib.sha256(partition.encode()).digest()[:8], "big", signed=True)
    with psycopg.connect(migrated_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))  # another run holds the partition
        result, _ = run_ingest(settings, migrated_database_url, spark_server.url, partition)
    assert not result.success
    assert step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    failure = step_events(result, dg.DagsterEventType.STEP_FAILURE)[-1]
    assert (
        f"partition {partition} failed: PartitionBusyError"
        in failure.step_failure_data.error.message
    )


def test_batches_are_logged_to_the_ingest_file_and_the_run_log(
    ingest_settings: Settings, migrated_database_url: str, spark_server
) -> None:
    partition = generate(ingest_settings, "--files", "2", "--events-per-file", "50")
    started = time.time()
    result, instance = run_ingest(
        ingest_settings, migrated_database_url, spark_server.url, partition
    )
    assert result.success
    lines = log_file(ingest_settings.log_dir, INGEST_LOG_PREFIX, started).read_text().splitlines()
    completed = [line for line in lines if "[Batch 1] COMPLETED SUCCESSFULLY" in line]
    assert len(completed) == 1
    stamp, level, message = completed[0].split(" | ")
    assert datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() >= int(
        started
    )
    assert level == "INFO    "
    assert "2 file(s), 100 rows" in message
    assert any("[Batch 1] Quality: " in line for line in lines)
    run_log = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("[Batch 1] COMPLETED SUCCESSFULLY" in message for message in run_log)
    assert result.asset_materializations_for_node("ingest_events")[0].metadata["batch"].value == 1
    summary = [message for message in run_log if message.startswith(f"partition {partition}: ")]
    assert len(summary) == 1 and "breakers postgres CLOSED, spark CLOSED" in summary[0], summary
