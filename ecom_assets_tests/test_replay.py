"""Replays of files, partitions and fixed dead letters: idempotent, nothing lost."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.replay import (
    ReplayError,
    ReplayRefused,
    find_file,
    find_partition,
    replay_dead_letters,
    replay_files,
)
from ecom_assets.resources.event_files import REASON_SUFFIX, quarantine
from ecom_assets.settings import (
    IngestionSettings,
    PathSettings,
    Settings,
    load_settings,
)

pytestmark = pytest.mark.integration
SHM = Path("/dev/shm")
IDS = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5)]


@pytest.fixture
def url(migrated_database_url: str) -> str:
    return migrated_database_url


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM ecommerce_events), "
            "(SELECT count(*) FROM dead_letter_events), "
            "(SELECT count(*) FROM dead_letter_events WHERE status = 'open')"
        ).fetchone()


def write_file(settings: Settings) -> str:
    now = datetime.now(tz=UTC) - timedelta(minutes=1)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    time = now.isoformat()
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    (settings.input_dir / f"events_{stamp}_0000abcd.csv").write_text(
        "event_id,user_id,event_type,product_id,price,event_time\n"
        f"{IDS[0]},1,purchase,1500,100.00,{time}\n"
        f"{IDS[1]},2,purchase,1500,20000.00,{time}\n"  # extreme at the default 10,000
        f"{IDS[2]},3,add_to_cart,1500,15000.00,{time}\n"  # extreme too
        f"{IDS[3]},0,wishlist,1500,,{time}\n"  # needs a user: stays invalid
    )
    return now.strftime(PARTITION_FORMAT)


def ingest(spark, url: str, settings: Settings, partition: str, run_id: str) -> None:
    ingest_partition(spark, url, settings, partition, run_id, log=logging.getLogger(__name__))


def test_replaying_a_file_and_a_partition_changes_nothing(spark, url: str, settings: Settings):
    partition = write_file(settings)
    ingest(spark, url, settings, partition, "r1")
    assert counts(url) == (1, 3, 3)
    name = next(settings.processed_dir.glob("*/*.csv")).name
    with psycopg.connect(url, autocommit=True) as conn:
        replay_files(conn, settings, find_file(settings, name))
        status = conn.execute("SELECT status FROM ingest_files").fetchone()
    assert status == ("pending",)
    ingest(spark, url, settings, partition, "r2")
    assert counts(url) == (1, 3, 3)
    with psycopg.connect(url, autocommit=True) as conn:
        replay_files(conn, settings, find_partition(settings, partition))
        metrics = conn.execute(
            "SELECT run_id, rows_inserted, rows_duplicate, rows_invalid "
            "FROM data_quality_metrics ORDER BY measured_at"
        ).fetchall()
    ingest(spark, url, settings, partition, "r3")
    assert counts(url) == (1, 3, 3)
    assert metrics == [("r1", 1, 0, 3), ("r2", 0, 1, 3)]
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(ReplayError):
        replay_files(conn, settings, find_partition(settings, "2020-01-01-00:00"))


def test_fixed_dead_letters_are_reingested_once(spark, url: str, settings: Settings) -> None:
    partition = write_file(settings)
    ingest(spark, url, settings, partition, "r1")
    # the fix: the contract's price ceiling was too low for this shop
    contract = settings.paths.root / "contract.yaml"
    contract.write_text("rules:\n  EXTREME_PRICE: {max_price: 50000}\n")
    fixed = load_settings(
        paths=PathSettings(home=settings.paths.home, contract_file=contract),
        ingestion=settings.ingestion,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        result = replay_dead_letters(conn, fixed, code="EXTREME_PRICE")
    assert result.dead_letters == 2
    replay_partition = next(fixed.input_dir.glob("*.csv")).name
    ingest(spark, url, fixed, partition_of(replay_partition), "r2")
    events, dead, still_open = counts(url)
    assert (events, dead, still_open) == (3, 3, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(ReplayError):
            replay_dead_letters(conn, fixed, code="EXTREME_PRICE")
        # the remaining one is still invalid: replayed, it comes back as a new dead letter
        replay_dead_letters(conn, fixed)
    ingest(spark, url, fixed, partition_of(next(fixed.input_dir.glob("*.csv")).name), "r3")
    assert counts(url) == (3, 4, 1)


def test_malformed_rows_are_replayed_only_once_their_fields_are_fixed(
    spark, url: str, settings: Settings
) -> None:
    now = datetime.now(tz=UTC) - timedelta(minutes=1)
    settings.input_dir.mkdir(parents=True)
    (settings.input_dir / f"events_{now.strftime('%Y%m%dT%H%M%S%fZ')}_0000beef.csv").write_text(
        "event_id,user_id,event_type,product_id,price,event_time\n"
        f"{IDS[0]},1,purchase,1500,100.00,{now.isoformat()},surplus\n"  # a field too many
    )
    ingest(spark, url, settings, now.strftime(PARTITION_FORMAT), "r1")
    assert counts(url) == (0, 1, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        codes, record = conn.execute(
            "SELECT error_codes, raw_record->>'record' FROM dead_letter_events"
        ).fetchone()
        assert codes == ["MALFORMED_ROW"] and record.endswith(",surplus")
        with pytest.raises(ReplayError, match="'record' key removed"):
            replay_dead_letters(conn, settings)  # as Spark split it: never replayed
        conn.execute("UPDATE dead_letter_events SET raw_record = raw_record - 'record'")
        result = replay_dead_letters(conn, settings, code="MALFORMED_ROW")
    assert result.dead_letters == 1
    ingest(spark, url, settings, partition_of(result.files[0]), "r2")
    assert counts(url) == (1, 1, 0)


def partition_of(name: str) -> str:
    stamp = datetime.strptime(name.split("_")[1][:15], "%Y%m%dT%H%M%S")
    return stamp.strftime(PARTITION_FORMAT)


def test_cli_replay_reports_and_fails_clearly(settings: Settings, url: str) -> None:
    env = {
        "ECOM_HOME": str(settings.paths.root),
        "ECOM_DATABASE_URL": url,
        "ECOM_ENV_FILE": "/nonexistent.env",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ecom_assets.cli", "replay", "--file", "missing.csv"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no processed or quarantined file matched" in result.stderr


def test_a_replayed_dead_letter_keeps_its_unknown_columns(
    spark, url: str, settings: Settings
) -> None:
    now = datetime.now(tz=UTC) - timedelta(minutes=1)
    settings.input_dir.mkdir(parents=True)
    (settings.input_dir / f"events_{now.strftime('%Y%m%dT%H%M%S%fZ')}_0000cafe.csv").write_text(
        "event_id,user_id,event_type,product_id,price,event_time,page_url\n"
        f'{IDS[0]},1,purchase,1500,100.00,{now.isoformat()},"/p/1?a=b,c"\n'
        f"{IDS[1]},2,purchase,1500,,{now.isoformat()},/p/2\n"  # MISSING_PRICE
    )
    ingest(spark, url, settings, now.strftime(PARTITION_FORMAT), "r1")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dead_letter_events "
            "SET raw_record = jsonb_set(raw_record, '{price}', '\"9.50\"')"
        )
        result = replay_dead_letters(conn, settings, code="MISSING_PRICE")
    ingest(spark, url, settings, partition_of(result.files[0]), "r2")
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT event_id::text, price::text, extras FROM ecommerce_events ORDER BY 1"
        ).fetchall()
    assert stored == [
        (IDS[0], "100.00", {"page_url": "/p/1?a=b,c"}),
        (IDS[1], "9.50", {"page_url": "/p/2"}),
    ]


def ledger(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT file_name, status FROM ingest_files").fetchall())


def test_a_replay_never_overwrites_a_file_waiting_in_input(spark, url: str, settings: Settings):
    """A producer's new file of the same name waits in input/: --file and --partition refuse,
    name it, and move nothing; once it is ingested, the replay goes through."""
    partition = write_file(settings)
    ingest(spark, url, settings, partition, "r1")
    [processed] = settings.processed_dir.glob("*/*.csv")
    before = processed.read_bytes()
    waiting = settings.input_dir / processed.name
    waiting.write_bytes(before.replace(b"100.00", b"100.50"))  # the producer's new file
    for paths in (find_file(settings, processed.name), find_partition(settings, partition)):
        with (
            psycopg.connect(url, autocommit=True) as conn,
            pytest.raises(ReplayError, match=r"waits in .* nothing was replayed") as error,
        ):
            replay_files(conn, settings, paths)
        assert processed.name in str(error.value)
        assert processed.read_bytes() == before
        assert waiting.read_bytes() == before.replace(b"100.00", b"100.50")
        assert ledger(url) == {processed.name: "committed"}
    env = {
        "ECOM_HOME": str(settings.paths.root),
        "ECOM_DATABASE_URL": url,
        "ECOM_ENV_FILE": "/nonexistent.env",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ecom_assets.cli", "replay", "--file", processed.name],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "replay never overwrites one" in result.stderr
    assert processed.read_bytes() == before
    waiting.unlink()  # say the producer's file was ingested and moved on
    with psycopg.connect(url, autocommit=True) as conn:
        replay_files(conn, settings, find_file(settings, processed.name))
    assert waiting.read_bytes() == before and not processed.exists()


def test_quarantined_copies_replay_under_the_name_they_arrived_with(
    url: str, settings: Settings
) -> None:
    """Two quarantines of one name and one name of 255 bytes: each is found by the name it
    arrived with, or its stored name, and goes back to input/ under the name it arrived with."""
    long_name = f"events_20260101T100000000000Z_{'é' * 110}x.csv"
    settings.input_dir.mkdir(parents=True)
    stored = []
    for name, content in (("a.csv", b"first"), ("a.csv", b"second"), (long_name, b"long")):
        (settings.input_dir / name).write_bytes(content)
        stored.append(quarantine(settings.input_dir / name, settings.quarantine_dir, {}))
    assert [path.name for path in stored[:2]] == ["a.csv", "a~2.csv"]
    assert stored[2].name != long_name
    with psycopg.connect(url, autocommit=True) as conn:
        replay_files(conn, settings, find_file(settings, "a~2.csv"))
        assert (settings.input_dir / "a.csv").read_bytes() == b"second"
        with pytest.raises(ReplayError, match="waits in"):  # a.csv is back and waits
            replay_files(conn, settings, find_file(settings, "a.csv"))
        (settings.input_dir / "a.csv").unlink()
        replay_files(conn, settings, find_file(settings, long_name))
    assert (settings.input_dir / long_name).read_bytes() == b"long"
    assert sorted(path.name for path in settings.quarantine_dir.iterdir()) == [
        "a.csv",
        "a.csv.reason.json",
    ]


def test_two_quarantined_copies_of_one_name_must_be_told_apart(settings: Settings) -> None:
    settings.input_dir.mkdir(parents=True)
    for content in (b"one", b"two", b"three"):
        (settings.input_dir / "b.csv").write_bytes(content)
        quarantine(settings.input_dir / "b.csv", settings.quarantine_dir, {})
    (settings.quarantine_dir / "b.csv").unlink()  # only b~2 and b~3 are left
    (settings.quarantine_dir / "b.csv.reason.json").unlink()
    with pytest.raises(ReplayError, match=r"quarantined 2 times: give one of \['b~2.csv', 'b~3"):
        find_file(settings, "b.csv")


def test_a_replay_from_another_file_system(url: str, settings: Settings, tmp_path: Path):
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    processed = SHM / f"ecom-test-replay-{os.getpid()}"
    moved = load_settings(
        paths=settings.paths,
        ingestion=IngestionSettings(file_settle_s=0, processed_dir=processed),
    )
    try:
        hour = processed / "2026-01-01-10:00"
        hour.mkdir(parents=True)
        (hour / "c.csv").write_bytes(b"committed")
        with psycopg.connect(url, autocommit=True) as conn:
            replay_files(conn, moved, find_partition(moved, "2026-01-01-10:00"))
        assert (moved.input_dir / "c.csv").read_bytes() == b"committed"
        assert list(hour.iterdir()) == []
    finally:
        shutil.rmtree(processed, ignore_errors=True)


# --- what to replay is taken literally: no path, no pattern, no link leads out ----------------

HOUR = "2026-01-01-10:00"


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file under root by relative path: its bytes, or "-> target" for a link."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


@pytest.fixture
def stored(settings: Settings, tmp_path: Path) -> Path:
    """processed/<HOUR>/c.csv and d.csv, a quarantined a.csv, and a directory outside the data
    directories holding CSV files; returns that outside directory."""
    hour = settings.processed_dir / HOUR
    hour.mkdir(parents=True)
    (hour / "c.csv").write_bytes(b"committed c")
    (hour / "d.csv").write_bytes(b"committed d")
    settings.input_dir.mkdir(parents=True)
    (settings.input_dir / "a.csv").write_bytes(b"quarantined a")
    quarantine(settings.input_dir / "a.csv", settings.quarantine_dir, {"reason": "test"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(b"SECRET-LINE\n")
    return outside


def cli_replay(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `ecom replay`; a refusal needs no database (it comes before the connection)."""
    env = {
        "ECOM_HOME": str(settings.paths.root),
        "ECOM_ENV_FILE": "/nonexistent.env",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "ecom_assets.cli", "replay", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "partition",
    ["../quarantine", "..", ".", "ABSOLUTE", "a/../../x", f"{HOUR}/../../quarantine", f"{HOUR}/",
     "2026-1-1-10:00", "2026-01-01-10:30", " 2026-01-01-10:00", "*", "", f"{HOUR}\0"],
)  # fmt: skip
def test_a_partition_that_is_no_key_is_refused_and_nothing_moves(
    settings: Settings, stored: Path, partition: str
) -> None:
    partition = str(stored) if partition == "ABSOLUTE" else partition
    before = tree(settings.paths.root)
    with pytest.raises(ReplayRefused, match="not an hourly partition key") as error:
        find_partition(settings, partition)
    assert repr(partition) in str(error.value)
    if partition in (str(stored), "../quarantine", "a/../../x"):  # the command too (3 s each)
        result = cli_replay(settings, "--partition", partition)
        assert result.returncode == 2, result.stderr
        assert f"partition {partition!r} refused: not an hourly partition key" in result.stderr
    assert tree(settings.paths.root) == before


