"""Ingestion end to end on real Spark and PostgreSQL: exact counts against the generator's truth."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.resources.catalogue import load_catalogue
from ecom_assets.resources.event_files import list_input_files
from ecom_assets.schema.contract import REFUSED_VALUE_RULES, ErrorCode
from ecom_assets.settings import (
    IngestionSettings,
    Settings,
    load_settings,
)
from ecom_assets_tests.test_generator_support import generate_files
from generator.catalog import write_catalogue

pytestmark = pytest.mark.integration


@pytest.fixture
def url(migrated_database_url: str) -> str:
    return migrated_database_url


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    """Four files per batch, so ten files take three batches in one run."""
    return load_settings(
        paths=ingest_settings.paths,
        ingestion=IngestionSettings(file_settle_s=0, max_files_per_run=4),
    )


def generate(settings: Settings, truth: Path, *args: str) -> None:
    start = datetime.now(tz=UTC) - timedelta(minutes=30)
    generate_files(settings.input_dir, settings.log_dir, start, "--truth-dir", str(truth),
                   "--interval", "1", *args)  # fmt: skip


def ingest_all(spark, url: str, settings: Settings, run_id: str) -> list:
    now = datetime.now(tz=UTC)
    partitions = sorted({f.partition for f in list_input_files(settings.input_dir, 0, now)})
    return [
        ingest_partition(
            spark, url, settings, partition, f"{run_id}-{i}", log=logging.getLogger(__name__)
        )
        for i, partition in enumerate(partitions)
    ]


def load_demo_catalogue(url: str, directory: Path) -> None:
    """What `ecom up` does when it starts the generator: its shop's catalogue, loaded."""
    write_catalogue(directory / "demo_catalogue.csv")
    with psycopg.connect(url) as conn:
        load_catalogue(conn, directory / "demo_catalogue.csv")


def table_counts(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        codes = conn.execute(
            "SELECT code, count(*) FROM dead_letter_events, unnest(error_codes) AS code "
            "GROUP BY code"
        ).fetchall()
        warnings = conn.execute(
            "SELECT code, count(*) FROM ecommerce_events, unnest(quality_warnings) AS code "
            "GROUP BY code"
        ).fetchall()
        return {
            "events": conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0],
            "dead_letters": conn.execute("SELECT count(*) FROM dead_letter_events").fetchone()[0],
            "codes": dict(codes),
            "warnings": dict(warnings),
            "metrics_rows": conn.execute("SELECT count(*) FROM data_quality_metrics").fetchone()[0],
            "late": conn.execute("SELECT count(*) FROM ecommerce_events WHERE is_late").fetchone()[
                0
            ],
        }


def test_generated_directory_lands_with_exact_counts_and_replays_change_nothing(
    spark, url: str, settings: Settings, tmp_path: Path
) -> None:
    truth_dir = tmp_path / "truth"
    generate(settings, truth_dir, "--files", "10", "--events-per-file", "300",
             "--schema", "mixed", "--seed", "11", "--anomaly-rate", "0.15")  # fmt: skip
    truths = [json.loads(path.read_text()) for path in sorted(truth_dir.glob("*.json"))]
    expected_codes, expected_warnings = Counter(), Counter()
    for truth in truths:
        expected_codes.update(truth["codes"])
        expected_warnings.update(truth["warnings"])
    rows = sum(t["rows"] for t in truths)
    invalid = sum(t["invalid"] for t in truths)
    replayed = sum(t["replayed"] for t in truths)
    # the corpus covers every rule, as an error or (the default contract's) a warning
    assert set(expected_codes) | set(expected_warnings) == set(ErrorCode) - REFUSED_VALUE_RULES
    assert set(expected_warnings) == {
        "UNKNOWN_PRODUCT", "UNKNOWN_CATEGORY", "CATEGORY_PRODUCT_MISMATCH", "UNEXPECTED_PRICE",
        "UNEXPECTED_QUANTITY", "INVALID_USER_SEGMENT",
    }  # fmt: skip
    load_demo_catalogue(url, tmp_path)

    reports = ingest_all(spark, url, settings, "first")
    counts = table_counts(url)
    assert counts["events"] == rows - invalid - replayed
    assert counts["dead_letters"] == invalid
    assert counts["codes"] == dict(expected_codes)
    assert counts["warnings"] == dict(expected_warnings)
    assert sum(r.rows_warned for r in reports) == sum(t["warned"] for t in truths)
    assert counts["late"] == sum(t["late"] for t in truths)
    assert sum(r.rows_read for r in reports) == rows
    assert sum(r.rows_duplicate for r in reports) == replayed
    assert sum(r.files_committed for r in reports) == 10
    with psycopg.connect(url) as conn:
        versions = conn.execute(
            "SELECT schema_version, count(DISTINCT source_file) FROM ecommerce_events GROUP BY 1"
        ).fetchall()
    assert dict(versions) == {"v1": 4, "v2": 4, "v3": 2}
    assert list(settings.input_dir.glob("*.csv")) == []
    assert len(list(settings.processed_dir.glob("*/*.csv"))) == 10

    # drop every file again: nothing is duplicated, the files are only moved
    for path in settings.processed_dir.glob("*/*.csv"):
        path.rename(settings.input_dir / path.name)
    again = ingest_all(spark, url, settings, "second")
    assert sum(r.files_already_committed for r in again) == 10
    assert table_counts(url) == counts


