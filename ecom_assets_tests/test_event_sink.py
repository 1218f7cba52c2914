"""The sink's staging on a real PostgreSQL: the check that decides the commit's insert order."""

from __future__ import annotations

import psycopg
import pytest

from ecom_assets.resources.event_sink import (
    StagingTables,
    _copy_statement,
    has_repeated_events,
    prepare_staging,
)
from ecom_assets.transforms.arrow_routing import as_csv, event_rows
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import EVENT_COLUMNS, routed
from ecom_assets.transforms.validate import validate_events
from ecom_assets_tests.test_transforms_support import NOW, RULES, event, latest_batch

pytestmark = pytest.mark.integration


def staged(url: str, files: dict) -> bool:
    """``has_repeated_events`` once ``files``' valid rows are staged as ingest stages them."""
    rows = routed(enrich_events(validate_events(latest_batch(files), RULES), 3600, NOW))
    tables = StagingTables.for_partition("p", 0)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        prepare_staging(conn, tables)
        with conn.cursor().copy(_copy_statement(tables.events, EVENT_COLUMNS)) as copy:
            for batch in rows.to_batches():
                copy.write(as_csv(event_rows(batch)))
        return has_repeated_events(conn, tables)


def test_distinct_events_need_no_ordered_insert(migrated_database_url: str) -> None:
    files = {"a.csv": ("v3", [event(1), event(2)]), "b.csv": ("v3", [event(3)])}
    assert staged(migrated_database_url, files) is False


def test_an_event_in_two_files_needs_the_ordered_insert(migrated_database_url: str) -> None:
    files = {"a.csv": ("v3", [event(1), event(2)]), "b.csv": ("v3", [event(2)])}
    assert staged(migrated_database_url, files) is True