@pytest.mark.parametrize(
    "name",
    ["../quarantine/a.csv", f"{HOUR}/c.csv", "ABSOLUTE", ".", "..", "a/../../x", "", "a\0.csv"],
)
def test_a_file_that_is_no_bare_name_is_refused_and_nothing_moves(
    settings: Settings, stored: Path, name: str
) -> None:
    name = str(stored / "secret.csv") if name == "ABSOLUTE" else name
    before = tree(settings.paths.root)
    with pytest.raises(ReplayRefused, match="give a bare file name") as error:
        find_file(settings, name)
    assert repr(name) in str(error.value)
    if name in (str(stored / "secret.csv"), "../quarantine/a.csv"):
        result = cli_replay(settings, "--file", name)
        assert result.returncode == 2, result.stderr
        assert f"file {name!r} refused" in result.stderr
    assert tree(settings.paths.root) == before


@pytest.mark.parametrize("pattern", ["*", "*.csv", "?.csv", "[a].csv", "[cd].csv", "c.cs?"])
def test_a_pattern_matches_only_a_file_of_that_very_name(
    settings: Settings, stored: Path, pattern: str
) -> None:
    before = tree(settings.paths.root)
    with pytest.raises(ReplayError, match="matched exactly, never as a pattern"):
        find_file(settings, pattern)
    if pattern == "*":
        result = cli_replay(settings, "--file", pattern)
        assert result.returncode == 1 and "matched exactly" in result.stderr, result.stderr
    assert tree(settings.paths.root) == before
    # a file whose name holds those characters (quarantined for its name) is found by it
    literal = settings.input_dir / pattern
    literal.write_bytes(b"odd name")
    kept = quarantine(literal, settings.quarantine_dir, {"reason": "name"})
    assert find_file(settings, pattern) == [kept]


