"""Downstream keeps up: pipeline_health and the analytics views follow ingest materializations.

One sensor, `downstream_sensor`, evaluated on every loop of Dagster's sensor daemon (5 s), reads
the newest materialization of the ingest assets from the instance (one `get_asset_records`
call, whether a run logged it mid-run or at its end) and compares it with the storage id its
cursor says the last refresh covered. Per target:

- `pipeline_health` (one PostgreSQL query): requested when ingest data is newer than its last
  request and ECOM_DAGSTER_HEALTH_MIN_INTERVAL_S has passed since then, or, without new data,
  every HEALTH_MAX_AGE_S (it detects staleness: no batch for a while makes it DEGRADED).
- the analytics views (REFRESH MATERIALIZED VIEW, minutes at 10 million events): requested when
  ingest data is newer than the last refresh and a tick of ECOM_DAGSTER_ANALYTICS_CRON has
  passed since it; never when nothing changed; never while a refresh run is still in progress.

Each run request carries why as tags (REASON_TAG: which ingest materialization, when, by which
run), and the refreshed assets copy the reason into their metadata, so the lineage view says
why an asset is fresh. Why a sensor and not declarative automation: docs/decisions.md 56.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._utils.schedules import get_next_cron_tick  # private; dagster is pinned exactly

from ecom_assets.jobs import REASON_TAG, TRIGGER_TAG, refresh_job
from ecom_assets.settings import Settings

if TYPE_CHECKING:
    from dagster._core.storage.event_log.base import AssetRecord

SENSOR_NAME = "downstream_sensor"
TICK_S = 5
"""Dagster's sensor daemon evaluates sensors once per loop of at least 5 s."""
HEALTH_MAX_AGE_S = 300
"""pipeline_health is refreshed at least this often, new data or not (the old schedule's 5 min)."""
LISTED_MATERIALIZATIONS = 100
LISTED_PARTITIONS = 3


@dataclass(frozen=True)
class Follower:
    """What the cursor keeps per target: the storage id of the newest ingest materialization
    its last request covered, and when that request was made (epoch seconds, 0 = never)."""

    seen: int
    requested_at: float


@dataclass(frozen=True)
class Target:
    name: str
    keys: tuple[dg.AssetKey, ...]
    min_interval_s: float | None = None
    cron: str | None = None
    max_age_s: float | None = None
    first_refresh_waits: bool = False
    """Never refreshed: wait for the throttle from the sensor's first tick (a refresh of the
    analytics views is expensive; the old schedule also waited for its first cron tick)."""

    @property
    def job_name(self) -> str:
        return f"{self.name}_job"

    def allowed_at(self, requested_at: float) -> float:
        """The earliest time a request may follow one made at requested_at."""
        if self.cron is not None:
            after = datetime.fromtimestamp(requested_at + 1e-3, tz=UTC)
            return get_next_cron_tick(self.cron, after, "UTC").timestamp()
        return requested_at + (self.min_interval_s or 0.0)


@dataclass(frozen=True)
class Decision:
    trigger: str | None  # new_data | periodic, None: no request
    why: str
    follower: Follower


def decide(target: Target, follower: Follower, latest: int, now: float) -> Decision:
    """Whether the target is due, given the newest ingest materialization's storage id."""
    changed = latest > follower.seen
    periodic = target.max_age_s is not None and now - follower.requested_at >= target.max_age_s
    if not changed and not periodic:
        return Decision(None, "no ingest materialization since the last refresh", follower)
    allowed_at = target.allowed_at(follower.requested_at)
    if now < allowed_at:
        return Decision(None, f"new ingest data, throttled until {_iso(allowed_at)}", follower)
    trigger = "new_data" if changed else "periodic"
    return Decision(trigger, trigger, Follower(max(latest, follower.seen), now))


def initial_follower(
    target: Target, entries: Mapping[dg.AssetKey, AssetRecord], now: float
) -> Follower:
    """Without a cursor: the target's own oldest last materialization, so a new or reset cursor
    refreshes only what is older than the ingest data."""
    records = [_last_record(entries.get(key)) for key in target.keys]
    if any(record is None for record in records):
        return Follower(0, now if target.first_refresh_waits else 0.0)
    oldest = min(records, key=lambda record: record.storage_id)
    return Follower(oldest.storage_id, oldest.timestamp)


def parse_cursor(cursor: str | None) -> dict[str, Follower]:
    if not cursor:
        return {}
    return {name: Follower(int(seen), float(at)) for name, (seen, at) in json.loads(cursor).items()}


def dump_cursor(state: Mapping[str, Follower]) -> str:
    return json.dumps({name: [f.seen, f.requested_at] for name, f in sorted(state.items())})


