"""Tolerant parsing of what real producers write, as built-in Spark expressions (no UDFs).

Files are read with every column as a string (``raw_schema``), because a typed CSV read turns
"5.0" in an integer column into NULL without a trace. Each field then becomes two columns:

- ``<field>``: the parsed value, NULL when blank or unparseable;
- ``<field>_raw``: the string exactly as read, for dead letters and replays.

So the validator tells "missing" (``is_blank``) from "unparseable" (``is_unparseable``).
Rules, per ``Kind``: surrounding whitespace is trimmed and a blank value is NULL (or the field's
``blank_value``); whole numbers accept "5", "+5" and "5.0" but not "5.5"; money is a decimal
rounded to cents; timestamps are ISO 8601 with 'T' or space, optional fraction, and "Z",
"+00:00" or "+0000" offsets, no offset meaning UTC (not the session's time zone); codes are
lower-cased; an event id must be a UUID.

A record whose number of fields differs from its header's cannot be split reliably (which field
is missing, which one is extra?): the reader keeps its text as written in ``record_raw``
(``raw_name(RECORD)``, Spark's corrupt-record column), NULL for every well-formed record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from ecom_assets.schema.versions import LATEST, Field, Kind, SchemaVersion

RAW_SUFFIX = "_raw"
RECORD = "record"
"""The pseudo-field whose raw value is a malformed record's text (see the module docstring)."""

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
WHOLE_PATTERN = r"^[+-]?[0-9]+(\.0*)?$"
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
OFFSET_PATTERN = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"


def raw_schema(columns: Sequence[str]) -> StructType:
    """All-string read schema for a file's normalised header columns (``HeaderMatch.columns``).

    Spark applies it by position, so the columns get canonical names whatever the header's case
    or padding: ``spark.read.csv(path, header=True, schema=raw_schema(match.columns))``. Columns
    no version knows (drift, dropped by ``parse``) are named by position, ``_c<i>``, so that no
    producer's name can clash with a column the pipeline adds, such as ``record_raw``.
    """
    known = set(LATEST.column_names)  # versions only add columns
    return StructType(
        [
            StructField(name if name in known else f"_c{position}", StringType(), nullable=True)
            for position, name in enumerate(columns)
        ]
    )


def raw_name(field: str) -> str:
    return field + RAW_SUFFIX


def is_malformed() -> Column:
    """True where the record had more or fewer fields than its header."""
    return F.col(raw_name(RECORD)).isNotNull()


def is_blank(field: str) -> Column:
    """True where the field was absent, empty or whitespace only in the source."""
    return trimmed(F.col(raw_name(field))).isNull()


def is_unparseable(field: str) -> Column:
    """True where the source had a value that did not parse."""
    return ~is_blank(field) & F.col(field).isNull()


def parse_field(raw: Column, field: Field) -> Column:
    """The parsed value of one raw string column, typed as ``field.spark_type``."""
    return _parse_trimmed(trimmed(raw), field)


def parse(raw: DataFrame, version: SchemaVersion, keep: Sequence[str] = ()) -> DataFrame:
    """Parsed ``<field>`` then ``<field>_raw`` for each of the version's fields, then ``keep``.

    Header columns outside the version (reported drift) are dropped here. Two projections, the
    trimmed texts first: each field is trimmed once, and Spark generates code per projection.
    As one projection, followed by validation, the generated method exceeded the JVM's
    8,000-byte limit for JIT compilation and ran interpreted: about 3x the CPU per row.
    """
    texts = [trimmed(F.col(f.name)).alias(_text_name(f.name)) for f in version.fields]
    raws = [F.col(f.name).alias(raw_name(f.name)) for f in version.fields]
    parsed = [_parse_trimmed(F.col(_text_name(f.name)), f).alias(f.name) for f in version.fields]
    return raw.select(*texts, *raws, *keep).select(
        *parsed, *(raw_name(f.name) for f in version.fields), *keep
    )


def _text_name(field: str) -> str:
    return field + "_text"


def _parse_trimmed(text: Column, field: Field) -> Column:
    """``parse_field`` of an already ``trimmed`` text."""
    parsed = _PARSERS[field.kind](text).try_cast(field.spark_type)
    if field.blank_value is None:
        return parsed
    return F.when(text.isNull(), F.lit(field.blank_value)).otherwise(parsed)


WHITESPACE = " \t\n\x0b\f\r"  # what a regex \s matches


def trimmed(raw: Column) -> Column:
    """Whitespace trimmed (tabs and CR too, unlike F.trim); blank becomes NULL.

    btrim, not a regex: trimming runs several times per field and row, and the regex version
    cost a quarter of the first Spark pass (measured on 100,000 rows: 4.9 s -> 3.6 s).
    """
    text = F.btrim(raw, F.lit(WHITESPACE))
    return F.when(text != "", text)


def _uuid(text: Column) -> Column:
    lowered = F.lower(text)
    return F.when(lowered.rlike(UUID_PATTERN), lowered)


def _whole(text: Column) -> Column:
    """Integer part of "5", "+5", "5.0"; NULL for "5.5" (the cast to the field's type follows).

    A matching text's integer part is all before its dot: ``substring_index``, not a second
    regex (measured: bench/profile_spark.py --parsers).
    """
    return F.when(text.rlike(WHOLE_PATTERN), F.substring_index(text, ".", 1))


def _timestamp(text: Column) -> Column:
    upper = F.upper(text)
    with_offset = F.when(upper.rlike(OFFSET_PATTERN), upper).otherwise(F.concat(upper, F.lit("Z")))
    return F.when(upper.rlike(TIMESTAMP_PATTERN), with_offset)


_PARSERS: dict[Kind, Callable[[Column], Column]] = {
    Kind.UUID: _uuid,
    Kind.TEXT: lambda text: text,
    Kind.CODE: F.lower,
    Kind.COUNTRY: F.upper,
    Kind.ID: _whole,
    Kind.COUNT: _whole,
    Kind.MONEY: lambda text: text,
    Kind.TIMESTAMP: _timestamp,
}
"""String-to-string normalisation per kind; ``parse_field`` then casts with try_cast."""
