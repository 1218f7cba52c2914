"""Replay: send committed files, whole partitions or fixed dead letters through ingestion again.

Replays only put files back into the input directory (and mark them pending in the ledger); the
sensor and the ordinary ingest run do the rest, so a replay is visible in the UI like any run
and has no code path of its own. Every replay is idempotent: valid rows dedupe on event_id, dead
letters on (file, line), and a dead-letter replay file is named after the dead letters it holds,
so repeating it produces the same file, which the ledger recognises. A replay never overwrites a
file waiting in the input directory: it refuses, and moves nothing (``replay_files``).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ecom_assets.resources.event_files import REASON_SUFFIX, is_csv_name, move, original_name
from ecom_assets.schema.versions import LATEST
from ecom_assets.settings import Settings

_LATEST_COLUMNS = frozenset(LATEST.column_names)


class ReplayError(RuntimeError):
    """Nothing matched what was asked to replay."""


@dataclass(frozen=True)
class ReplayResult:
    files: list[str]
    dead_letters: int = 0


def _reset_ledger(conn: psycopg.Connection, names: list[str]) -> None:
    conn.execute(
        "UPDATE ingest_files SET status = 'pending', run_id = NULL WHERE file_name = ANY(%s)",
        (names,),
    )


def replay_files(conn: psycopg.Connection, settings: Settings, paths: list[Path]) -> ReplayResult:
    """Move processed or quarantined files back into the input directory under the names they
    arrived with, marked pending.

    Never overwrites: if a file of one of those names waits in the input directory (a
    producer's new file), nothing is replayed and ReplayError says which; replay again once it
    is ingested. Renaming the replayed file instead was rejected: the ledger knows a file by its
    name, so a renamed replay would be a new file, and its rows' source_file would change.
    """
    if not paths:
        raise ReplayError("no processed or quarantined file matched")
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    moves = [(path, settings.input_dir / _arrival_name(path, settings)) for path in paths]
    names = [target.name for _, target in moves]
    waiting = [name for name in names if os.path.lexists(settings.input_dir / name)]
    if waiting:
        raise _waiting_error(settings, waiting, replayed=[])
    if len(set(names)) != len(names):
        raise ReplayError(f"two of these files arrived under one name: {_listed(names)}")
    with conn.transaction():
        _reset_ledger(conn, names)
    for done, (path, target) in enumerate(moves):
        try:  # exclusive: a producer's file landing since the check above is never replaced
            move(path, target, exclusive=True)
        except FileExistsError:
            raise _waiting_error(settings, [target.name], replayed=names[:done]) from None
        path.with_name(path.name + REASON_SUFFIX).unlink(missing_ok=True)
    return ReplayResult(files=names)


def _arrival_name(path: Path, settings: Settings) -> str:
    """A quarantined file's stored name may carry ``~2`` or a hash (event_files.stored_name)."""
    if path.parent == settings.quarantine_dir:
        return original_name(path)
    return path.name


def _waiting_error(settings: Settings, waiting: list[str], replayed: list[str]) -> ReplayError:
    done = f"replayed before it: {_listed(replayed)}" if replayed else "nothing was replayed"
    return ReplayError(
        f"a file of the same name waits in {settings.input_dir}, and replay never overwrites "
        f"one: {_listed(waiting)}; {done}. Replay again once it has been ingested."
    )


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def find_file(settings: Settings, name: str) -> list[Path]:
    """A processed file of this name, else a quarantined one: by the name it is stored under,
    else by the name it arrived with (its reason file's "file" field)."""
    if Path(name).name != name:
        raise ReplayError(f"{name!r}: give a file name, not a path")
    candidates = [
        *sorted(settings.processed_dir.glob(f"*/{glob.escape(name)}")),
        settings.quarantine_dir / name,
    ]
    found = [path for path in candidates if path.is_file()][:1]
    if found:
        return found
    quarantined = _quarantined_as(settings, name)
    if len(quarantined) > 1:
        stored = [path.name for path in quarantined]
        raise ReplayError(f"{name!r} was quarantined {len(stored)} times: give one of {stored}")
    return quarantined


def _quarantined_as(settings: Settings, name: str) -> list[Path]:
    """Quarantined files that arrived as ``name`` (a second copy, or a cut long name)."""
    reasons = settings.quarantine_dir.glob(f"*{REASON_SUFFIX}")
    stored = (reason.with_name(reason.name[: -len(REASON_SUFFIX)]) for reason in reasons)
    return sorted(path for path in stored if path.is_file() and original_name(path) == name)


def find_partition(settings: Settings, partition: str) -> list[Path]:
    directory = settings.processed_dir / partition
    return sorted(path for path in directory.glob("*") if is_csv_name(path.name))


def replay_dead_letters(
    conn: psycopg.Connection, settings: Settings, code: str | None = None
) -> ReplayResult:
    """Write the open dead letters (optionally of one error code) into a new input file.

    Run this after fixing what made them invalid: the raw record (edited in place, for
    example with UPDATE dead_letter_events SET raw_record = ...) or a rule setting. They are
    marked reprocessed; what is still invalid comes back as new dead letters of the replay file.
    A MALFORMED_ROW dead letter keeps its text under raw_record's `record` key beside the fields
    as Spark split them, which may sit in the wrong columns: it is replayed only once that key
    is removed by whoever fixed the fields, never as it was split.
    """
    rows = conn.execute(
        "SELECT dead_letter_id, raw_record FROM dead_letter_events "
        "WHERE status = 'open' AND (%(code)s::text IS NULL OR %(code)s = ANY(error_codes)) "
        "AND NOT raw_record ? 'record' ORDER BY dead_letter_id",
        {"code": code},
    ).fetchall()
    if not rows:
        raise ReplayError(
            "no open dead letters matched (MALFORMED_ROW ones need their fields fixed and the "
            "'record' key removed from raw_record first)"
        )
    ids = [row[0] for row in rows]
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:8]
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"events_{stamp}_replay-{digest}.csv"
    # the same set written before (a crash before marking them): reuse that file's name
    suffix = f"_replay-{digest}.csv"
    earlier = conn.execute(
        "SELECT file_name FROM ingest_files WHERE right(file_name, %s) = %s",
        (len(suffix), suffix),
    ).fetchone()
    waiting = sorted(settings.input_dir.glob(f"events_*{suffix}"))
    if earlier or waiting:
        name = earlier[0] if earlier else waiting[0].name
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(settings.input_dir / name, [row[1] for row in rows])
    with conn.transaction():
        conn.execute(
            "UPDATE dead_letter_events SET status = 'reprocessed', reprocessed_at = now() "
            "WHERE dead_letter_id = ANY(%s)",
            (ids,),
        )
    return ReplayResult(files=[name], dead_letters=len(ids))


def _write_atomic(path: Path, records: list[dict[str, object]]) -> None:
    """The records as one CSV: LATEST's columns, then the columns no version knows that any
    record kept (its ``extras``, in the order first met), so they land in ``extras`` again."""
    extra = [
        key for key in dict.fromkeys(k for r in records for k in r) if key not in _LATEST_COLUMNS
    ]
    columns = [*LATEST.column_names, *extra]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(temporary, path)
