"""Replays of files, partitions and fixed dead letters: idempotent, nothing lost."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.replay import (
    ReplayError,
    find_file,
    find_partition,
    replay_dead_letters,
    replay_files,
)
from ecom_assets.settings import (
    PathSettings,
    Settings,
    load_settings,
)

pytestmark = pytest.mark.integration
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
