"""enrich_events: category fill, quantity default, exact totals, late-flag boundaries, UTC date
parts and processed_at; one Arrow batch of v1, v2 and v3 rows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from ecom_assets.schema.contract import IdFormat
from ecom_assets.transforms.enrich import EVENT_KEY_NAMESPACE, enrich_events
from ecom_assets.transforms.validate import ValidationRules, validate_events
from ecom_assets_tests.test_transforms_support import (
    CATALOGUE,
    DEFAULT_CONTRACT,
    STRICT_CONTRACT,
    event,
    latest_batch,
    view,
)

WATERMARK_S = 600
PROCESSED = datetime(2024, 6, 1, 11, 30, tzinfo=UTC)
# arrived_at is 11:00:00Z, so events before 10:50:00Z are late
CASES: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "purchase_on_watermark": (
        "v3",
        event(1, price="19.99", quantity="3", event_time="2024-06-01T10:50:00Z"),
        dict(category="electronics", quantity=3, total_amount=Decimal("59.97"), is_late=False,
             event_date=date(2024, 6, 1), event_hour=10),
    ),
    "cart_default_quantity_just_late": (
        "v3",
        event(2, event_type="add_to_cart", price="0.10", quantity="",
              event_time="2024-06-01T10:49:59.999999Z"),
        dict(category="electronics", quantity=1, total_amount=Decimal("0.10"), is_late=True,
             event_date=date(2024, 6, 1), event_hour=10),
    ),
    "view_offset_to_utc": (
        "v3",
        view(3, event_time="2024-06-01T23:59:59+02:00"),
        dict(category="electronics", quantity=None, total_amount=None, is_late=False,
             event_date=date(2024, 6, 1), event_hour=21),
    ),
    "search_previous_local_day": (
        "v3",
        view(4, event_type="search", event_time="2024-05-31T23:30:00-01:00"),
        dict(category="electronics", quantity=None, total_amount=None, is_late=True,
             event_date=date(2024, 6, 1), event_hour=0),
    ),
    "big_total": (
        "v3",
        event(5, price="1299.99", quantity="100"),
        dict(category="electronics", quantity=100, total_amount=Decimal("129999.00"),
             is_late=True, event_date=date(2024, 6, 1), event_hour=10),
    ),
    "given_category_kept": (
        "v3",
        view(6, category="books"),
        dict(category="books", quantity=None, total_amount=None, is_late=True,
             event_date=date(2024, 6, 1), event_hour=10),
    ),
    "blank_category_filled": (
        "v3",
        view(7, product_id="4500", category=""),
        dict(category="home_kitchen", quantity=None, total_amount=None, is_late=True,
             event_date=date(2024, 6, 1), event_hour=10),
    ),
    "invalid_row_does_not_fail": (
        "v3",
        event(8, price="9999999999.99", quantity="2147483647", event_time=""),
        dict(category="electronics", quantity=2147483647, total_amount=None, is_late=False,
             event_date=None, event_hour=None),
    ),
    "v1_purchase": (
        "v1",
        event(9, product_id="8001", price="12.50", event_time="2024-06-01T00:00:00Z"),
        dict(category="books", quantity=1, total_amount=Decimal("12.50"), is_late=True,
             event_date=date(2024, 6, 1), event_hour=0),
    ),
    "v1_unknown_product": (
        "v1",
        view(10, product_id="13000", event_time="2024-05-31T23:59:59.999999Z"),
        dict(category=None, quantity=None, total_amount=None, is_late=True,
             event_date=date(2024, 5, 31), event_hour=23),
    ),
    "v2_wishlist": (
        "v2",
        view(11, event_type="wishlist", category="", product_id="12999",
             event_time="2024-06-01T11:10:00Z"),
        dict(category="automotive", quantity=None, total_amount=None, is_late=False,
             event_date=date(2024, 6, 1), event_hour=11),
    ),
    "v2_purchase_rounding": (
        "v2",
        event(12, price="0.5", quantity="2.0", event_time="2024-06-01T10:55:00Z"),
        dict(category="electronics", quantity=2, total_amount=Decimal("1.00"), is_late=False,
             event_date=date(2024, 6, 1), event_hour=10),
    ),
}  # fmt: skip
DERIVED = ("event_key", "total_amount", "event_date", "event_hour", "is_late", "processed_at")


@pytest.fixture(scope="module")
def enriched() -> tuple[list[str], dict[str, Any], dict[str, dict[str, Any]]]:
    """(columns, types, row by case name) of the enriched batch."""
    files: dict[str, tuple[str, list[dict[str, str]]]] = {}
    names: dict[tuple[str, int], str] = {}
    for name, (version, record, _) in CASES.items():
        file = f"enrich_{version}.csv"
        records = files.setdefault(file, (version, []))[1]
        records.append(record)
        names[(file, len(records))] = name
    table = enrich_events(latest_batch(files), rules_at(PROCESSED), WATERMARK_S)
    columns = [*CASES["purchase_on_watermark"][2], "processed_us"]
    rows = (
        table.select(["source_file", "source_line", *CASES["purchase_on_watermark"][2]])
        .append_column("processed_us", table.column("processed_at").cast(pa.int64()))
        .to_pylist()
    )
    types = {field.name: field.type for field in table.schema}
    by_name = {
        names[(r["source_file"], r["source_line"])]: {c: r[c] for c in columns} for r in rows
    }
    return table.column_names, types, by_name


@pytest.mark.parametrize("name", list(CASES))
def test_enriched_values(enriched: tuple[Any, Any, dict[str, dict[str, Any]]], name: str) -> None:
    expected = {**CASES[name][2], "processed_us": int(PROCESSED.timestamp()) * 1_000_000}
    assert enriched[2][name] == expected


def test_enriched_columns_and_types(enriched: tuple[list[str], dict[str, Any], Any]) -> None:
    columns, types, _ = enriched
    assert columns[-len(DERIVED) :] == list(DERIVED)
    assert columns.index("category") == 7 and columns.index("quantity") == 8  # replaced in place
    assert types["total_amount"] == pa.decimal128(14, 2)
    assert types["event_date"] == pa.date32()
    assert types["event_hour"] == pa.int32()
    assert types["is_late"] == pa.bool_()
    assert types["processed_at"] == pa.timestamp("us", tz="UTC")
    assert types["quantity"] == pa.int32()


def test_naive_processed_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rules_at(datetime(2024, 6, 1))


def rules_at(now: datetime) -> ValidationRules:
    """The strict rules over the demo catalogue, at ``now`` (processed_at)."""
    return ValidationRules(now, STRICT_CONTRACT, CATALOGUE)


def test_without_a_catalogue_a_missing_category_stays_unknown() -> None:
    table = latest_batch({"a.csv": ("v1", [view(1, product_id="4500")])})
    rules = ValidationRules(PROCESSED, DEFAULT_CONTRACT)
    assert enrich_events(table, rules, WATERMARK_S).column("category").to_pylist() == [None]


def test_ids_of_another_format_are_keyed_by_their_name_based_uuid() -> None:
    ids = ["01J9Z3Q4V5W6X7Y8Z9A0B1C2D3", "01j9z3q4v5w6x7y8z9a0b1c2d4"]
    table = latest_batch({"a.csv": ("v3", [event(1, event_id=ids[0]), event(2, event_id=ids[1])])})
    contract = replace(DEFAULT_CONTRACT, id_format=IdFormat.ULID)
    rules = ValidationRules(PROCESSED, contract)
    enriched = enrich_events(validate_events(table, rules), rules, WATERMARK_S)
    keys = [ids[0], ids[1].upper()]  # ULIDs compare upper-cased
    assert enriched.column("event_key").to_pylist() == keys
    assert enriched.column("event_id").to_pylist() == [
        str(uuid.uuid3(EVENT_KEY_NAMESPACE, key)) for key in keys
    ]
    # the default (UUID) format keeps the id and leaves event_key NULL
    rules = ValidationRules(PROCESSED, DEFAULT_CONTRACT)
    plain = latest_batch({"b.csv": ("v3", [event(3)])})
    enriched = enrich_events(validate_events(plain, rules), rules, WATERMARK_S)
    assert enriched.column("event_key").to_pylist() == [None]
    assert enriched.column("event_id").to_pylist() == [event(3)["event_id"]]
