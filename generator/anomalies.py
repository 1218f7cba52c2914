"""Anomaly kinds: each turns a valid event into one that breaks exactly one validation rule.

A kind names the event types of the valid row it starts from (always a registered user's, so no
rule but its own can fire) and the defect it applies; `code` is the single ErrorCode the
pipeline must report for it, as an error or a warning as the contract in force says
(`Limits`). `malformed_row` leaves one field out, so the row is one field short of its header
(an extra field could not survive: run.py cuts rows to the version's width when writing). Two
kinds copy an earlier row instead: `duplicate_event_id` repeats a row of the same file
(DUPLICATE_EVENT_ID), `replayed` repeats a row of an earlier file, which is a duplicate the
pipeline skips, not an error (code None). Kinds that need the v2 columns (category, quantity,
user_segment) have `min_width` 10 and are never used in v1 files.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ecom_assets.schema.contract import Contract, ErrorCode
from ecom_assets.settings import QualitySettings
from generator import catalog
from generator.catalog import (
    CATEGORIES,
    EVENT_TYPES,
    PRICED_EVENT_TYPES,
    USER_REQUIRED_EVENT_TYPES,
)
from generator.clock import US
from generator.model import (
    CATEGORY,
    EVENT_ID,
    EVENT_TIME,
    EVENT_TYPE,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    USER_ID,
    USER_SEGMENT,
    WIDTH,
    random_uuid,
)


@dataclass(frozen=True)
class Limits:
    """The contract's thresholds the defects must cross, and the severity of each rule (what
    the truth files expect of a code: "error", "warn" or "off"; an absent code is an error)."""

    max_price: float
    max_quantity: int
    future_tolerance_s: int
    late_watermark_s: int
    severities: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_contract(cls, contract: Contract, quality: QualitySettings) -> Limits:
        return cls(
            max_price=contract.max_price,
            max_quantity=contract.max_quantity,
            future_tolerance_s=contract.future_tolerance_s,
            late_watermark_s=quality.late_watermark_s,
            severities={code.value: severity.value for code, severity in
                        contract.severities.items()},
        )  # fmt: skip

    def severity(self, code: ErrorCode) -> str:
        return self.severities.get(code.value, "error")


@dataclass(frozen=True)
class Defect:
    """What a defect may use: randomness, thresholds, the file's time and the time format, and
    the number of fields of the file's schema version."""

    rng: random.Random
    limits: Limits
    now_us: int
    format_time: Callable[[int], str]
    width: int


@dataclass(frozen=True)
class AnomalyKind:
    name: str
    code: ErrorCode | None
    base_types: tuple[str, ...]
    """Event types of the valid row the defect is applied to; empty for copies."""
    apply: Callable[[list[str], Defect], None] | None = None
    copies: Literal["file", "history"] | None = None
    min_width: int = WIDTH["v1"]


ALL_TYPES = EVENT_TYPES
BROWSE_TYPES = ("view", "search")
PRICED_TYPES = tuple(t for t in EVENT_TYPES if t in PRICED_EVENT_TYPES)
UNPRICED_TYPES = tuple(t for t in EVENT_TYPES if t not in PRICED_EVENT_TYPES)
USER_TYPES = tuple(t for t in EVENT_TYPES if t in USER_REQUIRED_EVENT_TYPES)

INVALID_EVENT_TYPES = ("click", "checkout", "page_view", "add-to-cart", "refund")
UNKNOWN_CATEGORIES = ("furniture", "pet_supplies", "jewelry", "music", "software")
INVALID_SEGMENTS = ("vip", "gold", "churned", "platinum")
INVALID_PRICES = ("abc", "12,99", "$19.99", "N/A", "1.2.3")
INVALID_TIMES = (
    "not-a-timestamp",
    "2026-13-45T25:61:00Z",
    "yesterday",
    "2026-02-30T10:00:00+00:00",
)


def _drop_field(row: list[str], d: Defect) -> None:
    """One of the version's fields is left out: the others shift left, one short of the header."""
    del row[d.width :]
    del row[d.rng.randrange(d.width)]


