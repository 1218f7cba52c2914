"""Routing of validated, enriched rows: one table with what all three tables need.

``routed`` keeps each row once, with the columns of ecommerce_events, its error codes and, on
invalid rows only, the dead letter's own fields. Ingest stages it in a single pass, in which each
task splits and counts its rows (``arrow_routing``): valid rows -> ecommerce_events, invalid ->
dead_letter_events, counts per file -> data_quality_metrics (the caller adds run, partition,
insert and latency figures). One pass needs no cache: reading the files and running the rules
happen once per batch (docs/decisions.md).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.contract import ErrorCode
from ecom_assets.schema.extras import EXTRAS
from ecom_assets.schema.json_text import control_escaped, json_member
from ecom_assets.schema.parsing import RECORD, is_malformed, raw_name, trimmed
from ecom_assets.schema.versions import LATEST, SCHEMA_VERSION_COLUMN, VERSIONS
from ecom_assets.transforms.expressions import is_in
from ecom_assets.transforms.validate import CODE_FIELDS, ERROR_CODES_COLUMN, WARNING_CODES_COLUMN

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "event_type",
    "product_id",
    "category",
    "price",
    "quantity",
    "total_amount",
    "event_time",
    "event_date",
    "event_hour",
    "session_id",
    "user_segment",
    "device_type",
    "browser",
    "geo_country",
    "geo_city",
    "referrer",
    "campaign_id",
    "is_late",
    "schema_version",
    "source_file",
    "source_line",
    "processed_at",
    "event_key",
    WARNING_CODES_COLUMN,
    EXTRAS,
)
"""The columns of ecommerce_events that the pipeline writes, in table order."""

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "source_file",
    "source_line",
    "event_id",
    "error_codes",
    "error_detail",
    "raw_record",
    "schema_version",
)

DEAD_LETTER_EVENT_ID = "dead_letter_event_id"
"""The event id as a dead letter stores it: the raw id trimmed, since the parsed one is NULL
for an invalid id."""

ROUTED_COLUMNS: tuple[str, ...] = (
    *EVENT_COLUMNS,
    ERROR_CODES_COLUMN,
    DEAD_LETTER_EVENT_ID,
    "error_detail",
    "raw_record",
)


def routed(table: pa.Table) -> pa.Table:
    """Every row once as ROUTED_COLUMNS; the dead-letter fields are NULL on valid rows.

    ``raw_record`` holds only the fields of the row's own schema version, so a replay can write
    the record back as its producer wrote it. The dead-letter fields are built over the invalid
    rows only (about 2 %), then scattered back: building JSON and details for every row only to
    drop them would cost more than the rules. They are built with kernels too, not per row in
    Python, since a broken file can make every row of a batch invalid.
    """
    codes = table.column(ERROR_CODES_COLUMN)
    invalid = pc.fill_null(pc.greater(pc.list_value_length(codes), 0), False).combine_chunks()
    dead = table.select(_DEAD_LETTER_INPUTS).filter(invalid).combine_chunks()
    columns = [table.column(name) for name in (*EVENT_COLUMNS, ERROR_CODES_COLUMN)]
    if dead.num_rows == 0:
        columns += [pa.nulls(table.num_rows, pa.string())] * 3
    else:
        dead = _without_nul(dead)
        dead_columns = (
            trimmed(dead.column(raw_name("event_id"))),
            error_detail(dead),
            raw_record(dead),
        )
        columns += [_scattered(invalid, values) for values in dead_columns]
    return pa.Table.from_arrays(columns, names=list(ROUTED_COLUMNS))


_DEAD_LETTER_INPUTS = [
    ERROR_CODES_COLUMN,
    SCHEMA_VERSION_COLUMN,
    EXTRAS,
    *(raw_name(name) for name in (*LATEST.column_names, RECORD)),
]
"""The columns the dead-letter fields are built from."""


def _without_nul(dead: pa.Table) -> pa.Table:
    """The dead letters' raw text with each NUL as U+FFFD, and each NUL escape in their
    extras' JSON as the escape of U+FFFD: PostgreSQL's text and jsonb refuse NUL, and a dead
    letter must always be storable, being where refused rows go.

    No NUL reaches a row today (file_checks quarantines a file holding one; csv_records marks
    file boundaries with it): this keeps dead letters storable whatever the reader becomes, for
    one search per text column of the invalid rows.
    """
    for position, name in enumerate(dead.column_names):
        column = dead.column(position)
        if not pa.types.is_string(column.type):
            continue
        if name == EXTRAS:
            if pc.any(pc.match_substring(column, _NUL_ESCAPE)).as_py():
                dead = dead.set_column(position, name, nul_escapes_replaced(column))
        elif pc.any(pc.match_substring(column, _NUL)).as_py():
            dead = dead.set_column(position, name, pc.replace_substring(column, _NUL, "\ufffd"))
    return dead


_NUL = "\x00"
_NUL_ESCAPE = r"\u0000"
_HELD_BACKSLASHES = "\x01"
"""Stands for an escaped backslash while escapes are rewritten: JSON text never holds a raw
control character."""


def nul_escapes_replaced(json_text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """JSON text with each NUL escape (which jsonb refuses) as the escape of U+FFFD.

    An escaped backslash followed by ``u0000`` is text, not an escape, so escaped backslashes
    are set aside first.
    """
    held = pc.replace_substring(json_text, "\\\\", _HELD_BACKSLASHES)
    freed = pc.replace_substring(held, _NUL_ESCAPE, r"\uFFFD")
    return pc.replace_substring(freed, _HELD_BACKSLASHES, "\\\\")


def _scattered(mask: pa.BooleanArray, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` at the rows where ``mask`` is true, in order; NULL elsewhere."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.replace_with_mask(pa.nulls(len(mask), pa.string()), mask, values)


def error_detail(dead: pa.Table) -> pa.Array:
    """ "CODE: field='raw value', ...; CODE: ..." for each row's codes, in error_codes order.

    Built per listed code, not per code and row: each code's k-th field (CODE_FIELDS) is looked
    up by the code's position in ErrorCode, and its raw value taken from all the fields' raw
    columns laid end to end (field index * rows + row).
    """
    codes = dead.column(ERROR_CODES_COLUMN).combine_chunks().cast(pa.list_(pa.string()))
    code = pc.list_flatten(codes)
    row = pc.list_parent_indices(codes).cast(pa.int64())
    position = pc.index_in(code, value_set=_CODES)
    raws = pa.concat_arrays([dead.column(raw_name(name)).combine_chunks() for name in _SHOWN])
    part = code
    for slot, fields in enumerate(_SLOT_FIELDS):
        field = pc.take(fields, position)  # NULL where the code has fewer fields
        name = pc.take(_SHOWN_NAMES, field)
        raw = pc.take(raws, pc.add(pc.multiply(field, dead.num_rows), row))
        shown = pc.coalesce(
            pc.binary_join_element_wise(name, "='", raw, "'", ""),
            pc.binary_join_element_wise(name, "=NULL", ""),
        )
        joined = pc.binary_join_element_wise(part, ", " if slot else ": ", shown, "")
        part = pc.coalesce(joined, part)
    offsets = pc.subtract(codes.offsets, codes.offsets[0])
    return pc.binary_join(pa.ListArray.from_arrays(offsets, part), "; ")


_SHOWN = tuple(dict.fromkeys(name for fields in CODE_FIELDS.values() for name in fields))
"""The fields that explain a code, each once."""
_SHOWN_NAMES = pa.array(_SHOWN, pa.string())
_CODES = pa.array([code.value for code in ErrorCode], pa.string())
_SLOT_FIELDS = [
    pa.array(
        [_SHOWN.index(CODE_FIELDS[code][slot]) if slot < len(CODE_FIELDS[code]) else None
         for code in ErrorCode],
        pa.int64(),
    )
    for slot in range(max(len(fields) for fields in CODE_FIELDS.values()))
]  # fmt: skip
"""Per slot k, per ErrorCode: the index in _SHOWN of the code's k-th field (NULL: none)."""


