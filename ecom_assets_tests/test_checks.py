"""The asset checks' verdicts: validity counts error rows only; warnings never block; row
conservation and one place per row, over what a real commit left in PostgreSQL, fail once a row is
lost or stored twice."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from ecom_assets.checks import (
    PartitionQuality,
    evaluate_checks,
    load_partition_quality,
    validity_check,
    warnings_check,
)
from ecom_assets.resources.event_sink import (
    FileOutcome,
    StagingTables,
    _copy_statement,
    commit_batch,
    prepare_staging,
)
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms.arrow_routing import route_batches
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import DEAD_LETTER_COLUMNS, EVENT_COLUMNS, routed
from ecom_assets.transforms.validate import validate_events
from ecom_assets_tests.test_transforms_support import RULES as RULES_STRICT
from ecom_assets_tests.test_transforms_support import event, latest_batch, uid

RULES = QualitySettings()


def test_rows_stored_with_warnings_are_valid() -> None:
    quality = PartitionQuality(
        files=1, rows_read=100, rows_valid=97, rows_invalid=3, rows_warned=60,
        warning_counts={"INVALID_USER_SEGMENT": 60},
    )  # fmt: skip
    assert validity_check(quality, RULES).passed
    assert validity_check(quality, RULES).metadata["validity_rate"].value == 0.97


def test_the_warning_check_warns_above_the_share_and_lists_the_rules() -> None:
    quiet = PartitionQuality(rows_read=100, rows_valid=100, rows_warned=25,
                             warning_counts={"UNEXPECTED_PRICE": 25})  # fmt: skip
    assert warnings_check(quiet, RULES).passed
    loud = PartitionQuality(
        rows_read=200, rows_valid=200, rows_warned=120,
        warning_counts={"UNEXPECTED_PRICE": 30, "INVALID_USER_SEGMENT": 100},
    )  # fmt: skip
    result = warnings_check(loud, RULES)
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert result.description == "60.0% of rows stored with warnings > 25%"
    table = result.metadata["warnings_by_rule"].value
    assert table.splitlines()[2:] == [
        "| INVALID_USER_SEGMENT | 100 | 50.00% |",
        "| UNEXPECTED_PRICE | 30 | 15.00% |",
    ]
    assert warnings_check(PartitionQuality(), RULES).metadata["warnings_by_rule"].value == (
        "no warnings"
    )


# The checks over what PostgreSQL holds after a real commit: each passes on a clean ingest and
# fails once a row is lost or stored twice.

PARTITION = "2024-06-01-10:00"


def _utc(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def _commit(url: str, files: dict) -> None:
    """``files`` staged and committed as ingest does (events and dead letters), their ledger
    rows claimed first so that the commit records their rows read."""
    tables = StagingTables.for_partition(PARTITION, 0)
    rows = routed(enrich_events(validate_events(latest_batch(files), RULES_STRICT), RULES_STRICT,
                                3600))  # fmt: skip
    with _utc(url) as conn:
        prepare_staging(conn, tables)
        for name in files:
            conn.execute(
                "INSERT INTO ingest_files (file_name, partition_key, size_bytes, status, run_id) "
                "VALUES (%s, %s, 1, 'claimed', 'run')",
                (name, PARTITION),
            )
    # one COPY per connection, as each staging task does
    events_copy = _copy_statement(tables.events, EVENT_COLUMNS)
    dead_copy = _copy_statement(tables.dead_letters, DEAD_LETTER_COLUMNS)
    with (
        _utc(url) as events_conn,
        _utc(url) as dead_conn,
        events_conn.cursor().copy(events_copy) as events,
        dead_conn.cursor().copy(dead_copy) as dead,
    ):
        counts = route_batches(rows.to_batches(), events.write, dead.write)
    with _utc(url) as conn:
        landed = datetime.now(tz=UTC)
        outcomes = [
            FileOutcome(name, "v3", c.rows_read, c.rows_valid, c.rows_invalid, c.rows_late,
                        dict(c.error_counts), landed, 0.1)
            for name, c in counts.items()
        ]  # fmt: skip
        commit_batch(conn, tables, "run", PARTITION, outcomes)


def _verdicts(conn: psycopg.Connection) -> dict[str, dg.AssetCheckResult]:
    quality = load_partition_quality(conn, PARTITION)
    return {result.check_name: result for result in evaluate_checks(quality, RULES)}


@pytest.fixture
def ingested(migrated_database_url: str) -> str:
    """Two files: a.csv 3 valid rows and a dead letter; b.csv a replay of a.csv's first event
    (a duplicate) and a new one."""
    _commit(migrated_database_url, {
        "a.csv": ("v3", [event(1), event(2), event(3, price="abc"), event(4)]),
        "b.csv": ("v3", [event(1), event(5)]),
    })  # fmt: skip
    return migrated_database_url


@pytest.mark.integration
def test_conservation_and_one_place_pass_on_a_clean_ingest(ingested: str) -> None:
    with psycopg.connect(ingested) as conn:
        verdicts = _verdicts(conn)
    conserved = verdicts["rows_conserved"]
    assert conserved.passed and verdicts["rows_in_one_place"].passed, conserved.description
    assert {key: conserved.metadata[key].value for key in (
        "rows_read", "ledger_rows_read", "rows_inserted", "rows_duplicate", "rows_dead_lettered",
    )} == {"rows_read": 6, "ledger_rows_read": 6, "rows_inserted": 4, "rows_duplicate": 1,
           "rows_dead_lettered": 1}  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (
            "DELETE FROM ecommerce_events WHERE source_file = 'a.csv' AND source_line = 2",
            "the ledger says 6 rows were read, the tables hold 5 (3 events, 1 dead letters, "
            "1 duplicates)",
        ),
        (
            "DELETE FROM dead_letter_events WHERE source_file = 'a.csv'",
            "the ledger says 6 rows were read, the tables hold 5 (4 events, 0 dead letters, "
            "1 duplicates)",
        ),
        (  # the commit lost a row it counted as a duplicate
            "UPDATE data_quality_metrics SET rows_valid = rows_valid + 1, rows_read = rows_read "
            "+ 1 WHERE source_file = 'b.csv'; UPDATE ingest_files SET rows_read = rows_read + 1 "
            "WHERE file_name = 'b.csv'",
            "the ledger says 7 rows were read, the tables hold 6 (4 events, 1 dead letters, "
            "1 duplicates); read 7 but accounted for 6",
        ),
        (
            "UPDATE ingest_files SET rows_read = NULL WHERE file_name = 'b.csv'",
            "1 of 2 files have no count of rows read in the ledger; the ledger says 4 rows were "
            "read, the tables hold 6 (4 events, 1 dead letters, 1 duplicates)",
        ),
    ],
)
def test_conservation_fails_when_a_row_is_lost(ingested: str, loss: str, expected: str) -> None:
    with psycopg.connect(ingested) as conn:
        conn.execute(loss)
        verdict = _verdicts(conn)["rows_conserved"]
    assert (verdict.passed, verdict.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert verdict.description == expected


@pytest.mark.integration
def test_a_row_stored_as_an_event_and_a_dead_letter_fails_one_place(ingested: str) -> None:
    """What a file replayed after a rule was relaxed leaves: the row that passes now is stored,
    its old dead letter stays."""
    with psycopg.connect(ingested) as conn:
        conn.execute(
            "INSERT INTO ecommerce_events (event_id, event_type, product_id, event_time, "
            "event_date, event_hour, schema_version, source_file, source_line) "
            "VALUES (%s, 'view', 1, now(), current_date, 0, 'v3', 'a.csv', 3)",
            (uid(99),),
        )
        verdicts = _verdicts(conn)
    one_place = verdicts["rows_in_one_place"]
    assert (one_place.passed, one_place.metadata["rows_in_both"].value) == (False, 1)
    assert one_place.description == (
        "1 source rows (file and line) are both a stored event and a dead letter"
    )
    assert not verdicts["rows_conserved"].passed


@pytest.mark.integration
def test_the_dashboard_counts_a_replayed_file_once(ingested: str) -> None:
    """A replay adds a metrics row per file (inserted 0, its valid rows duplicates); the
    dashboard keeps counting each file's first ingestion, as the checks do."""
    figures = (
        "SELECT sum(files), sum(rows_read), sum(rows_valid), sum(rows_inserted), "
        "sum(rows_duplicate) FROM v_data_quality_dashboard"
    )
    with psycopg.connect(ingested) as conn:
        before = conn.execute(figures).fetchone()
        conn.execute(
            "INSERT INTO data_quality_metrics (run_id, partition_key, source_file, rows_read, "
            "rows_valid, rows_invalid, rows_inserted, rows_duplicate, rows_late, validity_rate, "
            "measured_at) SELECT 'replay', partition_key, source_file, rows_read, rows_valid, "
            "rows_invalid, 0, rows_valid, 0, validity_rate, measured_at + interval '1 second' "
            "FROM data_quality_metrics"
        )
        after = conn.execute(figures).fetchone()
    assert before == (2, 6, 5, 4, 1)
    assert after == before