def _missing(column: int) -> Callable[[list[str], Defect], None]:
    def blank(row: list[str], _: Defect) -> None:
        row[column] = ""

    return blank


def _invalid_event_id(row: list[str], d: Defect) -> None:
    form = d.rng.randrange(3)
    if form == 0:
        row[EVENT_ID] = f"evt-{d.rng.getrandbits(48):012x}"
    elif form == 1:
        row[EVENT_ID] = str(d.rng.randrange(10**9, 10**12))
    else:  # a UUID with a character that is not hex
        row[EVENT_ID] = random_uuid(d.rng.getrandbits)[:-1] + "x"


def _invalid_user_id(row: list[str], d: Defect) -> None:
    number = d.rng.randrange(1, 100_000)
    row[USER_ID] = d.rng.choice((f"-{number}", f"user_{number}", f"{number}.5", "abc"))


def _anonymous_action(row: list[str], d: Defect) -> None:
    row[USER_ID] = d.rng.choice(("0", ""))  # blank means anonymous too
    row[USER_SEGMENT] = ""


def _invalid_event_type(row: list[str], d: Defect) -> None:
    row[EVENT_TYPE] = d.rng.choice(INVALID_EVENT_TYPES)


def _without_category(row: list[str], product: str) -> None:
    """A blank category is 'not given', so no category rule can fire besides the product's."""
    row[PRODUCT_ID] = product
    row[CATEGORY] = ""


def _missing_product(row: list[str], _: Defect) -> None:
    _without_category(row, "")


def _invalid_product(row: list[str], d: Defect) -> None:
    number = d.rng.randrange(1000, 13_000)
    _without_category(row, d.rng.choice((f"sku-{number}", f"-{number}", "0", f"{number}.5")))


def _unknown_product(row: list[str], d: Defect) -> None:
    last = CATEGORIES[-1].last_product_id
    product = d.rng.choice((d.rng.randrange(1, 1000), d.rng.randrange(last + 1, 100_000)))
    _without_category(row, str(product))


def _unknown_category(row: list[str], d: Defect) -> None:
    row[CATEGORY] = d.rng.choice(UNKNOWN_CATEGORIES)


def _category_mismatch(row: list[str], d: Defect) -> None:
    others = [c.name for c in CATEGORIES if c.name != row[CATEGORY]]
    row[CATEGORY] = d.rng.choice(others)


def _invalid_price(row: list[str], d: Defect) -> None:
    row[PRICE] = d.rng.choice(INVALID_PRICES)


def _negative_price(row: list[str], d: Defect) -> None:
    row[PRICE] = f"-{d.rng.uniform(1, 500):.2f}"


def _extreme_price(row: list[str], d: Defect) -> None:
    ceiling = d.limits.max_price
    row[PRICE] = f"{ceiling + d.rng.uniform(1, 4 * ceiling + 1):.2f}"


def _zero_purchase_price(row: list[str], _: Defect) -> None:
    row[PRICE] = "0.00"


def _unexpected_price(row: list[str], _: Defect) -> None:
    row[PRICE] = catalog.PRICES[int(row[PRODUCT_ID])]


def _invalid_quantity(row: list[str], d: Defect) -> None:
    too_many = str(d.limits.max_quantity + d.rng.randrange(1, 1000))
    row[QUANTITY] = d.rng.choice(("0", "-1", "abc", "2.5", too_many))


def _unexpected_quantity(row: list[str], d: Defect) -> None:
    row[QUANTITY] = str(d.rng.randrange(1, 4))


def _invalid_time(row: list[str], d: Defect) -> None:
    row[EVENT_TIME] = d.rng.choice(INVALID_TIMES)


def _future_time(row: list[str], d: Defect) -> None:
    ahead_s = d.limits.future_tolerance_s + d.rng.uniform(3600, 6 * 3600)
    row[EVENT_TIME] = d.format_time(d.now_us + int(ahead_s * US))