def test_a_linked_partition_directory_or_file_is_refused_and_nothing_moves(
    url: str, settings: Settings, stored: Path
) -> None:
    """A symbolic link planted in processed/ or quarantine/ never moves what it points to."""
    linked_hour = "2026-01-01-11:00"
    (settings.processed_dir / linked_hour).symlink_to(stored, target_is_directory=True)
    (settings.processed_dir / HOUR / "e.csv").symlink_to(stored / "secret.csv")
    (settings.quarantine_dir / "q.csv").symlink_to(stored / "secret.csv")
    before = tree(settings.paths.root)
    with pytest.raises(ReplayRefused, match=r"is a symbolic link; only a directory"):
        find_partition(settings, linked_hour)
    with pytest.raises(ReplayRefused, match=r"e\.csv refused: not a regular file"):
        find_partition(settings, HOUR)  # one link in it refuses the whole partition
    for name in ("secret.csv", "e.csv", "q.csv"):  # links are not files to look for
        assert find_file(settings, name) == []
    with psycopg.connect(url, autocommit=True) as conn:
        for path in (
            stored / "secret.csv",  # outside the data directories
            settings.processed_dir / linked_hour / "secret.csv",  # through a linked directory
            settings.quarantine_dir / "q.csv",  # a link itself
            settings.processed_dir / HOUR,  # a directory
        ):
            with pytest.raises(ReplayRefused, match="nothing was replayed"):
                replay_files(conn, settings, [path])
    for args in (["--partition", linked_hour], ["--partition", HOUR]):
        result = cli_replay(settings, *args)
        assert result.returncode == 2 and "refused" in result.stderr, result.stderr
    assert tree(settings.paths.root) == before
    assert not any(settings.input_dir.iterdir())
    assert ledger(url) == {}


def test_a_reason_file_naming_a_path_is_refused(url: str, settings: Settings, stored: Path):
    """The name a quarantined file goes back under comes from its reason file: a bare name too."""
    (settings.quarantine_dir / f"a.csv{REASON_SUFFIX}").write_text(json.dumps({"file": ".."}))
    before = tree(settings.paths.root)
    with (
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(ReplayRefused, match=r"file '\.\.' refused"),
    ):
        replay_files(conn, settings, find_file(settings, "a.csv"))
    assert tree(settings.paths.root) == before and ledger(url) == {}
