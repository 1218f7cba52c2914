"""The PostgreSQL sink: COPY from Spark's executors into staging, then one committing transaction.

No JDBC jar (nothing may download at run time) and no plain append (one duplicate key would fail
the whole batch): each Spark task streams its rows as CSV through psycopg COPY into UNLOGGED
staging tables, valid rows and dead letters in the same pass, counting them per file on the way.
The driver then moves them with `INSERT ... ON CONFLICT DO NOTHING`, writes the quality metrics
and marks the files committed in ONE transaction. A crash before that commit leaves only staging
rows, which the next run of the partition drops; a crash after it leaves committed files that
only need moving. Re-running is always safe.

A task's function is pickled into the plan that goes to the Spark server, so it holds the URL
without its password: the task's libpq reads it from the installation's password file
(resources/pgpass.py). A remote cluster's executors do not have that file: give them
PGPASSWORD, PGPASSFILE or a service file (docs/runbook.md).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import psycopg
import pyarrow as pa
from psycopg import sql
from pyspark.sql import DataFrame

from ecom_assets.resources.pgpass import Passwordless, passwordless
from ecom_assets.schema.versions import LATEST, VERSIONS
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
    database: Passwordless, tables: StagingTables, rows: FileRows
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function: route one task's files (``FileRows``), COPY their valid rows and
    dead letters into the staging tables, and yield its counts per file (``FileCounts`` as
    JSON).

    Two connections, one COPY each, committed when the task ends; a failed task leaves nothing.
    Both COPY streams stay open while the rows pass, so no task holds its dead letters in memory.
    The function is pickled into the plan: ``database`` holds no password.
    """
    events_copy = _copy_statement(tables.events, EVENT_COLUMNS)
    dead_copy = _copy_statement(tables.dead_letters, DEAD_LETTER_COLUMNS)

    def write(names: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        options = database.connect_options()  # the password file, where this worker has it
        with (
            psycopg.connect(database.url, **options) as events_conn,
            psycopg.connect(database.url, **options) as dead_conn,
        ):
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
    names: DataFrame,
    url: str,
    tables: StagingTables,
    rows: FileRows,
    passfile: Path,
) -> dict[str, FileCounts]:
    """Route and stage files (``event_reader.file_names``) from the executors in one pass;
    the counts per file. ``url``'s password goes to the password file ``passfile`` (the
    installation's ``<ECOM_STATE_DIR>/pgpass``), never into the tasks."""
    database = passwordless(url, passfile)
    return run_tasks(names, routing_writer(database, tables, rows))


def run_tasks(
    names: DataFrame, task: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
) -> dict[str, FileCounts]:
    """Run ``task`` over the files, at most COPY_TASKS at once (``coalesce``); the counts of
    its ``counts_batch`` rows, added up per file."""
    counts: dict[str, FileCounts] = {}
    for row in task_plan(names, task).collect():
        add_counts(counts, {row["source_file"]: FileCounts.from_json(row["counts"])})
    return counts


