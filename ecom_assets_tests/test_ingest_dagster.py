"""The ingest assets, checks, job and sensor through Dagster's APIs, on real Spark + Postgres."""

from __future__ import annotations

import csv
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


def materializations(result: dg.ExecuteInProcessResult, key: str) -> list[dg.AssetMaterialization]:
    return [m for m in result.asset_materializations_for_node("ingest_events")
            if m.asset_key == dg.AssetKey(key)]  # fmt: skip


def test_each_committed_batch_is_materialized_and_checked_for_its_partition(
    settings: Settings, resources: dict[str, object], database_url: str
) -> None:
    partition = generate(settings, "--files", "3", "--events-per-file", "200", "--seed", "3")
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    one_file_batches = settings.model_copy(
        update={"ingestion": settings.ingestion.model_copy(update={"max_files_per_run": 1})}
    )
    ingest = build_ingest_assets(one_file_batches, upstream=[database_schema.key])
    result = dg.materialize([ingest], resources=resources, partition_key=partition)
    assert result.success
    batches = materializations(result, "ecommerce_events")
    assert [m.metadata["batch"].value for m in batches] == [1, 2, 3]
    assert {m.partition for m in batches} == {partition}
    for key in ("dead_letter_events", "data_quality_metrics"):  # one per batch, same figures
        assert [m.metadata for m in materializations(result, key)] == [m.metadata for m in batches]
    assert sum(m.metadata["rows_read"].value for m in batches) == 600
    assert all(m.metadata["files"].value == 1 for m in batches)
    listed = [name for m in batches for name in m.metadata["source_files"].value]
    assert len(set(listed)) == 3 and all(name.endswith(".csv") for name in listed)
    for m in batches:
        assert m.metadata["rows_valid"].value + m.metadata["rows_invalid"].value == (
            m.metadata["rows_read"].value
        )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3 * 5  # five checks per batch, none at the run's end
    assert {e.check_name for e in evaluations} == {"validity_rate", "error_concentration",
        "rows_conserved", "rows_in_one_place", "quality_warnings"}  # fmt: skip
    assert all(e.passed and e.partition == partition for e in evaluations), evaluations
    rows_judged = [e.metadata["rows_read"].value for e in evaluations
                   if e.check_name == "rows_conserved"]  # fmt: skip
    assert rows_judged == [m.metadata["rows_read"].value for m in batches]  # each its batch's
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0]
    assert stored == sum(m.metadata["rows_inserted"].value for m in batches)

    # the files dropped again commit nothing, so the run reports no materialization or check
    for path in settings.processed_dir.glob("*/*.csv"):
        path.rename(settings.input_dir / path.name)
    again = dg.materialize([ingest], resources=resources, partition_key=partition)
    assert again.success
    assert again.asset_materializations_for_node("ingest_events") == []
    assert again.get_asset_check_evaluations() == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0] == stored


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


def test_a_conflicting_duplicate_is_counted_invalid_by_the_run_and_its_checks(
    settings: Settings, resources: dict[str, object], database_url: str
) -> None:
    """A second file re-sends one event with another session and one unchanged: the first is
    a dead letter in the batch's figures and tables, the second a duplicate; every row is
    accounted for, and the validity check shows the producer's bug."""
    partition = generate(settings, "--files", "1", "--events-per-file", "20",
                         "--anomaly-rate", "0", "--seed", "8")  # fmt: skip
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    assert dg.materialize([ingest], resources=resources, partition_key=partition).success
    source = next(settings.processed_dir.glob("*/*.csv"))
    header, changed, same = list(csv.reader(source.read_text().splitlines()))[:3]
    changed[header.index("session_id")] = "another-session"
    resent = settings.input_dir / f"{source.stem}z.csv"
    with resent.open("w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows([header, changed, same])
    result = dg.materialize(
        [ingest], resources=resources, partition_key=partition, raise_on_error=False
    )
    [batch] = materializations(result, "data_quality_metrics")
    names = ("rows_read", "rows_valid", "rows_invalid", "rows_inserted", "rows_duplicate")
    assert [batch.metadata[name].value for name in names] == [2, 1, 1, 0, 1]
    verdicts = check_results(result)
    assert verdicts["rows_conserved"].passed and verdicts["rows_in_one_place"].passed
    assert not verdicts["validity_rate"].passed  # half the file is a producer's bug: visible
    with psycopg.connect(database_url) as conn:
        letter = conn.execute(
            "SELECT source_line, error_codes, error_detail FROM dead_letter_events "
            "WHERE source_file = %s",
            (resent.name,),
        ).fetchone()
    assert letter[:2] == (1, ["CONFLICTING_DUPLICATE"])
    assert f"source_file='{source.name}', source_line=1" in letter[2]
