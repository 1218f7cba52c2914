"""The registry of event schema versions: every column a producer may write, typed and documented.

Each version lists its columns in the order producers write them. Versions only ever add columns,
so a file of any version migrates to LATEST by filling the newer columns with each field's
documented default. Adding v4 is one new entry at the end of VERSIONS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum

import pyarrow as pa

from ecom_assets.schema.contract import ANONYMOUS_USER_ID

SCHEMA_VERSION_COLUMN = "schema_version"
"""Column added by migration: the version the row was written in."""


class Kind(StrEnum):
    """How a field's raw string is parsed (see parsing.py); fixes the parsed Arrow type."""

    EVENT_ID = "event_id"  # trimmed; its format (contract.IdFormat) is judged by validation
    TEXT = "text"  # trimmed
    CODE = "code"  # trimmed, lower-cased: enumerations compared against the contract
    COUNTRY = "country"  # trimmed, upper-cased (ISO 3166 codes)
    ID = "id"  # whole number ("5" or "5.0") as BIGINT
    COUNT = "count"  # whole number as INT
    MONEY = "money"  # decimal rounded to cents, as in the ecommerce_events table
    TIMESTAMP = "timestamp"  # ISO 8601 instant; no offset means UTC


ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.EVENT_ID: pa.string(),
    Kind.TEXT: pa.string(),
    Kind.CODE: pa.string(),
    Kind.COUNTRY: pa.string(),
    Kind.ID: pa.int64(),  # BIGINT
    Kind.COUNT: pa.int32(),  # INTEGER
    Kind.MONEY: pa.decimal128(12, 2),  # NUMERIC(12,2)
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),  # TIMESTAMPTZ
}
"""The parsed types, those of the ecommerce_events columns."""

Default = Callable[[pa.Table], pa.Array]
"""A migration default: the value per row of a parsed table whose version lacks the field."""


@dataclass(frozen=True)
class Field:
    """One column: its parse rule, whether a row needs a value, and its migration default.

    ``required`` is about values (a blank one is an error for the validator); every column of a
    version must appear in that version's header either way. ``blank_value`` is what a blank
    value parses to (None: NULL). ``default`` computes the value from the parsed row when
    migrating a file of a version that lacks the field; None means NULL (unknown).
    """

    name: str
    kind: Kind
    doc: str
    required: bool = False
    blank_value: int | None = None
    default: Default | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]


@dataclass(frozen=True)
class SchemaVersion:
    """A version's name, its columns in producer order, and what changed."""

    name: str
    fields: tuple[Field, ...] = dc_field(repr=False)
    doc: str = dc_field(repr=False)

    @functools.cached_property
    def column_names(self) -> tuple[str, ...]:
        """Computed once: header detection asks for it per column of every file."""
        return tuple(field.name for field in self.fields)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The parsed (typed) schema; every column is nullable because parsing may fail."""
        return pa.schema([pa.field(f.name, f.arrow_type) for f in self.fields])


V1 = SchemaVersion(
    "v1",
    (
        Field(
            "event_id",
            Kind.EVENT_ID,
            "Unique event id in the contract's format (a UUID by default); the idempotency key.",
            required=True,
        ),
        Field(
            "user_id",
            Kind.ID,
            f"Logged-in user id, a whole number; blank means anonymous ({ANONYMOUS_USER_ID}).",
            blank_value=ANONYMOUS_USER_ID,
        ),
        Field("event_type", Kind.CODE, "One of the contract's event types.", required=True),
        Field("product_id", Kind.ID, "Product id, a whole number > 0.", required=True),
        Field("price", Kind.MONEY, "Unit price; only the contract's priced types carry one."),
        Field(
            "event_time",
            Kind.TIMESTAMP,
            "When the event happened (UTC if no offset).",
            required=True,
        ),
    ),
    "The original click stream.",
)

V2 = SchemaVersion(
    "v2",
    (
        *V1.fields,
        Field("session_id", Kind.TEXT, "Browser session id; default NULL (unknown)."),
        Field(
            "category",
            Kind.CODE,
            "Catalogue category of the product; default NULL (derivable from product_id).",
        ),
        Field(
            "quantity",
            Kind.COUNT,
            "Units; only priced types carry one. Default NULL: enrichment makes a priced event "
            "without one a single unit (v1 events were).",
        ),
        Field("user_segment", Kind.CODE, "Marketing segment of the user; default NULL."),
    ),
    "Adds session, category, quantity and user segment.",
)

V3 = SchemaVersion(
    "v3",
    (
        *V2.fields,
        Field("device_type", Kind.CODE, "desktop, mobile, tablet...; default NULL."),
        Field("browser", Kind.TEXT, "Browser name as reported; default NULL."),
        Field("geo_country", Kind.COUNTRY, "ISO 3166 country code, upper-cased; default NULL."),
        Field("geo_city", Kind.TEXT, "City name; default NULL."),
        Field("referrer", Kind.TEXT, "Referring URL or source; default NULL."),
        Field("campaign_id", Kind.TEXT, "Marketing campaign id; default NULL."),
    ),
    "Adds device, browser, geography and attribution.",
)

VERSIONS: tuple[SchemaVersion, ...] = (V1, V2, V3)
"""Oldest first; the last one is what every file migrates to."""
LATEST: SchemaVersion = VERSIONS[-1]


def version_by_name(name: str) -> SchemaVersion:
    """The registered version called ``name``; KeyError names the known ones."""
    for version in VERSIONS:
        if version.name == name:
            return version
    raise KeyError(f"unknown schema version {name!r}; known: {[v.name for v in VERSIONS]}")
