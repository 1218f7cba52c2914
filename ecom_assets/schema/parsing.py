"""Tolerant parsing of what real producers write, as Arrow compute kernels over whole columns.

Files are read with every column as a string (``csv_records``), because a typed CSV read turns
"5.0" in an integer column into NULL without a trace. Each field then becomes two columns:

- ``<field>``: the parsed value, NULL when blank or unparseable;
- ``<field>_raw``: the string exactly as read, for dead letters and replays.

So the validator tells "missing" (``is_blank``) from "unparseable" (``is_unparseable``).
Rules, per ``Kind``: surrounding whitespace is trimmed and a blank value is NULL (or the field's
``blank_value``); whole numbers accept "5", "+5" and "5.0" but not "5.5"; money is a decimal
rounded half away from zero to cents; timestamps are ISO 8601 with 'T' or space, an optional
fraction of up to 9 digits (kept to the microsecond), and "Z", "+00:00" or "+0000" offsets, no
offset meaning UTC; codes are lower-cased; an event id is trimmed text whose format the
contract judges (transforms/validate.py). A value of the right
shape that is still no value (2024-02-30, a BIGINT overflow) is NULL: unparseable.

A record whose number of fields differs from its header's cannot be split reliably (which field
is missing, which one is extra?): the reader keeps its text as written in ``record_raw``
(``raw_name(RECORD)``), NULL for every well-formed record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.versions import LATEST, Field, Kind, SchemaVersion

RAW_SUFFIX = "_raw"
RECORD = "record"
"""The pseudo-field whose raw value is a malformed record's text (see the module docstring)."""

