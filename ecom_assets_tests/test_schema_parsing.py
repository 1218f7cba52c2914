"""Tolerant parsing of producer strings, against the real Spark Connect server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecom_assets.schema.parsing import is_blank, is_unparseable, parse, parse_field, raw_schema
from ecom_assets.schema.versions import LATEST, V1, Field

pytestmark = pytest.mark.integration

UUID = "0b3e5a8e-8f0e-4d53-9a43-3f0c7a1d2b11"

CASES: dict[str, list[tuple[str | None, object]]] = {
    "event_id": [
        (UUID, UUID),
        (f"  {UUID.upper()}\t", UUID),
        ("0b3e5a8e8f0e4d539a433f0c7a1d2b11", None),
        ("0b3e5a8e8-f0e-4d53-9a43-3f0c7a1d2b11", None),  # a dash out of place
        ("0b3e5a8e-8f0e-4d53-9a43-3f0c7a1d2b1g", None),  # not hex
        (UUID + "0", None),
        ("evt-1", None),
        ("", None),
        (None, None),
    ],
    "user_id": [
        ("5", 5),
        ("5.0", 5),
        (" 42.000 ", 42),
        ("+7", 7),
        ("-3", -3),  # parses; the validator rejects negatives
        ("5.5", None),
        ("1e3", None),
        ("abc", None),
        ("9223372036854775808", None),  # overflows BIGINT
        ("", 0),  # blank means anonymous
        ("  ", 0),
        (None, 0),
    ],
    "product_id": [("1001", 1001), ("1001.0", 1001), ("1001.5", None), ("", None)],
    "quantity": [("2", 2), ("2.0", 2), ("2.5", None), ("3000000000", None), ("", None)],
    "price": [
        ("19.99", Decimal("19.99")),
        (" 5 ", Decimal("5.00")),
        ("12.345", Decimal("12.35")),  # rounded to cents
        ("-1.5", Decimal("-1.50")),
        ("1e3", Decimal("1000.00")),
        ("abc", None),
        ("NaN", None),
        ("", None),
    ],
    "event_type": [
        (" PURCHASE ", "purchase"),
        ("Add_To_Cart", "add_to_cart"),
        ("teleport", "teleport"),  # parses; the validator rejects unknown types
        ("\t", None),
    ],
    "category": [(" Electronics ", "electronics")],
    "user_segment": [("AT_RISK", "at_risk")],
    "device_type": [(" Mobile", "mobile")],
    "browser": [(" Chrome ", "Chrome")],
    "geo_country": [(" de ", "DE")],
    "geo_city": [("  New York ", "New York"), ("", None)],
    "session_id": [(" s-1 ", "s-1")],
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


TIMESTAMPS: list[tuple[str | None, datetime | None]] = [
    ("2024-01-15T10:30:00Z", utc("2024-01-15T10:30:00")),
    ("2024-01-15T10:30:00+00:00", utc("2024-01-15T10:30:00")),
    ("2024-01-15 10:30:00+00:00", utc("2024-01-15T10:30:00")),
    ("2024-01-15T10:30:00+0000", utc("2024-01-15T10:30:00")),
    ("2024-01-15T12:30:00+02:00", utc("2024-01-15T10:30:00")),
    ("2024-01-15T05:30:00-05:00", utc("2024-01-15T10:30:00")),
    ("2024-01-15t10:30:00.5z", utc("2024-01-15T10:30:00.500000")),
    ("2024-01-15T10:30:00.123456Z", utc("2024-01-15T10:30:00.123456")),
    ("2024-01-15T10:30:00.123456789Z", utc("2024-01-15T10:30:00.123456")),
    ("2024-01-15 10:30:00", utc("2024-01-15T10:30:00")),  # no offset: UTC, not the session zone
    ("  2024-01-15T10:30:00Z\r", utc("2024-01-15T10:30:00")),
    ("2024-01-15T10:30:00.Z", None),  # an empty fraction
    ("2024-01-15T10:30:00.1234567890Z", None),  # 10 fraction digits
    ("2024-01-15T10:30:00+02", None),  # an hour-only offset
    ("2024-01-15T10:30:00+02:0", None),
    ("2024-01-15T10:30:00ZZ", None),
    ("2024-01-15T10:30", None),
    ("2024-01-15", None),
    ("2024", None),
    ("1705314600", None),
    ("15/01/2024 10:30:00", None),
    ("2024-02-30T00:00:00Z", None),
    ("2024-01-15T25:00:00Z", None),
    ("", None),
    (None, None),
]


def field(name: str) -> Field:
    return next(f for f in LATEST.fields if f.name == name)


@pytest.mark.parametrize("name", CASES)
def test_parse_field(spark: SparkSession, name: str) -> None:
    cases = CASES[name]
    raw = spark.createDataFrame([(i, text) for i, (text, _) in enumerate(cases)], "i int, s string")
    rows = raw.select("i", parse_field(F.col("s"), field(name)).alias("v")).orderBy("i").collect()
    assert [(text, row.v) for (text, _), row in zip(cases, rows, strict=True)] == cases
    assert raw.select(parse_field(F.col("s"), field(name))).schema[0].dataType == (
        field(name).spark_type
    )


@pytest.fixture
def new_york_session(spark: SparkSession) -> Iterator[None]:
    """A session time zone other than UTC, to prove naive timestamps do not depend on it."""
    before = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        yield
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)


def test_parse_timestamps(spark: SparkSession, new_york_session: None) -> None:
    raw = spark.createDataFrame(
        [(i, text) for i, (text, _) in enumerate(TIMESTAMPS)], "i int, s string"
    )
    parsed = parse_field(F.col("s"), field("event_time"))
    rows = raw.select("i", F.unix_micros(parsed).alias("us")).orderBy("i").collect()
    expected = [(text, None if when is None else micros(when)) for text, when in TIMESTAMPS]
    assert [(text, row.us) for (text, _), row in zip(TIMESTAMPS, rows, strict=True)] == expected


def test_parse_keeps_raw_strings_to_tell_missing_from_unparseable(spark: SparkSession) -> None:
    rows = [
        (UUID, "5.0", "VIEW", "1001", "", "2024-01-15T10:30:00Z", "ignored"),
        ("  ", "", "", "x", "abc", "yesterday", "ignored"),
    ]
    raw = spark.createDataFrame(rows, [*V1.column_names, "coupon"])
    parsed = parse(raw, V1, keep=["coupon"])
    assert parsed.columns == [
        *V1.column_names,
        *(f"{name}_raw" for name in V1.column_names),
        "coupon",
    ]
    flags = parsed.select(
        *(is_blank(n).alias(f"{n}_blank") for n in V1.column_names),
        *(is_unparseable(n).alias(f"{n}_bad") for n in V1.column_names),
        "user_id_raw",
        "event_type_raw",
    ).collect()
    first, second = (row.asDict() for row in flags)
    assert first["user_id_raw"] == "5.0"
    assert first["event_type_raw"] == "VIEW"
    assert [n for n in V1.column_names if first[f"{n}_blank"]] == ["price"]
    assert [n for n in V1.column_names if first[f"{n}_bad"]] == []
    assert [n for n in V1.column_names if second[f"{n}_blank"]] == [
        "event_id",
        "user_id",
        "event_type",
    ]
    # a blank user_id is anonymous (0), so it is neither missing-and-null nor unparseable
    assert [n for n in V1.column_names if second[f"{n}_bad"]] == [
        "product_id",
        "price",
        "event_time",
    ]


def test_raw_schema_names_columns_no_version_knows_by_position() -> None:
    """Drift is dropped, so its names are free: positional ones never clash with ours."""
    schema = raw_schema(["event_id", "record_raw", "_c2", "source_file", "price"])
    assert schema.names == ["event_id", "_c1", "_c2", "_c3", "price"]
    assert {field.dataType.simpleString() for field in schema.fields} == {"string"}
