"""Migrations, constraints and views against a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ecom_assets.assets.analytics import MATERIALIZED_VIEWS, refresh_view
from ecom_assets.resources.migrations import (
    LEDGER,
    MigrationError,
    apply_migrations,
    discover_migrations,
)

ALL_MIGRATIONS = [
    "001_tables.sql",
    "002_views.sql",
    "003_monitoring.sql",
    "004_open_alerts.sql",
    "005_analytics_materialized.sql",
    "006_event_contract.sql",
    "007_stack_alerts.sql",
    "008_file_failures.sql",
    "009_dashboard_files_once.sql",
]

SCHEMA_SNAPSHOT = """
SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), '', ''
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT tablename, indexname, indexdef, '', '' FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT viewname, '', definition, '', '' FROM pg_views WHERE schemaname = 'public'
ORDER BY 1, 2, 3
"""


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url, autocommit=True) as connection:
        apply_migrations(connection, discover_migrations())
        yield connection


def test_migrations_apply_twice_without_change(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        first = apply_migrations(conn, discover_migrations())
        snapshot = conn.execute(SCHEMA_SNAPSHOT).fetchall()
        second = apply_migrations(conn, discover_migrations())
        assert first == ALL_MIGRATIONS
        assert second == []
        assert conn.execute(SCHEMA_SNAPSHOT).fetchall() == snapshot
        recorded = conn.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()
        assert [row[0] for row in recorded] == ALL_MIGRATIONS
        # each file is idempotent on its own too, even without the ledger: applied twice in a
        # row, in order, the files build the same schema (a later file may extend a view an
        # earlier one made, so running an earlier file after a later one is not asked of them)
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute(LEDGER)
        for migration in discover_migrations():
            conn.execute(migration.sql.encode())
            conn.execute(migration.sql.encode())
        assert conn.execute(SCHEMA_SNAPSHOT).fetchall() == snapshot


def test_an_applied_migration_that_changed_is_refused(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_first.sql").write_text("CREATE TABLE IF NOT EXISTS a (id int);")
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert apply_migrations(conn, discover_migrations(tmp_path)) == ["001_first.sql"]
        (tmp_path / "001_first.sql").write_text("CREATE TABLE IF NOT EXISTS a (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            apply_migrations(conn, discover_migrations(tmp_path))


def test_a_failing_migration_leaves_nothing_half_applied(database_url: str, tmp_path: Path):
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE broken (id int; -- syntax error")
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            apply_migrations(conn, discover_migrations(tmp_path))
        assert conn.execute("SELECT to_regclass('good')").fetchone() == (None,)


@pytest.mark.parametrize("name", ["1_short.sql", "001-Dash.sql", "001_UPPER.sql"])
def test_badly_named_migration_files_are_an_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_lower_snake\.sql"):
        discover_migrations(tmp_path)


def insert_event(conn: psycopg.Connection, **overrides: object) -> None:
    row: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "user_id": 42,
        "event_type": "purchase",
        "product_id": 1500,
        "category": "electronics",
        "price": Decimal("100.00"),
        "quantity": 2,
        "total_amount": Decimal("200.00"),
        "event_time": datetime(2026, 1, 29, 10, 30, tzinfo=UTC),
        "event_date": datetime(2026, 1, 29).date(),
        "event_hour": 10,
        "user_segment": "premium",
        "session_id": "s1",
        "schema_version": "v3",
        "source_file": "events_x.csv",
        "source_line": 1,
    }
    row.update(overrides)
    columns = ", ".join(row)
    placeholders = ", ".join(["%s"] * len(row))
    conn.execute(
        f"INSERT INTO ecommerce_events ({columns}) VALUES ({placeholders})",  # noqa: S608 - test
        list(row.values()),
    )


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"user_id": -3}, "ecommerce_events_user_id_valid"),
        ({"product_id": 0}, "ecommerce_events_product_id_valid"),
        ({"event_hour": 24}, "ecommerce_events_hour_valid"),
    ],
)
def test_constraints_reject_bad_rows(conn, overrides: dict, constraint: str) -> None:
    """What storage itself needs: a user id >= 0, a product id > 0 when given, an hour."""
    with pytest.raises(psycopg.errors.CheckViolation) as error:
        insert_event(conn, **overrides)
    assert error.value.diag.constraint_name == constraint


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_type": "page_view"},
        {"price": Decimal("-1"), "total_amount": Decimal("-2")},
        {"quantity": -1},
        {"price": Decimal("0")},
        {"user_id": 0},
        {"user_segment": "anonymous"},
        {"product_id": None, "event_type": "search"},
        {"quality_warnings": ["UNEXPECTED_PRICE"], "extras": '{"page": "/"}', "event_key": "e-1"},
    ],
)
def test_the_contract_not_the_table_decides_what_is_valid(conn, overrides: dict) -> None:
    """Rows a contract may store (an operator's own event type, a rule set to warn) are not
    refused by constraints that encoded the demo's contract (dropped by 006)."""
    insert_event(conn, **overrides)
    assert conn.execute("SELECT count(*) FROM ecommerce_events").fetchone() == (1,)


def test_event_id_is_unique(conn) -> None:
    event_id = str(uuid.uuid4())
    insert_event(conn, event_id=event_id)
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_event(conn, event_id=event_id, source_line=2)


def test_anonymous_views_and_searches_are_accepted(conn) -> None:
    for event_type in ("view", "search"):
        insert_event(conn, user_id=0, event_type=event_type, price=None, quantity=None,
                     total_amount=None)  # fmt: skip
    assert conn.execute("SELECT count(*) FROM ecommerce_events").fetchone() == (2,)


def test_dead_letters_are_unique_per_file_and_line_and_need_a_code(conn) -> None:
    insert = (
        "INSERT INTO dead_letter_events (source_file, source_line, error_codes, raw_record) "
        "VALUES (%s, %s, %s, %s)"
    )
    conn.execute(insert, ("f.csv", 3, ["NEGATIVE_PRICE"], '{"price": "-1"}'))
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, ("f.csv", 3, ["NEGATIVE_PRICE"], '{"price": "-1"}'))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert, ("f.csv", 4, [], "{}"))


