"""Bring a file of any schema version to LATEST, so everything downstream sees one shape.

The output columns are fixed whatever the input version: LATEST's fields parsed and in order,
then ``schema_version``, then LATEST's ``<field>_raw`` columns, then any ``keep`` columns. Fields
the file's version lacks get their documented default (versions.py) and a NULL raw value, so
dead letters show what the producer actually wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from ecom_assets.schema.parsing import parse, raw_name
from ecom_assets.schema.versions import LATEST, SCHEMA_VERSION_COLUMN, Field, SchemaVersion


def _default_value(field: Field) -> Column:
    """The documented default of a field a file's version lacks, typed like the parsed field."""
    value = F.expr(field.default) if field.default is not None else F.lit(None)
    return value.cast(field.spark_type)


def migrate(parsed: DataFrame, version: SchemaVersion, keep: Sequence[str] = ()) -> DataFrame:
    """Add LATEST's fields missing from ``version`` to a ``parse``d DataFrame; fix column order."""
    present = set(version.column_names)
    typed = [
        F.col(f.name) if f.name in present else _default_value(f).alias(f.name)
        for f in LATEST.fields
    ]
    raws = [
        F.col(raw_name(f.name))
        if f.name in present
        else F.lit(None).cast(StringType()).alias(raw_name(f.name))
        for f in LATEST.fields
    ]
    return parsed.select(*typed, F.lit(version.name).alias(SCHEMA_VERSION_COLUMN), *raws, *keep)


def to_latest(raw: DataFrame, version: SchemaVersion, keep: Sequence[str] = ()) -> DataFrame:
    """One file's all-string DataFrame (read with ``raw_schema``) parsed and migrated to LATEST.

    ``keep`` names extra columns to carry through untouched, such as a source file or line.
    """
    return migrate(parse(raw, version, keep), version, keep)
