"""The event contract: what a valid event is, and what each rule does to a row that breaks it.

The contract is the operator's configuration (a YAML file, ``contract_file.py``; the shipped
default is ``default_contract.yaml``), not code: which event types exist and which of them need
a user, a product, a price and a quantity; which user segments are accepted; the event id's
format; and for every rule (one ``ErrorCode`` each) its severity and parameters:

- ``error``: the row goes to ``dead_letter_events`` with every error code it fails;
- ``warn``: the row is stored in ``ecommerce_events`` with the code in ``quality_warnings``,
  and counted per file and batch;
- ``off``: the rule is not applied.

Rules that guard what storage needs (an event id to key on, a parsable time, a product id, a
well-formed record...) can only be errors: a row failing them cannot be stored as an event.
Catalogue rules (products and categories) apply only when a catalogue is loaded
(``resources/catalogue.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

ANONYMOUS_USER_ID = 0
PURCHASE = "purchase"
"""The event type whose price must be positive and whose totals are revenue (the views)."""


class ErrorCode(StrEnum):
    """Stable rule codes; a row keeps every code it fails, as an error or a warning.

    Each code is one rule, so an injected anomaly maps to exactly one code.
    """

    MALFORMED_ROW = "MALFORMED_ROW"  # more or fewer fields than its header; no other code then
    MISSING_EVENT_ID = "MISSING_EVENT_ID"  # blank event_id
    INVALID_EVENT_ID = "INVALID_EVENT_ID"  # not of the contract's id format
    DUPLICATE_EVENT_ID = "DUPLICATE_EVENT_ID"  # second and later rows of one id within a file
    INVALID_USER_ID = "INVALID_USER_ID"  # not a whole number >= 0 (blank means anonymous, 0)
    USER_REQUIRED = "USER_REQUIRED"  # a type that needs a user, by an anonymous visitor
    MISSING_EVENT_TYPE = "MISSING_EVENT_TYPE"  # blank event_type
    INVALID_EVENT_TYPE = "INVALID_EVENT_TYPE"  # not a declared type after trim + lower-case
    MISSING_PRODUCT_ID = "MISSING_PRODUCT_ID"  # blank product_id on a type that needs one
    INVALID_PRODUCT_ID = "INVALID_PRODUCT_ID"  # not a whole number > 0
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"  # product id not in the loaded catalogue
    UNKNOWN_CATEGORY = "UNKNOWN_CATEGORY"  # category given but not in the loaded catalogue
    CATEGORY_PRODUCT_MISMATCH = "CATEGORY_PRODUCT_MISMATCH"  # the catalogue says another one
    MISSING_PRICE = "MISSING_PRICE"  # priced type without a price
    INVALID_PRICE = "INVALID_PRICE"  # price that is not a number
    NEGATIVE_PRICE = "NEGATIVE_PRICE"  # price < 0
    EXTREME_PRICE = "EXTREME_PRICE"  # price > the rule's max_price
    NON_POSITIVE_PURCHASE_PRICE = "NON_POSITIVE_PURCHASE_PRICE"  # purchase with price exactly 0
    UNEXPECTED_PRICE = "UNEXPECTED_PRICE"  # non-zero price on a type that carries none
    INVALID_QUANTITY = "INVALID_QUANTITY"  # not a whole number in 1..max_quantity
    UNEXPECTED_QUANTITY = "UNEXPECTED_QUANTITY"  # non-zero quantity on a type that carries none
    MISSING_EVENT_TIME = "MISSING_EVENT_TIME"  # blank event_time
    INVALID_EVENT_TIME = "INVALID_EVENT_TIME"  # unparseable timestamp
    FUTURE_EVENT_TIME = "FUTURE_EVENT_TIME"  # later than now + the rule's tolerance_s
    INVALID_USER_SEGMENT = "INVALID_USER_SEGMENT"  # segment given but not an accepted one
    # What PostgreSQL would refuse (STORAGE_LIMITS): the row would fail its whole batch.
    EVENT_TIME_OUT_OF_RANGE = "EVENT_TIME_OUT_OF_RANGE"  # in UTC, not within years 1..9999
    TOTAL_AMOUNT_OVERFLOW = "TOTAL_AMOUNT_OVERFLOW"  # price x quantity too large for its column
    VALUE_TOO_LONG = "VALUE_TOO_LONG"  # event_type, category or segment too long to index


class Severity(StrEnum):
    ERROR = "error"
    WARN = "warn"
    OFF = "off"


class IdFormat(StrEnum):
    """How event ids are written; each is normalised before ids are compared."""

    UUID = "uuid"  # 8-4-4-4-12 hex, compared lower-cased; stored as is
    ULID = "ulid"  # 26 Crockford base-32 characters, compared upper-cased
    TEXT = "text"  # any text without whitespace or control characters, compared exactly


ID_PATTERNS: dict[IdFormat, str] = {
    IdFormat.UUID: r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    IdFormat.ULID: r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$",
    IdFormat.TEXT: r"^[^\x00-\x20\x7f]+$",
}
"""What a normalised id of each format matches (UUID lower-cased, ULID upper-cased)."""
MAX_TEXT_ID_LENGTH = 256

STORAGE_RULES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.MALFORMED_ROW,
        ErrorCode.MISSING_EVENT_ID,
        ErrorCode.INVALID_EVENT_ID,
        ErrorCode.DUPLICATE_EVENT_ID,
        ErrorCode.INVALID_USER_ID,
        ErrorCode.MISSING_EVENT_TYPE,
        ErrorCode.INVALID_PRODUCT_ID,
        ErrorCode.MISSING_EVENT_TIME,
        ErrorCode.INVALID_EVENT_TIME,
        ErrorCode.EVENT_TIME_OUT_OF_RANGE,
        ErrorCode.TOTAL_AMOUNT_OVERFLOW,
        ErrorCode.VALUE_TOO_LONG,
    }
)
"""Rules that are always errors: a row failing one has no key, time, user or product id that
storage could hold, a value PostgreSQL would refuse (one such row would fail its whole batch's
COPY or commit on every retry), or (malformed) no trustworthy fields at all."""

REFUSED_VALUE_RULES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.EVENT_TIME_OUT_OF_RANGE, ErrorCode.TOTAL_AMOUNT_OVERFLOW, ErrorCode.VALUE_TOO_LONG}
)
"""The storage rules that guard PostgreSQL's limits (STORAGE_LIMITS); the generator injects
no such values (ecom_assets_tests/test_refused_values.py writes them)."""

CATALOGUE_RULES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.UNKNOWN_PRODUCT, ErrorCode.UNKNOWN_CATEGORY, ErrorCode.CATEGORY_PRODUCT_MISMATCH}
)
"""Rules judged against the loaded catalogue; without one they do not apply."""


@dataclass(frozen=True)
class StorageLimits:
    """What ecommerce_events can hold (sql/001_tables.sql, 005, 006), as the rules check it.

    PostgreSQL refuses a value beyond these in the COPY into staging or in the commit, and a
    refused value fails the whole batch, on every retry: the rules dead-letter such a row
    instead (EVENT_TIME_OUT_OF_RANGE, TOTAL_AMOUNT_OVERFLOW, VALUE_TOO_LONG), and a contract
    whose bounds could produce one is refused when it is loaded.
    """

    first_year: int = 1
    """TIMESTAMPTZ has no year 0 (Arrow has: ISO 8601's 0000 is 1 BC) and no negative ISO year."""
    last_year: int = 9999
    """TIMESTAMPTZ goes on to 294276, but no client reads a year past 9999 back (Python's
    datetime, psycopg, JDBC's default formats fail): an event there is unusable."""
    price_digits: int = 12
    """price NUMERIC(12,2): below 10^10."""
    total_digits: int = 14
    """total_amount NUMERIC(14,2) = price x quantity: below 10^12."""
    scale: int = 2
    quantity_max: int = 2**31 - 1
    """quantity INTEGER."""
    indexed_text_bytes: int = 1024
    """Bytes (UTF-8, as stored: trimmed, lower-cased) of event_type, category and user_segment.
    B-tree index entries hold at most 2704 bytes: (category, event_type) in
    ecommerce_events_category_idx, and each alone in the analytics views' unique keys."""

    @property
    def price_limit(self) -> int:
        """Prices must be below this."""
        return 10 ** (self.price_digits - self.scale)

    @property
    def total_limit(self) -> int:
        """Totals must be below this."""
        return 10 ** (self.total_digits - self.scale)


STORAGE_LIMITS = StorageLimits()
INDEXED_TEXT_FIELDS = ("event_type", "category", "user_segment")
"""The fields VALUE_TOO_LONG judges: stored in b-tree indexes."""


@dataclass(frozen=True)
class Parameter:
    """A rule's numeric parameter: its type, default and accepted range."""

    name: str
    kind: type[int] | type[float]
    default: float
    minimum: float
    maximum: float
    doc: str


RULE_PARAMETERS: dict[ErrorCode, tuple[Parameter, ...]] = {
    ErrorCode.EXTREME_PRICE: (
        Parameter("max_price", float, 10_000.0, 0.01, 1e9, "prices above this are extreme"),
    ),
    ErrorCode.INVALID_QUANTITY: (
        Parameter("max_quantity", int, 100, 1, 1_000_000, "quantities above this are invalid"),
    ),
    ErrorCode.FUTURE_EVENT_TIME: (
        Parameter("tolerance_s", int, 300, 0, 86_400, "clock skew allowed into the future"),
    ),
}


@dataclass(frozen=True)
class EventType:
    """A declared event type and what its rows must or may carry."""

    name: str
    user_required: bool
    """Anonymous visitors (user_id 0 or blank) may not do it (USER_REQUIRED)."""
    product_required: bool
    """A blank product_id is MISSING_PRODUCT_ID (a search may have none)."""
    priced: bool
    """It carries price and quantity (MISSING_PRICE, INVALID_QUANTITY); other types carry none
    (a non-zero one is UNEXPECTED_PRICE / UNEXPECTED_QUANTITY)."""


@dataclass(frozen=True)
class Contract:
    """A validated contract: build it with ``contract_file.load_contract``.

    Immutable and small, so it is pickled into every Spark task with the rules' clock.
    """

    event_types: tuple[EventType, ...]
    user_segments: frozenset[str] | None
    """Accepted segments (lower-case); None accepts any."""
    id_format: IdFormat
    severities: dict[ErrorCode, Severity]
    parameters: dict[ErrorCode, dict[str, float]]
    source: str = "default"
    """Where it was read from, for logs and the UI."""

    def severity(self, code: ErrorCode) -> Severity:
        return self.severities[code]

    def codes(self, severity: Severity) -> tuple[ErrorCode, ...]:
        """The codes of one severity, in ErrorCode order."""
        return tuple(code for code in ErrorCode if self.severities[code] is severity)

    def parameter(self, code: ErrorCode, name: str) -> float:
        return self.parameters[code][name]

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.event_types)

    def types_where(self, attribute: str) -> tuple[str, ...]:
        """Names of the types whose ``attribute`` (user_required, priced...) is true."""
        return tuple(t.name for t in self.event_types if getattr(t, attribute))

    @property
    def max_price(self) -> float:
        return float(self.parameter(ErrorCode.EXTREME_PRICE, "max_price"))

    @property
    def max_quantity(self) -> int:
        return int(self.parameter(ErrorCode.INVALID_QUANTITY, "max_quantity"))

    @property
    def future_tolerance_s(self) -> int:
        return int(self.parameter(ErrorCode.FUTURE_EVENT_TIME, "tolerance_s"))


def with_severities(contract: Contract, **severities: Severity | str) -> Contract:
    """``contract`` with some rules' severities changed (tests and demos)."""
    changed = dict(contract.severities)
    for code, severity in severities.items():
        changed[ErrorCode(code)] = Severity(severity)
    return replace(contract, severities=changed)
