"""Atomic files: readers of the input directory see a whole file or none.

Content goes to a hidden temp file (name starting with '.') in the target directory, is flushed
and fsynced, then renamed over the final name; os.replace is atomic within one file system. On
any failure the temp file is removed, so a full disk never leaves half a file behind. Files are
0600: they hold user and session ids, for the pipeline that runs as the same user.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from itertools import compress, count, islice, repeat
from pathlib import Path
from typing import Any

CHUNK_ROWS = 5000


class WriteError(Exception):
    """A file or directory could not be written; nothing partial was left visible."""


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def ensure_directory(directory: Path) -> Path:
    """Create `directory` if needed; an unusable path is a WriteError naming it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {directory}: {exc.strerror or exc}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise WriteError(f"directory {directory} is not writable")
    return directory


def write_atomic(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write `chunks` to the temp file, make it durable, then give it its final name."""
    temp = temp_path(path)
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # a crashed attempt's leftover keeps its own mode
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with suppress(OSError):  # the original error is the one to report
            temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def _quoted(row: Sequence[str]) -> str:
    """One line as csv.writer spells it (its line terminator decides which breaks get quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()[:-2]


def _lines(rows: list[Sequence[str]]) -> str:
    """Rows joined by commas; only rows whose fields hold , " or a line break go through csv."""
    lines = list(map(",".join, rows))
    text = "\n".join(lines)
    if '"' in text or "\r" in text or text.count("\n") != len(rows) - 1:
        return "\n".join(_quoted(row) if _special(row) else ",".join(row) for row in rows)
    # a field with a comma shows as a line with more commas than field separators
    separators = map(operator.sub, map(len, rows), repeat(1))
    commas = map(str.count, lines, repeat(","))
    extra = list(compress(count(), map(operator.ne, commas, separators)))
    for index in extra:
        lines[index] = _quoted(rows[index])
    return "\n".join(lines) if extra else text


def _special(row: Sequence[str]) -> bool:
    return any("," in field or '"' in field or "\n" in field or "\r" in field for field in row)


def csv_chunks(
    header: Sequence[str], rows: Iterable[Sequence[str]], chunk_rows: int = CHUNK_ROWS
) -> Iterator[bytes]:
    """CSV as UTF-8 bytes with '\\n' line ends, quoted like csv.writer (only where needed).

    Joining plain fields with commas is about three times faster than csv.writer, which only
    spells the rare rows that need quoting; the search for them stays in C (map, compress).
    """
    yield (_quoted(header) + "\n").encode()
    iterator = iter(rows)
    while chunk := list(islice(iterator, chunk_rows)):
        yield (_lines(chunk) + "\n").encode()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    return write_atomic(path, csv_chunks(header, rows))


def write_json(path: Path, document: Any) -> Path:
    return write_atomic(path, [json.dumps(document, separators=(",", ":")).encode()])
