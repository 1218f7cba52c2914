"""Health: the pure classification, the report loaded from seeded tables, and `ecom health`
through the real command line with its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ecom_assets.monitoring.alerts import Alert, store_alert
from ecom_assets.monitoring.batches import record_batch
from ecom_assets.monitoring.health import HealthFacts, classify, load_health, report_lines
from ecom_assets.settings import Settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import free_port
from ecom_assets_tests.test_monitoring_alerts import PARTITION, make_batch

NOW = datetime(2026, 1, 29, 10, 30, tzinfo=UTC)
ERROR_ALERT = Alert("low_validity", "ERROR", "partition p validity 50.0% < 95.0%")
WARNING_ALERT = Alert("high_latency", "WARNING", "partition p batch latency 12.0 s > 10.0 s")


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings


def recent(**values: object) -> HealthFacts:
    """Facts of a pipeline that ingested well a minute ago, with values changed."""
    base = {
        "batches_completed": 10,
        "window_batches": 10,
        "success_rate": 1.0,
        "validity_rate": 0.98,
        "last_batch_at": NOW - timedelta(seconds=60),
        "last_batch_age_s": 60.0,
    }
    return HealthFacts(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "state", "reasons"),
    [
        (HealthFacts(), "NO_DATA", []),
        (HealthFacts(open_alerts=(WARNING_ALERT,)), "NO_DATA", []),
        (
            HealthFacts(open_alerts=(ERROR_ALERT,)),
            "DEGRADED",
            ["open ERROR alert [low_validity] partition p validity 50.0% < 95.0%"],
        ),
        (recent(), "HEALTHY", []),
        (recent(open_alerts=(WARNING_ALERT,)), "HEALTHY", []),
        (recent(last_batch_age_s=300.0), "HEALTHY", []),
        (recent(last_batch_age_s=301.0), "DEGRADED", ["last batch 301 s ago (> 300 s)"]),
        (
            recent(batches_failed=1, success_rate=0.9),
            "DEGRADED",
            ["success rate 90.0% over the last 10 batches"],
        ),
        (recent(validity_rate=0.95), "HEALTHY", []),
        (
            recent(validity_rate=0.9491),
            "DEGRADED",
            ["validity 94.9% < 95.0% over the last 10 batches"],
        ),
        (recent(validity_rate=None), "HEALTHY", []),  # batches without rows
        (
            recent(open_alerts=(ERROR_ALERT,), last_batch_age_s=900.0),
            "DEGRADED",
            [
                "open ERROR alert [low_validity] partition p validity 50.0% < 95.0%",
                "last batch 900 s ago (> 300 s)",
            ],
        ),
    ],
)
def test_classify(facts: HealthFacts, state: str, reasons: list[str], settings: Settings) -> None:
    assert classify(facts, settings) == (state, tuple(reasons))


def seed(url: str, settings: Settings) -> None:
    """Two completed batches and a failed one, events, dead letters, files and alerts."""
    with psycopg.connect(url, autocommit=True) as conn:
        for batch in (
            make_batch(1, 97, 3),
            make_batch(2, 0, 0, status="failed"),
            make_batch(3, 190, 10, run_id="run-b"),
        ):
            record_batch(conn, batch, settings.quality.min_validity)
        for line in range(3):
            conn.execute(
                "INSERT INTO ecommerce_events (event_id, event_type, product_id, event_time, "
                "event_date, event_hour, schema_version, source_file, source_line) "
                "VALUES (%s, 'view', 1, now(), current_date, 0, 'v3', 'f.csv', %s)",
                (uuid.uuid4(), line),
            )
        for line, status in ((1, "open"), (2, "open"), (3, "reprocessed")):
            conn.execute(
                "INSERT INTO dead_letter_events (source_file, source_line, error_codes, "
                "raw_record, status) VALUES ('f.csv', %s, '{MISSING_FIELD}', '{}', %s)",
                (line, status),
            )
        ledger = (
            ("a.csv", "committed", 0, None),
            ("b.csv", "committed", 0, None),
            ("c", "quarantined", 0, "failed alone in batch 3: FileChangedError: c changed"),
            ("d.csv", "failed", 2, "failed alone in batch 4: boom"),
            ("e.csv", "failed", 0, "DependencyUnavailableError: down"),  # not its fault
        )
        for name, status, failures, error in ledger:
            conn.execute(
                "INSERT INTO ingest_files (file_name, partition_key, size_bytes, status, "
                "failures, error) VALUES (%s, %s, 10, %s, %s, %s)",
                (name, PARTITION, status, failures, error),
            )
        store_alert(conn, WARNING_ALERT)
        store_alert(conn, Alert("run_failure", "ERROR", "ingest_job run r failed: boom"))
        conn.execute("UPDATE alerts SET resolved_at = now() WHERE kind = 'run_failure'")
        store_alert(conn, ERROR_ALERT)


def test_load_health_reads_the_seeded_tables(migrated_database_url: str, settings: Settings):
    seed(migrated_database_url, settings)
    now = datetime.now(tz=UTC) + timedelta(seconds=5)
    with psycopg.connect(migrated_database_url) as conn:
        report = load_health(conn, settings, now)
    facts = report.facts
    assert (facts.events, facts.dead_letters_open) == (3, 2)
    assert (facts.files_committed, facts.files_quarantined, facts.files_failing) == (2, 1, 1)
    assert facts.latest_quarantined == (
        ("c", "failed alone in batch 3: FileChangedError: c changed"),
    )
    assert (facts.batches_completed, facts.batches_failed, facts.window_batches) == (2, 1, 3)
    assert facts.success_rate == pytest.approx(2 / 3)
    assert facts.validity_rate == pytest.approx(287 / 300)  # rows, not batches, are averaged
    assert 5 <= facts.last_batch_age_s < 60
    assert [(a.kind, a.level) for a in facts.open_alerts] == [
        ("low_validity", "ERROR"),  # ERRORs first; the resolved run_failure is not open
        ("high_latency", "WARNING"),
    ]
    assert report.state == "DEGRADED"
    assert report.reasons == (
        f"open ERROR alert [low_validity] {ERROR_ALERT.message}",
        "success rate 66.7% over the last 3 batches",
    )
    as_json = json.loads(json.dumps(report.as_dict()))
    assert as_json["state"] == "DEGRADED"
    assert as_json["open_alerts"][0]["kind"] == "low_validity"
    assert as_json["last_batch_at"] == facts.last_batch_at.isoformat()
    lines = report_lines(report)
    assert lines[0] == "state         DEGRADED"
    assert (
        "files         2 committed, 1 quarantined, 1 failing (retried, then quarantined)" in lines
    )
    assert "  quarantined c: failed alone in batch 3: FileChangedError: c changed" in lines


def test_health_window_covers_only_the_latest_batches(
    migrated_database_url: str, settings: Settings
) -> None:
    seed(migrated_database_url, settings)
    narrow = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"health_window": 1})}
    )
    with psycopg.connect(migrated_database_url) as conn:
        facts = load_health(conn, narrow, datetime.now(tz=UTC)).facts
    assert (facts.window_batches, facts.success_rate) == (1, 1.0)
    assert facts.validity_rate == pytest.approx(0.95)


def ecom_health(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_environment(home)
    env["ECOM_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "ecom_assets.cli", "health", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_ecom_health_exit_codes_and_json(
    migrated_database_url: str, settings: Settings, tmp_path: Path
) -> None:
    url = migrated_database_url
    empty = ecom_health(url, tmp_path, "--json")
    assert empty.returncode == 3, empty.stderr
    assert json.loads(empty.stdout)["state"] == "NO_DATA"

    with psycopg.connect(url, autocommit=True) as conn:
        record_batch(conn, make_batch(1), settings.quality.min_validity)
    healthy = ecom_health(url, tmp_path, "--json")
    assert healthy.returncode == 0, healthy.stderr
    report = json.loads(healthy.stdout)
    assert (report["state"], report["batches_completed"], report["reasons"]) == ("HEALTHY", 1, [])

    with psycopg.connect(url, autocommit=True) as conn:
        store_alert(conn, ERROR_ALERT)
    degraded = ecom_health(url, tmp_path)
    assert degraded.returncode == 1, degraded.stderr
    assert degraded.stdout.startswith("state         DEGRADED\n  - open ERROR alert [low_validity]")


def test_ecom_health_fails_clearly_when_the_database_is_unreachable(tmp_path: Path) -> None:
    refused = f"postgresql://ecom:s3cret@127.0.0.1:{free_port()}/ecom"
    result = ecom_health(refused, tmp_path, "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("[health] cannot read the pipeline's health from the database")
    assert "s3cret" not in result.stderr
