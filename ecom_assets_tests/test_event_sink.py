"""The sink's commit on a real PostgreSQL: which file keeps an event that two files hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
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
from ecom_assets.transforms.validate import ValidationRules, validate_events
from ecom_assets_tests.test_transforms_support import (
    DEFAULT_CONTRACT,
    NOW,
    RULES,
    event,
    latest_batch,
    uid,
    view,
)

pytestmark = pytest.mark.integration

TABLES = StagingTables.for_partition("p", 0)


def stage(
    conn: psycopg.Connection,
    files: dict,
    rules: ValidationRules = RULES,
    extras: list | None = None,
    tables: StagingTables = TABLES,
) -> None:
    """``files``' valid rows staged as ingest stages them, in the order given; ``extras``: each
    row's unknown columns as JSON text."""
    table = latest_batch(files)
    if extras is not None:
        table = table.set_column(table.schema.get_field_index("extras"), "extras",
                                 pa.array(extras, pa.string()))  # fmt: skip
    rows = routed(enrich_events(validate_events(table, rules), rules, 3600))
    with conn.cursor().copy(_copy_statement(tables.events, EVENT_COLUMNS)) as copy:
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
        inserted = commit_batch(conn, TABLES, "run", "p", outcomes).inserted
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
        inserted = commit_batch(conn, TABLES, "run-2", "p", [outcome("b.csv", 2)]).inserted
        stored = conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0]
    assert (inserted, stored) == ({"b.csv": 1}, 3)


def test_warnings_extras_and_drift_are_stored_as_postgresql_types(
    migrated_database_url: str,
) -> None:
    """The staging CSV carries a warning list as a text[] literal and unknown columns as
    JSONB; the metrics row counts the warnings and names the drifted columns."""
    rules = ValidationRules(NOW, DEFAULT_CONTRACT)  # no catalogue
    records = [
        view(1, user_segment="guest", price="4.20"),
        view(2),
        view(3, user_id="", quantity="0"),
    ]
    extras = ['{"page_url":"/p/1","ab":"b"}', '{"page_url":null,"ab":"a"}', None]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        prepare_staging(conn, TABLES)
        stage(conn, {"a.csv": ("v3", records)}, rules, extras)
        warned = FileOutcome(
            "a.csv", "v3", 3, 3, 0, 0, {}, datetime.now(tz=UTC), 0.1, rows_warned=1,
            warning_counts={"UNEXPECTED_PRICE": 1, "INVALID_USER_SEGMENT": 1},
            unknown_columns=("page_url", "ab"),
        )  # fmt: skip
        commit_batch(conn, TABLES, "run", "p", [warned])
        stored = conn.execute(
            "SELECT source_line, quality_warnings, extras, event_key, category "
            "FROM ecommerce_events ORDER BY source_line"
        ).fetchall()
        metrics = conn.execute(
            "SELECT rows_warned, warning_counts, unknown_columns FROM data_quality_metrics"
        ).fetchone()
        by_code = conn.execute(
            "SELECT count(*) FROM ecommerce_events WHERE 'UNEXPECTED_PRICE' = ANY(quality_warnings)"
        ).fetchone()[0]
    assert stored == [
        (1, ["UNEXPECTED_PRICE", "INVALID_USER_SEGMENT"], {"page_url": "/p/1", "ab": "b"}, None,
         "electronics"),
        (2, None, {"page_url": None, "ab": "a"}, None, "electronics"),
        (3, None, None, None, "electronics"),
    ]  # fmt: skip
    assert metrics == (1, {"UNEXPECTED_PRICE": 1, "INVALID_USER_SEGMENT": 1}, ["page_url", "ab"])
    assert by_code == 1


def test_a_file_dated_decades_back_commits_with_the_largest_latency(
    migrated_database_url: str,
) -> None:
    """An archive extracted with its old dates (or mtime 0) has a latency over NUMERIC(12,3):
    the metrics INSERT failed the batch's commit on every retry."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        prepare_staging(conn, TABLES)
        stage(conn, {"old.csv": ("v3", [event(1)])})
        epoch = replace(outcome("old.csv", 1), landed_at=datetime(1970, 1, 1, tzinfo=UTC))
        assert commit_batch(conn, TABLES, "run", "p", [epoch]).inserted == {"old.csv": 1}
        latency = conn.execute("SELECT latency_s FROM data_quality_metrics").fetchone()[0]
    assert float(latency) == 999_999_999.999
