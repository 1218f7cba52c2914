"""A file's hourly partition, and the first partition: set, or recorded and moved back only."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.code_files import watched_files
from ecom_assets.jobs import build_ingest_job
from ecom_assets.partitions import (
    PARTITION_FORMAT,
    hour_of,
    hourly_partitions,
    partition_key,
    produced_at,
    read_recorded_start,
    resolve_start,
    start_record,
)
from ecom_assets.sensors import make_input_files_sensor, parse_cursor
from ecom_assets.settings import (
    DagsterSettings,
    IngestionSettings,
    PathSettings,
    Settings,
    SettingsError,
    load_settings,
)
from ecom_assets.stack.processes import free_port

MODIFIED = datetime(2026, 11, 30, 5, 17, 42, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def default_partitions_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests judge the default first hour: the suite's pinned one (conftest) is removed."""
    monkeypatch.delenv("ECOM_INGEST_PARTITIONS_START", raising=False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events_20261130T041502Z_ab12.csv", datetime(2026, 11, 30, 4, 15, 2, tzinfo=UTC)),
        ("events_20261130T041502123456Z_ab12.csv", datetime(2026, 11, 30, 4, 15, 2, tzinfo=UTC)),
        ("events_20240229T235959_x.csv", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("events_20261330T041502Z_ab12.csv", MODIFIED),  # month 13
        ("events_20250229T000000Z_ab12.csv", MODIFIED),  # no February 29 in 2025
        ("events_20261130T246000Z_ab12.csv", MODIFIED),  # hour 24
        ("events_20261130T041502Z_ab12.txt", MODIFIED),
        ("clicks.csv", MODIFIED),
    ],
)
def test_produced_at_reads_the_name_or_falls_back_to_the_modification_time(
    name: str, expected: datetime
) -> None:
    assert produced_at(name, MODIFIED) == expected


def test_produced_at_agrees_with_strptime_on_any_digits() -> None:
    draw = random.Random(7)
    for _ in range(5000):
        digits = "".join(draw.choice("0123456789") for _ in range(14))
        digits = draw.choice([digits, f"{draw.randrange(1, 9999):04d}{digits[4:]}"])
        try:
            expected = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            expected = MODIFIED
        assert produced_at(f"events_{digits[:8]}T{digits[8:]}Z_x.csv", MODIFIED) == expected


def test_an_old_file_keeps_its_own_hour_and_a_future_one_falls_back() -> None:
    # however old, a file is keyed by its own hour: never clamped into a later one
    assert partition_key("events_20190704T235959Z_x.csv", MODIFIED, NOW) == "2019-07-04-23:00"
    old = datetime(2020, 2, 29, 13, 5, tzinfo=UTC)
    assert partition_key("shop_export.CSV", old, NOW) == "2020-02-29-13:00"
    assert partition_key("events_20261130T041502Z_x.csv", MODIFIED, NOW) == "2026-11-30-04:00"
    # a name in the future: the modification time, else the current hour
    assert partition_key("events_20261130T071502Z_x.csv", MODIFIED, NOW) == "2026-11-30-05:00"
    future = MODIFIED + timedelta(days=2)
    assert partition_key("events_20261202T041502Z_x.csv", future, NOW) == "2026-11-30-06:00"


def test_partition_keys_sort_as_the_hours_they_name() -> None:
    # the sensor compares keys as strings (a strptime per file would cost a 10,000-file tick 0.35 s)
    draw = random.Random(11)
    hours = [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(hours=draw.randrange(10**6))
             for _ in range(2000)]  # fmt: skip
    assert sorted(hours) == sorted(hours, key=lambda hour: hour.strftime(PARTITION_FORMAT))


# --- ECOM_INGEST_PARTITIONS_START ---------------------------------------------------------------