def task_plan(
    names: DataFrame, task: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
) -> DataFrame:
    """The plan ``run_tasks`` sends to the server: ``task`` travels in it, pickled."""
    return names.coalesce(COPY_TASKS).mapInArrow(task, "source_file string, counts string")


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
) -> CommittedFiles:
    """Move staged rows, write metrics, mark files committed: one transaction.

    Returns rows inserted per file; the rest of a file's valid rows were duplicates of
    events already stored (a replay), which ON CONFLICT skipped, or of events that the
    ``earlier`` batch staged: that batch may still be committing, and keeps them. Its staging
    is only read, and this one's is left for the slot's next batch to drop, so two commits
    never wait for each other's locks.

    A skipped row whose event is held with other contents (``CONTENT_COLUMNS``) is no
    duplicate: it becomes a CONFLICTING_DUPLICATE dead letter, and the outcomes returned count
    it invalid, so that the metrics, and the batch record and run report that ingest builds
    from them, count it where it went.
    """
    with conn.transaction():
        moved = _insert_events(conn, tables, earlier)
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
        conflicts = _dead_letter_conflicts(conn, partition, run_id) if moved.conflicts else {}
        outcomes = [
            conflicts[outcome.source_file].applied_to(outcome)
            if outcome.source_file in conflicts
            else outcome
            for outcome in outcomes
        ]
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
                        -- a file dated decades back must not overflow NUMERIC(12,3)
                        least(extract(epoch FROM clock_timestamp() - %s::timestamptz),
                              999999999.999), %s, %s, %s, %s)
                ON CONFLICT (run_id, source_file) DO NOTHING
                """,
                [
                    _metrics_row(
                        run_id, partition, outcome, moved.inserted.get(outcome.source_file, 0),
                        moved.unheld.get(outcome.source_file, 0),
                    )
                    for outcome in outcomes
                ],
            )  # fmt: skip
            cursor.executemany(
                "UPDATE ingest_files SET status = 'committed', committed_at = now(), "
                "rows_read = %s, schema_version = %s, error = NULL "
                "WHERE file_name = %s AND run_id = %s",
                [
                    (outcome.rows_read, outcome.schema_version, outcome.source_file, run_id)
                    for outcome in outcomes
                ],
            )
    inserted = {
        outcome.source_file: moved.inserted.get(outcome.source_file, 0) for outcome in outcomes
    }
    return CommittedFiles(inserted, outcomes)


@dataclass(frozen=True)
class CommittedFiles:
    """What a commit did per file: rows inserted, and each file's counts as committed (a
    conflicting duplicate moved from valid to invalid)."""

    inserted: dict[str, int]
    outcomes: list[FileOutcome]


CONFLICTING_DUPLICATE = "CONFLICTING_DUPLICATE"
"""The dead-letter code of a valid row whose event_id is held with other contents: stored
already, by an earlier file of its batch, or staged by the batch before. No contract rule can
see it (it takes the stored rows): the commit judges it."""

NOT_CONTENT = frozenset(
    {
        "event_id",  # the key both rows share
        "source_file", "source_line", "schema_version", "processed_at",  # where and when read
        "total_amount", "event_date", "event_hour",  # derived from compared values
        "is_late", "quality_warnings",  # the arrival and the rules in force
        "category", "extras",  # compared their own way (_differs)
    }
)  # fmt: skip
CONTENT_COLUMNS: tuple[str, ...] = tuple(c for c in EVENT_COLUMNS if c not in NOT_CONTENT)
"""What an event says, compared exactly (NULL equals NULL) between a skipped row and the row
holding its event_id; ``category`` and ``extras`` too, as ``_differs`` says. Not compared: where
and when the row was read (source_file, source_line, schema_version, processed_at) and what is
derived from the compared values, the arrival or the rules in force (total_amount, event_date,
event_hour, is_late, quality_warnings). The same values re-sent in a file of another name or
another schema version are the same event."""

_REPEATED = "repeated_events"
"""A commit's temporary table: the events staged more than once, or by the batch before too
(``held``)."""
_SET_ASIDE = "set_aside_events"
"""A commit's temporary table: the staged rows of the events in _REPEATED."""
_CONFLICTS = "conflicting_events"
"""A commit's temporary table: the skipped rows whose event is held with other contents, with
the holder's source_file and source_line."""
_RECORD_CONFLICT = "ecom_conflicting_event"
"""A session's function (pg_temp) that notes a conflicting row in _CONFLICTS."""


@dataclass(frozen=True)
class Moved:
    """What moving the staged events did, per file: rows inserted, rows set aside that nothing
    holds (none, unless rows are lost: the conservation check then fails), and whether any
    row conflicted."""

    inserted: dict[str, int]
    unheld: dict[str, int]
    conflicts: bool


