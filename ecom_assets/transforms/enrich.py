"""Enrichment: the derived columns of ecommerce_events, computed once in Spark.

Runs after validation, so defaults filled in here (category, quantity) never hide a defect.
Invalid rows are enriched too (they are routed later); every expression tolerates their NULLs
and out-of-range values without failing the job under ANSI mode.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from ecom_assets.schema.contract import PRICED_EVENT_TYPES
from ecom_assets.transforms.expressions import (
    is_in,
    product_category,
    utc_micros,
    with_run_values,
)

TOTAL_AMOUNT_TYPE = DecimalType(14, 2)
"""ecommerce_events.total_amount NUMERIC(14,2)."""


def enrich_events(df: DataFrame, late_watermark_s: int, processed_at: datetime) -> DataFrame:
    """Fill category and quantity, add total_amount, event_date/hour, is_late, processed_at.

    - category: from the product id's catalogue range when not given (v1 files never give it);
    - quantity: 1 for priced types when not given (v1 and blank v2+ values are single units);
    - total_amount = price * quantity for priced types, NULL otherwise (revenue is purchases'
      totals; cart totals are intent); NULL where it would not fit NUMERIC(14,2);
    - event_date, event_hour: of event_time in UTC, whatever the session time zone;
    - is_late: event_time earlier than arrived_at - late_watermark_s (False when unknown);
    - processed_at: the given aware datetime, the same for every row of a run.
    """
    col = F.col
    priced = is_in(col("event_type"), PRICED_EVENT_TYPES)
    quantity = F.coalesce(col("quantity"), F.when(priced, F.lit(1)))
    seconds = F.unix_seconds(col("event_time"))
    watermark_us = F.lit(late_watermark_s * 1_000_000)
    late = F.unix_micros(col("event_time")) < F.unix_micros(col("arrived_at")) - watermark_us
    return (
        with_run_values(df, {_PROCESSED_AT_US: utc_micros(processed_at)})
        .withColumns(
            {
                "category": F.coalesce(col("category"), product_category(col("product_id"))),
                "quantity": quantity,
                "total_amount": F.when(
                    priced, (col("price") * quantity).try_cast(TOTAL_AMOUNT_TYPE)
                ),
                # epoch arithmetic: to_date/hour would use the session time zone
                "event_date": F.date_from_unix_date(F.floor(seconds / 86_400).cast("int")),
                "event_hour": F.pmod(F.floor(seconds / 3_600), F.lit(24)).cast("int"),
                "is_late": F.coalesce(late, F.lit(False)),
                "processed_at": F.timestamp_micros(col(_PROCESSED_AT_US)),
            }
        )
        .drop(_PROCESSED_AT_US)
    )


_PROCESSED_AT_US = "_processed_at_us"
