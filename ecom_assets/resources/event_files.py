"""The input, processed and quarantine directories: listing, fingerprints and moves.

Only regular `*.csv` files (the extension in any case: `.CSV` exports too) directly inside the
input directory are candidates: hidden and
temporary files (a producer's half-written `.name.tmp`), symlinks, sub-directories, FIFOs and
files still changing (modified less than the settle time ago, or 30 times that when the last
line is unfinished) are left alone. A name that is not UTF-8 is listed, for the run to
quarantine (the ledger, a PostgreSQL text column, cannot hold it).

Moves are renames within one file system, so a file is always in exactly one directory; across
file systems a copy is flushed and renamed into place before the source goes (``move``), so it
is never half-present under its final name, and never lost. Nothing in quarantine/ is ever
overwritten (``quarantine``).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ecom_assets.partitions import partition_key
from ecom_assets.safe_open import open_regular, read_regular


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


UNTERMINATED_SETTLE_FACTOR = 30
"""A file whose last byte is not a line end (or that is empty) must be unchanged this many
settle times (30 s at the default 1 s) before it is claimed: a producer writing in place may
be paused mid-record. A settle time of 0 says producers rename finished files in, and holds
nothing back (docs/decisions.md, "Producers write atomically")."""


def list_input_files(
    input_dir: Path, settle_s: float, now: datetime, skip: Collection[str] = ()
) -> list[InputFile]:
    """Settled candidate files, oldest name first; never follows links or leaves the directory.

    Names in ``skip`` are passed over before any other work: a lingering run polls a directory
    that still holds the thousands of files its last batches are committing. Only a file
    changed within UNTERMINATED_SETTLE_FACTOR settle times is opened, to read its last byte.
    """
    files = []
    try:
        entries = list(os.scandir(input_dir))
    except FileNotFoundError:
        return []
    settled_before = now.timestamp() - settle_s
    held_before = now.timestamp() - settle_s * UNTERMINATED_SETTLE_FACTOR
    for entry in entries:
        if entry.name in skip or entry.name.startswith(".") or not is_csv_name(entry.name):
            continue
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            continue
        stat = entry.stat(follow_symlinks=False)
        if stat.st_mtime > settled_before:
            continue
        if stat.st_mtime > held_before and not _ends_a_line(entry.path, stat.st_size):
            continue
        modified_at = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        partition = partition_key(entry.name, modified_at, now)
        files.append(InputFile(input_dir, entry.name, stat.st_size, modified_at, partition))
    files.sort(key=lambda file: file.name)
    return files


def _ends_a_line(path: str, size: int) -> bool:
    """Whether the file's last byte ends a line; an unreadable file counts as finished (the run
    reports why it cannot read it), a vanished one as not."""
    if size == 0:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        return os.pread(fd, 1, size - 1) in (b"\n", b"\r")
    except OSError:
        return True
    finally:
        os.close(fd)


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
    """After commit: input/<name> -> processed/<partition>/<name> (an existing copy is replaced:
    a replayed file comes back under its own name)."""
    target_dir = processed_dir / partition
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file.name
    move(file, target, exclusive=False)
    return target


NAME_MAX = 255
"""Bytes a file name may have on Linux file systems (ext4, xfs, tmpfs; ``errno.ENAMETOOLONG``)."""
REASON_SUFFIX = ".reason.json"
STORED_NAME_MAX = NAME_MAX - len(REASON_SUFFIX)
"""Bytes of a quarantined file's stored name, so that its reason file's name fits too."""


def quarantine(file: Path, quarantine_dir: Path, reason: dict[str, object]) -> Path:
    """Move a file that cannot be ingested aside, with a `<stored>.reason.json` beside it whose
    "file" field is the file's own name; returns where the file now is.

    Nothing is ever overwritten: a name quarantined before is stored as ``<stem>~2<ext>``,
    ``~3``..., and a name too long for its reason file's name to fit NAME_MAX is cut, with a
    hash of the whole name (``stored_name``). The reason is written first and claims the slot
    (created only if absent), then the file follows by rename, so a crash in between leaves a
    reason whose file is still in the input directory: the next attempt takes that slot again.
    """
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    document = {"file": file.name, "quarantined_at": datetime.now(tz=UTC).isoformat(), **reason}
    temporary = quarantine_dir / _temporary_name(file.name, "reason")
    with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(json.dumps(document, indent=2, default=str))
    try:
        for copy in itertools.count(1):
            target = quarantine_dir / stored_name(file.name, copy)
            reason_file = target.with_name(target.name + REASON_SUFFIX)
            if os.path.lexists(target) or not _claim_reason(temporary, reason_file, file.name):
                continue
            move(file, target, exclusive=False)  # the slot is ours: see _claim_reason
            return target
    finally:
        temporary.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


def stored_name(name: str, copy: int = 1) -> str:
    """The name a file is quarantined under: its own for the first copy, ``~<copy>`` before the
    extension for later ones, and, when that is longer than STORED_NAME_MAX bytes, the stem cut
    at a character boundary with ``~<12 hex digits of the name's sha256>`` (the reason file's
    "file" field keeps the whole name)."""
    stem, extension = _split_extension(name)
    tag = f"~{copy}" if copy > 1 else ""
    candidate = f"{stem}{tag}{extension}"
    if _bytes(candidate) <= STORED_NAME_MAX:
        return candidate
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    tag = f"~{digest}{tag}"
    return _cut(stem, STORED_NAME_MAX - _bytes(tag + extension)) + tag + extension


def original_name(stored: Path) -> str:
    """The name a quarantined file had in the input directory: its reason file's "file" field
    (``stored_name`` may have cut it or added ``~2``), else the stored name itself."""
    return _named_in(stored.with_name(stored.name + REASON_SUFFIX)) or stored.name


def _claim_reason(temporary: Path, reason_file: Path, name: str) -> bool:
    """Put the reason in place only if no reason of another file is there: True when the slot
    is ours. A reason of this same name left without its file (a crash between the two steps)
    is written again."""
    if _place_new(temporary, reason_file):
        return True
    if _named_in(reason_file) != name:
        return False
    os.replace(temporary, reason_file)
    return True


def _named_in(reason_file: Path) -> str | None:
    """The "file" field of a reason file, if it holds a plain file name."""
    try:
        text = read_regular(reason_file).decode("utf-8", errors="surrogateescape")
        name = json.loads(text)["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and name and Path(name).name == name else None


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or _bytes(extension) > 16:
        return name, ""
    return stem, f".{extension}"


def _bytes(name: str) -> int:
    return len(os.fsencode(name))


def _cut(text: str, limit: int) -> str:
    """The longest start of ``text`` of at most ``limit`` bytes, never half a character."""
    kept, used = [], 0
    for char in text:
        used += _bytes(char)
        if used > limit:
            break
        kept.append(char)
    return "".join(kept)


def _temporary_name(name: str, purpose: str) -> str:
    """A hidden name in the target directory, short whatever the file's name (so it fits
    NAME_MAX), and the same for a repeated attempt, which overwrites a crashed one's leftover.
    Hidden names are never listed as input (``list_input_files``)."""
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f".ecom-{digest}.{purpose}.tmp"


def move(source: Path, target: Path, *, exclusive: bool) -> None:
    """Rename ``source`` to ``target``; an existing target is replaced unless ``exclusive``,
    which raises FileExistsError and leaves both files as they were.

    Across file systems (EXDEV: processed/, quarantine/ and input/ are separate settings) the
    file is copied to a hidden temporary name in the target directory, flushed to disk, renamed
    to ``target``, the directory flushed, and only then ``source`` removed: ``target`` is never
    a partial file, and the file is never absent from both places. A crash between the rename and
    the removal leaves it in both; the ledger resolves that (README "Guarantees": a committed
    file still in input/ is only moved again, with the same result).
    """
    try:
        if exclusive:
            _link_then_unlink(source, target)
        else:
            os.replace(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    if _is_link_or_fifo(source):
        _recreate_across(source, target, exclusive)
        return
    _copy_across(source, target, exclusive)


def _link_then_unlink(source: Path, target: Path) -> None:
    """A rename that never replaces: the link fails if ``target`` exists."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        # a file system without hard links: check, then rename (a racing writer could slip in)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
        os.rename(source, target)
        return
    os.unlink(source)


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _place_new(temporary: Path, target: Path) -> bool:
    """Give ``temporary``'s content the name ``target`` unless that exists: False if it did."""
    try:
        _link_then_unlink(temporary, target)
    except FileExistsError:
        return False
    return True


