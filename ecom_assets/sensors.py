"""The input-directory sensor: new settled files become run requests for their partitions.

It lists the directory and never opens a file. Since a run ingests every pending file of its
partition, the cursor only keeps, per partition with files waiting, the newest modification
time already requested and when: a partition is requested again when a newer file lands, or
when its files are still waiting `ECOM_INGEST_RETRY_AFTER_S` later (a crashed run). The cursor
stays as small as the number of partitions with waiting files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from ecom_assets.resources.event_files import InputFile, list_input_files
from ecom_assets.settings import Settings
from ecom_assets.stack.dagster_home import INGEST_CONCURRENCY_TAG


@dataclass(frozen=True)
class Requested:
    newest_modified: float
    requested_at: float


def parse_cursor(cursor: str | None) -> dict[str, Requested]:
    if not cursor:
        return {}
    return {key: Requested(*value) for key, value in json.loads(cursor).items()}


def dump_cursor(state: dict[str, Requested]) -> str:
    return json.dumps(
        {key: [value.newest_modified, value.requested_at] for key, value in sorted(state.items())}
    )


def plan_requests(
    files: Iterable[InputFile], state: dict[str, Requested], now: float, retry_after_s: float
) -> tuple[dict[str, int], dict[str, Requested]]:
    """Partitions to request (with their waiting file counts) and the next cursor state."""
    newest: dict[str, float] = defaultdict(float)
    waiting: dict[str, int] = defaultdict(int)
    for file in files:
        newest[file.partition] = max(newest[file.partition], file.modified_at.timestamp())
        waiting[file.partition] += 1
    due: dict[str, int] = {}
    next_state: dict[str, Requested] = {}
    for partition, modified in newest.items():
        previous = state.get(partition)
        if (
            previous is None
            or modified > previous.newest_modified
            or now - previous.requested_at >= retry_after_s
        ):
            due[partition] = waiting[partition]
            next_state[partition] = Requested(modified, now)
        else:
            next_state[partition] = previous
    return due, next_state


def make_input_files_sensor(job: dg.UnresolvedAssetJobDefinition, settings: Settings):
    ingestion = settings.ingestion

    @dg.sensor(
        name="input_files_sensor",
        job=job,
        minimum_interval_seconds=ingestion.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests ingest runs for settled CSV files in {settings.input_dir}.",
    )
    def input_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = datetime.now(tz=UTC)
        files = list_input_files(settings.input_dir, ingestion.file_settle_s, now)
        due, state = plan_requests(
            files, parse_cursor(context.cursor), now.timestamp(), ingestion.retry_after_s
        )
        requests = [
            dg.RunRequest(
                partition_key=partition,
                run_key=f"{partition}@{state[partition].requested_at:.3f}",
                tags={INGEST_CONCURRENCY_TAG: "true", "ecom/waiting_files": str(count)},
            )
            for partition, count in sorted(due.items())
        ]
        return dg.SensorResult(run_requests=requests, cursor=dump_cursor(state))

    return input_files_sensor
