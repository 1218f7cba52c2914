"""A run as a warm worker: it takes files that arrive while it runs, within its bounds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecom_assets.ingest import RunControl, ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.settings import IngestionSettings, Settings, load_settings
from ecom_assets_tests.test_fault_support import RecordingLog, landed
from ecom_assets_tests.test_generator_support import generate_files

pytestmark = pytest.mark.integration


def lingering(settings: Settings, linger_s: float, max_run_s: float = 600) -> Settings:
    """The test's settings with explicit run bounds (the suite's environment sets both to 0)."""
    ingestion = IngestionSettings(file_settle_s=0, linger_s=linger_s, max_run_s=max_run_s)
    return load_settings(paths=settings.paths, ingestion=ingestion)


def generate_clean(directory: Path, log_dir: Path, start: datetime, seed: int) -> Path:
    """One valid file of 50 events stamped at ``start``; returns its path."""
    generate_files(directory, log_dir, start, "--files", "1", "--events-per-file", "50",
                   "--schema", "v3", "--seed", str(seed), "--anomaly-rate", "0",
                   "--late-rate", "0")  # fmt: skip
    (path,) = directory.glob("*.csv")
    return path


def this_hour(now: datetime) -> datetime:
    """A start inside the current hour and at most a minute ago: one partition for every file."""
    return max(now.replace(minute=0, second=0, microsecond=0), now - timedelta(minutes=1))


def test_a_lingering_run_takes_a_file_that_arrives_after_its_last_batch(
    spark, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    settings = lingering(ingest_settings, linger_s=20)
    now = datetime.now(tz=UTC)
    generate_clean(settings.input_dir, settings.log_dir, this_hour(now), seed=1)
    late = generate_clean(tmp_path / "held", settings.log_dir, now, seed=2)
    partition = this_hour(now).strftime(PARTITION_FORMAT)

    arrival = threading.Timer(1.0, late.rename, [settings.input_dir / late.name])

    def arrive_later(step: str) -> None:
        if step == "moved" and not arrival.is_alive() and late.exists():
            arrival.start()  # the first batch is done: the run is lingering 1 s later

    started = time.monotonic()
    report = ingest_partition(
        spark, migrated_database_url, settings, partition, "linger", RecordingLog(),
        on_step=arrive_later,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert (report.batches, report.files_committed, report.rows_valid) == (2, 2, 100)
    assert landed(migrated_database_url, settings).events == 100
    assert elapsed >= 20  # it waited the linger time after the second batch, then ended
    assert elapsed < 20 + 60


def test_a_run_takes_only_the_files_waiting_at_its_start_once_older_than_max_run_s(
    spark, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    settings = lingering(ingest_settings, linger_s=20, max_run_s=0)
    now = datetime.now(tz=UTC)
    generate_clean(settings.input_dir, settings.log_dir, this_hour(now), seed=1)
    late = generate_clean(tmp_path / "held", settings.log_dir, now, seed=2)

    def arrive_during_batch(step: str) -> None:
        if step == "claimed":
            late.rename(settings.input_dir / late.name)

    started = time.monotonic()
    report = ingest_partition(
        spark, migrated_database_url, settings, this_hour(now).strftime(PARTITION_FORMAT),
        "no-linger", RecordingLog(), on_step=arrive_during_batch,
    )  # fmt: skip
    assert (report.batches, report.files_committed) == (1, 1)
    assert time.monotonic() - started < 20  # no lingering either
    assert [path.name for path in settings.input_dir.glob("*.csv")] == [late.name]


def test_a_run_stops_lingering_when_another_partition_has_files_waiting(
    spark, migrated_database_url: str, ingest_settings: Settings
) -> None:
    settings = lingering(ingest_settings, linger_s=60)
    now = datetime.now(tz=UTC)
    mine = generate_clean(settings.input_dir, settings.log_dir, this_hour(now), seed=1)
    other_hour = now - timedelta(hours=2)
    other = generate_clean(settings.input_dir / "other", settings.log_dir, other_hour, seed=2)
    other.rename(settings.input_dir / other.name)

    started = time.monotonic()
    report = ingest_partition(
        spark, migrated_database_url, settings, this_hour(now).strftime(PARTITION_FORMAT),
        "yield", RecordingLog(),
    )  # fmt: skip
    assert report.files_committed == 1
    assert time.monotonic() - started < 60  # ended without waiting out its linger time
    remaining = [path.name for path in settings.input_dir.glob("*.csv")]
    assert remaining == [other.name]
    assert mine.name not in remaining


def one_file_per_batch(settings: Settings, linger_s: float) -> Settings:
    ingestion = IngestionSettings(
        file_settle_s=0, linger_s=linger_s, max_run_s=600, max_files_per_run=1
    )
    return load_settings(paths=settings.paths, ingestion=ingestion)


def test_a_stop_ends_a_lingering_run_at_once_with_nothing_left(
    spark, migrated_database_url: str, ingest_settings: Settings
) -> None:
    settings = lingering(ingest_settings, linger_s=60)
    now = datetime.now(tz=UTC)
    generate_clean(settings.input_dir, settings.log_dir, this_hour(now), seed=1)
    control = RunControl()
    stop_later = threading.Timer(1.0, control.stop.set)

    def stop_while_lingering(step: str) -> None:
        if step == "moved":
            stop_later.start()

    started = time.monotonic()
    report = ingest_partition(
        spark, migrated_database_url, settings, this_hour(now).strftime(PARTITION_FORMAT),
        "stop-idle", RecordingLog(), on_step=stop_while_lingering, control=control,
    )  # fmt: skip
    assert time.monotonic() - started < 30  # not the 60 s of lingering
    assert (report.files_committed, report.stopped, report.files_left) == (1, True, 0)


def test_a_stop_commits_the_batch_in_flight_and_leaves_the_rest_waiting(
    spark, migrated_database_url: str, ingest_settings: Settings
) -> None:
    settings = one_file_per_batch(ingest_settings, linger_s=60)
    now = datetime.now(tz=UTC)
    for seed in (1, 2, 3):
        generate_clean(settings.input_dir / str(seed), settings.log_dir, this_hour(now), seed)
    for path in settings.input_dir.glob("*/*.csv"):
        path.rename(settings.input_dir / path.name)
    control = RunControl()
    committed: list[int] = []

    def stop_during_the_first_batch(step: str) -> None:
        if step == "claimed":
            control.stop.set()

    report = ingest_partition(
        spark, migrated_database_url, settings, this_hour(now).strftime(PARTITION_FORMAT),
        "stop-busy", RecordingLog(), on_step=stop_during_the_first_batch, control=control,
        on_commit=lambda batch: committed.append(batch.record.rows_read),
    )  # fmt: skip
    assert committed == [50]  # the batch in flight committed, and was reported
    assert (report.files_committed, report.stopped, report.files_left) == (1, True, 2)
    assert len(list(settings.input_dir.glob("*.csv"))) == 2
    assert landed(migrated_database_url, settings).events == 50


def test_a_code_change_ends_the_lingering_not_the_files_waiting(
    spark, migrated_database_url: str, ingest_settings: Settings
) -> None:
    settings = one_file_per_batch(ingest_settings, linger_s=60)
    now = datetime.now(tz=UTC)
    for seed in (1, 2):
        generate_clean(settings.input_dir / str(seed), settings.log_dir, this_hour(now), seed)
    for path in settings.input_dir.glob("*/*.csv"):
        path.rename(settings.input_dir / path.name)
    control = RunControl()
    control.stop_lingering.set()
    started = time.monotonic()
    report = ingest_partition(
        spark, migrated_database_url, settings, this_hour(now).strftime(PARTITION_FORMAT),
        "code-changed", RecordingLog(), control=control,
    )  # fmt: skip
    assert (report.batches, report.files_committed, report.stopped) == (2, 2, False)
    assert time.monotonic() - started < 30  # not the 60 s of lingering