@pytest.fixture
def no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("ECOM_HOME", str(tmp_path))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-29-10:00", datetime(2026, 1, 29, 10, tzinfo=UTC)),  # the partition key
        ("2026-01-29T10:00:00Z", datetime(2026, 1, 29, 10, tzinfo=UTC)),
        ("2026-01-29T11:00+01:00", datetime(2026, 1, 29, 10, tzinfo=UTC)),  # said in UTC
        ("2026-01-29 10:00", datetime(2026, 1, 29, 10, tzinfo=UTC)),  # naive: UTC
        ("", None),
    ],
)
def test_the_first_hour_can_be_set(
    no_env_file: None, monkeypatch: pytest.MonkeyPatch, value: str, expected: datetime | None
) -> None:
    monkeypatch.setenv("ECOM_INGEST_PARTITIONS_START", value)
    assert load_settings().ingestion.partitions_start == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-01-29-10:30", "whole hour"),
        ("2026-01-29T10:00:05Z", "whole hour"),
        ("yesterday", "such as 2026-01-29-10:00"),
        ("2999-01-01-00:00", "future"),
    ],
)
def test_a_bad_first_hour_stops_the_start_naming_the_variable(
    no_env_file: None, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("ECOM_INGEST_PARTITIONS_START", value)
    with pytest.raises(SettingsError, match="ECOM_INGEST_PARTITIONS_START") as error:
        load_settings()
    assert says in str(error.value)


# --- the recorded first hour ------------------------------------------------------------------


def _settings(home: Path, **ingestion: object) -> Settings:
    return load_settings(
        paths=PathSettings(home=home), ingestion=IngestionSettings(file_settle_s=0, **ingestion)
    )


def _drop(directory: Path, name: str, modified: datetime | None = None) -> Path:
    """A file as a producer leaves it (the modification time it had kept, if given)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("event_id,event_type\n")
    if modified is not None:
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def test_a_new_installation_starts_at_its_first_hour_and_never_moves_forward(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    start = resolve_start(settings, NOW + timedelta(minutes=17))
    assert start == NOW  # 1 partition (plus the open hour), not 16,632 since 2025
    assert start_record(settings).read_text() == "2026-11-30-06:00\n"
    assert start_record(settings).parent == settings.paths.state
    # a day later, with nothing older around: the same first hour
    assert resolve_start(settings, NOW + timedelta(days=1)) == NOW
    partitions = hourly_partitions(start)
    keys = partitions.get_partition_keys(current_time=NOW + timedelta(hours=2, minutes=5))
    assert keys == ["2026-11-30-06:00", "2026-11-30-07:00", "2026-11-30-08:00"]


def test_older_waiting_files_of_any_producer_move_the_first_hour_back(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert resolve_start(settings, NOW) == NOW
    # another shop's export, named its own way, with the modification time of its day
    _drop(settings.input_dir, "orders-export.CSV", datetime(2026, 11, 2, 8, 59, tzinfo=UTC))
    _drop(settings.input_dir, "events_20261110T120000Z_ab.csv")  # the generator's name
    _drop(settings.input_dir, ".events_20200101T000000Z_half.csv")  # hidden: not a candidate
    _drop(settings.input_dir, "notes.txt", datetime(2019, 1, 1, tzinfo=UTC))  # not a CSV
    (settings.input_dir / "old.csv").mkdir()
    os.utime(settings.input_dir / "old.csv", (0, 0))  # a directory is no file
    os.symlink(_drop(tmp_path, "linked.csv", datetime(2018, 1, 1, tzinfo=UTC)),
               settings.input_dir / "linked.csv")  # fmt: skip
    assert resolve_start(settings, NOW) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert read_recorded_start(start_record(settings)) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    # the files are ingested and leave: the first hour stays where it was moved
    for path in settings.input_dir.glob("*.*"):
        path.unlink() if path.is_file() else path.rmdir()
    assert resolve_start(settings, NOW + timedelta(days=3)) == datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_an_older_processed_partition_moves_the_first_hour_back(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (settings.processed_dir / "2026-10-31-23:00").mkdir(parents=True)
    (settings.processed_dir / "2026-13-01-00:00").mkdir()  # no such hour: not a partition
    (settings.processed_dir / "scratch").mkdir()
    assert resolve_start(settings, NOW) == datetime(2026, 10, 31, 23, tzinfo=UTC)


def test_a_set_first_hour_wins_and_records_nothing(tmp_path: Path) -> None:
    fixed = datetime(2026, 11, 1, 0, tzinfo=UTC)
    settings = _settings(tmp_path, partitions_start=fixed)
    _drop(settings.input_dir, "events_20261020T120000Z_ab.csv")
    assert resolve_start(settings, NOW) == fixed
    assert not start_record(settings).exists()


def test_a_damaged_record_is_replaced_and_an_unwritable_state_dir_only_costs_the_record(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    start_record(settings).parent.mkdir(parents=True)
    start_record(settings).write_text("not an hour")
    assert resolve_start(settings, NOW) == NOW
    assert start_record(settings).read_text() == "2026-11-30-06:00\n"

    (tmp_path / "file").write_text("")
    blocked = load_settings(
        paths=PathSettings(home=tmp_path, state_dir=Path("file/state")),
        ingestion=IngestionSettings(file_settle_s=0),
    )
    _drop(blocked.input_dir, "events_20261129T120000Z_ab.csv")
    assert resolve_start(blocked, NOW) == datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_the_run_pool_and_lingering_runs_watch_the_record(
    no_env_file: None, tmp_path: Path
) -> None:
    # a moved-back first hour is new code for them: a run forked from older imports would
    # not find the older partition (DagsterUnknownPartitionError)
    assert str(tmp_path / ".ecom" / "partitions_start") in watched_files()


# --- the sensor and files older than the first partition -------------------------------------


def _sensor(settings: Settings, first: datetime):
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    return make_input_files_sensor(build_ingest_job(ingest), settings, first=first)


def sensor_warnings(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What sensor ticks logged at WARNING and above (Dagster's log manager writes to stderr)."""
    lines = capsys.readouterr().err.splitlines()
    return [line for line in lines if " - WARNING - " in line or " - ERROR - " in line]


def test_the_sensor_holds_an_older_file_back_and_moves_the_first_hour_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(tz=UTC)
    settings = load_settings(
        paths=PathSettings(home=tmp_path),
        ingestion=IngestionSettings(file_settle_s=0, sensor_watch_s=0),
        dagster=DagsterSettings(port=free_port()),  # no webserver there: the reload fails
    )
    first = resolve_start(settings, now)
    sensor = _sensor(settings, first)
    stamp = now.strftime("%Y%m%dT%H%M%S")
    _drop(settings.input_dir, f"events_{stamp}000000Z_00000001.csv")
    old = hour_of(now) - timedelta(days=40, hours=3)
    _drop(settings.input_dir, "clickstream dump.csv", old + timedelta(minutes=42))
    _drop(settings.input_dir, f"events_{(old + timedelta(hours=1)):%Y%m%dT%H%M%S}Z_x.csv")
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    # the current file is requested; the old ones wait, in the input directory, untouched
    assert [request.partition_key for request in result.run_requests] == [
        now.strftime(PARTITION_FORMAT)
    ]
    assert list(parse_cursor(result.cursor)) == [now.strftime(PARTITION_FORMAT)]
    assert len(list(settings.input_dir.iterdir())) == 3
    assert read_recorded_start(start_record(settings)) == old
    (line,) = sensor_warnings(capsys)
    assert "2 file(s) wait" in line
    assert f"oldest {old:%Y-%m-%d-%H}:00: 'clickstream dump.csv'" in line
    assert "could not get code location 'ecom' reloaded" in line
    assert "Deployment > Reload" in line
    # the next load of the code location starts at the old hour: the old files have partitions
    assert resolve_start(settings, now) == old


def test_with_a_set_first_hour_the_sensor_says_which_setting_lets_an_older_file_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixed = hour_of(datetime.now(tz=UTC)) - timedelta(hours=5)
    settings = _settings(tmp_path, partitions_start=fixed, sensor_watch_s=0)
    _drop(settings.input_dir, "legacy.csv", fixed - timedelta(minutes=1))
    with dg.instance_for_test() as instance:
        result = _sensor(settings, fixed)(dg.build_sensor_context(instance=instance))
    assert result.run_requests == []
    assert (settings.input_dir / "legacy.csv").exists()
    assert not start_record(settings).exists()
    (line,) = sensor_warnings(capsys)
    before = (fixed - timedelta(hours=1)).strftime(PARTITION_FORMAT)
    assert f"Set ECOM_INGEST_PARTITIONS_START={before} or earlier" in line
