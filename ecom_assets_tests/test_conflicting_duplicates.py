"""A valid row whose event_id is held with other contents is a dead letter, never a silent
duplicate: held by a row committed before, by an earlier file of its batch, or by the batch
before, still committing. Identical replays stay silent. Real PostgreSQL, real commits."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import psycopg
import pytest

from ecom_assets.replay import replay_dead_letters
from ecom_assets.resources.event_sink import (
    CONFLICTING_DUPLICATE,
    FileOutcome,
    StagingTables,
    commit_batch,
    prepare_staging,
)
from ecom_assets.schema.versions import LATEST
from ecom_assets.settings import Settings
from ecom_assets.transforms.validate import ValidationRules
from ecom_assets_tests.test_event_sink import stage as stage_rows
from ecom_assets_tests.test_transforms_support import (
    DEFAULT_CONTRACT,
    NOW,
    RULES,
    event,
    uid,
    view,
)

pytestmark = pytest.mark.integration

N, NEXT = StagingTables.for_partition("p", 0), StagingTables.for_partition("p", 1)


def stage(
    conn: psycopg.Connection, tables: StagingTables, files: dict, rules: ValidationRules = RULES
) -> list[FileOutcome]:
    """``files``' valid rows staged as ingest stages them; an outcome per file (all valid)."""
    stage_rows(conn, files, rules, tables=tables)
    landed = datetime.now(tz=UTC)
    return [
        FileOutcome(name, "v3", len(records), len(records), 0, 0, {}, landed, 0.1)
        for name, (_, records) in files.items()
    ]


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def dead_letters(conn: psycopg.Connection) -> dict[tuple[str, int], tuple]:
    rows = conn.execute(
        "SELECT source_file, source_line, event_id, error_codes, error_detail, raw_record "
        "FROM dead_letter_events"
    ).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def metrics(conn: psycopg.Connection, run_id: str) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT source_file, rows_read, rows_valid, rows_invalid, rows_inserted, rows_duplicate, "
        "error_counts FROM data_quality_metrics WHERE run_id = %s",
        (run_id,),
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def stored(conn: psycopg.Connection) -> dict[str, tuple[str, int]]:
    rows = conn.execute("SELECT event_id::text, source_file, source_line FROM ecommerce_events")
    return {row[0]: (row[1], row[2]) for row in rows}


def test_a_row_conflicting_with_an_event_stored_before_is_a_dead_letter_naming_it(
    migrated_database_url: str,
) -> None:
    with connect(migrated_database_url) as conn:
        prepare_staging(conn, N)
        first = stage(conn, N, {"a.csv": ("v3", [event(1), event(2)])})
        commit_batch(conn, N, "run-1", "p", first)
        prepare_staging(conn, N)
        # 1: other price, 2: the same event re-sent in a file of another name, 3: new
        outcomes = stage(conn, N, {"b.csv": ("v3", [event(1, price="5.00"), event(2), event(3)])})
        committed = commit_batch(conn, N, "run-2", "p", outcomes)
        letters = dead_letters(conn)
        by_file = metrics(conn, "run-2")
        events = stored(conn)
    assert committed.inserted == {"b.csv": 1}
    assert events == {uid(1): ("a.csv", 1), uid(2): ("a.csv", 2), uid(3): ("b.csv", 3)}
    assert list(letters) == [("b.csv", 1)]
    event_id, codes, detail, raw = letters[("b.csv", 1)]
    assert (event_id, codes) == (uid(1), [CONFLICTING_DUPLICATE])
    assert detail == (
        f"CONFLICTING_DUPLICATE: event_id='{uid(1)}' is held by source_file='a.csv', "
        "source_line=1 with other values"
    )
    assert sorted(raw) == sorted(LATEST.column_names)  # jsonb orders keys its own way
    assert (raw["price"], raw["event_time"], raw["geo_country"]) == (
        "5.00", "2024-06-01T10:00:00.000000Z", "DE",
    )  # fmt: skip
    # read 3 = inserted 1 + duplicate 1 + invalid 1, and the run's outcomes say the same
    assert by_file["b.csv"] == (3, 2, 1, 1, 1, {CONFLICTING_DUPLICATE: 1})
    [after] = committed.outcomes
    assert (after.rows_valid, after.rows_invalid) == (2, 1)
    assert after.error_counts == {CONFLICTING_DUPLICATE: 1}
    assert outcomes[0].rows_invalid == 0  # what Spark counted is left as it was


def test_the_later_file_of_a_batch_with_other_contents_is_a_dead_letter(
    migrated_database_url: str,
) -> None:
    with connect(migrated_database_url) as conn:
        prepare_staging(conn, N)
        # staged out of file order: the commit, not the staging, decides who keeps event 1
        outcomes = stage(conn, N, {"c.csv": ("v3", [event(1)])})  # the same as a.csv's
        outcomes += stage(conn, N, {"b.csv": ("v3", [event(1, quantity="2"), event(2)])})
        outcomes += stage(conn, N, {"a.csv": ("v3", [event(1)])})
        inserted = commit_batch(conn, N, "run", "p", outcomes).inserted
        letters = dead_letters(conn)
        by_file = metrics(conn, "run")
        events = stored(conn)
    assert inserted == {"a.csv": 1, "b.csv": 1, "c.csv": 0}
    assert events == {uid(1): ("a.csv", 1), uid(2): ("b.csv", 2)}
    assert list(letters) == [("b.csv", 1)]
    assert "source_file='a.csv', source_line=1" in letters[("b.csv", 1)][2]
    assert letters[("b.csv", 1)][3]["quantity"] == "2"
    assert by_file["b.csv"] == (2, 1, 1, 1, 0, {CONFLICTING_DUPLICATE: 1})
    assert by_file["c.csv"] == (1, 1, 0, 0, 1, {})