WHOLE_PATTERN = r"^[+-]?[0-9]+(\.0*)?$"
MONEY_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|[12][0-9]))[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
"""ISO 8601 of a day that can exist (February 29 of any year: the cast judges leap years)."""
OFFSET_PATTERN = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
WHITESPACE = " \t\n\x0b\f\r"  # what a regex \s matches

MONEY_LIMIT = 2e10
"""Beyond this magnitude a price is not read exactly (NUMERIC(12,2) holds less than 10^10)."""

Column = pa.Array | pa.ChunkedArray


def raw_column_names(columns: Sequence[str]) -> list[str]:
    """Column names for a file's normalised header columns (``HeaderMatch.columns``).

    Columns no version knows (drift, dropped by ``parse``) are named by position, ``_c<i>``, so
    that no producer's name can clash with a column the pipeline adds, such as ``record_raw``.
    """
    known = set(LATEST.column_names)  # versions only add columns
    return [name if name in known else f"_c{position}" for position, name in enumerate(columns)]


def raw_name(field: str) -> str:
    return field + RAW_SUFFIX


def is_malformed(table: pa.Table) -> pa.Array:
    """True where the record had more or fewer fields than its header."""
    return contiguous(pc.is_valid(table.column(raw_name(RECORD))))


def is_blank(table: pa.Table, field: str) -> pa.Array:
    """True where the field was absent, empty or whitespace only in the source."""
    raw = contiguous(table.column(raw_name(field)))
    return pc.or_kleene(
        pc.is_null(raw), pc.equal(pc.binary_length(pc.ascii_trim(raw, WHITESPACE)), 0)
    )


def is_unparseable(table: pa.Table, field: str, blank: pa.Array | None = None) -> pa.Array:
    """True where the source had a value that did not parse; ``blank``: the field's
    ``is_blank``, if the caller has it (trimming is the costly part)."""
    given = pc.invert(is_blank(table, field) if blank is None else blank)
    return pc.and_(given, contiguous(pc.is_null(table.column(field))))


def trimmed(raw: Column) -> pa.Array:
    """Whitespace trimmed (tabs and CR too); blank becomes NULL. (The ASCII kernel: every
    character trimmed is ASCII, and UTF-8 never hides one inside another character.)"""
    text = pc.ascii_trim(contiguous(raw), WHITESPACE)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def parse_field(raw: Column, field: Field) -> pa.Array:
    """The parsed value of one raw string column, typed as ``field.arrow_type``."""
    text = trimmed(raw)
    parsed = _PARSERS[field.kind](text)
    if field.blank_value is None:
        return parsed
    return pc.if_else(pc.is_null(text), pa.scalar(field.blank_value, field.arrow_type), parsed)


def parse(raw: pa.Table, version: SchemaVersion, keep: Sequence[str] = ()) -> pa.Table:
    """Parsed ``<field>`` then ``<field>_raw`` for each of the version's fields, then ``keep``.

    Header columns outside the version (reported drift) are dropped here.
    """
    columns = {f.name: parse_field(raw.column(f.name), f) for f in version.fields}
    columns |= {raw_name(f.name): raw.column(f.name) for f in version.fields}
    columns |= {name: raw.column(name) for name in keep}
    return pa.table(columns)


def contiguous(values: Column) -> pa.Array:
    """One array of a column: a table's columns are chunked (one chunk per file group), and
    kernels over chunked arrays return chunked arrays, which positional numpy work cannot use."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values


def _matching(text: pa.Array, pattern: str) -> pa.Array:
    """``text`` where it matches ``pattern``, NULL elsewhere."""
    return pc.if_else(pc.match_substring_regex(text, pattern), text, pa.scalar(None, text.type))


def cast_or_null(values: pa.Array, to: pa.DataType, safe: bool = True) -> pa.Array:
    """``values`` cast to ``to``, with NULL for each value that does not convert.

    Arrow fails a whole cast for one bad value; the array is halved until the bad values are
    alone, so a few of them in a large array cost a few dozen small casts.
    """
    try:
        return pc.cast(values, to, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) <= 1:
            return pa.nulls(len(values), to)
        half = len(values) // 2
        return pa.concat_arrays(
            [cast_or_null(values[:half], to, safe), cast_or_null(values[half:], to, safe)]
        )


def _whole(kind_type: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """Integer part of "5", "+5", "5.0"; NULL for "5.5" and for values the type cannot hold."""

    def parse_whole(text: pa.Array) -> pa.Array:
        integer = pc.replace_substring_regex(_matching(text, WHOLE_PATTERN), r"\.0*$", "")
        return cast_or_null(pc.utf8_ltrim(integer, "+"), kind_type)

    return parse_whole


def _money(text: pa.Array) -> pa.Array:
    """A decimal rounded half away from zero to cents (as Spark and PostgreSQL do); NULL for
    NaN, infinities and values of 10^10 or more.

    Read at 12 decimals first (digits beyond them cannot move a half-up rounding to cents).
    """
    shaped = _matching(text, MONEY_PATTERN)
    near = cast_or_null(shaped, pa.float64())
    fits = pc.less(pc.abs(near), MONEY_LIMIT)  # roughly: the cast to cents decides exactly
    candidates = pc.if_else(fits, shaped, pa.scalar(None, pa.string()))
    precise = cast_or_null(candidates, pa.decimal128(38, 12), safe=False)
    cents = pc.round(precise, ndigits=2, round_mode="half_towards_infinity")
    return cast_or_null(cents, pa.decimal128(12, 2))


def _timestamp(text: pa.Array) -> pa.Array:
    upper = _matching(pc.ascii_upper(text), TIMESTAMP_PATTERN)  # others fail the pattern
    microseconds = upper
    if pc.any(pc.match_substring_regex(upper, r"\.[0-9]{7}")).as_py():  # rare: skip the rewrite
        microseconds = pc.replace_substring_regex(upper, r"(\.[0-9]{6})[0-9]+", r"\1")
    zoned = pc.if_else(
        pc.match_substring_regex(microseconds, OFFSET_PATTERN),
        microseconds,
        pc.binary_join_element_wise(microseconds, "Z", ""),
    )
    return cast_or_null(zoned, pa.timestamp("us", tz="UTC"))


_PARSERS: dict[Kind, Callable[[pa.Array], pa.Array]] = {
    Kind.EVENT_ID: lambda text: text,
    Kind.TEXT: lambda text: text,
    Kind.CODE: pc.utf8_lower,
    Kind.COUNTRY: pc.utf8_upper,
    Kind.ID: _whole(pa.int64()),
    Kind.COUNT: _whole(pa.int32()),
    Kind.MONEY: _money,
    Kind.TIMESTAMP: _timestamp,
}
"""Trimmed text to the field's Arrow type; NULL where it does not parse."""
