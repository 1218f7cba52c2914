"""downstream_sensor: pipeline_health and the analytics views follow ingest materializations,
throttled, and say why; evaluated against a real Dagster instance with reported
materializations, and the refreshed assets materialised against PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from ecom_assets.assets.analytics import build_analytics_assets
from ecom_assets.assets.monitoring import HEALTH, build_health_asset
from ecom_assets.definitions import defs
from ecom_assets.downstream import (
    HEALTH_MAX_AGE_S,
    SENSOR_NAME,
    Follower,
    Target,
    build_downstream_sensor,
    decide,
    dump_cursor,
    parse_cursor,
)
from ecom_assets.jobs import REASON_TAG, TRIGGER_TAG
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.settings import Settings, load_settings

INGEST = [
    dg.AssetKey(k) for k in ("ecommerce_events", "dead_letter_events", "data_quality_metrics")
]
PARTITION = "2026-12-07-17:00"
START = datetime(2026, 12, 7, 17, 0, 30, tzinfo=UTC).timestamp()  # cron ticks: 17:05, 17:10


def test_health_follows_new_data_at_most_every_min_interval_and_periodically() -> None:
    health = Target("pipeline_health", (HEALTH,), min_interval_s=30, max_age_s=300)
    last = Follower(seen=10, requested_at=START)
    assert decide(health, last, latest=10, now=START + 60).trigger is None  # nothing new
    throttled = decide(health, last, latest=11, now=START + 29)
    assert throttled.trigger is None
    assert throttled.why == "new ingest data, throttled until 2026-12-07 17:01:00 UTC"
    assert throttled.follower == last  # still owed: requested once the interval has passed
    due = decide(health, last, latest=11, now=START + 30)
    assert (due.trigger, due.follower) == ("new_data", Follower(11, START + 30))
    periodic = decide(health, last, latest=10, now=START + 300)
    assert (periodic.trigger, periodic.follower) == ("periodic", Follower(10, START + 300))


def test_analytics_refresh_at_most_once_per_cron_tick_and_only_after_new_data() -> None:
    analytics = Target("analytics", (dg.AssetKey("v"),), cron="*/5 * * * *")
    last = Follower(seen=10, requested_at=START)  # 17:00:30
    assert decide(analytics, last, latest=10, now=START + 3600).trigger is None
    throttled = decide(analytics, last, latest=12, now=START + 269)  # 17:04:59
    assert throttled.why == "new ingest data, throttled until 2026-12-07 17:05:00 UTC"
    assert decide(analytics, last, latest=12, now=START + 270).trigger == "new_data"
    # a request made exactly at a tick waits for the next one
    at_tick = Follower(seen=10, requested_at=START + 270)
    assert decide(analytics, at_tick, latest=12, now=START + 270).trigger is None
    assert parse_cursor(dump_cursor({"analytics": last})) == {"analytics": last}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def definitions(clock: Clock) -> dg.Definitions:
    settings = load_settings()
    health = build_health_asset(settings, upstream=INGEST)
    analytics = build_analytics_assets()
    sensor = build_downstream_sensor(settings, INGEST, health, analytics, clock=clock)
    postgres = PostgresResource(url="postgresql://unused@127.0.0.1:1/unused")  # never opened
    return dg.Definitions(
        assets=[health, *analytics], sensors=[sensor], resources={"postgres": postgres}
    )


class Ticks:
    """Evaluates the sensor as the daemon would, carrying its cursor from tick to tick."""

    def __init__(self, definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.sensor = definitions.resolve_sensor_def(SENSOR_NAME)
        self.definitions, self.instance, self.cursor = definitions, instance, None

    def __call__(self) -> tuple[dict[str, dict[str, str]], str | None]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.definitions
        )
        result = self.sensor(context)
        self.cursor = result.cursor
        requests = {request.job_name: request.tags for request in result.run_requests or []}
        skip = result.skip_reason.skip_message if result.skip_reason else None
        return requests, skip


def ingest_batch(instance: dg.DagsterInstance, partition: str = PARTITION) -> None:
    """What a committed batch reports: one materialization per ingest asset."""
    for key in INGEST:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))


def test_sensor_requests_refreshes_only_after_new_data_and_within_throttles(
    definitions: dg.Definitions, clock: Clock
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    tick = Ticks(definitions, instance)

    # first tick: health was never materialised; the analytics views wait for data
    requests, _ = tick()
    assert set(requests) == {"pipeline_health_job"}
    assert requests["pipeline_health_job"][TRIGGER_TAG] == "periodic"
    assert requests["pipeline_health_job"][REASON_TAG] == (
        "periodic: no refresh for ever and no new ingest data"
    )
    clock.now += 5
    requests, skip = tick()
    assert requests == {}
    assert skip == (
        "pipeline_health: no ingest materialization since the last refresh; "
        "analytics: no ingest materialization since the last refresh"
    )

    # a batch commits: health within its 30 s interval, analytics at the next cron tick
    clock.now += 5
    ingest_batch(instance)
    requests, skip = tick()
    assert requests == {}
    assert skip == (
        "pipeline_health: new ingest data, throttled until 2026-12-07 17:01:00 UTC; "
        "analytics: new ingest data, throttled until 2026-12-07 17:05:00 UTC"
    )
    clock.now = START + 30
    requests, _ = tick()
    assert set(requests) == {"pipeline_health_job"}
    assert requests["pipeline_health_job"][TRIGGER_TAG] == "new_data"
    reason = requests["pipeline_health_job"][REASON_TAG]
    assert reason.startswith(f"data_quality_metrics {PARTITION} materialized at 2026-")
    assert (
        "; 3 ingest materializations since the refresh requested at 2026-12-07 17:00:30 UTC "
        in (reason)
    )
    assert reason.endswith(f"(partitions {PARTITION})")

    # more batches during the interval: one request when it has passed, covering all of them
    for partition in ("2026-12-07-16:00", PARTITION, PARTITION):
        clock.now += 5
        ingest_batch(instance, partition)
        assert tick()[0] == {}
    clock.now = START + 60
    requests, _ = tick()
    assert set(requests) == {"pipeline_health_job"}
    assert "9 ingest materializations" in requests["pipeline_health_job"][REASON_TAG]
    assert (
        "(partitions 2026-12-07-17:00, 2026-12-07-16:00)"
        in (requests["pipeline_health_job"][REASON_TAG])
    )

    # the cron tick: the analytics refresh waits while a refresh run is still in progress
    clock.now = datetime(2026, 12, 7, 17, 5, 2, tzinfo=UTC).timestamp()
    running = dg.DagsterRun(job_name="analytics_job", status=dg.DagsterRunStatus.STARTED)
    instance.add_run(running)
    requests, skip = tick()
    assert requests == {}
    assert "analytics: a refresh run is still in progress" in (skip or "")
    instance.report_run_canceled(running)
    clock.now += 5
    requests, _ = tick()
    assert set(requests) == {"analytics_job"}
    assert "12 ingest materializations" in requests["analytics_job"][REASON_TAG]

    # nothing new: no analytics refresh ever again, health every 5 minutes
    clock.now += 3600
    requests, _ = tick()
    assert set(requests) == {"pipeline_health_job"}
    assert requests["pipeline_health_job"][REASON_TAG].startswith("periodic: no refresh for ")
    clock.now += HEALTH_MAX_AGE_S - 5
    assert tick()[0] == {}


def test_a_new_cursor_starts_from_the_assets_last_materializations(
    definitions: dg.Definitions, clock: Clock
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    ingest_batch(instance)
    refreshed = [
        HEALTH,
        *definitions.resolve_job_def("analytics_job").asset_layer.selected_asset_keys,
    ]
    for key in refreshed:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    clock.now = datetime.now(tz=UTC).timestamp() + 60  # a minute after those materializations
    assert Ticks(definitions, instance)() == (
        {},
        "pipeline_health: no ingest materialization since the last refresh; "
        "analytics: no ingest materialization since the last refresh",
    )
    ingest_batch(instance)
    clock.now += 241  # past the health interval and a cron tick
    requests, _ = Ticks(definitions, instance)()
    assert set(requests) == {"pipeline_health_job", "analytics_job"}


def test_definitions_run_the_downstream_sensor_instead_of_schedules() -> None:
    assert defs.schedules is None or list(defs.schedules) == []
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 5
    assert {job.name for job in sensor.jobs} == {"pipeline_health_job", "analytics_job"}
    analytics = defs.resolve_job_def("analytics_job").asset_layer.selected_asset_keys
    graph = defs.resolve_asset_graph()
    assert analytics == {key for key in graph.get_all_asset_keys() if key.path[0].startswith("v_")}


def test_refreshed_assets_say_why(migrated_database_url: str, ingest_settings: Settings) -> None:
    postgres = PostgresResource(url=migrated_database_url)
    health = build_health_asset(ingest_settings, upstream=[])
    dashboard = next(
        a for a in build_analytics_assets() if a.key.path == ["v_data_quality_dashboard"]
    )
    why = {TRIGGER_TAG: "new_data", REASON_TAG: f"ecommerce_events {PARTITION} materialized"}
    result = dg.materialize([health, dashboard], resources={"postgres": postgres}, tags=why)
    for node in ("pipeline_health", "v_data_quality_dashboard"):
        metadata = result.asset_materializations_for_node(node)[0].metadata
        assert metadata["refreshed_because"].value == (
            f"new_data: ecommerce_events {PARTITION} materialized"
        )
    by_hand = dg.materialize([health], resources={"postgres": postgres})
    metadata = by_hand.asset_materializations_for_node("pipeline_health")[0].metadata
    assert metadata["refreshed_because"].value.startswith("launched by hand or a backfill")
