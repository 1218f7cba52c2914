"""Replay: send committed files, whole partitions or fixed dead letters through ingestion again.

Replays only put files back into the input directory (and mark them pending in the ledger); the
sensor and the ordinary ingest run do the rest, so a replay is visible in the UI like any run
and has no code path of its own. Every replay is idempotent: valid rows dedupe on event_id, dead
letters on (file, line), and a dead-letter replay file is named after the dead letters it holds,
so repeating it produces the same file, which the ledger recognises. A replay never overwrites a
file waiting in the input directory: it refuses, and moves nothing (``replay_files``).

What to replay is taken literally (``ReplayRefused``): a partition is a key exactly as
partitions.py writes one, naming a real directory of processed/; a file is a bare name,
compared with each stored name as a string (never a glob pattern: ``*`` finds only a file named
``*``); and every file to move must be a regular file whose resolved path lies in
processed/ or quarantine/, so neither ``..``, an absolute path nor a symbolic link planted in
those directories moves anything from elsewhere into input/.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ecom_assets.partitions import PARTITION_FORMAT, partition_hour
from ecom_assets.resources.event_files import REASON_SUFFIX, is_csv_name, move, original_name
from ecom_assets.schema.versions import LATEST
from ecom_assets.settings import Settings

_LATEST_COLUMNS = frozenset(LATEST.column_names)


class ReplayError(RuntimeError):
    """Nothing matched what was asked to replay, or it cannot be replayed now."""


class ReplayRefused(ReplayError):
    """What was asked for is no partition key or bare file name, or leads to something that is
    not a regular file under processed/ or quarantine/: refused before anything moved."""


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
    for path in paths:
        _check_replayable(path, settings)
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
    """A quarantined file's stored name may carry ``~2`` or a hash (event_files.stored_name);
    the name its reason file gives must be a bare name too."""
    if path.parent == settings.quarantine_dir:
        return checked_name(original_name(path))
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


def checked_partition(partition: str) -> str:
    """``partition`` when it is an hourly partition key exactly as this project writes one
    (``2026-01-29-10:00``); ReplayRefused otherwise, before any directory is looked at."""
    try:
        exact = partition_hour(partition).strftime(PARTITION_FORMAT) == partition
    except ValueError:
        exact = False
    if not exact:
        raise ReplayRefused(
            f"partition {partition!r} refused: not an hourly partition key (YYYY-MM-DD-HH:00, "
            "such as 2026-01-29-10:00); a key names a directory of processed/, never a path"
        )
    return partition


def checked_name(name: str) -> str:
    """``name`` when it is a bare file name; ReplayRefused for anything that could name
    another directory (a separator, ``.``, ``..``, a NUL)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ReplayRefused(
            f"file {name!r} refused: give a bare file name as it was ingested or quarantined "
            "(no '/', not '.' or '..'), not a path"
        )
    return name


def find_file(settings: Settings, name: str) -> list[Path]:
    """A processed file of this name, else a quarantined one: by the name it is stored under,
    else by the name it arrived with (its reason file's "file" field). Names are compared as
    strings: ``*`` or ``[a].csv`` match only a file of that very name."""
    name = checked_name(name)
    candidates = [directory / name for directory in _partition_directories(settings)]
    if not name.endswith(REASON_SUFFIX):
        candidates.append(settings.quarantine_dir / name)
    found = [path for path in candidates if _is_regular(path)][:1]
    if found:
        return found
    quarantined = _quarantined_as(settings, name)
    if len(quarantined) > 1:
        stored = [path.name for path in quarantined]
        raise ReplayError(f"{name!r} was quarantined {len(stored)} times: give one of {stored}")
    if not quarantined and name != _unpatterned(name):
        raise ReplayError(
            f"no processed or quarantined file is named {name!r} (names are matched exactly, "
            "never as a pattern)"
        )
    return quarantined


def _unpatterned(name: str) -> str:
    return name.translate({ord(char): None for char in "*?["})


def _quarantined_as(settings: Settings, name: str) -> list[Path]:
    """Quarantined files that arrived as ``name`` (a second copy, or a cut long name)."""
    stored = (
        settings.quarantine_dir / entry_name[: -len(REASON_SUFFIX)]
        for entry_name in _names_in(settings.quarantine_dir)
        if entry_name.endswith(REASON_SUFFIX) and len(entry_name) > len(REASON_SUFFIX)
    )
    return sorted(path for path in stored if _is_regular(path) and original_name(path) == name)


def find_partition(settings: Settings, partition: str) -> list[Path]:
    """The CSV files of ``processed/<partition>/``, a real directory (a symbolic link there is
    refused, whatever it points to); a link or special file among them refuses the whole
    partition, so nothing is moved."""
    key = checked_partition(partition)
    directory = settings.processed_dir / key
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
        raise ReplayRefused(
            f"partition {key} refused: {directory} is {kind}; only a directory that ingestion "
            "wrote is replayed. Nothing was replayed"
        )
    paths = []
    for name in sorted(_names_in(directory)):
        if name.startswith(".") or not is_csv_name(name):
            continue
        path = directory / name
        _check_replayable(path, settings)
        paths.append(path)
    return paths


def _partition_directories(settings: Settings) -> list[Path]:
    """processed/'s partition directories: named as keys, real directories (never a link)."""
    directories = []
    for name in sorted(_names_in(settings.processed_dir)):
        path = settings.processed_dir / name
        try:
            checked_partition(name)
            if stat.S_ISDIR(os.lstat(path).st_mode):
                directories.append(path)
        except (ReplayRefused, OSError):
            continue
    return directories


def _names_in(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return [entry.name for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_regular(path: Path) -> bool:
    """A regular file by its own name (a symbolic link to one is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_replayable(path: Path, settings: Settings) -> None:
    """ReplayRefused unless ``path`` is a regular file (not a link) whose resolved path lies in
    processed/ or quarantine/ (resolved too, so configured directories may be links)."""
    if not _is_regular(path):
        raise ReplayRefused(
            f"{path} refused: not a regular file (a symbolic link, directory, FIFO or gone); "
            "nothing was replayed"
        )
    real = os.path.realpath(path)
    for root in (settings.processed_dir, settings.quarantine_dir):
        real_root = os.path.realpath(root)
        if real != real_root and os.path.commonpath([real, real_root]) == real_root:
            return
    raise ReplayRefused(
        f"{path} refused: it resolves to {real}, outside {settings.processed_dir} and "
        f"{settings.quarantine_dir}; nothing was replayed"
    )


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
    # created afresh, never through a name someone left in input/ (a link would be followed)
    temporary.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(temporary, flags, 0o600), "w", encoding="utf-8") as out:
        out.write(buffer.getvalue())
    os.replace(temporary, path)
