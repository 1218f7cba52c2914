"""The ledger of input files in PostgreSQL: who claimed a file, and whether it is committed.

A file is committed in the same transaction as its rows, so after a crash at any point the
ledger tells a re-run exactly what to do: a committed file that is still in the input directory
only needs moving; anything else is claimed again and re-processed, which the idempotent sink
makes harmless.

``failures`` counts what may be the file's fault: a batch that failed for a reason that is not
transient (``mark_failed(counted=True)``) and a claim that found the file still claimed, i.e. the
run reading it died without a trace (killed, out of memory). The run quarantines a file whose
failures reach ECOM_INGEST_MAX_FILE_FAILURES, whatever the reason (docs/decisions.md 57).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from ecom_assets.resources.event_files import InputFile


@dataclass(frozen=True)
class Fingerprinted:
    file: InputFile
    sha256: str


@dataclass(frozen=True)
class Failures:
    """A claimed file's failures so far and the last one's reason."""

    count: int
    last_error: str | None


CRASHED = "the run reading it ended without recording an outcome (killed or crashed)"


@dataclass(frozen=True)
class Claim:
    """What a run does with each file: process it, only move it, or quarantine a name clash."""

    to_process: list[Fingerprinted]
    already_committed: list[Fingerprinted]
    name_reused: list[Fingerprinted]
    failures: dict[str, Failures] = field(default_factory=dict)
    """Files of ``to_process`` that failed before (by name)."""


def claim_files(conn: psycopg.Connection, run_id: str, files: Sequence[Fingerprinted]) -> Claim:
    """Claim every file not yet committed for run_id; sort out the committed ones."""
    if not files:
        return Claim([], [], [])
    claimed = conn.execute(
        """
        INSERT INTO ingest_files AS f (file_name, partition_key, size_bytes, content_sha256,
                                       status, run_id, attempts, claimed_at)
        SELECT name, part, size, sha, 'claimed', %(run)s, 1, now()
        FROM unnest(%(names)s::text[], %(parts)s::text[], %(sizes)s::bigint[], %(shas)s::text[])
             AS u(name, part, size, sha)
        ON CONFLICT (file_name) DO UPDATE
            SET status = 'claimed', run_id = EXCLUDED.run_id, attempts = f.attempts + 1,
                claimed_at = now(), size_bytes = EXCLUDED.size_bytes,
                content_sha256 = EXCLUDED.content_sha256, partition_key = EXCLUDED.partition_key,
                failures = f.failures + (f.status = 'claimed' AND f.run_id <> %(run)s)::int,
                error = CASE WHEN f.status = 'claimed' AND f.run_id <> %(run)s THEN %(crashed)s
                             ELSE f.error END
            WHERE f.status <> 'committed'
        RETURNING file_name, failures, error
        """,
        {
            "run": run_id,
            "crashed": CRASHED,
            "names": [item.file.name for item in files],
            "parts": [item.file.partition for item in files],
            "sizes": [item.file.size_bytes for item in files],
            "shas": [item.sha256 for item in files],
        },
    ).fetchall()
    claimed_names = {row[0] for row in claimed}
    failures = {name: Failures(count, error) for name, count, error in claimed if count}
    committed = dict(
        conn.execute(
            "SELECT file_name, content_sha256 FROM ingest_files "
            "WHERE file_name = ANY(%s) AND status = 'committed'",
            ([item.file.name for item in files if item.file.name not in claimed_names],),
        ).fetchall()
    )
    return Claim(
        to_process=[item for item in files if item.file.name in claimed_names],
        already_committed=[item for item in files if committed.get(item.file.name) == item.sha256],
        name_reused=[
            item
            for item in files
            if item.file.name in committed and committed[item.file.name] != item.sha256
        ],
        failures=failures,
    )


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL bytes, which garbage files put into reasons."""
    return text.replace("\x00", "\\x00")[:2000]


def mark_quarantined(conn: psycopg.Connection, file_name: str, reason: str) -> None:
    conn.execute(
        "UPDATE ingest_files SET status = 'quarantined', error = %s, quarantined_at = now() "
        "WHERE file_name = %s",
        (_storable(reason), file_name),
    )


def mark_failed(
    conn: psycopg.Connection,
    run_id: str,
    error: str,
    counted: bool,
    files: Sequence[str] | None = None,
) -> int:
    """Release a failed run's claims (or only ``files``), with the reason, for the next run to
    retry. ``counted``: the failure may be the files' fault (not a dependency's outage)."""
    return conn.execute(
        "UPDATE ingest_files SET status = 'failed', error = %s, failures = failures + %s "
        "WHERE run_id = %s AND status = 'claimed' AND (%s::text[] IS NULL OR file_name = ANY(%s))",
        (_storable(error), int(counted), run_id, files, files),
    ).rowcount


def failures_before(conn: psycopg.Connection, names: Sequence[str]) -> dict[str, int]:
    """The failures of those of ``names`` that failed before, counting a claim left by a run
    that died (the next claim counts it): suspects, that a run ingests after the others and in
    ever smaller batches, so they cannot hold the others up again (ingest.py)."""
    if not names:
        return {}
    rows = conn.execute(
        "SELECT file_name, failures + (status = 'claimed')::int FROM ingest_files "
        "WHERE file_name = ANY(%s) AND status IN ('failed', 'claimed')",
        (list(names),),
    ).fetchall()
    return {name: count for name, count in rows if count > 0}
