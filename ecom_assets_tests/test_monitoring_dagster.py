"""The Dagster side of monitoring: the pipeline_health asset and its check, its job, and
the run failure / success sensors evaluated on real failed and successful ingest_job runs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.assets.monitoring import HEALTH, build_health_asset
from ecom_assets.definitions import defs
from ecom_assets.jobs import build_ingest_job
from ecom_assets.monitoring.alerts import store_alert
from ecom_assets.monitoring.batches import record_batch
from ecom_assets.monitoring.run_failures import build_run_failure_sensors, consecutive_failures
from ecom_assets.partitions import PARTITION_FORMAT, partition_hour
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.settings import ReliabilitySettings, Settings, SparkSettings
from ecom_assets.stack.processes import free_port
from ecom_assets_tests.test_generator_support import generate_files
from ecom_assets_tests.test_monitoring_alerts import make_batch
from ecom_assets_tests.test_monitoring_health import ERROR_ALERT

FAILURE, SUCCESS = dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings


def materialize_health(settings: Settings, url: str) -> tuple[dict, dg.AssetCheckEvaluation]:
    asset = build_health_asset(settings, upstream=[])
    result = dg.materialize([asset], resources={"postgres": PostgresResource(url=url)})
    assert result.success
    metadata = result.asset_materializations_for_node("pipeline_health")[0].metadata
    (check,) = result.get_asset_check_evaluations()
    return {key: value.value for key, value in metadata.items()}, check


def test_pipeline_health_asset_and_check_for_each_state(
    migrated_database_url: str, settings: Settings
) -> None:
    url = migrated_database_url
    metadata, check = materialize_health(settings, url)
    assert metadata["state"] == "NO_DATA"
    assert metadata["last_batch_at"] is None
    assert (check.check_name, check.passed) == ("pipeline_healthy", True)
    assert check.metadata["state"].value == "NO_DATA"

    with psycopg.connect(url, autocommit=True) as conn:
        record_batch(conn, make_batch(1, 99, 1), settings.quality.min_validity)
    metadata, check = materialize_health(settings, url)
    assert metadata["state"] == "HEALTHY"
    assert (metadata["batches_completed"], metadata["validity_rate"]) == (1, 0.99)
    assert metadata["open_alerts"] == 0
    assert check.passed is True

    with psycopg.connect(url, autocommit=True) as conn:
        store_alert(conn, ERROR_ALERT)
    metadata, check = materialize_health(settings, url)
    assert metadata["state"] == "DEGRADED"
    assert metadata["open_alert_list"][0]["kind"] == "low_validity"
    assert check.passed is False
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == f"open ERROR alert [low_validity] {ERROR_ALERT.message}"


def test_definitions_refresh_the_health_asset_and_run_the_sensors_by_default() -> None:
    # downstream_sensor refreshes it (test_downstream.py)
    job = defs.resolve_job_def("pipeline_health_job")
    assert job.asset_layer.selected_asset_keys == {HEALTH}
    assert defs.resolve_asset_graph().get(HEALTH).group_name == "monitoring"
    for name in ("ingest_failure_sensor", "ingest_success_sensor"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.required_resource_keys == {"postgres"}


def test_consecutive_failures_counts_until_a_success() -> None:
    assert consecutive_failures([]) == 0
    assert consecutive_failures([FAILURE, FAILURE, SUCCESS, FAILURE]) == 2
    assert consecutive_failures([SUCCESS, FAILURE]) == 0
    assert consecutive_failures([FAILURE] * 4) == 4


# --- sensors on real ingest_job runs ---------------------------------------------------------

RunIngest = Callable[[str], dg.ExecuteInProcessResult]


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


PARTITION = datetime.now(tz=UTC).strftime(PARTITION_FORMAT)
"""The current hour: the partitions start at this installation's first hour (decision 55)."""


