"""Validation: each ``contract.ErrorCode`` as a boolean Arrow array over a migrated (LATEST) table.

Rules read the parsed columns and tell "missing" (``parsing.is_blank``) from "unparseable"
(given, yet NULL once parsed), so they judge what the producer wrote after normalisation (trim,
case, "5.0" ids, time offsets), never a migration default: a v1 purchase has quantity 1 by
default but no quantity to check. Every rule is evaluated on every row, as whole-column
compute kernels, so a row's dead letter lists all its defects at once. The table also carries
``record_raw``, the text of a malformed record (schema/parsing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.contract import (
    CATEGORY_BY_NAME,
    EVENT_TYPES,
    PRICED_EVENT_TYPES,
    USER_REQUIRED_EVENT_TYPES,
    USER_SEGMENTS,
    ErrorCode,
)
from ecom_assets.schema.parsing import (
    RECORD,
    contiguous,
    is_blank,
    is_malformed,
    is_unparseable,
)
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms.expressions import is_in, product_category, utc_micros

ERROR_CODES_COLUMN = "error_codes"
"""list<string>: the codes a row fails, in ErrorCode declaration order; empty when valid."""

E = ErrorCode

CODE_FIELDS: dict[ErrorCode, tuple[str, ...]] = {
    E.MALFORMED_ROW: (RECORD,),
    E.MISSING_EVENT_ID: ("event_id",),
    E.INVALID_EVENT_ID: ("event_id",),
    E.DUPLICATE_EVENT_ID: ("event_id",),
    E.INVALID_USER_ID: ("user_id",),
    E.USER_REQUIRED: ("event_type", "user_id"),
    E.MISSING_EVENT_TYPE: ("event_type",),
    E.INVALID_EVENT_TYPE: ("event_type",),
    E.MISSING_PRODUCT_ID: ("product_id",),
    E.INVALID_PRODUCT_ID: ("product_id",),
    E.UNKNOWN_PRODUCT: ("product_id",),
    E.UNKNOWN_CATEGORY: ("category",),
    E.CATEGORY_PRODUCT_MISMATCH: ("category", "product_id"),
    E.MISSING_PRICE: ("event_type", "price"),
    E.INVALID_PRICE: ("price",),
    E.NEGATIVE_PRICE: ("price",),
    E.EXTREME_PRICE: ("price",),
    E.NON_POSITIVE_PURCHASE_PRICE: ("event_type", "price"),
    E.UNEXPECTED_PRICE: ("event_type", "price"),
    E.INVALID_QUANTITY: ("quantity",),
    E.UNEXPECTED_QUANTITY: ("event_type", "quantity"),
    E.MISSING_EVENT_TIME: ("event_time",),
    E.INVALID_EVENT_TIME: ("event_time",),
    E.FUTURE_EVENT_TIME: ("event_time",),
    E.INVALID_USER_SEGMENT: ("user_segment",),
}
"""The fields each rule reads: their raw values explain a code in a dead letter."""


@dataclass(frozen=True)
class ValidationRules:
    """The run-dependent inputs of the rules; ``now`` is fixed per run so reruns agree."""

    now: datetime
    """Aware datetime (UTC); events later than now + future_tolerance_s are in the future."""
    future_tolerance_s: int
    max_price: float
    max_quantity: int

    def __post_init__(self) -> None:
        utc_micros(self.now)  # refuses a naive datetime early, not inside a Spark task

    @classmethod
    def from_settings(cls, quality: QualitySettings, now: datetime) -> ValidationRules:
        return cls(
            now=now,
            future_tolerance_s=quality.future_tolerance_s,
            max_price=quality.max_price,
            max_quantity=quality.max_quantity,
        )

    @property
    def future_limit_us(self) -> int:
        """Latest acceptable event_time, in epoch microseconds."""
        return utc_micros(self.now) + self.future_tolerance_s * 1_000_000


def rule_conditions(table: pa.Table, rules: ValidationRules) -> dict[ErrorCode, pa.Array]:
    """One boolean array per ErrorCode, in declaration order, never NULL; see validate_events.

    Each rule is written as in SQL (a comparison with a NULL value is NULL, combined with
    Kleene logic) and a NULL outcome counts as not failing.
    """
    blank = {field: is_blank(table, field) for field in _BLANK_FIELDS}
    given = {field: pc.invert(value) for field, value in blank.items()}
    unparseable = {field: is_unparseable(table, field, blank[field]) for field in _PARSED}
    event_type = table["event_type"]
    known_type = is_in(event_type, EVENT_TYPES)
    priced = is_in(event_type, PRICED_EVENT_TYPES)
    unpriced = _all(known_type, pc.invert(priced))
    user_id = table["user_id"]
    product_id = table["product_id"]
    owner = product_category(product_id)
    category = table["category"]
    known_category = is_in(category, CATEGORY_BY_NAME)
    price = table["price"]
    quantity = table["quantity"]
    bad_quantity = _any(
        unparseable["quantity"],
        pc.less(quantity, 1),
        pc.greater(quantity, rules.max_quantity),
    )
    event_time = table["event_time"]
    future_limit = pa.scalar(rules.future_limit_us, type=pa.int64()).cast(event_time.type)
    max_price = pa.scalar(Decimal(repr(float(rules.max_price))))
    malformed = contiguous(is_malformed(table))
    conditions = {
        E.MALFORMED_ROW: malformed,
        E.MISSING_EVENT_ID: blank["event_id"],
        E.INVALID_EVENT_ID: unparseable["event_id"],
        E.DUPLICATE_EVENT_ID: _repeated_ids(table, malformed),
        E.INVALID_USER_ID: _all(given["user_id"], _any(pc.is_null(user_id), pc.less(user_id, 0))),
        E.USER_REQUIRED: _all(is_in(event_type, USER_REQUIRED_EVENT_TYPES), pc.equal(user_id, 0)),
        E.MISSING_EVENT_TYPE: blank["event_type"],
        E.INVALID_EVENT_TYPE: _all(given["event_type"], pc.invert(known_type)),
        E.MISSING_PRODUCT_ID: blank["product_id"],
        E.INVALID_PRODUCT_ID: _any(unparseable["product_id"], pc.less_equal(product_id, 0)),
        E.UNKNOWN_PRODUCT: _all(pc.greater(product_id, 0), pc.is_null(owner)),
        E.UNKNOWN_CATEGORY: _all(given["category"], pc.invert(known_category)),
        E.CATEGORY_PRODUCT_MISMATCH: _all(known_category, pc.not_equal(owner, category)),
        E.MISSING_PRICE: _all(priced, blank["price"]),
        E.INVALID_PRICE: unparseable["price"],
        E.NEGATIVE_PRICE: pc.less(price, 0),
        E.EXTREME_PRICE: pc.greater(price, max_price),
        E.NON_POSITIVE_PURCHASE_PRICE: _all(pc.equal(event_type, "purchase"), pc.equal(price, 0)),
        E.UNEXPECTED_PRICE: _all(unpriced, given["price"]),
        E.INVALID_QUANTITY: _all(pc.invert(unpriced), given["quantity"], bad_quantity),
        E.UNEXPECTED_QUANTITY: _all(unpriced, given["quantity"]),
        E.MISSING_EVENT_TIME: blank["event_time"],
        E.INVALID_EVENT_TIME: unparseable["event_time"],
        E.FUTURE_EVENT_TIME: pc.greater(event_time, future_limit),
        E.INVALID_USER_SEGMENT: _all(
            given["user_segment"], pc.invert(is_in(table["user_segment"], USER_SEGMENTS))
        ),
    }
    return {code: contiguous(pc.fill_null(conditions[code], False)) for code in ErrorCode}


_BLANK_FIELDS = tuple(
    dict.fromkeys(field for fields in CODE_FIELDS.values() for field in fields if field != RECORD)
)
"""The fields the rules read (CODE_FIELDS, the malformed record aside): each one's blankness is
computed once per table."""
_PARSED = ("event_id", "product_id", "price", "quantity", "event_time")
"""The fields whose unparseability rules read."""


def validate_events(table: pa.Table, rules: ValidationRules) -> pa.Table:
    """``table`` (migrated rows with source_file and source_line) plus ``error_codes``.

    The duplicate rule works per file (first = smallest source_line of each (source_file,
    event_id)): a table holds whole files. The same event in two files is a replay, not an
    error: the sink keeps the earlier file's row and counts the other as a duplicate, whichever
    batches the files land in.

    Precedence, so that a row never gets a code that merely follows from another:

    - MALFORMED_ROW (more or fewer fields than the header) is the row's only code: its values
      may sit in the wrong columns, so no field rule judges them, and its event id neither is
      nor makes a duplicate.
    - Type-dependent rules (USER_REQUIRED, MISSING_PRICE, NON_POSITIVE_PURCHASE_PRICE,
      UNEXPECTED_PRICE, UNEXPECTED_QUANTITY) need a known event_type; a missing or invalid type
      reports only itself there.
    - An invalid user_id is not also USER_REQUIRED (only 0 or blank is anonymous).
    - UNKNOWN_PRODUCT needs a valid product_id (> 0); CATEGORY_PRODUCT_MISMATCH needs a known
      category and a known product.
    - Price value rules (INVALID, NEGATIVE, EXTREME) apply to any type, so a bad price on a view
      reports its own defect besides UNEXPECTED_PRICE; a negative purchase price is
      NEGATIVE_PRICE only (NON_POSITIVE_PURCHASE_PRICE is price == 0 exactly).
    - Quantity on a non-priced type is UNEXPECTED_QUANTITY only, whatever its value; on priced
      or unknown types a bad value is INVALID_QUANTITY, and a blank one is fine (default 1).
    - FUTURE_EVENT_TIME needs a parsed time; DUPLICATE_EVENT_ID needs a valid (UUID) id.
    """
    conditions = rule_conditions(table, rules)
    well_formed = pc.invert(conditions[E.MALFORMED_ROW])
    failed = [
        condition if code is E.MALFORMED_ROW else pc.and_(condition, well_formed)
        for code, condition in conditions.items()
    ]
    return table.append_column(ERROR_CODES_COLUMN, _code_lists(failed))


_CODE_NAMES = pa.array([code.value for code in ErrorCode], pa.string())


def _code_lists(failed: list[pa.Array]) -> pa.ListArray:
    """Each row's codes (``failed[i]``: the rows failing the i-th ErrorCode), in code order.

    Built from the failing (row, code) pairs only, since nearly every row is valid: a row's
    list length is its number of pairs; its values are the pairs, listed code by code, stably
    sorted by row.
    """
    hits = [pc.indices_nonzero(rows).to_numpy() for rows in failed]
    rows = np.concatenate(hits)
    codes = np.repeat(np.arange(len(hits), dtype=np.int8), [len(h) for h in hits])
    offsets = np.zeros(len(failed[0]) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(failed[0])), out=offsets[1:])
    by_row = np.argsort(rows, kind="stable")
    return pa.ListArray.from_arrays(pa.array(offsets), _CODE_NAMES.take(pa.array(codes[by_row])))


def _repeated_ids(table: pa.Table, malformed: pa.Array) -> pa.Array:
    """True for each row whose (source_file, event_id) a smaller source_line of the file has.

    Rows without a parsed id, or malformed, take no part: their id is missing or not trusted.
    Few ids repeat, and hashing or sorting every id string in Arrow is slow (100-150 ms per
    300,000 rows), so the rows are first narrowed to those whose id fingerprint another row
    shares; those are sorted by (file, id, line), and a row equal to the one before repeats it.
    """
    has_id = pc.and_(contiguous(pc.is_valid(table["event_id"])), pc.invert(malformed))
    rows = pc.indices_nonzero(has_id)
    shared = _shared(_fingerprints(contiguous(table["event_id"]).take(rows)))
    candidates = rows.filter(shared)
    keys = table.select(["source_file", "event_id", "source_line"]).take(candidates)
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    files = contiguous(keys["source_file"].take(order))
    ids = contiguous(keys["event_id"].take(order))
    repeats = pc.and_(pc.equal(files[1:], files[:-1]), pc.equal(ids[1:], ids[:-1]))
    repeated = np.zeros(table.num_rows, dtype=bool)
    repeated[candidates.take(order)[1:].filter(repeats).to_numpy()] = True
    return pa.array(repeated)


_UUID_LENGTH = 36
_FINGERPRINT_FACTORS = np.array(
    [0x9E3779B97F4A7C15 * (i + 1) % 2**64 | 1 for i in range(_UUID_LENGTH // 4)], dtype=np.uint64
)


def _fingerprints(uuids: pa.StringArray) -> np.ndarray:
    """A 64-bit hash of each id: parsed ids are UUIDs, so 36 bytes each, back to back.

    The 9 32-bit words of each id, weighted by odd factors, summed modulo 2^64: equal ids have
    equal fingerprints; distinct ids rarely do, and then only cost an exact comparison.
    """
    count = len(uuids)
    offsets = np.frombuffer(uuids.buffers()[1], np.int32, count + 1, uuids.offset * 4)
    if np.any(np.diff(offsets) != _UUID_LENGTH):
        raise ValueError(f"event ids are parsed UUIDs of {_UUID_LENGTH} characters")
    data = np.frombuffer(uuids.buffers()[2], np.uint8, count * _UUID_LENGTH, offsets[0])
    words = data.reshape(count, _UUID_LENGTH).view(np.uint32).astype(np.uint64)
    return words @ _FINGERPRINT_FACTORS


def _shared(values: np.ndarray) -> pa.BooleanArray:
    """True where another element has the same value (a sort, then a lookup of the few)."""
    ordered = np.sort(values)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    return pc.is_in(values, value_set=pa.array(repeated))


def _all(*conditions: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return reduce(pc.and_kleene, conditions)


def _any(*conditions: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return reduce(pc.or_kleene, conditions)
