"""Routing of validated, enriched rows: one frame with what all three tables need.

``routed`` keeps each row once, with the columns of ecommerce_events, its error codes and, on
invalid rows only, the dead letter's own fields. Ingest stages it in a single pass, in which each
task splits and counts its rows (``arrow_routing``): valid rows -> ecommerce_events, invalid ->
dead_letter_events, counts per file -> data_quality_metrics (the caller adds run, partition,
insert and latency figures). One pass needs no cache: reading the files and running the rules
happen once per batch (docs/decisions.md).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecom_assets.schema.contract import ErrorCode
from ecom_assets.schema.parsing import RECORD, is_malformed, raw_name, trimmed
from ecom_assets.schema.versions import LATEST, SCHEMA_VERSION_COLUMN, VERSIONS, SchemaVersion
from ecom_assets.transforms.validate import CODE_FIELDS, ERROR_CODES_COLUMN

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


def routed(df: DataFrame) -> DataFrame:
    """Every row once as ROUTED_COLUMNS; the dead-letter fields are NULL on valid rows.

    ``raw_record`` holds only the fields of the row's own schema version, so a replay can write
    the record back as its producer wrote it. Valid rows skip the dead-letter expressions
    (``when``): building JSON and details for 98 % of rows only to drop them would cost more
    than the rules.
    """
    invalid = F.size(ERROR_CODES_COLUMN) > 0
    return df.select(
        *EVENT_COLUMNS,
        ERROR_CODES_COLUMN,
        F.when(invalid, trimmed(F.col(raw_name("event_id")))).alias(DEAD_LETTER_EVENT_ID),
        F.when(invalid, error_detail()).alias("error_detail"),
        F.when(invalid, raw_record()).alias("raw_record"),
    )


def error_detail() -> Column:
    """ "CODE: field='raw value', ...; CODE: ..." for the row's codes, in error_codes order."""
    parts = [
        F.when(
            F.array_contains(ERROR_CODES_COLUMN, code.value),
            F.concat(F.lit(f"{code.value}: "), _shown(CODE_FIELDS[code])),
        )
        for code in ErrorCode
    ]
    return F.array_join(F.array_compact(F.array(*parts)), "; ")


def _shown(fields: tuple[str, ...]) -> Column:
    """field='raw' for each field (raw as read, untrimmed), or field=NULL when absent/blank."""
    return F.concat_ws(
        ", ",
        *(
            F.concat(
                F.lit(f"{field}="),
                F.coalesce(F.concat(F.lit("'"), F.col(raw_name(field)), F.lit("'")), F.lit("NULL")),
            )
            for field in fields
        ),
    )


def raw_record() -> Column:
    """JSON object of the raw values under the producer's field names, for the row's version.

    Fields of the version are all present (blank ones as null); fields it lacks are absent. A
    malformed row adds ``record``, its text as written: its fields as Spark split them (extra
    ones dropped, missing ones null) are a starting point for a fix, not what was written.
    """
    return F.when(is_malformed(), _raw_record(with_text=True)).otherwise(
        _raw_record(with_text=False)
    )


def _raw_record(with_text: bool) -> Column:
    def as_json(version: SchemaVersion) -> Column:
        names = [*version.column_names, RECORD] if with_text else version.column_names
        fields = [F.col(raw_name(name)).alias(name) for name in names]
        return F.to_json(F.struct(*fields), {"ignoreNullFields": "false"})

    version_of_row = F.col(SCHEMA_VERSION_COLUMN)
    first, *rest = VERSIONS
    record = F.when(version_of_row == first.name, as_json(first))
    for version in rest:
        record = record.when(version_of_row == version.name, as_json(version))
    return record.otherwise(as_json(LATEST))
