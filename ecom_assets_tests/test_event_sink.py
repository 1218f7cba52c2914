"""The sink's commit on a real PostgreSQL: which file keeps an event that two files hold."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from ecom_assets.resources.event_sink import (
    FileOutcome,
    StagingTables,
    _copy_statement,
    commit_batch,
    prepare_staging,
)
from ecom_assets.transforms.arrow_routing import as_csv, event_rows
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import EVENT_COLUMNS, routed
from ecom_assets.transforms.validate import validate_events
from ecom_assets_tests.test_transforms_support import NOW, RULES, event, latest_batch, uid

pytestmark = pytest.mark.integration

TABLES = StagingTables.for_partition("p", 0)


def stage(conn: psycopg.Connection, files: dict) -> None:
    """``files``' valid rows staged as ingest stages them, in the order given."""
    rows = routed(enrich_events(validate_events(latest_batch(files), RULES), 3600, NOW))
    with conn.cursor().copy(_copy_statement(TABLES.events, EVENT_COLUMNS)) as copy:
        for batch in rows.to_batches():
            copy.write(as_csv(event_rows(batch)))


def outcome(name: str, rows: int) -> FileOutcome:
    return FileOutcome(name, "v3", rows, rows, 0, 0, {}, datetime.now(tz=UTC), 0.1)


def test_the_earlier_file_keeps_an_event_two_files_of_a_batch_hold(
    migrated_database_url: str,
) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        prepare_staging(conn, TABLES)
        # the later file is staged first: the commit, not the staging order, decides
        stage(conn, {"b.csv": ("v3", [event(2), event(3), event(4)])})
        stage(conn, {"a.csv": ("v3", [event(1), event(2)])})
        outcomes = [outcome("a.csv", 2), outcome("b.csv", 3)]
        inserted = commit_batch(conn, TABLES, "run", "p", outcomes)
        kept = dict(conn.execute("SELECT event_id::text, source_file FROM ecommerce_events"))
    assert inserted == {"a.csv": 2, "b.csv": 2}
    assert kept == {uid(1): "a.csv", uid(2): "a.csv", uid(3): "b.csv", uid(4): "b.csv"}


def test_events_already_stored_are_skipped(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        prepare_staging(conn, TABLES)
        stage(conn, {"a.csv": ("v3", [event(1), event(2)])})
        commit_batch(conn, TABLES, "run-1", "p", [outcome("a.csv", 2)])
        prepare_staging(conn, TABLES)
        stage(conn, {"b.csv": ("v3", [event(2), event(3)])})
        inserted = commit_batch(conn, TABLES, "run-2", "p", [outcome("b.csv", 2)])
        stored = conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0]
    assert (inserted, stored) == ({"b.csv": 1}, 3)
