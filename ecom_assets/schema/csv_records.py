"""CSV files' bytes as one all-string Arrow table, every record numbered, none lost.

RFC 4180 as csv.writer and pandas write it: quoted fields may hold commas, newlines and ``""``
(a quote). Empty lines are skipped; an empty field is NULL. Each row keeps its file (``FILE``, a
position in the list read) and its record number (``SOURCE_LINE``: 1-based, header and empty
lines excluded), so a dead letter can always be traced back to its record. A record with more
or fewer fields than the header cannot be split reliably: its fields are filled as far as they
go (extra ones dropped, missing ones NULL) and its text is kept as written in ``record_raw``
(``parsing.RECORD``), NULL for every other row. Rows come well-formed first, then malformed.

Files sharing a header are parsed as one text: a call to the CSV reader costs about 0.35 ms
whatever its size, as much as 100 records. Between two files goes a line holding only a NUL
byte, which no file has (file_checks refuses NUL bytes); the reader reports it as a record of
the wrong width, which marks where the next file begins. A file that ends inside an open quote
would swallow that line: then the marks are missing and each file is read on its own instead.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from ecom_assets.schema.parsing import RECORD, raw_column_names, raw_name

SOURCE_LINE = "source_line"
FILE = "_file"
"""The row's file, as its position in the contents read."""
_MARK = "\x00"
_LINE_END = re.compile(rb"\r\n|\n|\r")


def read_records(contents: Sequence[bytes], columns: Sequence[str]) -> pa.Table:
    """The records of files whose header has ``columns`` (``HeaderMatch.columns``): a string
    column per header column (``parsing.raw_column_names``), ``FILE``, ``SOURCE_LINE``,
    ``record_raw``."""
    names = raw_column_names(columns)
    parsed = _Parsed.of(_joined(contents), names)
    if len(parsed.marks) == len(contents) - 1:
        return parsed.records()
    return pa.concat_tables(
        _Parsed.of(content, names).records(position) for position, content in enumerate(contents)
    )


def _joined(contents: Sequence[bytes]) -> bytes:
    """The first file whole, then each next file without its header line, a mark between."""
    parts = [contents[0]]
    for content in contents[1:]:
        if not parts[-1].endswith((b"\n", b"\r")):
            parts.append(b"\n")
        parts.append(_MARK.encode() + b"\n")
        parts.append(_after_header(content))
    return b"".join(parts)


def _after_header(content: bytes) -> bytes:
    """What follows the first line, which ends at LF, CR LF or CR (as detection reads it)."""
    match = _LINE_END.search(content)
    return content[match.end() :] if match else b""


@dataclass
class _Parsed:
    """What the CSV reader made of a text: its well-formed rows, and the numbers of the rows it
    set aside, malformed records (with their text) and marks."""

    table: pa.Table
    names: list[str]
    malformed: list[tuple[int, str]]
    marks: list[int]

    @classmethod
    def of(cls, text: bytes, names: list[str]) -> _Parsed:
        parsed = cls(pa.table({}), names, [], [])

        def set_aside(row: pa_csv.InvalidRow) -> str:
            # the reader numbers rows from 1 with the header and skips empty lines uncounted
            if row.text == _MARK:
                parsed.marks.append(row.number - 1)
            else:
                parsed.malformed.append((row.number - 1, row.text))
            return "skip"

        parsed.table = _read_csv(text, len(names), set_aside)
        if parsed.table.num_columns != len(names):
            raise ValueError(
                f"the header has {parsed.table.num_columns} fields as CSV, {len(names)} named"
            )
        return parsed

    def records(self, first_file: int = 0) -> pa.Table:
        """The rows, well-formed then malformed, numbered; files counted from ``first_file``."""
        records = self.table.slice(1).rename_columns(self.names)  # the first row is the header
        numbers = np.arange(1, records.num_rows + len(self.malformed) + len(self.marks) + 1)
        taken = np.array(sorted([n for n, _ in self.malformed] + self.marks), dtype=np.int64)
        well_formed = _numbered(records, np.delete(numbers, taken - 1), self.marks, first_file)
        well_formed = well_formed.append_column(
            raw_name(RECORD), pa.nulls(records.num_rows, pa.string())
        )
        if not self.malformed:
            return well_formed
        malformed = _malformed_rows(self.malformed, self.names, self.marks, first_file)
        return pa.concat_tables([well_formed, malformed])


def header_fields(line: str) -> list[str]:
    """A header line's fields as ``read_records`` splits its files' first line, so detection
    and the tasks agree on them (Python's csv module did not: it reads an unterminated quote
    to the end of the line, where this reader reads on into the records and the task failed).
    An empty field is ""; ValueError says why a line cannot be a header."""
    text = line.rstrip("\r\n")
    if not text.lstrip("\ufeff").strip():  # no fields: detection calls it an empty header
        return [text] if text else []
    try:
        table = _read_csv((text + "\n").encode("utf-8", "replace"), text.count(",") + 1, None)
    except pa.ArrowInvalid:
        table = None
    if table is None or table.num_rows != 1:
        raise ValueError(
            "header has an unterminated quote: the CSV reader would read on past the header "
            f"line into the records, so its columns cannot be told ({_shown(text)})"
        )
    return [column[0].as_py() or "" for column in table.columns]


def _shown(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


MIN_BLOCK = 1 << 20
"""Arrow's default block size: the least a text's single block is given."""


def _read_csv(
    text: bytes, fields: int, on_invalid: Callable[[pa_csv.InvalidRow], str] | None
) -> pa.Table:
    """The one CSV reading of the project: every field a string, an empty one NULL, quoted
    newlines kept (RFC 4180); ``fields`` bounds the columns to type (the first row's count).

    The whole text is one block: with quoted newlines allowed, Arrow refuses a field that
    straddles two blocks (its default is 1 MB), so one long value failed its file on every
    retry. The text is already in memory whole, and the reader uses one thread anyway."""
    generated = [f"f{position}" for position in range(fields)]
    block = max(MIN_BLOCK, len(text) + 1)
    return pa_csv.read_csv(
        pa.py_buffer(text),
        read_options=pa_csv.ReadOptions(
            use_threads=False, autogenerate_column_names=True, block_size=block
        ),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(generated, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
        ),
    )


def _numbered(
    records: pa.Table, numbers: np.ndarray, marks: list[int], first_file: int
) -> pa.Table:
    """``records`` with the file and the record number of each row, from its number in the
    joined text: the marks before it count the files before it."""
    files = np.searchsorted(np.array(marks, dtype=np.int64), numbers)
    starts = np.concatenate([[0], marks]).astype(np.int64)
    lines = (numbers - starts[files]).astype(np.int32)
    files = (files + first_file).astype(np.int32)
    return records.append_column(FILE, pa.array(files)).append_column(SOURCE_LINE, pa.array(lines))


def _malformed_rows(
    malformed: list[tuple[int, str]], names: list[str], marks: list[int], first_file: int
) -> pa.Table:
    """Malformed records as rows: their fields as far as they go, their file, number and text."""
    split = [next(csv.reader(io.StringIO(text)), []) for _, text in malformed]
    columns = {
        name: pa.array(
            [fields[i] or None if i < len(fields) else None for fields in split], pa.string()
        )
        for i, name in enumerate(names)
    }
    numbers = np.array([number for number, _ in malformed], dtype=np.int64)
    table = _numbered(pa.table(columns), numbers, marks, first_file)
    return table.append_column(raw_name(RECORD), pa.array([text for _, text in malformed]))
