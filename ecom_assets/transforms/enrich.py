"""Enrichment: the derived columns of ecommerce_events, computed once with Arrow kernels.

Runs after validation, so defaults filled in here (category, quantity) never hide a defect.
Invalid rows are enriched too (they are routed later); every kernel tolerates their NULLs and
out-of-range values without failing the batch.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.contract import STORAGE_LIMITS, IdFormat
from ecom_assets.transforms.expressions import is_in, utc_micros
from ecom_assets.transforms.validate import ValidationRules

TOTAL_AMOUNT_TYPE = pa.decimal128(STORAGE_LIMITS.total_digits, STORAGE_LIMITS.scale)
"""ecommerce_events.total_amount NUMERIC(14,2)."""

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_QUANTITY_DECIMAL = pa.decimal128(10, 0)
"""An INT as a decimal, as Spark multiplies DECIMAL by INT: the product is exact."""
_TOTAL_LIMIT = pa.scalar(Decimal(STORAGE_LIMITS.total_limit), pa.decimal128(13, 0))
"""Totals of this magnitude or more do not fit NUMERIC(14,2)."""
EVENT_KEY_NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-4c5d-9e7f-0a1b2c3d4e5f")
"""The namespace of the name-based UUIDs that key events whose ids are not UUIDs."""


def event_key_uuids(keys: pa.Array) -> pa.Array:
    """The UUID (version 3, name-based, in EVENT_KEY_NAMESPACE, as ``uuid.uuid3`` makes it)
    that stores each id of another format: ``ecommerce_events.event_id`` stays a 16-byte key,
    the id itself is kept in ``event_key``. NULL stays NULL.

    One MD5 per id in Python, then the digests formatted as UUID text with numpy:
    ``uuid.uuid3`` per row cost several times more (docs/decisions.md 50).
    """
    valid = pc.is_valid(keys)
    present = keys.filter(valid).to_pylist()
    prefix = EVENT_KEY_NAMESPACE.bytes
    digests = np.frombuffer(
        b"".join([hashlib.md5(prefix + key.encode()).digest() for key in present]),  # noqa: S324
        np.uint8,
    ).reshape(-1, 16)
    digests = digests.copy()
    digests[:, 6] = (digests[:, 6] & 0x0F) | 0x30  # version 3
    digests[:, 8] = (digests[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.full((len(present), 36), ord("-"), np.uint8)
    for first, last, at in ((0, 4, 0), (4, 6, 9), (6, 8, 14), (8, 10, 19), (10, 16, 24)):
        part = digests[:, first:last]
        text[:, at : at + 2 * (last - first) : 2] = hex_digits[part >> 4]
        text[:, at + 1 : at + 2 * (last - first) : 2] = hex_digits[part & 15]
    offsets = np.arange(0, 36 * (len(present) + 1), 36, dtype=np.int32)
    uuids = pa.StringArray.from_buffers(
        len(present), pa.py_buffer(offsets), pa.py_buffer(text.tobytes())
    )
    return pc.replace_with_mask(pa.nulls(len(keys), pa.string()), valid, uuids)


def enrich_events(table: pa.Table, rules: ValidationRules, late_watermark_s: int) -> pa.Table:
    """Fill category and quantity, key ids, add total_amount, event_date/hour, is_late,
    processed_at.

    - category: the catalogue's for the product when not given (v1 files never give it), if a
      catalogue is loaded;
    - quantity: 1 for priced types when not given (v1 and blank v2+ values are single units);
    - event_id / event_key: ids that are not UUIDs (the contract's id format) move to
      ``event_key``, and event_id becomes their name-based UUID (``event_key_uuids``);
    - total_amount = price * quantity for priced types, NULL otherwise (revenue is purchases'
      totals; cart totals are intent); NULL where it would not fit NUMERIC(14,2), which only
      an invalid row's can (TOTAL_AMOUNT_OVERFLOW): the cast must not fail the batch for it;
    - event_date, event_hour: of event_time in UTC;
    - is_late: event_time earlier than arrived_at - late_watermark_s (False when unknown);
    - processed_at: the rules' ``now``, the same for every row of a run.

    category, quantity and event_id are replaced in place, the derived columns appended in
    that order.
    """
    processed_us = utc_micros(rules.now)
    priced = is_in(table.column("event_type"), rules.contract.types_where("priced"))
    quantity = _quantity(table.column("quantity"), priced)
    event_time = table.column("event_time")
    watermark = pa.scalar(timedelta(seconds=late_watermark_s), pa.duration("us"))
    late = pc.less(event_time, pc.subtract(table.column("arrived_at"), watermark))
    category = table.column("category")
    if rules.catalogue is not None:
        category = pc.coalesce(category, rules.catalogue.category_of(table.column("product_id")))
    event_id = table.column("event_id").combine_chunks()
    event_key = pa.nulls(table.num_rows, pa.string())
    if rules.contract.id_format is not IdFormat.UUID:
        event_id, event_key = event_key_uuids(event_id), event_id
    derived = {
        "event_key": event_key,
        "total_amount": _total_amount(table.column("price"), quantity, priced),
        # event_time is UTC-zoned, so both read UTC whatever the process's time zone
        "event_date": event_time.cast(pa.date32()),
        "event_hour": pc.hour(event_time).cast(pa.int32()),
        "is_late": pc.fill_null(late, False),
        "processed_at": pa.repeat(pa.scalar(processed_us, _TIMESTAMP), table.num_rows),
    }
    enriched = table
    for name, values in (("category", category), ("quantity", quantity), ("event_id", event_id)):
        enriched = enriched.set_column(table.schema.get_field_index(name), name, values)
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
