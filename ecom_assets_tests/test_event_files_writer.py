"""What a producer that writes in place (not atomically) gets, through a real ingest run: a file
paused mid-record is held back until finished; one paused between records longer than the settle
time is committed as it was, and what is written afterwards is never ingested (README, step 1:
producers must rename finished files in)."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.settings import IngestionSettings, PathSettings, load_settings

pytestmark = pytest.mark.integration

HEADER = b"event_id,user_id,event_type,product_id,price,event_time\n"


def record(n: int, at: datetime) -> bytes:
    return f"00000000-0000-4000-8000-{n:012d},{n},view,1500,9.99,{at.isoformat()}\n".encode()


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def stored(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT source_file, count(*) FROM ecommerce_events GROUP BY source_file"
        ).fetchall()
    return dict(rows)


def test_a_writer_in_place_gets_only_whole_files_or_what_it_wrote_before_a_long_pause(
    spark, migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    settings = load_settings(
        paths=PathSettings(home=tmp_path),
        ingestion=IngestionSettings(file_settle_s=1.0, linger_s=0),
    )
    at = datetime.now(tz=UTC) - timedelta(minutes=1)
    partition = at.strftime(PARTITION_FORMAT)
    stamp = at.strftime("%Y%m%dT%H%M%S%fZ")
    settings.input_dir.mkdir(parents=True)
    mid_record = settings.input_dir / f"events_{stamp}_0000000a.csv"
    between = settings.input_dir / f"events_{stamp}_0000000b.csv"

    def run(run_id: str) -> None:
        ingest_partition(
            spark, migrated_database_url, settings, partition, run_id, log=logging.getLogger()
        )

    with open(mid_record, "wb", buffering=0) as a, open(between, "wb", buffering=0) as b:
        a.write(HEADER + record(1, at) + record(2, at)[:30])  # paused inside record 2
        b.write(HEADER + record(11, at) + record(12, at))  # paused after record 12
        age(mid_record, 5)  # both paused 5 s: five times the settle time
        age(between, 5)
        run("r1")
        assert stored(migrated_database_url) == {between.name: 2}
        assert mid_record.exists()  # held back: its last line is unfinished
        a.write(record(2, at)[30:])
        b.write(record(13, at))  # after its commit: goes into the moved file
    age(mid_record, 1.5)
    run("r2")
    assert stored(migrated_database_url) == {between.name: 2, mid_record.name: 2}
    moved = settings.processed_dir / partition / between.name
    assert moved.read_bytes().count(b"\n") == 4  # record 13 is there, never ingested
    assert list(settings.input_dir.iterdir()) == []
