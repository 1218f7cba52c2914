"""The input, processed and quarantine directories: listing, fingerprints and moves.

Only regular `*.csv` files (the extension in any case: `.CSV` exports too) directly inside the
input directory are candidates: hidden and
temporary files (a producer's half-written `.name.tmp`), symlinks, sub-directories, FIFOs and
files still changing (modified less than the settle time ago) are left alone. A name that is not
UTF-8 is listed, for the run to quarantine (the ledger, a PostgreSQL text column, cannot hold
it). Moves are renames within one file system, so a file is always in exactly one directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ecom_assets.partitions import partition_key


@dataclass(frozen=True)
class InputFile:
    """A settled candidate file in the input directory."""

    directory: Path
    name: str
    size_bytes: int
    modified_at: datetime
    partition: str

    @property
    def path(self) -> Path:
        """Built when used: the sensor and every batch list the whole directory, and a Path
        per listed file was a third of a 10,000-file listing (docs/performance.md)."""
        return self.directory / self.name


def is_csv_name(name: str) -> bool:
    """A CSV file's name, whatever the case of its extension (exports often say .CSV)."""
    return name[-4:].lower() == ".csv"


def list_input_files(
    input_dir: Path, settle_s: float, now: datetime, skip: Collection[str] = ()
) -> list[InputFile]:
    """Settled candidate files, oldest name first; never follows links or leaves the directory.

    Names in ``skip`` are passed over before any other work: a lingering run polls a directory
    that still holds the thousands of files its last batches are committing.
    """
    files = []
    try:
        entries = list(os.scandir(input_dir))
    except FileNotFoundError:
        return []
    settled_before = now.timestamp() - settle_s
    for entry in entries:
        if entry.name in skip or entry.name.startswith(".") or not is_csv_name(entry.name):
            continue
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            continue
        stat = entry.stat(follow_symlinks=False)
        if stat.st_mtime > settled_before:
            continue
        modified_at = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        partition = partition_key(entry.name, modified_at, now)
        files.append(InputFile(input_dir, entry.name, stat.st_size, modified_at, partition))
    files.sort(key=lambda file: file.name)
    return files


WATCH_POLL_S = 0.2
"""How often a watch lists the directory: an empty listing costs microseconds."""


def watch_input_files(
    input_dir: Path, settle_s: float, watch_s: float
) -> tuple[list[InputFile], datetime]:
    """The settled candidate files and the time they were listed. While there are none, the
    directory is listed again every WATCH_POLL_S for up to ``watch_s``: Dagster's daemon starts
    a sensor tick at most every 5 s, and a tick that waits in an idle directory sees a file
    within its settle time plus one poll (docs/decisions.md 44). A tick that finds files, even
    files a run already holds, returns at once, so a backlog is never listed in a loop."""
    deadline = time.monotonic() + watch_s
    while True:
        now = datetime.now(tz=UTC)
        files = list_input_files(input_dir, settle_s, now)
        left = deadline - time.monotonic()
        if files or left <= 0:
            return files, now
        time.sleep(min(WATCH_POLL_S, left))


def is_utf8_name(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (os.scandir keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """The name with bytes that are not UTF-8 as \\xNN, for logs, metadata and the ledger."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def move_to_processed(file: Path, processed_dir: Path, partition: str) -> Path:
    """After commit: input/<name> -> processed/<partition>/<name> (an existing copy is replaced)."""
    target_dir = processed_dir / partition
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file.name
    os.replace(file, target)
    return target


def quarantine(file: Path, quarantine_dir: Path, reason: dict[str, object]) -> Path:
    """Move a file that cannot be ingested aside, with a `<name>.reason.json` beside it."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / file.name
    reason_file = quarantine_dir / f"{file.name}.reason.json"
    document = {"file": file.name, "quarantined_at": datetime.now(tz=UTC).isoformat(), **reason}
    temporary = quarantine_dir / f".{reason_file.name}.tmp"
    temporary.write_text(json.dumps(document, indent=2, default=str))
    os.replace(temporary, reason_file)
    os.replace(file, target)
    return target
