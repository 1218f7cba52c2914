"""The PostgreSQL sink: COPY from Spark's executors into staging, then one committing transaction.

No JDBC jar (nothing may download at run time) and no plain append (one duplicate key would fail
the whole batch): each Spark task streams its rows as CSV through psycopg COPY into UNLOGGED
staging tables, valid rows and dead letters in the same pass, counting them per file on the way.
The driver then moves them with `INSERT ... ON CONFLICT DO NOTHING`, writes the quality metrics
and marks the files committed in ONE transaction. A crash before that commit leaves only staging
rows, which the next run of the partition drops; a crash after it leaves committed files that
only need moving. Re-running is always safe.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import pyarrow as pa
from psycopg import sql
from pyspark.sql import DataFrame

from ecom_assets.transforms.arrow_routing import FileCounts, add_counts, route_batches
from ecom_assets.transforms.file_rows import FileRows
from ecom_assets.transforms.route import DEAD_LETTER_COLUMNS, EVENT_COLUMNS

COPY_TASKS = 2  # tasks writing at once: one per core here; more only adds connections


STAGING_SLOTS = 4
"""Staging table pairs per partition: two batches commit from two while the next fills a third,
and the fourth is the previous batch's, which a commit still reads (``commit_batch``)."""


@dataclass(frozen=True)
class StagingTables:
    """Staging table names of one partition and slot: a re-run reuses and resets them."""

    events: str
    dead_letters: str

    @classmethod
    def for_partition(cls, partition: str, slot: int) -> StagingTables:
        suffix = f"{hashlib.sha256(partition.encode()).hexdigest()[:12]}_{slot}"
        return cls(events=f"stage_events_{suffix}", dead_letters=f"stage_dead_letters_{suffix}")


def prepare_staging(conn: psycopg.Connection, tables: StagingTables) -> None:
    """(Re)create empty UNLOGGED staging tables: leftovers of a crashed run are dropped."""
    events, dead = sql.Identifier(tables.events), sql.Identifier(tables.dead_letters)
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(events, dead))
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (LIKE ecommerce_events INCLUDING DEFAULTS)").format(
                events
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {} (source_file text, source_line integer, event_id text, "
                "error_codes text[], error_detail text, raw_record jsonb, schema_version text)"
            ).format(dead)
        )


def drop_staging(conn: psycopg.Connection, tables: StagingTables) -> None:
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(tables.events), sql.Identifier(tables.dead_letters)
        )
    )