def _copy_across(source: Path, target: Path, exclusive: bool) -> None:
    if exclusive and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "file exists", str(target))
    temporary = target.with_name(_temporary_name(source.name, "copy"))
    with open_regular(source) as src, open(temporary, "wb") as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)
        out.flush()
        os.fsync(out.fileno())
        copied = os.fstat(src.fileno())
    # the modification time, which partitions may use; the owner's bits only: the copy is the
    # stack's file, private whatever mode its producer gave it (docs/security.md)
    os.utime(temporary, ns=(copied.st_atime_ns, copied.st_mtime_ns))
    os.chmod(temporary, stat.S_IMODE(copied.st_mode) & 0o700)
    _put(temporary, target, exclusive)
    _fsync_directory(target.parent)
    os.unlink(source)


def _put(temporary: Path, target: Path, exclusive: bool) -> None:
    """Rename ``temporary`` to ``target``, never over an existing file when ``exclusive``; the
    temporary name is gone either way."""
    try:
        if exclusive:
            if not _place_new(temporary, target):
                raise FileExistsError(errno.EEXIST, "file exists", str(target))
        else:
            os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _is_link_or_fifo(path: Path) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISLNK(mode) or stat.S_ISFIFO(mode)


def _recreate_across(source: Path, target: Path, exclusive: bool) -> None:
    """A symbolic link or FIFO swapped in for a listed file (the run quarantines it as not a
    regular file) crosses file systems as what it is, recreated: reading it would follow the
    link or wait for a writer forever (safe_open)."""
    if exclusive and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "file exists", str(target))
    temporary = target.with_name(_temporary_name(source.name, "special"))
    temporary.unlink(missing_ok=True)
    if stat.S_ISLNK(os.lstat(source).st_mode):
        os.symlink(os.readlink(source), temporary)
    else:
        os.mkfifo(temporary, 0o600)
    _put(temporary, target, exclusive)
    os.unlink(source)


COPY_CHUNK = 1 << 20
"""Bytes copied at once across file systems: memory stays bounded whatever the file's size."""


def _fsync_directory(directory: Path) -> None:
    """Make the new name durable before the source goes: otherwise a power loss could keep
    neither."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
