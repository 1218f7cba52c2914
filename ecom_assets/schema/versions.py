"""The registry of event schema versions: every column a producer may write, typed and documented.

Each version lists its columns in the order producers write them. Versions only ever add columns,
so a file of any version migrates to LATEST by filling the newer columns with each field's
documented default. Adding v4 is one new entry at the end of VERSIONS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum

from pyspark.sql.types import (
    DataType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ecom_assets.schema.contract import ANONYMOUS_USER_ID, EVENT_TYPES, PRICED_EVENT_TYPES

SCHEMA_VERSION_COLUMN = "schema_version"
"""Column added by migration: the version the row was written in."""


class Kind(StrEnum):
    """How a field's raw string is parsed (see parsing.py); fixes the parsed Spark type."""

    UUID = "uuid"  # trimmed, lower-cased; NULL unless a UUID
    TEXT = "text"  # trimmed
    CODE = "code"  # trimmed, lower-cased: enumerations compared against the contract
    COUNTRY = "country"  # trimmed, upper-cased (ISO 3166 codes)
    ID = "id"  # whole number ("5" or "5.0") as BIGINT
    COUNT = "count"  # whole number as INT
    MONEY = "money"  # decimal rounded to cents, as in the ecommerce_events table
    TIMESTAMP = "timestamp"  # ISO 8601 instant; no offset means UTC


SPARK_TYPES: dict[Kind, DataType] = {
    Kind.UUID: StringType(),
    Kind.TEXT: StringType(),
    Kind.CODE: StringType(),
    Kind.COUNTRY: StringType(),
    Kind.ID: LongType(),
    Kind.COUNT: IntegerType(),
    Kind.MONEY: DecimalType(12, 2),
    Kind.TIMESTAMP: TimestampType(),
}


@dataclass(frozen=True)
class Field:
    """One column: its parse rule, whether a row needs a value, and its migration default.

    ``required`` is about values (a blank one is an error for the validator); every column of a
    version must appear in that version's header either way. ``blank_value`` is what a blank
    value parses to (None: NULL). ``default`` is a Spark SQL expression over the parsed row, used
    when migrating a file of a version that lacks the field; None means NULL (unknown).
    """

    name: str
    kind: Kind
    doc: str
    required: bool = False
    blank_value: int | None = None
    default: str | None = None

    @property
    def spark_type(self) -> DataType:
        return SPARK_TYPES[self.kind]


@dataclass(frozen=True)
class SchemaVersion:
    """A version's name, its columns in producer order, and what changed."""

    name: str
    fields: tuple[Field, ...] = dc_field(repr=False)
    doc: str = dc_field(repr=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.fields)

    @property
    def spark_schema(self) -> StructType:
        """The parsed (typed) schema; every column is nullable because parsing may fail."""
        return StructType([StructField(f.name, f.spark_type, nullable=True) for f in self.fields])


def _sql_strings(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


V1 = SchemaVersion(
    "v1",
    (
        Field(
            "event_id", Kind.UUID, "Unique event id, a UUID; the idempotency key.", required=True
        ),
        Field(
            "user_id",
            Kind.ID,
            f"Logged-in user id, a whole number; blank means anonymous ({ANONYMOUS_USER_ID}).",
            blank_value=ANONYMOUS_USER_ID,
        ),
        Field("event_type", Kind.CODE, f"One of {', '.join(EVENT_TYPES)}.", required=True),
        Field("product_id", Kind.ID, "Catalogue product id, a whole number > 0.", required=True),
        Field("price", Kind.MONEY, "Unit price; only add_to_cart and purchase carry one."),
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
            "Units; only priced types carry one. Default: 1 for priced types (v1 events were "
            "single units), NULL otherwise.",
            default=(f"CASE WHEN event_type IN ({_sql_strings(PRICED_EVENT_TYPES)}) THEN 1 END"),
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
