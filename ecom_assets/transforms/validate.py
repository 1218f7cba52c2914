"""Validation: each ``contract.ErrorCode`` as a boolean Arrow array over a migrated (LATEST) table.

Rules read the parsed columns and tell "missing" (``parsing.is_blank``) from "unparseable"
(given, yet NULL once parsed), so they judge what the producer wrote after normalisation (trim,
case, "5.0" ids, time offsets), never a migration default: a v1 purchase has quantity 1 by
default but no quantity to check. Every rule is evaluated on every row, as whole-column
compute kernels, so a row's dead letter lists all its defects at once. The table also carries
``record_raw``, the text of a malformed record (schema/parsing.py).

Three rules guard PostgreSQL's limits (``contract.STORAGE_LIMITS``): a value the columns or
their indexes cannot hold would fail the COPY or the commit of the whole batch, on every retry,
so such a row is a dead letter instead (EVENT_TIME_OUT_OF_RANGE, TOTAL_AMOUNT_OVERFLOW,
VALUE_TOO_LONG). The other columns cannot overflow: ids and counts that do not fit their
integer type, prices of 10^10 or more, NaN and infinities are unparseable (parsing.py), NUL
bytes and text that is not UTF-8 quarantine their file before any row is read (file_checks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.catalogue import Catalogue
from ecom_assets.schema.contract import (
    ID_PATTERNS,
    INDEXED_TEXT_FIELDS,
    MAX_TEXT_ID_LENGTH,
    PURCHASE,
    STORAGE_LIMITS,
    Contract,
    ErrorCode,
    IdFormat,
    Severity,
)
from ecom_assets.schema.parsing import (
    RECORD,
    Column,
    contiguous,
    is_blank,
    is_malformed,
    is_unparseable,
)
from ecom_assets.transforms.expressions import is_in, utc_micros

ERROR_CODES_COLUMN = "error_codes"
"""list<string>: the error-severity codes a row fails, in ErrorCode order; empty when valid."""
WARNING_CODES_COLUMN = "quality_warnings"
"""list<string>: the warn-severity codes of a valid row, in ErrorCode order; always empty on a
row with errors (a dead letter is judged by its errors alone)."""

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
    E.EVENT_TIME_OUT_OF_RANGE: ("event_time",),
    E.TOTAL_AMOUNT_OVERFLOW: ("price", "quantity"),
    E.VALUE_TOO_LONG: INDEXED_TEXT_FIELDS,
}
"""The fields each rule reads: their raw values explain a code in a dead letter."""


@dataclass(frozen=True)
class ValidationRules:
    """What the rules judge rows by: the contract, the catalogue (None: none is loaded, and the
    catalogue rules do not apply) and ``now``, fixed per run so reruns agree."""

    now: datetime
    """Aware datetime (UTC); events later than now + the future tolerance are in the future."""
    contract: Contract
    catalogue: Catalogue | None = None

    def __post_init__(self) -> None:
        utc_micros(self.now)  # refuses a naive datetime early, not inside a Spark task

    @property
    def future_limit_us(self) -> int:
        """Latest acceptable event_time, in epoch microseconds."""
        return utc_micros(self.now) + self.contract.future_tolerance_s * 1_000_000


def normalised_ids(event_id: Column, id_format: IdFormat) -> pa.Array:
    """Trimmed ids in their canonical case (UUIDs lower, ULIDs upper); NULL where an id does not
    have the format: such a row is INVALID_EVENT_ID, a blank one MISSING_EVENT_ID."""
    text = contiguous(event_id)
    if id_format is IdFormat.UUID:
        text = pc.ascii_lower(text)
    elif id_format is IdFormat.ULID:
        text = pc.ascii_upper(text)
    fits = pc.and_(
        pc.match_substring_regex(text, ID_PATTERNS[id_format]),
        pc.less_equal(pc.binary_length(text), MAX_TEXT_ID_LENGTH),
    )
    return pc.if_else(fits, text, pa.scalar(None, pa.string()))


def rule_conditions(table: pa.Table, rules: ValidationRules) -> dict[ErrorCode, pa.Array]:
    """One boolean array per ErrorCode, in declaration order, never NULL; see validate_events.

    ``table``'s event ids are ``normalised_ids``. Each rule is written as in SQL (a comparison
    with a NULL value is NULL, combined with Kleene logic) and a NULL outcome counts as not
    failing. Rules are evaluated whatever their severity; validate_events sorts them out.
    """
    contract = rules.contract
    blank = {field: is_blank(table, field) for field in _BLANK_FIELDS}
    given = {field: pc.invert(value) for field, value in blank.items()}
    unparseable = {field: is_unparseable(table, field, blank[field]) for field in _PARSED}
    event_type = table["event_type"]
    known_type = is_in(event_type, contract.type_names)
    priced = is_in(event_type, contract.types_where("priced"))
    unpriced = _all(known_type, pc.invert(priced))
    product_optional = is_in(
        event_type, [t.name for t in contract.event_types if not t.product_required]
    )
    user_id = table["user_id"]
    product_id = table["product_id"]
    price = table["price"]
    quantity = table["quantity"]
    bad_quantity = _any(
        unparseable["quantity"],
        pc.less(quantity, 1),
        pc.greater(quantity, contract.max_quantity),
    )
    event_time = table["event_time"]
    future_limit = pa.scalar(rules.future_limit_us, type=pa.int64()).cast(event_time.type)
    out_of_range = _any(
        pc.less(event_time, _TIME_RANGE[0].cast(event_time.type)),
        pc.greater_equal(event_time, _TIME_RANGE[1].cast(event_time.type)),
    )
    max_price = pa.scalar(Decimal(repr(contract.max_price)))
    malformed = contiguous(is_malformed(table))
    conditions = {
        E.MALFORMED_ROW: malformed,
        E.MISSING_EVENT_ID: blank["event_id"],
        E.INVALID_EVENT_ID: unparseable["event_id"],
        E.DUPLICATE_EVENT_ID: _repeated_ids(table, malformed),
        E.INVALID_USER_ID: _all(given["user_id"], _any(pc.is_null(user_id), pc.less(user_id, 0))),
        E.USER_REQUIRED: _all(
            is_in(event_type, contract.types_where("user_required")), pc.equal(user_id, 0)
        ),
        E.MISSING_EVENT_TYPE: blank["event_type"],
        E.INVALID_EVENT_TYPE: _all(given["event_type"], pc.invert(known_type)),
        E.MISSING_PRODUCT_ID: _all(blank["product_id"], pc.invert(product_optional)),
        E.INVALID_PRODUCT_ID: _any(unparseable["product_id"], pc.less_equal(product_id, 0)),
        **_catalogue_conditions(table, rules.catalogue, given["category"]),
        E.MISSING_PRICE: _all(priced, blank["price"]),
        E.INVALID_PRICE: unparseable["price"],
        E.NEGATIVE_PRICE: pc.less(price, 0),
        E.EXTREME_PRICE: pc.greater(price, max_price),
        E.NON_POSITIVE_PURCHASE_PRICE: _all(pc.equal(event_type, PURCHASE), pc.equal(price, 0)),
        E.UNEXPECTED_PRICE: _all(unpriced, given["price"], _not_zero(price)),
        E.INVALID_QUANTITY: _all(pc.invert(unpriced), given["quantity"], bad_quantity),
        E.UNEXPECTED_QUANTITY: _all(unpriced, given["quantity"], _not_zero(quantity)),
        E.MISSING_EVENT_TIME: blank["event_time"],
        E.INVALID_EVENT_TIME: unparseable["event_time"],
        E.FUTURE_EVENT_TIME: _all(pc.greater(event_time, future_limit), pc.invert(out_of_range)),
        E.INVALID_USER_SEGMENT: _unknown_segment(table, contract, given["user_segment"]),
        E.EVENT_TIME_OUT_OF_RANGE: out_of_range,
        E.TOTAL_AMOUNT_OVERFLOW: _all(priced, _total_overflows(price, quantity)),
        E.VALUE_TOO_LONG: _any(
            *(
                pc.greater(pc.binary_length(table[field]), STORAGE_LIMITS.indexed_text_bytes)
                for field in INDEXED_TEXT_FIELDS
            )
        ),
    }
    return {code: contiguous(pc.fill_null(conditions[code], False)) for code in ErrorCode}


def _year_start_us(year: int) -> pa.Scalar:
    """Epoch microseconds of January 1 of ``year`` (1..10000), UTC."""
    days = (datetime(min(year, 9999), 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    if year == 10000:
        days += 365  # 9999 is no leap year; Python's datetime stops before 10000
    return pa.scalar(days * 86_400_000_000, pa.int64())


_TIME_RANGE = (
    _year_start_us(STORAGE_LIMITS.first_year),
    _year_start_us(STORAGE_LIMITS.last_year + 1),
)
"""[first, end) of the event times storage takes, in epoch microseconds."""
_TOTAL_LIMIT = pa.scalar(Decimal(STORAGE_LIMITS.total_limit), pa.decimal128(13, 0))


def _total_overflows(price: Column, quantity: Column) -> Column:
    """|price x quantity| too large for total_amount; a blank quantity counts as 1, as
    enrichment makes it (enrich.py). Exact: Arrow multiplies decimals without rounding."""
    units = pc.fill_null(quantity, 1).cast(pa.decimal128(10, 0))
    return pc.greater_equal(pc.abs(pc.multiply(price, units)), _TOTAL_LIMIT)


def _not_zero(values: Column) -> Column:
    """True unless the value is exactly 0: a zero price or quantity on a type that carries none
    is how many trackers write "none"; an unparseable one is not zero."""
    return pc.invert(pc.fill_null(pc.equal(values, 0), False))


def _unknown_segment(table: pa.Table, contract: Contract, given: pa.Array) -> Column:
    if contract.user_segments is None:
        return pa.repeat(pa.scalar(False), table.num_rows)
    return _all(given, pc.invert(is_in(table["user_segment"], contract.user_segments)))


def _catalogue_conditions(
    table: pa.Table, catalogue: Catalogue | None, category_given: pa.Array
) -> dict[ErrorCode, Column]:
    """The catalogue rules; without a catalogue nothing is unknown."""
    if catalogue is None:
        none = pa.repeat(pa.scalar(False), table.num_rows)
        return {E.UNKNOWN_PRODUCT: none, E.UNKNOWN_CATEGORY: none,
                E.CATEGORY_PRODUCT_MISMATCH: none}  # fmt: skip
    product_id, category = table["product_id"], table["category"]
    known_product = catalogue.has_product(product_id)
    known_category = catalogue.has_category(category)
    return {
        E.UNKNOWN_PRODUCT: _all(pc.greater(product_id, 0), pc.invert(known_product)),
        E.UNKNOWN_CATEGORY: _all(category_given, pc.invert(known_category)),
        E.CATEGORY_PRODUCT_MISMATCH: _all(
            known_category,
            known_product,
            pc.not_equal(catalogue.category_of(product_id), category),
        ),
    }


_BLANK_FIELDS = tuple(
    dict.fromkeys(field for fields in CODE_FIELDS.values() for field in fields if field != RECORD)
)
"""The fields the rules read (CODE_FIELDS, the malformed record aside): each one's blankness is
computed once per table."""
_PARSED = ("event_id", "product_id", "price", "quantity", "event_time")
"""The fields whose unparseability rules read."""


def validate_events(table: pa.Table, rules: ValidationRules) -> pa.Table:
    """``table`` (migrated rows with source_file and source_line) with its event ids normalised
    (``normalised_ids``), plus ``error_codes`` and ``quality_warnings``.

    Each rule's severity in the contract decides the column its code goes to; ``off`` rules
    are dropped. A row with any error code is a dead letter and keeps no warnings.

    The duplicate rule works per file (first = smallest source_line of each (source_file,
    event_id)): a table holds whole files. The same event in two files is a replay, not an
    error: the sink keeps the earlier file's row and counts the other as a duplicate, whichever
    batches the files land in.

    Precedence, so that a row never gets a code that merely follows from another:

    - MALFORMED_ROW (more or fewer fields than the header) is the row's only code: its values
      may sit in the wrong columns, so no field rule judges them, and its event id neither is
      nor makes a duplicate.
    - Type-dependent rules (USER_REQUIRED, MISSING_PRODUCT_ID, MISSING_PRICE,
      NON_POSITIVE_PURCHASE_PRICE, UNEXPECTED_PRICE, UNEXPECTED_QUANTITY) need a declared
      event_type; a missing or invalid type reports only itself there (and a blank product).
    - An invalid user_id is not also USER_REQUIRED (only 0 or blank is anonymous).
    - UNKNOWN_PRODUCT needs a valid product_id (> 0); CATEGORY_PRODUCT_MISMATCH needs a
      catalogue product and a catalogue category.
    - Price value rules (INVALID, NEGATIVE, EXTREME) apply to any type, so a bad price on a view
      reports its own defect besides UNEXPECTED_PRICE; a negative purchase price is
      NEGATIVE_PRICE only (NON_POSITIVE_PURCHASE_PRICE is price == 0 exactly).
    - On a type that carries no price or quantity, a zero one is no defect ("none"); any other
      quantity there is UNEXPECTED_QUANTITY only, whatever its value. On priced or undeclared
      types a bad quantity is INVALID_QUANTITY, and a blank one is fine (default 1).
    - FUTURE_EVENT_TIME needs a parsed time within storage's range (else the row is
      EVENT_TIME_OUT_OF_RANGE only); DUPLICATE_EVENT_ID needs a valid id.
    - TOTAL_AMOUNT_OVERFLOW is reported only where neither EXTREME_PRICE nor INVALID_QUANTITY
      is an error for the row: the contract's bounds keep a valid price x quantity within the
      column (contract_file refuses others), so beyond them it follows from one of those.
    - VALUE_TOO_LONG stands beside INVALID_EVENT_TYPE or INVALID_USER_SEGMENT: being too long
      to store is its own defect, whatever the value.
    """
    contract = rules.contract
    position = table.schema.get_field_index("event_id")
    table = table.set_column(
        position, "event_id", normalised_ids(table["event_id"], contract.id_format)
    )
    conditions = rule_conditions(table, rules)
    bounds = [
        conditions[code] for code in _TOTAL_BOUNDS if contract.severity(code) is Severity.ERROR
    ]
    if bounds:
        conditions[E.TOTAL_AMOUNT_OVERFLOW] = pc.and_(
            conditions[E.TOTAL_AMOUNT_OVERFLOW], pc.invert(_any(*bounds))
        )
    well_formed = pc.invert(conditions[E.MALFORMED_ROW])
    errors = contract.codes(Severity.ERROR)
    error_lists = _code_lists(
        [
            conditions[code] if code is E.MALFORMED_ROW else pc.and_(conditions[code], well_formed)
            for code in errors
        ],
        errors,
        table.num_rows,
    )
    clean = pc.and_(well_formed, pc.equal(pc.list_value_length(error_lists), 0))
    warnings = contract.codes(Severity.WARN)
    warning_lists = _code_lists(
        [pc.and_(conditions[code], clean) for code in warnings], warnings, table.num_rows
    )
    return table.append_column(ERROR_CODES_COLUMN, error_lists).append_column(
        WARNING_CODES_COLUMN, warning_lists
    )


_TOTAL_BOUNDS = (E.EXTREME_PRICE, E.INVALID_QUANTITY)
"""The rules whose bounds keep price x quantity within total_amount."""


def _code_lists(failed: list[pa.Array], codes: tuple[ErrorCode, ...], rows: int) -> pa.ListArray:
    """Each row's codes (``failed[i]``: the rows failing ``codes[i]``), in code order.

    Built from the failing (row, code) pairs only, since nearly every row is valid: a row's
    list length is its number of pairs; its values are the pairs, listed code by code, stably
    sorted by row.
    """
    names = pa.array([code.value for code in codes], pa.string())
    hits = [pc.indices_nonzero(rows).to_numpy() for rows in failed]
    positions = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
    which = np.repeat(np.arange(len(hits), dtype=np.int8), [len(h) for h in hits])
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(positions, minlength=rows), out=offsets[1:])
    by_row = np.argsort(positions, kind="stable")
    return pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(which[by_row])))


def _repeated_ids(table: pa.Table, malformed: pa.Array) -> pa.Array:
    """True for each row whose (source_file, event_id) a smaller source_line of the file has.

    Rows without a parsed id, or malformed, take no part: their id is missing or not trusted.
    Few ids repeat, and hashing or sorting every id string in Arrow is slow (100-150 ms per
    300,000 rows), so the rows are first narrowed to those whose id another row shares
    (``_shared_ids``); those are sorted by (file, id, line), and a row equal to the one before
    repeats it.
    """
    has_id = pc.and_(contiguous(pc.is_valid(table["event_id"])), pc.invert(malformed))
    rows = pc.indices_nonzero(has_id)
    shared = _shared_ids(contiguous(table["event_id"]).take(rows))
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


def _shared_ids(ids: pa.StringArray) -> pa.BooleanArray:
    """True where another element has the same id.

    UUIDs (the default format, 36 bytes each) are fingerprinted, sorted and the few repeated
    fingerprints looked up; ids of other lengths take Arrow's hash aggregation, which costs more.
    """
    lengths = np.diff(np.frombuffer(ids.buffers()[1], np.int32, len(ids) + 1, ids.offset * 4))
    if len(ids) == 0 or np.all(lengths == _UUID_LENGTH):
        return _shared(_fingerprints(ids))
    counts = pa.table({"id": ids}).group_by("id").aggregate([("id", "count")])
    repeated = counts.filter(pc.greater(counts["id_count"], 1))["id"]
    return pc.is_in(ids, value_set=repeated.combine_chunks())


def _fingerprints(uuids: pa.StringArray) -> np.ndarray:
    """A 64-bit hash of each id of 36 bytes, back to back.

    The 9 32-bit words of each id, weighted by odd factors, summed modulo 2^64: equal ids have
    equal fingerprints; distinct ids rarely do, and then only cost an exact comparison.
    """
    count = len(uuids)
    offsets = np.frombuffer(uuids.buffers()[1], np.int32, count + 1, uuids.offset * 4)
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
