"""Tolerant parsing of producer strings, on Arrow arrays as the ingest tasks parse them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from ecom_assets.schema.parsing import (
    cast_or_null,
    is_blank,
    is_unparseable,
    parse,
    parse_field,
    raw_column_names,
)
from ecom_assets.schema.versions import LATEST, V1, Field

UUID = "0b3e5a8e-8f0e-4d53-9a43-3f0c7a1d2b11"

CASES: dict[str, list[tuple[str | None, object]]] = {
    "event_id": [  # trimmed only: the contract's id format is judged by validation
        (UUID, UUID),
        (f"  {UUID.upper()}\t", UUID.upper()),
        ("evt-1", "evt-1"),
        ("", None),
        (" \t", None),
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
def test_parse_field(name: str) -> None:
    cases = CASES[name]
    parsed = parse_field(pa.array([text for text, _ in cases], pa.string()), field(name))
    assert list(zip([text for text, _ in cases], parsed.to_pylist(), strict=True)) == cases
    assert parsed.type == field(name).arrow_type


def test_parse_timestamps() -> None:
    parsed = parse_field(
        pa.array([text for text, _ in TIMESTAMPS], pa.string()), field("event_time")
    )
    assert (
        list(zip([text for text, _ in TIMESTAMPS], parsed.to_pylist(), strict=True)) == TIMESTAMPS
    )


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("1.005", Decimal("1.01")),  # half away from zero, as Spark and PostgreSQL round
        ("-1.005", Decimal("-1.01")),
        ("9999999999.994", Decimal("9999999999.99")),
        ("9999999999.995", None),  # rounds to 10^10: NUMERIC(12,2) cannot hold it
        ("1e30", None),
        ("1e-400", Decimal("0.00")),
        ("Infinity", None),
    ],
)
def test_money_edges(text: str, cents: Decimal | None) -> None:
    assert parse_field(pa.array([text]), field("price")).to_pylist() == [cents]


def test_whole_number_edges() -> None:
    texts = ["9223372036854775807", "-9223372036854775808", "9223372036854775808", "007", "-0"]
    parsed = parse_field(pa.array(texts), field("user_id")).to_pylist()
    assert parsed == [9223372036854775807, -9223372036854775808, None, 7, 0]


def test_cast_or_null_nulls_only_the_values_that_do_not_convert() -> None:
    texts = pa.array(["1", "x", "3", None, "2147483648", "6", "y"] * 50)
    assert cast_or_null(texts, pa.int32()).to_pylist() == [1, None, 3, None, None, 6, None] * 50


def test_parse_keeps_raw_strings_to_tell_missing_from_unparseable() -> None:
    rows = [
        (UUID, "5.0", "VIEW", "1001", "", "2024-01-15T10:30:00Z", "ignored"),
        ("  ", "", "", "x", "abc", "yesterday", "ignored"),
    ]
    names = [*V1.column_names, "coupon"]
    raw = pa.table(
        {name: pa.array([row[i] or None for row in rows]) for i, name in enumerate(names)}
    )
    parsed = parse(raw, V1, keep=["coupon"])
    assert parsed.column_names == [
        *V1.column_names,
        *(f"{name}_raw" for name in V1.column_names),
        "coupon",
    ]
    blank = {n: is_blank(parsed, n).to_pylist() for n in V1.column_names}
    bad = {n: is_unparseable(parsed, n).to_pylist() for n in V1.column_names}
    assert parsed.column("user_id_raw").to_pylist()[0] == "5.0"
    assert parsed.column("event_type_raw").to_pylist()[0] == "VIEW"
    assert [n for n in V1.column_names if blank[n][0]] == ["price"]
    assert [n for n in V1.column_names if bad[n][0]] == []
    assert [n for n in V1.column_names if blank[n][1]] == ["event_id", "user_id", "event_type"]
    # a blank user_id is anonymous (0), so it is neither missing-and-null nor unparseable
    assert [n for n in V1.column_names if bad[n][1]] == ["product_id", "price", "event_time"]


def test_raw_column_names_name_columns_no_version_knows_by_position() -> None:
    """Drift is dropped, so its names are free: positional ones never clash with ours."""
    names = raw_column_names(["event_id", "record_raw", "_c2", "source_file", "price"])
    assert names == ["event_id", "_c1", "_c2", "_c3", "price"]
