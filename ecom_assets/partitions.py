"""Hourly ingest partitions, keyed by when a file was produced, from a meaningful first hour.

A partition per tiny file would exhaust Dagster's partition budget in days and cap throughput at
the run launch rate (docs/decisions.md); an hour per partition keeps the count near 9,000 a year
and lets one run drain every pending file of its hour. The hour comes from the generator's file
name (`events_<UTC timestamp>_<id>.csv`), or from the file's modification time for other names.

The first partition is ECOM_INGEST_PARTITIONS_START when set. Otherwise it is the hour recorded
in `<ECOM_STATE_DIR>/partitions_start`: the hour the code location first loaded, moved back (never
forward) to the hour of the oldest file waiting in the input directory or already processed
(`processed/<partition>/`). So the UI counts the partitions of this installation, not of a fixed
date, and every waiting file's own hour exists when the code location loads. A file of an older
hour that lands later waits, never filed under another hour: the sensor moves the record back
and asks for the code location to be reloaded (sensors.py, docs/decisions.md 55). Computing the
start lists two directories; it never touches PostgreSQL or Spark.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ecom_assets.settings import Settings, SettingsError, load_settings

PARTITION_FORMAT = "%Y-%m-%d-%H:00"
START_RECORD = "partitions_start"
"""The file in the state directory holding the recorded first hour, as a partition key."""

if TYPE_CHECKING:
    ingest_partitions: dg.HourlyPartitionsDefinition  # built on first use: __getattr__ below

_NAME_TIMESTAMP = re.compile(r"^events_(\d{8})T(\d{6})(?:\d*)Z?_[^/]*\.csv$")
_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:00$")


def produced_at(file_name: str, modified_at: datetime) -> datetime:
    """When a file was produced: its name's UTC timestamp, else its modification time."""
    match = _NAME_TIMESTAMP.match(file_name)
    if match:
        day, time = match.group(1), match.group(2)
        try:  # not strptime: 35 us a call, and the sensor and the run list every file
            return datetime(
                int(day[:4]), int(day[4:6]), int(day[6:]),
                int(time[:2]), int(time[2:4]), int(time[4:]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError:  # digits that are no moment, such as month 13
            pass
    return modified_at.astimezone(UTC)


def partition_key(file_name: str, modified_at: datetime, now: datetime) -> str:
    """The hourly partition of a file: the hour it was produced, however old.

    A timestamp after the current hour (a producer's clock, a made-up name) falls back to the
    modification time, then to the current hour. There is no lower bound: a file older than the
    first partition keeps its own hour and waits until the partitions reach back to it.
    """
    for moment in (produced_at(file_name, modified_at), modified_at.astimezone(UTC)):
        if moment <= now:
            return moment.strftime(PARTITION_FORMAT)
    return now.strftime(PARTITION_FORMAT)


def partition_hour(key: str) -> datetime:
    return datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=UTC)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def start_record(settings: Settings) -> Path:
    return settings.paths.state / START_RECORD


def watched_start_record() -> list[str]:
    """The record of this environment's settings, for code_files.watched_files: a run forked
    from imports older than a moved-back first hour would not know the older partitions."""
    try:
        return [str(start_record(load_settings()))]
    except SettingsError:  # the code location fails on them anyway, and says why
        return []


def read_recorded_start(path: Path) -> datetime | None:
    """The recorded first hour; None when there is none or it is not a partition key."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _KEY.match(text):
        return None
    try:
        return partition_hour(text)
    except ValueError:
        return None


def record_start(path: Path, hour: datetime) -> None:
    """Write the first hour atomically (a reader sees the old or the new key, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(hour.strftime(PARTITION_FORMAT) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def oldest_waiting_hour(input_dir: Path, now: datetime) -> datetime | None:
    """The hour of the oldest CSV file in the input directory, settled or not (as the sensor and
    the runs will key it); None when there is none."""
    oldest: str | None = None
    try:
        entries = list(os.scandir(input_dir))
    except OSError:
        return None
    for entry in entries:
        if entry.name.startswith(".") or entry.name[-4:].lower() != ".csv":
            continue
        try:
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                continue
            modified_at = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
        except OSError:  # taken by a run meanwhile
            continue
        key = partition_key(entry.name, modified_at, now)
        if oldest is None or key < oldest:  # keys sort as the hours they name
            oldest = key
    return None if oldest is None else partition_hour(oldest)


def oldest_processed_hour(processed_dir: Path) -> datetime | None:
    """The oldest partition with committed files (`processed/<partition>/`); None if none."""
    try:
        keys = [entry.name for entry in os.scandir(processed_dir) if _KEY.match(entry.name)]
    except OSError:
        return None
    for key in sorted(keys):
        try:
            return partition_hour(key)
        except ValueError:  # 2026-13-01-00:00: not a partition this code wrote
            continue
    return None


def move_start_back(path: Path, hour: datetime, now: datetime) -> datetime:
    """Record ``hour`` as the first hour unless the record is already as old; never moves it
    forward (nor later than the current hour). Without a record, the current hour is the one to
    move back from. Returns the first hour now recorded (OSError: the state directory cannot be
    written)."""
    recorded = read_recorded_start(path)
    start = min(hour_of(hour), hour_of(now), *([recorded] if recorded else []))
    if start != recorded:
        record_start(path, start)
    return start


def resolve_start(settings: Settings, now: datetime) -> datetime:
    """The first hourly partition: ECOM_INGEST_PARTITIONS_START, else the recorded first hour
    moved back to the oldest waiting or processed file (recorded on the way when it moved).

    Fails soft: an unwritable state directory gives the same hour, just not recorded.
    """
    explicit = settings.ingestion.partitions_start
    if explicit is not None:
        return hour_of(explicit)
    candidates = [
        hour
        for hour in (
            oldest_waiting_hour(settings.input_dir, now),
            oldest_processed_hour(settings.processed_dir),
        )
        if hour is not None
    ]
    path = start_record(settings)
    oldest = min(candidates, default=hour_of(now))
    try:
        return move_start_back(path, oldest, now)
    except OSError:
        recorded = read_recorded_start(path)
        return min(oldest, recorded) if recorded else oldest


def hourly_partitions(start: datetime) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(
        start_date=hour_of(start).strftime(PARTITION_FORMAT),
        timezone="UTC",
        end_offset=1,  # the current, still open hour is a partition too
    )


@functools.cache
def _ingest_partitions() -> dg.HourlyPartitionsDefinition:
    return hourly_partitions(resolve_start(load_settings(), datetime.now(tz=UTC)))


def __getattr__(name: str) -> object:
    """``ingest_partitions``, the partitions of the ingest assets, is built on first use (when
    the code location's assets are defined), not when this module is imported: listing the
    helpers above (the CLI, the run pool) reads no directory and records nothing."""
    if name == "ingest_partitions":
        return _ingest_partitions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def first_hour() -> datetime:
    """The first hour of ``ingest_partitions`` as this process loaded it."""
    return partition_hour(_ingest_partitions().start.strftime(PARTITION_FORMAT))