def describe_new_data(
    instance: dg.DagsterInstance, upstream: Sequence[dg.AssetKey], after: int, since: float
) -> str:
    """'ecommerce_events 2026-12-07-17:00 materialized at ... by run ...; N materializations ...'"""
    records: list[dg.EventLogRecord] = []
    for key in upstream:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
            limit=LISTED_MATERIALIZATIONS,
            ascending=False,
        )
        records.extend(found.records)
    if not records:
        return "new ingest data"
    records.sort(key=lambda record: record.storage_id, reverse=True)
    newest = records[0]
    key = newest.asset_key.to_user_string() if newest.asset_key else "ingest"
    partitions = sorted({r.partition_key for r in records if r.partition_key}, reverse=True)
    listed = ", ".join(partitions[:LISTED_PARTITIONS])
    more = (
        f" and {len(partitions) - LISTED_PARTITIONS} more"
        if len(partitions) > LISTED_PARTITIONS
        else ""
    )
    count = f"{len(records)}+" if len(records) >= LISTED_MATERIALIZATIONS else str(len(records))
    last = f"since the refresh requested at {_iso(since)}" if since else "so far"
    return (
        f"{key} {newest.partition_key or ''} materialized at {_iso(newest.timestamp)} by run "
        f"{newest.run_id[:8]}; {count} ingest materializations {last} "
        f"(partitions {listed}{more})"
    ).replace("  ", " ")


def build_downstream_sensor(
    settings: Settings,
    upstream: Sequence[dg.AssetKey],
    health: dg.AssetsDefinition,
    analytics: Sequence[dg.AssetsDefinition],
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """The sensor and the two jobs it launches (`pipeline_health_job`, `analytics_job`);
    clock gives the current epoch seconds (tests pass their own)."""
    health_job = refresh_job("pipeline_health", dg.AssetSelection.assets(health), "pipeline_health")
    analytics_job = refresh_job(
        "analytics", dg.AssetSelection.assets(*analytics), "the analytics views"
    )
    targets = (
        Target(
            "pipeline_health",
            tuple(health.keys),
            min_interval_s=settings.dagster.health_min_interval_s,
            max_age_s=HEALTH_MAX_AGE_S,
        ),
        Target(
            "analytics",
            tuple(key for assets in analytics for key in assets.keys),
            cron=settings.dagster.analytics_cron,
            first_refresh_waits=True,
        ),
    )
    upstream = list(upstream)
    watched = [*upstream, *(key for target in targets for key in target.keys)]

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[health_job, analytics_job],
        minimum_interval_seconds=TICK_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Refreshes pipeline_health after new ingest materializations (at most every "
            f"{settings.dagster.health_min_interval_s} s, and every {HEALTH_MAX_AGE_S} s "
            "without them) and the analytics views when ingest data changed (at most once per "
            f"'{settings.dagster.analytics_cron}' tick, UTC)."
        ),
    )
    def downstream_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        now = clock()
        entries = {r.asset_entry.asset_key: r for r in instance.get_asset_records(watched)}
        latest = max(
            (record.storage_id for key in upstream if (record := _last_record(entries.get(key)))),
            default=0,
        )
        state = parse_cursor(context.cursor)
        requests: list[dg.RunRequest] = []
        skipped: list[str] = []
        for target in targets:
            follower = state.get(target.name) or initial_follower(target, entries, now)
            decision = decide(target, follower, latest, now)
            if decision.trigger is not None and _in_progress(instance, target.job_name):
                decision = Decision(None, "a refresh run is still in progress", follower)
            state[target.name] = decision.follower
            if decision.trigger is None:
                skipped.append(f"{target.name}: {decision.why}")
                continue
            if decision.trigger == "new_data":
                reason = describe_new_data(instance, upstream, follower.seen, follower.requested_at)
            else:
                age = f"{now - follower.requested_at:.0f} s" if follower.requested_at else "ever"
                reason = f"periodic: no refresh for {age} and no new ingest data"
            requests.append(
                dg.RunRequest(
                    job_name=target.job_name,
                    tags={TRIGGER_TAG: decision.trigger, REASON_TAG: reason},
                )
            )
            context.log.info(f"requesting {target.job_name}: {reason}")
        cursor = dump_cursor(state)
        if requests:
            return dg.SensorResult(run_requests=requests, cursor=cursor)
        return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(skipped)), cursor=cursor)

    return downstream_sensor


def _last_record(record: AssetRecord | None) -> dg.EventLogRecord | None:
    return record.asset_entry.last_materialization_record if record else None


def _in_progress(instance: dg.DagsterInstance, job_name: str) -> bool:
    runs = dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS_RUN_STATUSES)
    return bool(instance.get_run_ids(filters=runs, limit=1))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
