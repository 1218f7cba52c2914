"""Bring a file of any schema version to LATEST, so everything downstream sees one shape.

The output columns are fixed whatever the input version: LATEST's fields parsed and in order,
then ``schema_version``, then LATEST's ``<field>_raw`` columns, then any ``keep`` columns. Fields
the file's version lacks get their documented default (versions.py) and a NULL raw value, so
dead letters show what the producer actually wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from ecom_assets.schema.parsing import parse, raw_name
from ecom_assets.schema.versions import LATEST, SCHEMA_VERSION_COLUMN, Field, SchemaVersion


def _default_value(field: Field, parsed: pa.Table) -> pa.Array:
    """The documented default of a field a file's version lacks, typed like the parsed field."""
    if field.default is None:
        return pa.nulls(parsed.num_rows, field.arrow_type)
    return field.default(parsed)


def migrate(parsed: pa.Table, version: SchemaVersion, keep: Sequence[str] = ()) -> pa.Table:
    """Add LATEST's fields missing from ``version`` to a ``parse``d table; fix column order."""
    present = set(version.column_names)
    rows = parsed.num_rows
    columns = {
        f.name: parsed.column(f.name) if f.name in present else _default_value(f, parsed)
        for f in LATEST.fields
    }
    columns[SCHEMA_VERSION_COLUMN] = pa.repeat(pa.scalar(version.name, pa.string()), rows)
    columns |= {
        raw_name(f.name): parsed.column(raw_name(f.name))
        if f.name in present
        else pa.nulls(rows, pa.string())
        for f in LATEST.fields
    }
    columns |= {name: parsed.column(name) for name in keep}
    return pa.table(columns)


def to_latest(raw: pa.Table, version: SchemaVersion, keep: Sequence[str] = ()) -> pa.Table:
    """One file's all-string table (columns named by ``raw_column_names``) parsed and migrated
    to LATEST. ``keep`` names extra columns to carry through untouched, such as a source file."""
    return migrate(parse(raw, version, keep), version, keep)