def raw_record(dead: pa.Table) -> pa.ChunkedArray:
    """JSON object of the raw values under the producer's field names, for the row's version.

    Fields of the version are all present (blank ones as null); fields it lacks are absent; a
    version this code does not know reads as LATEST. Columns no version knows follow under
    their header names (``extras``), so a replay writes them back. A malformed row adds
    ``record``, its text
    as written: its fields as the reader split them (extra ones dropped, missing ones null) are
    a starting point for a fix, not what was written. The text is what Spark's
    ``to_json(struct(...), ignoreNullFields=false)`` wrote, byte for byte (Jackson's escapes,
    no spaces, keys in order): replays and dead-letter queries read it. Only the versions
    present are built.
    """
    given = dead.column(SCHEMA_VERSION_COLUMN)
    version = pc.if_else(is_in(given, _VERSION_FIELDS), given, LATEST.name)
    present = set(pc.unique(version).to_pylist())
    names = [name for name in _VERSION_FIELDS if name in present]
    members = {name: json_member(name, dead.column(raw_name(name))) for name in LATEST.column_names}
    bodies = [
        pc.binary_join_element_wise(*(members[field] for field in _VERSION_FIELDS[name]), ",")
        for name in names
    ]
    body = pc.case_when(
        pc.make_struct(*(pc.equal(version, name) for name in names), field_names=names), *bodies
    )
    extras = dead.column(EXTRAS)
    extra_members = pc.if_else(
        pc.is_valid(extras),
        pc.binary_join_element_wise(",", pc.utf8_slice_codeunits(extras, 1, -1), ""),
        "",
    )
    text = pc.if_else(
        is_malformed(dead),
        pc.binary_join_element_wise(",", json_member(RECORD, dead.column(raw_name(RECORD))), ""),
        "",
    )
    return control_escaped(pc.binary_join_element_wise("{", body, extra_members, text, "}", ""))


_VERSION_FIELDS = {version.name: version.column_names for version in VERSIONS}