def test_quality_metrics_must_add_up(conn) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO data_quality_metrics (run_id, partition_key, source_file, rows_read, "
            "rows_valid, rows_invalid, rows_inserted, rows_duplicate, rows_late, validity_rate) "
            "VALUES ('r', 'p', 'f', 10, 9, 2, 9, 0, 0, 0.9)"
        )


def test_views_answer_and_count_purchases_only_as_revenue(conn) -> None:
    base = datetime(2026, 1, 29, 10, 0, tzinfo=UTC)
    insert_event(conn, user_id=1, event_type="view", price=None, quantity=None, total_amount=None,
                 event_time=base)  # fmt: skip
    insert_event(conn, user_id=1, event_type="add_to_cart", price=Decimal("50"), quantity=1,
                 total_amount=Decimal("50"), event_time=base + timedelta(minutes=5))  # fmt: skip
    insert_event(conn, user_id=1, event_type="purchase", price=Decimal("50"), quantity=2,
                 total_amount=Decimal("100"), event_time=base + timedelta(minutes=10))  # fmt: skip
    # 31 minutes of inactivity: a second session
    insert_event(conn, user_id=1, event_type="view", price=None, quantity=None, total_amount=None,
                 event_time=base + timedelta(minutes=41))  # fmt: skip
    insert_event(conn, user_id=0, event_type="search", price=None, quantity=None,
                 total_amount=None, event_time=base, user_segment=None)  # fmt: skip

    for view in MATERIALIZED_VIEWS:
        refresh_view(conn, view)
    hourly = conn.execute(
        "SELECT events, views, add_to_carts, purchases, logged_in_users, revenue "
        "FROM v_hourly_event_summary"
    ).fetchall()
    assert hourly == [(5, 2, 1, 1, 1, Decimal("100.00"))]
    category = conn.execute(
        "SELECT category, views, purchases, units_sold, revenue, view_to_purchase_rate "
        "FROM v_category_performance"
    ).fetchall()
    assert category == [("electronics", 2, 1, 2, Decimal("100.00"), Decimal("0.5000"))]
    segments = conn.execute(
        "SELECT user_segment, users, events, purchases, revenue FROM v_user_segment_analysis"
    ).fetchall()
    assert segments == [("premium", 1, 4, 1, Decimal("100.00"))]
    sessions = conn.execute(
        "SELECT session_number, events, purchases, revenue, duration_s FROM v_user_sessions "
        "ORDER BY session_number"
    ).fetchall()
    assert sessions == [(1, 3, 1, Decimal("100.00"), 600), (2, 1, 0, Decimal("0"), 0)]


def test_quality_dashboard_aggregates_metrics(conn) -> None:
    insert = (
        "INSERT INTO data_quality_metrics (run_id, partition_key, source_file, rows_read, "
        "rows_valid, rows_invalid, rows_inserted, rows_duplicate, rows_late, validity_rate, "
        "latency_s) VALUES (%s, 'p', %s, %s, %s, %s, %s, 0, 1, %s, %s)"
    )
    conn.execute(insert, ("r1", "a.csv", 100, 98, 2, 98, 0.98, 2.0))
    conn.execute(insert, ("r1", "b.csv", 100, 90, 10, 90, 0.90, 4.0))
    row = conn.execute(
        "SELECT files, rows_read, rows_valid, rows_invalid, validity_rate, avg_latency_s, "
        "max_latency_s FROM v_data_quality_dashboard"
    ).fetchone()
    assert row == (2, 200, 188, 12, Decimal("0.94000"), Decimal("3.000"), Decimal("4.000"))


def test_cli_migrate_applies_once(database_url: str, tmp_path: Path) -> None:
    env = {"ECOM_DATABASE_URL": database_url, "ECOM_ENV_FILE": str(tmp_path / "absent.env")}

    def migrate() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "ecom_assets.cli", "migrate"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    applied = ", ".join(ALL_MIGRATIONS)
    assert migrate() == f"[migrate] applied {len(ALL_MIGRATIONS)} new migration(s): {applied}"
    assert migrate() == "[migrate] applied 0 new migration(s): none"
