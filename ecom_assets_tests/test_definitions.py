"""The code location loads, its graph is what we expect, and its assets run for real."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
from dagster_pyspark import LazyPySparkResource

from ecom_assets.assets.analytics import build_analytics_assets
from ecom_assets.assets.database_schema import database_schema
from ecom_assets.definitions import defs
from ecom_assets.resources.migrations import discover_migrations
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import shared_session_url, spark_config, spark_resource
from ecom_assets.schema.contract import ErrorCode
from ecom_assets.schema.contract_file import DEFAULT_CONTRACT_FILE
from ecom_assets.settings import SparkSettings

ROOT = Path(__file__).resolve().parents[1]


def test_asset_graph_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "database_schema": "platform",
        "ecommerce_events": "ingestion",
        "dead_letter_events": "ingestion",
        "data_quality_metrics": "ingestion",
        "v_hourly_event_summary": "analytics",
        "v_category_performance": "analytics",
        "v_user_segment_analysis": "analytics",
        "v_data_quality_dashboard": "analytics",
        "v_user_sessions": "analytics",
        "pipeline_health": "monitoring",
    }
    assert set(defs.resources) == {"postgres", "pyspark"}
    checks = {key.name for key in graph.asset_check_keys}
    metrics_checks = {"validity_rate", "error_concentration", "rows_conserved"}
    events_checks = {"rows_in_one_place", "quality_warnings"}
    assert checks == {*metrics_checks, *events_checks, "pipeline_healthy"}
    # the UI shows the contract in force on the events asset
    metadata = graph.get(dg.AssetKey("ecommerce_events")).metadata
    assert metadata["contract_file"] == str(DEFAULT_CONTRACT_FILE)
    contract = metadata["contract"].value
    assert "| UNKNOWN_PRODUCT | warn |" in contract
    assert "| MISSING_EVENT_ID | error (always) |" in contract
    assert contract.count("\n| ") == 2 + 6 + 2 + len(ErrorCode)  # two tables, their headers
    sensors = ["input_files_sensor", "ingest_failure_sensor", "ingest_success_sensor"]
    # downstream_sensor refreshes health and the analytics views; no schedules
    assert [sensor.name for sensor in defs.sensors] == [*sensors, "downstream_sensor"]
    assert not defs.schedules
    ingested = {dg.AssetKey(key) for key in ("ecommerce_events", "dead_letter_events")}
    health_upstream = graph.get(dg.AssetKey("pipeline_health")).parent_keys
    assert health_upstream == {*ingested, dg.AssetKey("data_quality_metrics")}
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    assert job.tags["ecom/ingest"] == "true"
    views = {"v_hourly_event_summary", "v_category_performance", "v_user_segment_analysis",
             "v_user_sessions"}  # fmt: skip
    for view in views:
        upstream = graph.get(dg.AssetKey(view)).parent_keys
        assert upstream == {dg.AssetKey("ecommerce_events")}
    quality_upstream = graph.get(dg.AssetKey("v_data_quality_dashboard")).parent_keys
    assert quality_upstream == {dg.AssetKey("data_quality_metrics")}


def test_dagster_validates_the_workspace() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location ecom" in result.stdout + result.stderr


def test_materializing_the_schema_and_views_runs_against_postgres(database_url: str) -> None:
    postgres = PostgresResource(url=database_url)
    assets = [database_schema, *build_analytics_assets()]
    result = dg.materialize(assets, resources={"postgres": postgres})
    assert result.success
    applied = result.asset_materializations_for_node("database_schema")[0].metadata["applied_now"]
    migrations = [migration.name for migration in discover_migrations()]
    assert applied.value == migrations
    view = result.asset_materializations_for_node("v_hourly_event_summary")[0]
    assert view.metadata["dagster/row_count"].value == 0
    # a materialized view shows new events only once its asset refreshed it
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO ecommerce_events (event_id, event_type, product_id, event_time, "
            "event_date, event_hour, schema_version, source_file, source_line) "
            "VALUES (gen_random_uuid(), 'view', 1500, now(), current_date, 0, 'v3', 'a.csv', 1)"
        )
        assert conn.execute("SELECT count(*) FROM v_hourly_event_summary").fetchone() == (0,)
    hourly = next(a for a in assets if a.key == dg.AssetKey("v_hourly_event_summary"))
    refreshed = dg.materialize([hourly], resources={"postgres": postgres})
    metadata = refreshed.asset_materializations_for_node("v_hourly_event_summary")[0].metadata
    assert metadata["dagster/row_count"].value == 1
    assert metadata["refresh_s"].value >= 0
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert stored == (len(migrations),)
    again = dg.materialize([database_schema], resources={"postgres": postgres})
    metadata = again.asset_materializations_for_node("database_schema")[0].metadata
    assert metadata["applied_now"].value == []


def test_spark_resource_gives_a_working_connect_session(spark_server) -> None:
    settings = SparkSettings(remote=spark_server.url)
    now = datetime.now(tz=UTC)
    assert spark_config(settings, now) == {
        "spark.remote": shared_session_url(spark_server.url, now)
    }

    @dg.asset
    def counted(pyspark: LazyPySparkResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"n": pyspark.spark_session.range(7).count()})

    result = dg.materialize([counted], resources={"pyspark": spark_resource(settings)})
    assert result.asset_materializations_for_node("counted")[0].metadata["n"].value == 7


def test_classic_mode_configures_a_local_master() -> None:
    config = spark_config(SparkSettings(mode="classic", master="local[1]"))
    assert config["spark.master"] == "local[1]"
    assert "spark.remote" not in config
