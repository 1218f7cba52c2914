"""The ingest assets, checks, job and sensor through Dagster's APIs, on real Spark + Postgres."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.jobs import build_ingest_job
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.resources.event_files import InputFile
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.sensors import Requested, make_input_files_sensor, parse_cursor, plan_requests
from ecom_assets.settings import (
    IngestionSettings,
    Settings,
    SparkSettings,
    load_settings,
)
from ecom_assets_tests.test_event_files_watch import land_later
from ecom_assets_tests.test_generator_support import generate_files

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings


@pytest.fixture
def resources(database_url: str, spark_server) -> dict[str, object]:
    return {
        "postgres": PostgresResource(url=database_url),
        "pyspark": spark_resource(SparkSettings(remote=spark_server.url)),
    }


def generate(settings: Settings, *args: str) -> str:
    """Write generator files stamped within the last minutes; returns their partition key."""
    start = datetime.now(tz=UTC) - timedelta(minutes=2)
    if start.hour != datetime.now(tz=UTC).hour:  # keep every file in one hour
        start = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    generate_files(settings.input_dir, settings.log_dir, start, "--interval", "0.01", *args)
    return start.strftime(PARTITION_FORMAT)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }


def test_materialize_partition_records_metadata_and_passes_checks(
    settings: Settings, resources: dict[str, object], database_url: str
) -> None:
    partition = generate(settings, "--files", "3", "--events-per-file", "200", "--seed", "3")
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    result = dg.materialize([ingest], resources=resources, partition_key=partition)
    assert result.success
    metadata = result.asset_materializations_for_node("ingest_events")[0].metadata
    assert metadata["rows_read"].value == 600
    assert metadata["files_committed"].value == 3
    assert metadata["rows_valid"].value + metadata["rows_invalid"].value == 600
    checks = check_results(result)
    assert set(checks) == {"validity_rate", "error_concentration", "rows_conserved",
                           "unique_event_ids", "quality_warnings"}  # fmt: skip
    assert all(check.passed for check in checks.values()), checks
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0]
    assert stored == metadata["rows_inserted"].value

    # re-materialising the partition with the files dropped again changes nothing
    for path in settings.processed_dir.glob("*/*.csv"):
        path.rename(settings.input_dir / path.name)
    again = dg.materialize([ingest], resources=resources, partition_key=partition)
    assert (
        again.asset_materializations_for_node("ingest_events")[0]
        .metadata["files_already_committed"]
        .value
        == 3
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0] == stored
    assert all(check.passed for check in check_results(again).values())


def test_low_validity_fails_the_blocking_check_with_error(
    settings: Settings, resources: dict[str, object]
) -> None:
    partition = generate(settings, "--files", "1", "--events-per-file", "400",
                         "--anomaly-rate", "0.5", "--seed", "5")  # fmt: skip
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    job = build_ingest_job(ingest)
    definitions = dg.Definitions(assets=[database_schema, ingest], jobs=[job],
                                 resources=resources)  # fmt: skip
    result = definitions.resolve_job_def("ingest_job").execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    checks = check_results(result)
    validity = checks["validity_rate"]
    assert validity.passed is False
    assert validity.severity == dg.AssetCheckSeverity.ERROR
    assert validity.metadata["validity_rate"].value < 0.8
    assert checks["rows_conserved"].passed is True
    # the same batch raised its alert: stored, and in the ingest log file
    with psycopg.connect(resources["postgres"].url) as conn:
        alerts = conn.execute("SELECT kind, level FROM alerts WHERE resolved_at IS NULL").fetchall()
    assert ("low_validity", "WARNING") in alerts
    log_text = "".join(path.read_text() for path in settings.log_dir.glob("ingest_*.log"))
    assert "WARNING  | ALERT [low_validity]" in log_text
    assert "Quality: POOR" in log_text


def _file(name: str, partition: str, modified: float) -> InputFile:
    return InputFile(Path(), name, 10, datetime.fromtimestamp(modified, tz=UTC), partition)


def test_plan_requests_new_files_newer_files_and_stale_partitions() -> None:
    files = [_file("a.csv", "p1", 100.0), _file("b.csv", "p1", 101.0), _file("c.csv", "p2", 50.0)]
    due, state = plan_requests(files, {}, now=200.0, retry_after_s=120)
    assert due == {"p1": 2, "p2": 1}
    assert state == {"p1": Requested(101.0, 200.0), "p2": Requested(50.0, 200.0)}
    # nothing new: no request; a newer file in p1: request p1 only
    assert plan_requests(files, state, now=210.0, retry_after_s=120)[0] == {}
    newer = [*files, _file("d.csv", "p1", 205.0)]
    due, state = plan_requests(newer, state, now=211.0, retry_after_s=120)
    assert due == {"p1": 3}
    # files still waiting long after their request (a crashed run): requested again
    assert plan_requests(newer, state, now=330.0, retry_after_s=120)[0] == {"p2": 1}
    # partitions whose files are gone leave the cursor
    assert plan_requests([], state, now=400.0, retry_after_s=120) == ({}, {})


def test_plan_requests_skips_a_partition_whose_queued_run_will_take_its_files() -> None:
    files = [_file("a.csv", "p1", 100.0), _file("b.csv", "p2", 100.0)]
    due, state = plan_requests(files, {}, now=200.0, retry_after_s=120, queued={"p1"})
    assert due == {"p2": 1}
    # p1 counts as requested: once its queued run has started, only newer files request it
    assert state["p1"] == Requested(100.0, 200.0)
    assert plan_requests(files, state, now=210.0, retry_after_s=120)[0] == {}


def test_sensor_requests_partition_runs_and_ignores_what_it_must(
    settings: Settings, tmp_path: Path
) -> None:
    input_dir = settings.input_dir
    input_dir.mkdir(parents=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S") + "000000Z"
    (input_dir / f"events_{stamp}_00000001.csv").write_text("event_id\n")
    (input_dir / ".events_tmp.csv").write_text("hidden, half written\n")
    (input_dir / "notes.txt").write_text("not a csv\n")
    outside = tmp_path / "outside.csv"
    outside.write_text("event_id\n")
    os.symlink(outside, input_dir / "linked.csv")
    (input_dir / "sub.csv").mkdir()

    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    sensor = make_input_files_sensor(build_ingest_job(ingest), settings)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=None)
        result = sensor(context)
        assert len(result.run_requests) == 1
        request = result.run_requests[0]
        assert request.partition_key == datetime.now(tz=UTC).strftime(PARTITION_FORMAT)
        assert request.tags["ecom/ingest"] == "true"
        assert request.tags["ecom/waiting_files"] == "1"
        state = parse_cursor(result.cursor)
        assert list(state) == [request.partition_key]

        again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert again.run_requests == []

        # a newer file while a run of the partition is still queued: that run will take it
        (input_dir / f"events_{stamp}_00000002.csv").write_text("event_id\n")
        queued = DagsterRun(
            job_name="ingest_job",
            run_id="queued-run",
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={PARTITION_NAME_TAG: request.partition_key},
        )
        instance.add_run(queued)
        cursor = again.cursor
        assert sensor(dg.build_sensor_context(instance=instance, cursor=cursor)).run_requests == []
        instance.report_run_canceled(queued)  # gone from the queue: the newer file is requested
        (request,) = sensor(dg.build_sensor_context(instance=instance, cursor=cursor)).run_requests
        assert request.tags["ecom/waiting_files"] == "2"


def test_a_tick_in_an_empty_directory_requests_a_file_landing_during_its_watch(
    settings: Settings,
) -> None:
    watching = load_settings(
        paths=settings.paths, ingestion=IngestionSettings(file_settle_s=0, sensor_watch_s=4)
    )
    watching.input_dir.mkdir(parents=True)
    ingest = build_ingest_assets(watching, upstream=[database_schema.key])
    sensor = make_input_files_sensor(build_ingest_job(ingest), watching)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S") + "000000Z"
    with dg.instance_for_test() as instance:
        timer = land_later(watching.input_dir, 1.0, f"events_{stamp}_00000001.csv")
        started = time.monotonic()
        result = sensor(dg.build_sensor_context(instance=instance, cursor=None))
        took = time.monotonic() - started
    timer.join()
    assert [request.tags["ecom/waiting_files"] for request in result.run_requests] == ["1"]
    assert 1.0 <= took < 3.0  # returned when the file landed, not at the end of the watch
