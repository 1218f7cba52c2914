"""What a file must be, besides having a known header, for Spark and PostgreSQL to take it.

Each check returns a reason (one readable sentence for the quarantine reason file) or None; a
file with a reason is quarantined whole and kept as written, to be fixed and replayed. Why:

- Name: Spark's ``binaryFile`` source read a path as a Hadoop URI and glob pattern, so
  ``[ ] { } * ? \\ :`` failed the read or matched other files, and characters a URI escapes
  (space, ``%``, ``#``, ``"``...) came back escaped, no longer matching the file. Letters, digits
  and ``!$&'()+,-.;=@_~`` were read literally. Since decision 40 the tasks open files by path
  and no longer need the rule; it still holds until a change revisits it.
- Encoding: the CSV reader refuses bytes that are not UTF-8, and the whole batch with them
  (Spark's own reader, before decision 37, changed them to U+FFFD silently).
- NUL bytes: PostgreSQL text cannot hold them, so one such value fails the whole batch's commit;
  and csv_records marks the boundary between two files with one.
- Size: a file above ``ECOM_INGEST_MAX_FILE_MB`` is refused (``size_problem``): a task reads a
  file whole (transforms/file_rows.py), so one huge file could exhaust a worker's memory and
  fail its batch on every retry. The scan itself reads in SCAN_CHUNK pieces, whatever the size.
- Width: a line of more than MAX_FIELDS fields is no event record (the widest version has 16);
  its record would be parsed field by field only to be dead-lettered whole. Lines are counted,
  not records, so a quoted field holding that many commas is refused too.
"""

from __future__ import annotations

import codecs
import os
import unicodedata
from collections.abc import Iterator
from itertools import repeat
from typing import BinaryIO

MAX_FIELDS = 20_480
"""Fields a line may have (Spark's CSV parser's ``maxColumns`` when it read the files)."""
SCAN_CHUNK = 1 << 20

_NAME_PUNCTUATION = frozenset("!$&'()+,-.;=@_~")
_URI_ESCAPED_CATEGORIES = frozenset({"Cc", "Zs", "Zl", "Zp"})
"""Non-ASCII characters a Java URI escapes: controls and spaces."""


def name_problem(name: str) -> str | None:
    """Why Spark cannot read a file of this name literally, or None."""
    unreadable = sorted({char for char in name if not _read_literally(char)})
    if not unreadable:
        return None
    shown = " ".join(repr(char) for char in unreadable)
    return (
        f"file name has characters Spark cannot read literally ({shown}); rename the file "
        f"using letters, digits and {''.join(sorted(_NAME_PUNCTUATION))} only"
    )


def size_problem(size_bytes: int, max_file_mb: int | None) -> str | None:
    """Why a file of this size is not read, or None (no limit given, or within it)."""
    if max_file_mb is None or size_bytes <= max_file_mb << 20:
        return None
    return (
        f"file is {size_bytes:,} bytes ({size_bytes / (1 << 20):,.1f} MB), above "
        f"ECOM_INGEST_MAX_FILE_MB={max_file_mb}: a task reads a file whole; split it into "
        "smaller files (or raise the setting) and replay it"
    )


def _read_literally(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char in _NAME_PUNCTUATION
    return unicodedata.category(char) not in _URI_ESCAPED_CATEGORIES


def chunks(file: BinaryIO) -> Iterator[bytes]:
    """A file's bytes in chunks of at most SCAN_CHUNK; a smaller file in one read of its size,
    since allocating SCAN_CHUNK for a 20 KB file cost three times the read itself."""
    size = min(SCAN_CHUNK, os.fstat(file.fileno()).st_size + 1)
    while chunk := file.read(size):
        yield chunk


class ContentScan:
    """A file's bytes chunk by chunk: the offset and line a chunk starts at, and the commas of
    the line still open at its end. Everything per byte runs in C (bytes methods, map), and
    the common chunk, ASCII with fewer commas than a line may have, is not split into lines:
    about 0.03 ms for a 20 KB file of 100 events, where splitting and decoding took 0.15."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0
        self._line = 1
        self._commas = 0

    def feed(self, chunk: bytes) -> str | None:
        problem = self._encoding(chunk) or self._nul(chunk) or self._width(chunk)
        self._offset += len(chunk)
        self._line += _line_breaks(chunk)
        return problem

    def finish(self) -> str | None:
        return self._encoding(b"", final=True)

    def _where(self, chunk: bytes, position: int) -> str:
        """Byte offset and line of a position in the chunk (negative: in an earlier chunk)."""
        line = self._line + _line_breaks(chunk[: max(position, 0)])
        return f"byte {self._offset + position} (line {line})"

    def _encoding(self, chunk: bytes, final: bool = False) -> str | None:
        if chunk.isascii() and not self._decoder.getstate()[0]:
            return None  # nothing held back from the previous chunk: ASCII is UTF-8
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            # the decoder prepends the start of a character held back from the previous chunk
            position = error.start - (len(error.object) - len(chunk))
            return (
                f"not UTF-8 text (binary, compressed or another encoding): byte "
                f"0x{error.object[error.start]:02x} at {self._where(chunk, position)}"
            )
        return None

    def _nul(self, chunk: bytes) -> str | None:
        position = chunk.find(b"\x00")
        if position < 0:
            return None
        return f"NUL byte at {self._where(chunk, position)}: PostgreSQL text cannot hold it"

    def _width(self, chunk: bytes) -> str | None:
        bound = self._commas + len(chunk)  # commas a line of this chunk may have at most
        if bound < MAX_FIELDS or self._commas + chunk.count(b",") < MAX_FIELDS:
            # no line of this chunk is too wide: carry only the commas of its last line
            last_break = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            carried = self._commas if last_break < 0 else 0
            self._commas = carried + chunk.count(b",", last_break + 1)
            return None
        lines = chunk.replace(b"\r", b"\n").split(b"\n")
        commas = list(map(bytes.count, lines, repeat(b",")))
        commas[0] += self._commas
        self._commas = commas[-1]
        if max(commas) < MAX_FIELDS:
            return None
        index = next(i for i, count in enumerate(commas) if count >= MAX_FIELDS)
        start = sum(len(line) + 1 for line in lines[:index])
        line = self._line + _line_breaks(chunk[:start])
        return f"line {line} has more fields than the {MAX_FIELDS} a CSV record may have"


def _line_breaks(data: bytes) -> int:
    """Line ends of any style: LF, CRLF or a lone CR."""
    if b"\r" not in data:  # the common case: one count instead of three
        return data.count(b"\n")
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
