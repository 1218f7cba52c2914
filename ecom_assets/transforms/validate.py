"""Validation: each ``contract.ErrorCode`` as one Spark expression over a migrated (LATEST) row.

Rules read the parsed columns and tell "missing" from "unparseable" with ``parsing.is_blank`` /
``is_unparseable``, so they judge what the producer wrote after normalisation (trim, case,
"5.0" ids, time offsets), never a migration default: a v1 purchase has quantity 1 by default
but no quantity to check. Every rule is evaluated on every row in one projection, plus one
window over event_id for duplicates, so a row's dead letter lists all its defects at once.
The batch also carries ``record_raw``, the text of a malformed record (schema/parsing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecom_assets.schema.contract import (
    CATEGORY_BY_NAME,
    EVENT_TYPES,
    PRICED_EVENT_TYPES,
    USER_REQUIRED_EVENT_TYPES,
    USER_SEGMENTS,
    ErrorCode,
)
from ecom_assets.schema.parsing import RECORD, is_blank, is_malformed, is_unparseable
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms.expressions import (
    is_in,
    product_category,
    utc_micros,
    with_run_values,
)

ERROR_CODES_COLUMN = "error_codes"
"""array<string>: the codes a row fails, in ErrorCode declaration order; empty when valid."""

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
        utc_micros(self.now)  # refuses a naive datetime early, not inside a Spark job

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


FUTURE_LIMIT_COLUMN = "_future_limit_us"
"""``ValidationRules.future_limit_us``, a column of the row (``with_run_values``) for the rules."""


def rule_conditions(rules: ValidationRules) -> dict[ErrorCode, Column]:
    """One boolean expression per ErrorCode (NULL counts as not failing); see validate_events.

    FUTURE_EVENT_TIME reads FUTURE_LIMIT_COLUMN, which validate_events adds.
    """
    col = F.col
    event_type = col("event_type")
    known_type = is_in(event_type, EVENT_TYPES)
    priced = is_in(event_type, PRICED_EVENT_TYPES)
    unpriced = known_type & ~priced
    user_id = col("user_id")
    product_id = col("product_id")
    owner = product_category(product_id)
    category = col("category")
    price = col("price")
    quantity = col("quantity")
    bad_quantity = is_unparseable("quantity") | (quantity < 1) | (quantity > rules.max_quantity)
    known_segment = is_in(col("user_segment"), USER_SEGMENTS)
    max_price = F.lit(Decimal(repr(float(rules.max_price))))
    malformed = is_malformed()
    # per file: a file's outcome must not depend on which other files share its batch
    event_id = F.when(~malformed, col("event_id"))  # a malformed record's id is not trusted
    by_id = Window.partitionBy(F.col("source_file"), event_id).orderBy("source_line")
    return {
        E.MALFORMED_ROW: malformed,
        E.MISSING_EVENT_ID: is_blank("event_id"),
        E.INVALID_EVENT_ID: is_unparseable("event_id"),
        E.DUPLICATE_EVENT_ID: event_id.isNotNull() & (F.row_number().over(by_id) > 1),
        E.INVALID_USER_ID: ~is_blank("user_id") & (user_id.isNull() | (user_id < 0)),
        E.USER_REQUIRED: is_in(event_type, USER_REQUIRED_EVENT_TYPES) & (user_id == 0),
        E.MISSING_EVENT_TYPE: is_blank("event_type"),
        E.INVALID_EVENT_TYPE: ~is_blank("event_type") & ~known_type,
        E.MISSING_PRODUCT_ID: is_blank("product_id"),
        E.INVALID_PRODUCT_ID: is_unparseable("product_id") | (product_id <= 0),
        E.UNKNOWN_PRODUCT: (product_id > 0) & owner.isNull(),
        E.UNKNOWN_CATEGORY: ~is_blank("category") & ~is_in(category, CATEGORY_BY_NAME),
        E.CATEGORY_PRODUCT_MISMATCH: is_in(category, CATEGORY_BY_NAME) & (owner != category),
        E.MISSING_PRICE: priced & is_blank("price"),
        E.INVALID_PRICE: is_unparseable("price"),
        E.NEGATIVE_PRICE: price < 0,
        E.EXTREME_PRICE: price > max_price,
        E.NON_POSITIVE_PURCHASE_PRICE: (event_type == "purchase") & (price == 0),
        E.UNEXPECTED_PRICE: unpriced & ~is_blank("price"),
        E.INVALID_QUANTITY: ~unpriced & ~is_blank("quantity") & bad_quantity,
        E.UNEXPECTED_QUANTITY: unpriced & ~is_blank("quantity"),
        E.MISSING_EVENT_TIME: is_blank("event_time"),
        E.INVALID_EVENT_TIME: is_unparseable("event_time"),
        E.FUTURE_EVENT_TIME: F.unix_micros(col("event_time")) > col(FUTURE_LIMIT_COLUMN),
        E.INVALID_USER_SEGMENT: ~is_blank("user_segment") & ~known_segment,
    }


def validate_events(df: DataFrame, rules: ValidationRules) -> DataFrame:
    """``df`` (migrated rows with source_file and source_line) plus ``error_codes``.

    All rules in one projection; the duplicate rule adds the only shuffle (a window over
    (source_file, event_id), first = smallest source_line). The same event in two files is a
    replay, not an error: the sink keeps the earlier file's row and counts the other as a
    duplicate, whichever batches the files land in.

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
    conditions = rule_conditions(rules)
    failed = F.col(_FAILED_COLUMN)
    codes = [F.when(failed.bitwiseAND(_bit(code)) != 0, F.lit(code.value)) for code in ErrorCode]
    malformed_only = F.array(F.lit(E.MALFORMED_ROW.value))
    error_codes = (
        F.when(failed == 0, F.array())
        .when(failed.bitwiseAND(_bit(E.MALFORMED_ROW)) != 0, malformed_only)
        .otherwise(F.array_compact(F.array(*codes)))
    )
    return (
        with_run_values(df, {FUTURE_LIMIT_COLUMN: rules.future_limit_us})
        .withColumn(_FAILED_COLUMN, _failed_bits(conditions))
        .withColumn(ERROR_CODES_COLUMN, error_codes)
        .drop(_FAILED_COLUMN, FUTURE_LIMIT_COLUMN)
    )


_FAILED_COLUMN = "_failed_rules"


def _bit(code: ErrorCode) -> int:
    return 1 << list(ErrorCode).index(code)


def _failed_bits(conditions: dict[ErrorCode, Column]) -> Column:
    """The failed rules as one integer, a bit per ErrorCode (a NULL condition does not fail).

    The rules and the array of codes are two projections: as one, Spark's generated method
    exceeded the JVM's 8,000-byte limit for JIT compilation and ran interpreted. The array is
    built only for rows that fail a rule (array_compact is a lambda, evaluated without codegen).
    """
    bits = [F.when(conditions[code], F.lit(_bit(code))).otherwise(F.lit(0)) for code in ErrorCode]
    return reduce(Column.bitwiseOR, bits)