@pytest.fixture
def run_ingest(settings: Settings, spark_server, instance: dg.DagsterInstance) -> RunIngest:
    """Execute the ingest job with a new file of the partition waiting and its database at url;
    no retries, so an unreachable database fails the run at once (claiming the file)."""
    fail_fast = ReliabilitySettings(retry_attempts=1, step_retries=0, breaker_failure_threshold=100)
    settings = settings.model_copy(update={"reliability": fail_fast})
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    spark = spark_resource(SparkSettings(remote=spark_server.url))

    seeds = itertools.count(1)

    def run(url: str) -> dg.ExecuteInProcessResult:
        seed = str(next(seeds))
        generate_files(settings.input_dir, settings.log_dir, partition_hour(PARTITION),
                       "--files", "1", "--events-per-file", "10", "--seed", seed)  # fmt: skip
        definitions = dg.Definitions(
            assets=[database_schema, ingest],
            jobs=[build_ingest_job(ingest)],
            resources={"postgres": PostgresResource(url=url), "pyspark": spark},
        )
        return definitions.resolve_job_def("ingest_job").execute_in_process(
            partition_key=PARTITION, instance=instance, raise_on_error=False
        )

    return run


def open_run_failures(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT level, details->>'consecutive_failures' FROM alerts "
            "WHERE kind = 'run_failure' AND resolved_at IS NULL ORDER BY alert_id"
        ).fetchall()


@pytest.mark.integration
def test_failed_runs_raise_escalating_alerts_and_a_success_resolves_them(
    migrated_database_url: str,
    settings: Settings,
    instance: dg.DagsterInstance,
    run_ingest: RunIngest,
) -> None:
    url = migrated_database_url
    refused = f"postgresql://ecom:s3cret@127.0.0.1:{free_port()}/ecom"
    failure_sensor, success_sensor = build_run_failure_sensors(
        build_ingest_job(build_ingest_assets(settings, upstream=[])), settings
    )

    def evaluate(sensor: dg.SensorDefinition, result: dg.ExecuteInProcessResult, db: str) -> None:
        event = result.get_run_failure_event() if not result.success else None
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=event or result.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"postgres": PostgresResource(url=db)},
        )
        sensor(context.for_run_failure() if event else context)

    failed = []
    for expected in (
        [("WARNING", "1")],
        [("WARNING", "1")],  # the second failure of the partition: its WARNING is still open
        [("ERROR", "3")],  # escalated; the WARNING is superseded
    ):
        failed.append(run_ingest(refused))
        assert failed[-1].dagster_run.status == FAILURE
        evaluate(failure_sensor, failed[-1], url)
        assert open_run_failures(url) == expected

    succeeded = run_ingest(url)
    assert succeeded.success
    evaluate(success_sensor, succeeded, url)
    assert open_run_failures(url) == []

    # the streak starts again after the success
    failed.append(run_ingest(refused))
    evaluate(failure_sensor, failed[-1], url)
    assert open_run_failures(url) == [("WARNING", "1")]

    # PostgreSQL unreachable: the alert cannot be stored but still reaches the log
    evaluate(failure_sensor, failed[-1], refused)

    (log_file,) = settings.log_dir.glob("ingest_*.log")
    lines = log_file.read_text().splitlines()
    # the files the failed runs left wait long: the successful run's batch is late (high_latency)
    alerts = [line.split(" | ", 1)[1] for line in lines if "[run_failure]" in line]
    first, third = failed[0].run_id, failed[2].run_id
    assert alerts[0].startswith(
        f"WARNING  | ALERT [run_failure] ingest_job run {first} failed for partition {PARTITION}: "
    )  # the first step error: the batch's claim could not connect
    assert "OperationalError: connection failed" in alerts[0]
    assert alerts[1].startswith(
        f"ERROR    | ALERT [run_failure] ingest_job run {third} failed for partition "
        f"{PARTITION} (3 consecutive failures): "
    )
    assert "OperationalError" in alerts[1]
    assert alerts[2] == (
        f"INFO     | ALERT RESOLVED [run_failure] 1 open alert(s), ingest_job run "
        f"{succeeded.run_id} succeeded"
    )
    assert alerts[3].startswith("WARNING  | ALERT [run_failure]")
    assert alerts[4] == alerts[3]
    assert any("run_failure alert not stored, PostgreSQL unavailable" in line for line in lines)
    assert not any("s3cret" in line for line in lines)
