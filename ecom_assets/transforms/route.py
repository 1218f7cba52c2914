"""Routing of validated, enriched rows into the shapes of the three tables.

``valid_events`` -> ecommerce_events, ``dead_letters`` -> dead_letter_events, ``file_metrics``
-> data_quality_metrics (the caller adds run, partition, insert and latency figures). All three
read the same input: cache it first (see the package docstring).
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

FILE_METRIC_COLUMNS: tuple[str, ...] = (
    "source_file",
    "schema_version",
    "rows_read",
    "rows_valid",
    "rows_invalid",
    "rows_late",
    "error_counts",
)


def _is_valid() -> Column:
    return F.size(ERROR_CODES_COLUMN) == 0


def valid_events(df: DataFrame) -> DataFrame:
    """Rows without error codes, exactly EVENT_COLUMNS."""
    return df.where(_is_valid()).select(*EVENT_COLUMNS)


def dead_letters(df: DataFrame) -> DataFrame:
    """Rows with error codes as DEAD_LETTER_COLUMNS: what failed, why, and the row as written.

    ``event_id`` is the raw id trimmed (NULL when blank), since the parsed one is NULL for an
    invalid id; ``raw_record`` holds only the fields of the row's own schema version, so a
    replay can write the record back as its producer wrote it.
    """
    return df.where(~_is_valid()).select(
        "source_file",
        "source_line",
        trimmed(F.col(raw_name("event_id"))).alias("event_id"),
        ERROR_CODES_COLUMN,
        error_detail().alias("error_detail"),
        raw_record().alias("raw_record"),
        SCHEMA_VERSION_COLUMN,
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


def file_metrics(df: DataFrame) -> DataFrame:
    """One row per source_file: FILE_METRIC_COLUMNS, in one aggregation (no join, no explode).

    The codes are a fixed enum, so each code's row count is a conditional count in the same
    groupBy as the totals; ``error_counts`` is a JSON object {code: rows} of the codes that
    occur, in ErrorCode order ("{}" for a clean file). rows_late counts valid rows only.
    """
    valid = _is_valid()
    code_counts = [
        F.count(F.when(F.array_contains(ERROR_CODES_COLUMN, code.value), 1)).alias(code.value)
        for code in ErrorCode
    ]
    # a file has one version: grouping by it too keeps a hash (not sort) aggregate
    totals = df.groupBy("source_file", SCHEMA_VERSION_COLUMN).agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.count(F.when(valid, 1)).alias("rows_valid"),
        F.count(F.when(valid & F.col("is_late"), 1)).alias("rows_late"),
        *code_counts,
    )
    counts = F.map_from_arrays(
        F.array(*(F.lit(code.value) for code in ErrorCode)),
        F.array(*(F.col(code.value) for code in ErrorCode)),
    )
    return totals.select(
        "source_file",
        "schema_version",
        "rows_read",
        "rows_valid",
        (F.col("rows_read") - F.col("rows_valid")).alias("rows_invalid"),
        "rows_late",
        F.to_json(F.map_filter(counts, lambda _, n: n > 0)).alias("error_counts"),
    )