def _copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def routing_writer(
    url: str, tables: StagingTables, rows: FileRows
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function: route one task's files (``FileRows``), COPY their valid rows and
    dead letters into the staging tables, and yield its counts per file (``FileCounts`` as
    JSON).

    Two connections, one COPY each, committed when the task ends; a failed task leaves nothing.
    Both COPY streams stay open while the rows pass, so no task holds its dead letters in memory.
    """
    events_copy = _copy_statement(tables.events, EVENT_COLUMNS)
    dead_copy = _copy_statement(tables.dead_letters, DEAD_LETTER_COLUMNS)

    def write(names: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with psycopg.connect(url) as events_conn, psycopg.connect(url) as dead_conn:
            for conn in (events_conn, dead_conn):
                conn.execute("SET TIME ZONE 'UTC'")
            with (
                events_conn.cursor().copy(events_copy) as events,
                dead_conn.cursor().copy(dead_copy) as dead,
            ):
                counts = route_batches(routed_batches(rows, names), events.write, dead.write)
        yield counts_batch(counts)

    return write


def routed_batches(rows: FileRows, names: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The routed rows of the files named in ``names`` (``source_file``), a chunk at a time."""
    for batch in names:
        for files in rows.chunks(batch.column("source_file").to_pylist()):
            yield from rows.routed(files).combine_chunks().to_batches()


def counts_batch(counts: dict[str, FileCounts]) -> pa.RecordBatch:
    """A task's counts per file, as the one batch it yields."""
    return pa.RecordBatch.from_pydict(
        {"source_file": list(counts), "counts": [c.to_json() for c in counts.values()]}
    )


def routing_counter(
    rows: FileRows,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function doing a staging task's work but writing nothing: the warm-up of
    ``ecom up`` and bench/profile_spark.py run it."""

    def count(names: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield counts_batch(route_batches(routed_batches(rows, names), _discard, _discard))

    return count


def _discard(_: bytes) -> None:
    pass


def stage_routed(
    names: DataFrame, url: str, tables: StagingTables, rows: FileRows
) -> dict[str, FileCounts]:
    """Route and stage files (``event_reader.file_names``) from the executors in one pass;
    the counts per file."""
    return run_tasks(names, routing_writer(url, tables, rows))


def run_tasks(
    names: DataFrame, task: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
) -> dict[str, FileCounts]:
    """Run ``task`` over the files, at most COPY_TASKS at once (``coalesce``); the counts of
    its ``counts_batch`` rows, added up per file."""
    written = names.coalesce(COPY_TASKS).mapInArrow(task, "source_file string, counts string")
    counts: dict[str, FileCounts] = {}
    for row in written.collect():
        add_counts(counts, {row["source_file"]: FileCounts.from_json(row["counts"])})
    return counts


def staged_rows(conn: psycopg.Connection, tables: StagingTables) -> tuple[int, int]:
    """Rows in the staging tables (valid, dead letters): what the commit would move."""
    return conn.execute(
        sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
            sql.Identifier(tables.events), sql.Identifier(tables.dead_letters)
        )
    ).fetchone()


@dataclass(frozen=True)
class FileOutcome:
    """One file's counts as computed by Spark, plus what the commit adds."""

    source_file: str
    schema_version: str | None
    rows_read: int
    rows_valid: int
    rows_invalid: int
    rows_late: int
    error_counts: dict[str, int]
    landed_at: datetime
    processing_s: float
    rows_warned: int = 0
    warning_counts: dict[str, int] = field(default_factory=dict)
    unknown_columns: tuple[str, ...] = ()
    """Header columns no schema version knows (kept per row in ``extras``): drift."""


def commit_batch(
    conn: psycopg.Connection,
    tables: StagingTables,
    run_id: str,
    partition: str,
    outcomes: Sequence[FileOutcome],
    earlier: StagingTables | None = None,
) -> dict[str, int]:
    """Move staged rows, write metrics, mark files committed: one transaction.

    Returns rows inserted per file; the rest of a file's valid rows were duplicates of
    events already stored (a replay), which ON CONFLICT skipped, or of events that the
    ``earlier`` batch staged: that batch may still be committing, and keeps them. Its staging
    is only read, and this one's is left for the slot's next batch to drop, so two commits
    never wait for each other's locks.
    """
    with conn.transaction():
        inserted = _insert_events(conn, tables, earlier)
        conn.execute(
            sql.SQL(
                "INSERT INTO dead_letter_events ({cols}, partition_key, run_id) "
                "SELECT {cols}, %s, %s FROM {stage} "
                "ON CONFLICT (source_file, source_line) DO NOTHING"
            ).format(
                cols=sql.SQL(", ").join(map(sql.Identifier, DEAD_LETTER_COLUMNS)),
                stage=sql.Identifier(tables.dead_letters),
            ),
            (partition, run_id),
        )
        # one round trip for all files (psycopg pipelines executemany): a batch of small
        # files has thousands
        with conn.cursor() as cursor:
            cursor.executemany(
                """
                INSERT INTO data_quality_metrics (run_id, partition_key, source_file,
                    schema_version, rows_read, rows_valid, rows_invalid, rows_inserted,
                    rows_duplicate, rows_late, validity_rate, error_counts, latency_s, processing_s,
                    rows_warned, warning_counts, unknown_columns)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                        extract(epoch FROM clock_timestamp() - %s::timestamptz), %s, %s, %s, %s)
                ON CONFLICT (run_id, source_file) DO NOTHING
                """,
                [
                    _metrics_row(run_id, partition, outcome, inserted.get(outcome.source_file, 0))
                    for outcome in outcomes
                ],
            )
            cursor.executemany(
                "UPDATE ingest_files SET status = 'committed', committed_at = now(), "
                "rows_read = %s, schema_version = %s, error = NULL "
                "WHERE file_name = %s AND run_id = %s",
                [
                    (outcome.rows_read, outcome.schema_version, outcome.source_file, run_id)
                    for outcome in outcomes
                ],
            )
    return {outcome.source_file: inserted.get(outcome.source_file, 0) for outcome in outcomes}


_REPEATED = "repeated_events"
"""A commit's temporary table: the events staged more than once."""


def _insert_events(
    conn: psycopg.Connection, tables: StagingTables, earlier: StagingTables | None
) -> dict[str, int]:
    """Insert the staged events that the ``earlier`` batch did not stage; rows inserted per file.

    The same event in two files of a batch: the earlier file keeps it, so those events are
    inserted in file order. Only they are sorted, after all others: sorting every staged row
    cost a fifth of the insert (docs/decisions.md 38); finding the repeated ones, a thirtieth.
    """
    stage = sql.Identifier(tables.events)
    held = (
        sql.SQL("AND NOT EXISTS (SELECT FROM {} e WHERE e.event_id = s.event_id)").format(
            sql.Identifier(earlier.events)
        )
        if earlier is not None
        else sql.SQL("")
    )
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {repeated} ON COMMIT DROP AS "
            "SELECT event_id FROM {stage} GROUP BY event_id HAVING count(*) > 1"
        ).format(repeated=sql.Identifier(_REPEATED), stage=stage)
    )
    inserted: Counter[str] = Counter()
    for repeated, order in (("NOT EXISTS", ""), ("EXISTS", "ORDER BY source_file, source_line")):
        inserted.update(
            dict(
                conn.execute(
                    sql.SQL(
                        "WITH moved AS (INSERT INTO ecommerce_events ({cols}) "
                        "SELECT {cols} FROM {stage} s WHERE {repeated} "
                        "(SELECT FROM {table} r WHERE r.event_id = s.event_id) {held} {order} "
                        "ON CONFLICT (event_id) DO NOTHING RETURNING source_file) "
                        "SELECT source_file, count(*) FROM moved GROUP BY source_file"
                    ).format(
                        cols=sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)),
                        stage=stage,
                        repeated=sql.SQL(repeated),
                        table=sql.Identifier(_REPEATED),
                        held=held,
                        order=sql.SQL(order),
                    )
                ).fetchall()
            )
        )
    return dict(inserted)


def _metrics_row(
    run_id: str, partition: str, outcome: FileOutcome, rows_inserted: int
) -> tuple[object, ...]:
    """The parameters of one file's data_quality_metrics row."""
    return (
        run_id,
        partition,
        outcome.source_file,
        outcome.schema_version,
        outcome.rows_read,
        outcome.rows_valid,
        outcome.rows_invalid,
        rows_inserted,
        outcome.rows_valid - rows_inserted,
        outcome.rows_late,
        outcome.rows_valid / outcome.rows_read if outcome.rows_read else 1.0,
        json.dumps(outcome.error_counts, sort_keys=True),
        outcome.landed_at,
        outcome.processing_s,
        outcome.rows_warned,
        json.dumps(outcome.warning_counts, sort_keys=True),
        list(outcome.unknown_columns),
    )