def _invalid_segment(row: list[str], d: Defect) -> None:
    row[USER_SEGMENT] = d.rng.choice(INVALID_SEGMENTS)


E = ErrorCode
V2 = WIDTH["v2"]
KINDS: tuple[AnomalyKind, ...] = (
    AnomalyKind("malformed_row", E.MALFORMED_ROW, ALL_TYPES, _drop_field),
    AnomalyKind("missing_event_id", E.MISSING_EVENT_ID, ALL_TYPES, _missing(EVENT_ID)),
    AnomalyKind("invalid_event_id", E.INVALID_EVENT_ID, ALL_TYPES, _invalid_event_id),
    AnomalyKind("duplicate_event_id", E.DUPLICATE_EVENT_ID, (), copies="file"),
    AnomalyKind("invalid_user_id", E.INVALID_USER_ID, BROWSE_TYPES, _invalid_user_id),
    AnomalyKind("user_required", E.USER_REQUIRED, USER_TYPES, _anonymous_action),
    AnomalyKind("missing_event_type", E.MISSING_EVENT_TYPE, BROWSE_TYPES, _missing(EVENT_TYPE)),
    AnomalyKind("invalid_event_type", E.INVALID_EVENT_TYPE, BROWSE_TYPES, _invalid_event_type),
    # not on searches: the default contract lets a search name no product
    AnomalyKind("missing_product_id", E.MISSING_PRODUCT_ID, ("view",), _missing_product),
    AnomalyKind("invalid_product_id", E.INVALID_PRODUCT_ID, BROWSE_TYPES, _invalid_product),
    AnomalyKind("unknown_product", E.UNKNOWN_PRODUCT, BROWSE_TYPES, _unknown_product),
    AnomalyKind(
        "unknown_category", E.UNKNOWN_CATEGORY, BROWSE_TYPES, _unknown_category, min_width=V2
    ),
    AnomalyKind(
        "category_product_mismatch",
        E.CATEGORY_PRODUCT_MISMATCH,
        BROWSE_TYPES,
        _category_mismatch,
        min_width=V2,
    ),
    AnomalyKind("missing_price", E.MISSING_PRICE, PRICED_TYPES, _missing(PRICE)),
    AnomalyKind("invalid_price", E.INVALID_PRICE, PRICED_TYPES, _invalid_price),
    # not on purchases: a negative purchase price must not also read as non-positive
    AnomalyKind("negative_price", E.NEGATIVE_PRICE, ("add_to_cart",), _negative_price),
    AnomalyKind("extreme_price", E.EXTREME_PRICE, PRICED_TYPES, _extreme_price),
    AnomalyKind(
        "zero_purchase_price", E.NON_POSITIVE_PURCHASE_PRICE, ("purchase",), _zero_purchase_price
    ),
    AnomalyKind("unexpected_price", E.UNEXPECTED_PRICE, UNPRICED_TYPES, _unexpected_price),
    AnomalyKind(
        "invalid_quantity", E.INVALID_QUANTITY, PRICED_TYPES, _invalid_quantity, min_width=V2
    ),
    AnomalyKind(
        "unexpected_quantity",
        E.UNEXPECTED_QUANTITY,
        UNPRICED_TYPES,
        _unexpected_quantity,
        min_width=V2,
    ),
    AnomalyKind("missing_event_time", E.MISSING_EVENT_TIME, ALL_TYPES, _missing(EVENT_TIME)),
    AnomalyKind("invalid_event_time", E.INVALID_EVENT_TIME, ALL_TYPES, _invalid_time),
    AnomalyKind("future_event_time", E.FUTURE_EVENT_TIME, ALL_TYPES, _future_time),
    AnomalyKind(
        "invalid_user_segment", E.INVALID_USER_SEGMENT, ALL_TYPES, _invalid_segment, min_width=V2
    ),
    AnomalyKind("replayed", None, (), copies="history"),
)
KIND_BY_NAME: dict[str, AnomalyKind] = {kind.name: kind for kind in KINDS}