def test_producer_shapes_ingest_and_logged_in_events_are_not_dead_lettered(
    spark, url: str, settings: Settings
) -> None:
    settings.input_dir.mkdir(parents=True)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    t1 = (now - timedelta(minutes=3)).isoformat()  # "+00:00"
    t2 = (now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = ["5b4c9b4e-0d3a-4c8e-9d6a-1f2e3d4c5b6a", "6c5d0c5f-1e4b-4d9f-8e7b-2a3f4e5d6c7b",
           "7d6e1d60-2f5c-4e0a-9f8c-3b4a5f6e7d8c"]  # fmt: skip
    (settings.input_dir / "pandas_export.csv").write_text(
        # v2 columns in another order, float user ids, blank fields, padding, upper case
        "user_segment,category,event_id,user_id,event_type,product_id,price,event_time,"
        "session_id,quantity\n"
        f"premium,electronics,{ids[0]},5.0,PURCHASE,1500,99.90,{t1},s-1,2.0\n"
        f"returning,, {ids[1]} ,7.0, add_to_cart ,1501,10.00,{t2},s-2,\n"
        f"new,books,{ids[2]},,view,8001,,{t2},,\n"
    )
    load_demo_catalogue(url, settings.paths.data)  # fills the blank category of line 2
    ingest_all(spark, url, settings, "shapes")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text, user_id, event_type, category, price, quantity, "
            "total_amount::text, schema_version FROM ecommerce_events ORDER BY source_line"
        ).fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letter_events").fetchone()[0]
    assert dead == 0
    assert [row[1:4] for row in rows] == [
        (5, "purchase", "electronics"), (7, "add_to_cart", "electronics"), (0, "view", "books"),
    ]  # fmt: skip
    assert [row[6] for row in rows] == ["199.80", "10.00", None]
    assert {row[7] for row in rows} == {"v2"}


def test_unreadable_files_are_quarantined_with_their_reason(
    spark, url: str, settings: Settings
) -> None:
    settings.input_dir.mkdir(parents=True)
    (settings.input_dir / "garbage.csv").write_bytes(b"\x00\x01\x02 not,a,header\n1,2,3\n")
    (settings.input_dir / "empty.csv").write_bytes(b"")
    ingest_all(spark, url, settings, "bad")
    reasons = {
        path.name: json.loads(path.read_text())
        for path in settings.quarantine_dir.glob("*.reason.json")
    }
    assert set(reasons) == {"garbage.csv.reason.json", "empty.csv.reason.json"}
    assert all(reason["reason"] for reason in reasons.values())
    assert sorted(p.name for p in settings.quarantine_dir.glob("*.csv")) == [
        "empty.csv", "garbage.csv",
    ]  # fmt: skip
    with psycopg.connect(url) as conn:
        statuses = conn.execute("SELECT status FROM ingest_files").fetchall()
    assert statuses == [("quarantined",), ("quarantined",)]
