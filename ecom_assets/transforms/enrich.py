"""Enrichment: the derived columns of ecommerce_events, computed once with Arrow kernels.

Runs after validation, so defaults filled in here (category, quantity) never hide a defect.
Invalid rows are enriched too (they are routed later); every kernel tolerates their NULLs and
out-of-range values without failing the batch.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.contract import PRICED_EVENT_TYPES
from ecom_assets.transforms.expressions import is_in, product_category, utc_micros

TOTAL_AMOUNT_TYPE = pa.decimal128(14, 2)
"""ecommerce_events.total_amount NUMERIC(14,2)."""

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_QUANTITY_DECIMAL = pa.decimal128(10, 0)
"""An INT as a decimal, as Spark multiplies DECIMAL by INT: the product is exact."""
_TOTAL_LIMIT = pa.scalar(Decimal(10) ** (14 - 2), pa.decimal128(13, 0))
"""Totals of this magnitude or more do not fit NUMERIC(14,2)."""


def enrich_events(table: pa.Table, late_watermark_s: int, processed_at: datetime) -> pa.Table:
    """Fill category and quantity, add total_amount, event_date/hour, is_late, processed_at.

    - category: from the product id's catalogue range when not given (v1 files never give it);
    - quantity: 1 for priced types when not given (v1 and blank v2+ values are single units);
    - total_amount = price * quantity for priced types, NULL otherwise (revenue is purchases'
      totals; cart totals are intent); NULL where it would not fit NUMERIC(14,2);
    - event_date, event_hour: of event_time in UTC;
    - is_late: event_time earlier than arrived_at - late_watermark_s (False when unknown);
    - processed_at: the given aware datetime, the same for every row of a run.

    category and quantity are replaced in place, the derived columns appended in that order.
    """
    processed_us = utc_micros(processed_at)  # refuses a naive datetime
    priced = is_in(table.column("event_type"), PRICED_EVENT_TYPES)
    quantity = _quantity(table.column("quantity"), priced)
    event_time = table.column("event_time")
    watermark = pa.scalar(timedelta(seconds=late_watermark_s), pa.duration("us"))
    late = pc.less(event_time, pc.subtract(table.column("arrived_at"), watermark))
    category = table.column("category")
    derived = {
        "total_amount": _total_amount(table.column("price"), quantity, priced),
        # event_time is UTC-zoned, so both read UTC whatever the process's time zone
        "event_date": event_time.cast(pa.date32()),
        "event_hour": pc.hour(event_time).cast(pa.int32()),
        "is_late": pc.fill_null(late, False),
        "processed_at": pa.repeat(pa.scalar(processed_us, _TIMESTAMP), table.num_rows),
    }
    enriched = table.set_column(
        table.schema.get_field_index("category"),
        "category",
        pc.coalesce(category, product_category(table.column("product_id"))),
    ).set_column(table.schema.get_field_index("quantity"), "quantity", quantity)
    for name, values in derived.items():
        enriched = enriched.append_column(name, values)
    return enriched


def _quantity(quantity: pa.ChunkedArray, priced: pa.ChunkedArray) -> pa.ChunkedArray:
    """The given quantity, or 1 for a priced type without one."""
    return pc.if_else(pc.and_(priced, pc.is_null(quantity)), pa.scalar(1, pa.int32()), quantity)


def _total_amount(
    price: pa.ChunkedArray, quantity: pa.ChunkedArray, priced: pa.ChunkedArray
) -> pa.ChunkedArray:
    """price * quantity, exact, for priced rows; NULL where it does not fit NUMERIC(14,2).

    The product keeps price's 2 decimals, so it fits exactly when its magnitude is below
    10^12; the others are nulled before the cast, which would refuse them.
    """
    product = pc.multiply(price, quantity.cast(_QUANTITY_DECIMAL))
    keep = pc.and_(priced, pc.less(pc.abs(product), _TOTAL_LIMIT))
    return pc.if_else(keep, product, pa.scalar(None, product.type)).cast(TOTAL_AMOUNT_TYPE)
