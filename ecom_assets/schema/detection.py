"""Detect a file's schema version from its header, and report drift as a value, not an exception.

Versions share columns, so the version is the one whose exact set of column names the header
has, never a guess from which required columns happen to be present. Policy:

- The header line is split into names by Arrow's CSV reader with the options the tasks read the
  file with (csv_records.header_fields), so the scan and the tasks never disagree on a header's
  fields; a header line the reader cannot split (an unterminated quote) is not ingestible.
- Each header name is normalised: BOM, surrounding whitespace and quotes dropped, lower-cased;
  a blank name becomes ``_c<position>``, as Spark names it. Column order does not matter.
- A header with exactly a version's columns is that version.
- A header with all of a version's columns plus columns no version knows (say a producer
  rolled out v4 first) is ingestible as the newest such version: the extra columns are drift,
  reported per file and kept per row in ``extras``.
- Not ingestible (``version`` is None, the file is quarantined with ``reason``): a file name or
  content Spark and PostgreSQL cannot take faithfully (file_checks.py), an empty header,
  duplicated columns (which value counts?), or a header lacking columns of the version it
  resembles most. That includes an older version plus some columns of a newer one: a damaged
  newer file, where dropping those columns would lose data silently and reading it as the newer
  version would invent values. Since versions only add columns, such a header always resembles
  the newer version most, so the extras of an ingestible header are unknown to every version.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ecom_assets.safe_open import NotRegularFileError, open_regular
from ecom_assets.schema.csv_records import header_fields
from ecom_assets.schema.file_checks import ContentScan, chunks, name_problem, size_problem
from ecom_assets.schema.versions import VERSIONS, SchemaVersion

HEADER_MAX_CHARS = 64 * 1024
"""A header longer than this is garbage; reading stops there instead of scanning a whole file."""


@dataclass(frozen=True)
class HeaderMatch:
    """What a header says: the version to read the file as, and any drift from it."""

    columns: tuple[str, ...]
    """Normalised header names in file order: the names to read the file's columns under."""
    version: SchemaVersion | None
    """The version to read the file as; None when the file is not ingestible."""
    closest: SchemaVersion | None
    """The version the header resembles most (``version`` when ingestible); None if no overlap."""
    missing: tuple[str, ...]
    """Columns of ``closest`` absent from the header."""
    extra: tuple[str, ...]
    """Header columns not in ``closest``, in file order (kept in ``extras`` when ingestible)."""
    duplicated: tuple[str, ...]
    """Names that occur more than once in the header."""
    reason: str
    """One human-readable sentence for logs, metrics and quarantine reason files."""

    @property
    def ingestible(self) -> bool:
        return self.version is not None

    @property
    def drifted(self) -> bool:
        """True when the header is not exactly one version's columns."""
        return bool(self.missing or self.extra or self.duplicated)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary for metrics rows and quarantine reason files."""
        return {
            "version": self.version.name if self.version else None,
            "closest": self.closest.name if self.closest else None,
            "ingestible": self.ingestible,
            "drifted": self.drifted,
            "columns": list(self.columns),
            "missing": list(self.missing),
            "extra": list(self.extra),
            "duplicated": list(self.duplicated),
            "reason": self.reason,
        }


def _normalise_column(name: str, position: int) -> str:
    """Canonical column name: producers differ in BOM, padding, quoting and case."""
    return _clean(name) or f"_c{position}"


def _clean(name: str) -> str:
    return name.replace("\ufeff", "").strip().strip('"').strip().lower()


def header_line(first_chunk: bytes) -> str:
    """A file's first line from its first bytes, newline kept as is, as text mode reads it:
    ended by LF, CR or CRLF, bytes that are not UTF-8 replaced, at most HEADER_MAX_CHARS."""
    ends = [end for end in (first_chunk.find(b"\n"), first_chunk.find(b"\r")) if end >= 0]
    end = min(ends, default=len(first_chunk) - 1) + 1
    if first_chunk[end - 1 : end + 1] == b"\r\n":
        end += 1
    return first_chunk[:end].decode("utf-8", errors="replace")[:HEADER_MAX_CHARS]


@dataclass(frozen=True)
class ScannedFile:
    """What one read of a file tells: the ledger's fingerprint and the header's verdict."""

    sha256: str
    header: HeaderMatch


def scan_file(path: str | Path, max_file_mb: int | None = None) -> ScannedFile:
    """Fingerprint a file and detect its version in one read: its first line decides the
    version, and a name, a size above ``max_file_mb`` or bytes that cannot be read faithfully
    (file_checks) make it not ingestible, whatever its header says. A run did three reads per
    file (hash, header, checks), which for files of 100 events cost more than the events.
    Memory stays bounded (SCAN_CHUNK) whatever the size: a file above the limit is still
    hashed, for the ledger, but its content is not checked. A name that is no longer a regular
    file (swapped for a link or a FIFO since the listing) is not read at all (safe_open)."""
    digest = hashlib.sha256()
    scan = ContentScan()
    first_chunk: bytes | None = None
    problem = name_problem(Path(path).name)
    try:
        file = open_regular(path)
    except NotRegularFileError as error:
        return ScannedFile(digest.hexdigest(), _not_read(f"{error}; it was not read"))
    with file:
        problem = problem or size_problem(os.fstat(file.fileno()).st_size, max_file_mb)
        for chunk in chunks(file):
            first_chunk = chunk if first_chunk is None else first_chunk
            digest.update(chunk)
            problem = problem or scan.feed(chunk)
    problem = problem or scan.finish()
    match = _detect_line(header_line(first_chunk or b""))
    header = match if problem is None else replace(match, version=None, reason=problem)
    return ScannedFile(digest.hexdigest(), header)


def _not_read(reason: str) -> HeaderMatch:
    """The verdict on a file that was not read: nothing of its content, only why."""
    return HeaderMatch((), None, None, (), (), (), reason)


def detect_file(path: str | Path) -> HeaderMatch:
    """``scan_file``'s verdict on a file's header, name and bytes."""
    return scan_file(path).header


def detect_header(header: str | Sequence[str]) -> HeaderMatch:
    """Match a header line (or its already split names) against the registry."""
    if isinstance(header, str):
        return _detect_line(header)
    return _detect_names(list(header))


@functools.lru_cache(maxsize=256)
def _detect_line(line: str) -> HeaderMatch:
    """Files of one producer share a header line, so a run of 10,000 files matches a few
    (HeaderMatch is immutable, so a cached one is safe to share)."""
    try:
        fields = header_fields(line)
    except ValueError as error:
        return HeaderMatch((), None, None, (), (), (), str(error))
    return _detect_names(fields)


def _detect_names(raw: list[str]) -> HeaderMatch:
    columns = tuple(_normalise_column(name, i) for i, name in enumerate(raw))
    if not any(_clean(name) for name in raw):
        return HeaderMatch(columns, None, None, (), (), (), "empty header: no column names")

    present = set(columns)
    duplicated = tuple(name for name, count in Counter(columns).items() if count > 1)
    closest = _closest(present)
    missing = tuple(c for c in closest.column_names if c not in present) if closest else ()
    extra = tuple(
        dict.fromkeys(c for c in columns if closest is None or c not in closest.column_names)
    )

    def result(version: SchemaVersion | None, reason: str) -> HeaderMatch:
        return HeaderMatch(columns, version, closest, missing, extra, duplicated, reason)

    if closest is None:
        return result(None, f"header matches no schema version: {_names(columns)}")
    if duplicated:
        return result(None, f"duplicated columns: {_names(duplicated)}")
    if missing:
        return result(None, f"not {closest.name}: missing columns {_names(missing)}")
    if extra:
        return result(
            closest, f"{closest.name} plus unknown columns (kept in extras): {_names(extra)}"
        )
    return result(closest, f"header is {closest.name}")


def _closest(present: set[str]) -> SchemaVersion | None:
    """The version sharing most columns with the header, then missing fewest; newest on ties."""
    scored = [
        (len(present & set(v.column_names)), -len(set(v.column_names) - present), i)
        for i, v in enumerate(VERSIONS)
    ]
    best = max(scored)
    return VERSIONS[best[2]] if best[0] > 0 else None


def _names(names: Sequence[str], limit: int = 10) -> str:
    """Names for a reason sentence; a garbage header must not flood logs."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"