def _insert_events(
    conn: psycopg.Connection, tables: StagingTables, earlier: StagingTables | None
) -> Moved:
    """Insert the staged events that the ``earlier`` batch did not stage and note the skipped
    rows that conflict with the row holding their event.

    The same event in two files of a batch: the earlier file keeps it, so those events are
    inserted in file order. Only they are sorted, after all others: sorting every staged row
    cost a fifth of the insert (docs/decisions.md 38); finding the repeated ones, a thirtieth.
    The events the earlier batch staged are set aside in the same pass.

    A row skipped because its event is stored is compared in ON CONFLICT's WHERE, which runs
    for the skipped rows only, and never updates (``_conflict_clause``); the rows set aside
    are few, and compared with the row that holds their event once the others are in.
    """
    stage = sql.Identifier(tables.events)
    held = (
        sql.SQL("event_id IN (SELECT event_id FROM {})").format(sql.Identifier(earlier.events))
        if earlier is not None
        else sql.SQL("false")
    )
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {repeated} ON COMMIT DROP AS SELECT event_id, held FROM "
            "(SELECT event_id, count(*) AS staged, {held} AS held FROM {stage} "
            "GROUP BY event_id) g WHERE staged > 1 OR held"
        ).format(repeated=sql.Identifier(_REPEATED), held=held, stage=stage)
    )
    _prepare_conflicts(conn)
    inserted: Counter[str] = Counter()
    inserted.update(
        _counted(
            conn,
            sql.SQL(
                "INSERT INTO ecommerce_events AS stored ({cols}) SELECT {cols} FROM {stage} s "
                "WHERE NOT EXISTS (SELECT FROM {repeated} r WHERE r.event_id = s.event_id) "
                "{conflict} RETURNING source_file"
            ).format(
                cols=_EVENT_COLUMNS,
                stage=stage,
                repeated=sql.Identifier(_REPEATED),
                conflict=_conflict_clause(),
            ),
        )
    )
    unheld: dict[str, int] = {}
    if conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(_REPEATED))
    ).fetchone()[0]:
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {aside} ON COMMIT DROP AS SELECT s.*, r.held "
                "FROM {stage} s JOIN {repeated} r ON r.event_id = s.event_id"
            ).format(
                aside=sql.Identifier(_SET_ASIDE), stage=stage, repeated=sql.Identifier(_REPEATED)
            )
        )
        inserted.update(
            _counted(
                conn,
                sql.SQL(
                    "INSERT INTO ecommerce_events ({cols}) SELECT {cols} FROM {aside} "
                    "WHERE NOT held ORDER BY source_file, source_line "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING source_file"
                ).format(cols=_EVENT_COLUMNS, aside=sql.Identifier(_SET_ASIDE)),
            )
        )
        unheld = _judge_set_aside(conn, earlier)
    conflicts = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(_CONFLICTS))
    ).fetchone()[0]
    return Moved(dict(inserted), unheld, conflicts)


_EVENT_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))


def _counted(conn: psycopg.Connection, insert: sql.Composable) -> dict[str, int]:
    """Rows per source_file that an ``INSERT ... RETURNING source_file`` inserted."""
    return dict(
        conn.execute(
            sql.SQL("WITH moved AS ({}) SELECT source_file, count(*) FROM moved GROUP BY 1").format(
                insert
            )
        ).fetchall()
    )


def _differs(row: str, holder: str) -> sql.Composable:
    """True where two rows of ecommerce_events' columns are not the same event.

    ``CONTENT_COLUMNS`` compare exactly, a column that some schema versions lack only when both
    rows' versions carry it: a producer re-sending an event in an older version (our generator's
    replays do) says less, not something else, and the field's default (quantity 1) is no
    statement. A missing category is unknown, not a value: enrichment fills it from the
    catalogue loaded at the time, and a replay after a catalogue load is the same event. Unknown
    columns compare as JSON, a blank one as absent (a dead-letter replay writes every record's
    columns)."""
    a, b = sql.Identifier(row), sql.Identifier(holder)

    def compared(name: str) -> sql.Composable:
        distinct = sql.SQL("{a}.{c} IS DISTINCT FROM {b}.{c}").format(
            a=a, b=b, c=sql.Identifier(name)
        )
        carriers = [version.name for version in VERSIONS if name in version.column_names]
        if not carriers or len(carriers) == len(VERSIONS):  # every version (or a derived key)
            return distinct
        return sql.SQL(
            "({a}.schema_version = ANY({v}) AND {b}.schema_version = ANY({v}) AND {d})"
        ).format(a=a, b=b, v=sql.Literal(carriers), d=distinct)

    return sql.SQL(
        "({columns} OR coalesce({a}.category <> {b}.category, false) "
        "OR jsonb_strip_nulls(coalesce({a}.extras, '{{}}')) "
        "<> jsonb_strip_nulls(coalesce({b}.extras, '{{}}')))"
    ).format(a=a, b=b, columns=sql.SQL(" OR ").join(map(compared, CONTENT_COLUMNS)))