@pytest.mark.parametrize("earlier_commits_first", [False, True])
def test_a_row_conflicting_with_the_batch_before_is_a_dead_letter_while_it_commits(
    migrated_database_url: str, earlier_commits_first: bool
) -> None:
    """Batch N+1 leaves batch N the events it staged too, and judges its own rows against
    N's, committed or not."""
    with connect(migrated_database_url) as first, connect(migrated_database_url) as second:
        prepare_staging(first, N)
        prepare_staging(second, NEXT)
        earlier = stage(first, N, {"a.csv": ("v3", [event(1), event(2), event(2)])})
        later = stage(second, NEXT, {"b.csv": ("v3", [event(1, price="1.00"), event(2),
                                                       event(3)])})  # fmt: skip
        if earlier_commits_first:
            commit_batch(first, N, "run", "p", earlier)
            inserted = commit_batch(second, NEXT, "run", "p", later, earlier=N).inserted
        else:  # N+1 runs every statement before N commits (its COMMIT would wait for N's)
            with second.transaction():
                inserted = commit_batch(second, NEXT, "run", "p", later, earlier=N).inserted
                commit_batch(first, N, "run", "p", earlier)
        letters = dead_letters(first)
        by_file = metrics(first, "run")
        events = stored(first)
    assert inserted == {"b.csv": 1}
    assert events == {uid(1): ("a.csv", 1), uid(2): ("a.csv", 2), uid(3): ("b.csv", 3)}
    assert list(letters) == [("b.csv", 1)]
    assert "source_file='a.csv', source_line=1" in letters[("b.csv", 1)][2]
    assert by_file["b.csv"] == (3, 2, 1, 1, 1, {CONFLICTING_DUPLICATE: 1})


def test_what_enrichment_fills_or_leaves_blank_is_not_a_conflict(
    migrated_database_url: str,
) -> None:
    """A category the catalogue filled in one ingest and not in another, or a quantity the
    rules default, is the same event; a category given differently is not."""
    no_catalogue = ValidationRules(NOW, DEFAULT_CONTRACT)
    with connect(migrated_database_url) as conn:
        prepare_staging(conn, N)
        records = [view(1, category=""), event(2, quantity=""), view(3, category="toys")]
        first = stage(conn, N, {"a.csv": ("v3", records)}, no_catalogue)
        commit_batch(conn, N, "run-1", "p", first)
        prepare_staging(conn, N)
        records = [view(1), event(2, quantity="1"), view(3, category="books")]
        again = stage(conn, N, {"b.csv": ("v3", records)}, no_catalogue)
        commit_batch(conn, N, "run-2", "p", again)
        letters = dead_letters(conn)
    assert list(letters) == [("b.csv", 3)]


def test_an_event_re_sent_in_an_older_version_says_less_not_something_else(
    migrated_database_url: str,
) -> None:
    """Our generator's replays copy a v3 row into a v1 or v2 file: the fields that version
    lacks (and quantity's default for it) are no statement; a field both versions carry is."""
    with connect(migrated_database_url) as conn:
        prepare_staging(conn, N)
        first = stage(conn, N, {"a.csv": ("v3", [event(1), event(2), event(3)])})
        commit_batch(conn, N, "run-1", "p", first)
        prepare_staging(conn, N)
        older = {
            "b.csv": ("v1", [event(1), event(2, price="5.00")]),
            "c.csv": ("v2", [event(3, session_id="s-9")]),
        }
        committed = commit_batch(conn, N, "run-2", "p", stage(conn, N, older))
        letters = dead_letters(conn)
    assert sorted(letters) == [("b.csv", 2), ("c.csv", 1)]
    assert committed.inserted == {"b.csv": 0, "c.csv": 0}


def test_a_conflicting_dead_letter_replays_as_the_row_it_was(
    migrated_database_url: str, ingest_settings: Settings
) -> None:
    """``ecom replay --dead-letters`` writes its raw_record back; read again, it is the same
    row, so it conflicts again, with the same record (until its id or the stored row is
    fixed)."""
    with connect(migrated_database_url) as conn:
        prepare_staging(conn, N)
        commit_batch(conn, N, "run-1", "p", stage(conn, N, {"a.csv": ("v3", [event(1)])}))
        prepare_staging(conn, N)
        odd = event(1, price="7.50", session_id="", geo_city='Köln, "Süd"')
        commit_batch(conn, N, "run-2", "p", stage(conn, N, {"b.csv": ("v3", [odd])}))
        result = replay_dead_letters(conn, ingest_settings, CONFLICTING_DUPLICATE)
        path = ingest_settings.input_dir / result.files[0]
        with path.open(newline="", encoding="utf-8") as file:
            records = list(csv.DictReader(file))
        prepare_staging(conn, N)
        commit_batch(conn, N, "run-3", "p", stage(conn, N, {path.name: ("v3", records)}))
        letters = dead_letters(conn)
    assert records[0]["geo_city"] == 'Köln, "Süd"' and records[0]["session_id"] == ""
    assert letters[(path.name, 1)][1] == [CONFLICTING_DUPLICATE]
    assert letters[(path.name, 1)][3] == letters[("b.csv", 1)][3]
