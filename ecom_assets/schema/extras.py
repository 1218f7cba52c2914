"""Columns no schema version knows, kept per row instead of dropped (a rescued-data column).

A producer's header may carry columns of its own (``HeaderMatch.extra``: page_url, ab_variant,
a v4 rolled out early). They are never a reason to reject a row or a file: each row keeps them
as one JSON object of raw strings under their header names, ``{"page_url":"/p/1",...}``, stored
in ``ecommerce_events.extras`` (JSONB) and inside a dead letter's ``raw_record``, so a replay
writes them back. Each file's metrics list the names once (``unknown_columns``: schema drift).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.json_text import control_escaped, json_member
from ecom_assets.schema.parsing import raw_column_names

EXTRAS = "extras"
"""The column of a row's unknown fields as JSON object text; NULL when its file has none."""


def extras_column(records: pa.Table, columns: Sequence[str], extra: Sequence[str]) -> pa.Array:
    """The ``EXTRAS`` of records read under header ``columns`` whose ``extra`` names no version
    knows (``csv_records.read_records`` names such columns by position)."""
    if not extra:
        return pa.nulls(records.num_rows, pa.string())
    names = raw_column_names(columns)
    wanted = set(extra)
    members = [
        json_member(column, records.column(name))
        for column, name in zip(columns, names, strict=True)
        if column in wanted
    ]
    body = pc.binary_join_element_wise(*members, ",")
    text = pc.binary_join_element_wise("{", body, "}", "")
    escaped = control_escaped(text)
    return escaped.combine_chunks() if isinstance(escaped, pa.ChunkedArray) else escaped
