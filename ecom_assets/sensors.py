"""The input-directory sensor: new settled files become run requests for their partitions.

It lists the directory and never opens a file; a tick that finds no settled file watches the
directory for up to ECOM_INGEST_SENSOR_WATCH_S, since Dagster's daemon ticks every 5 s at most
(docs/decisions.md 44). Since a run ingests every pending file of its partition, the cursor only
keeps, per partition with files waiting, the newest modification time already requested and
when: a partition is requested again when a newer file lands, or when its files are still
waiting `ECOM_INGEST_RETRY_AFTER_S` later (a crashed run). A partition that already has a run
queued but not started is not requested again: that run lists the files when it starts, so it
takes the new ones too, and a run that keeps taking arrivals (ingest.py) gets at most one
successor in the queue, not one per tick. The cursor stays as small as the number of partitions
with waiting files.

A file whose hour is older than the first partition the code location loaded with (it landed
after the load; partitions.py) is not requested: it waits in the input directory, keyed by its
own hour, while the sensor records that hour as the first one and asks the webserver to reload
the code location (code_location.py), at most once per ECOM_INGEST_RETRY_AFTER_S. The reloaded
sensor requests it. With ECOM_INGEST_PARTITIONS_START set, the sensor only says which setting
would let it in. Either way every tick logs the files that wait and why.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ecom_assets.code_location import LOCATION_NAME, Reload, graphql_url
from ecom_assets.partitions import (
    PARTITION_FORMAT,
    first_hour,
    move_start_back,
    partition_hour,
    start_record,
)
from ecom_assets.resources.event_files import InputFile, watch_input_files
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
    files: Iterable[InputFile],
    state: dict[str, Requested],
    now: float,
    retry_after_s: float,
    queued: Collection[str] = (),
) -> tuple[dict[str, int], dict[str, Requested]]:
    """Partitions to request (with their waiting file counts) and the next cursor state.

    A due partition in ``queued`` (it has a run that has not started yet) counts as requested
    now without a new request.
    """
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
            if partition not in queued:
                due[partition] = waiting[partition]
            next_state[partition] = Requested(modified, now)
        else:
            next_state[partition] = previous
    return due, next_state


NOT_STARTED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
"""Run states before the ingest step lists the input directory."""


def queued_partitions(instance: dg.DagsterInstance, job_name: str) -> set[str]:
    """Partitions with a run of the job that has not started ingesting yet."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=NOT_STARTED))
    return {key for run in runs if (key := run.tags.get(PARTITION_NAME_TAG)) is not None}


RELOAD_WAIT_S = 1.5
"""How long a tick waits for the reload it asked for: long enough to report a webserver that is
not there, far shorter than an import of the code location."""


def split_early(files: list[InputFile], first: datetime) -> tuple[list[InputFile], list[InputFile]]:
    """(files of the partitions that exist, files of hours before ``first``)."""
    first_key = first.strftime(PARTITION_FORMAT)  # keys sort as the hours they name
    early = [file for file in files if file.partition < first_key]
    if not early:
        return files, []
    return [file for file in files if file.partition >= first_key], early


def make_input_files_sensor(
    job: dg.UnresolvedAssetJobDefinition, settings: Settings, first: datetime | None = None
):
    """The sensor; ``first``: the first hourly partition (default: the one the code location's
    ingest assets were built with)."""
    ingestion = settings.ingestion
    first = first or first_hour()
    url = graphql_url(settings.dagster)
    reloads: list[tuple[float, Reload]] = []  # this process's last request (a reload replaces it)

    def hold_back(context: dg.SensorEvaluationContext, early: list[InputFile], now: float) -> None:
        oldest = min(early, key=lambda file: (file.partition, file.name))
        waiting = (
            f"{len(early)} file(s) wait in {settings.input_dir} with hours before the first "
            f"partition {first.strftime(PARTITION_FORMAT)} (oldest {oldest.partition}: "
            f"{oldest.name!r}); they are not filed under another hour"
        )
        if ingestion.partitions_start is not None:
            context.log.warning(
                f"{waiting}. Set ECOM_INGEST_PARTITIONS_START={oldest.partition} or earlier (or "
                "unset it) and reload the code location to ingest them."
            )
            return
        path = start_record(settings)
        try:
            recorded = move_start_back(path, partition_hour(oldest.partition), datetime.now(tz=UTC))
        except OSError as exc:
            context.log.error(f"{waiting}. Cannot record the first hour in {path}: {exc}")
            return
        if reloads and now - reloads[-1][0] < ingestion.retry_after_s:
            said = reloads[-1][1].outcome(0)
        else:
            location = context.code_location_origin
            name = location.location_name if location is not None else LOCATION_NAME
            reloads[:] = [(now, Reload(url, name).start())]
            said = reloads[-1][1].outcome(RELOAD_WAIT_S)
        context.log.warning(
            f"{waiting}. First hour recorded in {path}: {recorded.strftime(PARTITION_FORMAT)}; "
            f"{said}. The reloaded code location requests them."
        )

    @dg.sensor(
        name="input_files_sensor",
        job=job,
        minimum_interval_seconds=ingestion.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests ingest runs for settled CSV files in {settings.input_dir}.",
    )
    def input_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        files, now = watch_input_files(
            settings.input_dir, ingestion.file_settle_s, ingestion.sensor_watch_s
        )
        files, early = split_early(files, first)
        if early:
            hold_back(context, early, now.timestamp())
        due, state = plan_requests(
            files,
            parse_cursor(context.cursor),
            now.timestamp(),
            ingestion.retry_after_s,
            # an idle tick needs no run storage: context.instance connects anew each tick
            queued=queued_partitions(context.instance, job.name) if files else (),
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