def _prepare_conflicts(conn: psycopg.Connection) -> None:
    """The _CONFLICTS table (dropped at commit) and the function that fills it (the session's:
    a commit's connection is its own)."""
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {conflicts} ON COMMIT DROP AS SELECT {cols}, "
            "NULL::text AS held_file, NULL::integer AS held_line FROM ecommerce_events WITH NO DATA"
        ).format(conflicts=sql.Identifier(_CONFLICTS), cols=_EVENT_COLUMNS)
    )
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION pg_temp.{function}(staged ecommerce_events, "
            "holder ecommerce_events) RETURNS boolean LANGUAGE sql VOLATILE AS $$ "
            "INSERT INTO {conflicts} ({cols}, held_file, held_line) "
            "SELECT {staged_cols}, holder.source_file, holder.source_line; SELECT false $$"
        ).format(
            function=sql.Identifier(_RECORD_CONFLICT),
            conflicts=sql.Identifier(_CONFLICTS),
            cols=_EVENT_COLUMNS,
            staged_cols=sql.SQL(", ").join(
                sql.SQL("(staged).{}").format(sql.Identifier(name)) for name in EVENT_COLUMNS
            ),
        )
    )


def _conflict_clause() -> sql.Composable:
    """ON CONFLICT for rows whose event may be stored: a row with other contents is noted in
    _CONFLICTS, and none is ever updated. PostgreSQL runs the WHERE for the skipped rows only
    (and locks each such stored row until the commit), so a batch without them pays nothing:
    finding them after a DO NOTHING would take a second pass over every staged row."""
    return sql.SQL(
        "ON CONFLICT (event_id) DO UPDATE SET processed_at = stored.processed_at "
        "WHERE CASE WHEN {differs} THEN pg_temp.{function}(excluded, stored) ELSE false END"
    ).format(differs=_differs("excluded", "stored"), function=sql.Identifier(_RECORD_CONFLICT))


def _judge_set_aside(conn: psycopg.Connection, earlier: StagingTables | None) -> dict[str, int]:
    """Compare each row set aside with the row that holds its event: the stored one (the
    earlier file's, inserted just now, or one committed before), else the one the earlier batch
    will insert, its first in file order. Rows with other contents go to _CONFLICTS; returns
    the rows per file that nothing holds."""
    holders = [sql.SQL("SELECT e.* FROM ecommerce_events e WHERE e.event_id = s.event_id")]
    first_held = sql.SQL("")
    if earlier is not None:
        first_held = sql.SQL(
            "first_held AS (SELECT DISTINCT ON (x.event_id) x.* FROM {earlier} x "
            "WHERE x.event_id IN (SELECT event_id FROM {repeated} WHERE held) "
            "ORDER BY x.event_id, x.source_file, x.source_line), "
        ).format(earlier=sql.Identifier(earlier.events), repeated=sql.Identifier(_REPEATED))
        holders.append(sql.SQL("SELECT f.* FROM first_held f WHERE f.event_id = s.event_id"))
    return dict(
        conn.execute(
            sql.SQL(
                "WITH {first_held}judged AS (SELECT s.*, h.source_file AS held_file, "
                "h.source_line AS held_line, {differs} AS differs FROM {aside} s "
                "LEFT JOIN LATERAL ({holders} LIMIT 1) h ON true), "
                "noted AS (INSERT INTO {conflicts} ({cols}, held_file, held_line) "
                "SELECT {cols}, held_file, held_line FROM judged "
                "WHERE held_file IS NOT NULL AND differs) "
                "SELECT source_file, count(*) FROM judged WHERE held_file IS NULL GROUP BY 1"
            ).format(
                first_held=first_held,
                differs=_differs("s", "h"),
                aside=sql.Identifier(_SET_ASIDE),
                holders=sql.SQL(" UNION ALL ").join(
                    sql.SQL("({})").format(holder) for holder in holders
                ),
                conflicts=sql.Identifier(_CONFLICTS),
                cols=_EVENT_COLUMNS,
            )
        ).fetchall()
    )


@dataclass(frozen=True)
class FileConflicts:
    """One file's conflicting rows, which leave its valid rows for its invalid ones."""

    rows: int
    late: int
    warned: int
    warning_counts: dict[str, int]

    def applied_to(self, outcome: FileOutcome) -> FileOutcome:
        errors = Counter(outcome.error_counts)
        errors[CONFLICTING_DUPLICATE] += self.rows
        warnings = Counter(outcome.warning_counts)
        warnings.subtract(self.warning_counts)
        return replace(
            outcome,
            rows_valid=outcome.rows_valid - self.rows,
            rows_invalid=outcome.rows_invalid + self.rows,
            rows_late=outcome.rows_late - self.late,
            rows_warned=outcome.rows_warned - self.warned,
            error_counts=dict(errors),
            warning_counts={code: rows for code, rows in warnings.items() if rows > 0},
        )


def _raw_record() -> sql.Composable:
    """A conflicting row's record under LATEST's field names, then its unknown columns, as
    text: what ``ecom replay --dead-letters`` writes back. Its values are the row as parsed
    (trimmed, a default quantity or category filled in, the time in UTC), which read again
    give the same event; the producer's own bytes are not staged for valid rows."""
    values = {
        name: sql.SQL("{}::text").format(sql.Identifier(name)) for name in LATEST.column_names
    }
    values["event_id"] = sql.SQL("coalesce(event_key, event_id::text)")
    values["event_time"] = sql.SQL(
        "to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), value) for name, value in values.items()
    )
    return sql.SQL("jsonb_build_object({}) || coalesce(extras, '{{}}')").format(pairs)


def _dead_letter_conflicts(
    conn: psycopg.Connection, partition: str, run_id: str
) -> dict[str, FileConflicts]:
    """The conflicting rows as dead letters, naming the row that holds their event; their
    counts per file."""
    rows = conn.execute(
        sql.SQL(
            "WITH conflicting AS (SELECT DISTINCT ON (source_file, source_line) * "
            "FROM {conflicts} ORDER BY source_file, source_line), "
            "stored AS (INSERT INTO dead_letter_events ({dead_cols}, partition_key, run_id) "
            "SELECT source_file, source_line, coalesce(event_key, event_id::text), "
            "ARRAY[{code}], format('%%s: event_id=%%L is held by source_file=%%L, "
            "source_line=%%s with other values', {code}, coalesce(event_key, event_id::text), "
            "held_file, held_line), {raw_record}, schema_version, %s, %s FROM conflicting "
            "ON CONFLICT (source_file, source_line) DO NOTHING), "
            "warned AS (SELECT source_file, code, count(*) AS n FROM conflicting, "
            "unnest(quality_warnings) AS code GROUP BY 1, 2) "
            "SELECT c.source_file, count(*), count(*) FILTER (WHERE is_late), "
            "count(*) FILTER (WHERE cardinality(quality_warnings) > 0), "
            "(SELECT coalesce(jsonb_object_agg(code, n), '{{}}') FROM warned w "
            "WHERE w.source_file = c.source_file) "
            "FROM conflicting c GROUP BY c.source_file"
        ).format(
            conflicts=sql.Identifier(_CONFLICTS),
            dead_cols=sql.SQL(", ").join(map(sql.Identifier, DEAD_LETTER_COLUMNS)),
            code=sql.Literal(CONFLICTING_DUPLICATE),
            raw_record=_raw_record(),
        ),
        (partition, run_id),
    ).fetchall()
    return {
        name: FileConflicts(count, late, warned, {code: int(n) for code, n in codes.items()})
        for name, count, late, warned, codes in rows
    }


def _metrics_row(
    run_id: str, partition: str, outcome: FileOutcome, rows_inserted: int, rows_unheld: int = 0
) -> tuple[object, ...]:
    """The parameters of one file's data_quality_metrics row: the valid rows not inserted are
    duplicates, except those that nothing holds (lost: none, unless a bug)."""
    return (
        run_id,
        partition,
        outcome.source_file,
        outcome.schema_version,
        outcome.rows_read,
        outcome.rows_valid,
        outcome.rows_invalid,
        rows_inserted,
        outcome.rows_valid - rows_inserted - rows_unheld,
        outcome.rows_late,
        outcome.rows_valid / outcome.rows_read if outcome.rows_read else 1.0,
        json.dumps(outcome.error_counts, sort_keys=True),
        outcome.landed_at,
        outcome.processing_s,
        outcome.rows_warned,
        json.dumps(outcome.warning_counts, sort_keys=True),
        list(outcome.unknown_columns),
    )
