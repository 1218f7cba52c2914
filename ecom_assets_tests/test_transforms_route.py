"""route.routed over one validated, enriched Arrow batch of v1, v2 and v3 files, split and
counted by arrow_routing as a staging task does: exact columns, types, values, error details,
raw records (as Spark's to_json wrote them) and per-file counts."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ecom_assets.schema.contract import with_severities
from ecom_assets.schema.versions import V1, V3
from ecom_assets.transforms.arrow_routing import (
    FileCounts,
    add_counts,
    count_by_file,
    dead_letter_rows,
    event_rows,
    route_batches,
)
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import (
    DEAD_LETTER_COLUMNS,
    DEAD_LETTER_EVENT_ID,
    EVENT_COLUMNS,
    ROUTED_COLUMNS,
    nul_escapes_replaced,
    raw_record,
    routed,
)
from ecom_assets.transforms.validate import ValidationRules, validate_events
from ecom_assets_tests.test_transforms_support import (
    CATALOGUE,
    RULES,
    STRICT_CONTRACT,
    event,
    latest_batch,
    uid,
    view,
)

ROOT = Path(__file__).resolve().parents[1]
PROCESSED = datetime(2024, 6, 1, 11, 30, tzinfo=UTC)
WATERMARK_S = 600  # arrived 11:00:00Z: events before 10:50:00Z are late
DEAD_LETTER_FIELDS = (DEAD_LETTER_EVENT_ID, "error_detail", "raw_record")

R1 = [  # v1
    event(1),  # valid, late
    event(2, event_id=f" {uid(2).upper()} ", event_type="add_to_cart", price="-5.00"),
    event(3, event_id="", user_id=""),
]
R2 = [  # v2, all valid and on time
    view(21, event_time="2024-06-01T10:55:00Z"),
    event(22, event_type="add_to_cart", quantity="", event_time="2024-06-01T10:56:00Z"),
]
R3 = [  # v3
    view(31, event_time="2024-06-01T10:55:00Z", referrer=""),  # valid, on time
    event(32, event_time="2024-06-01 10:00:00+00:00"),  # valid, late
    view(33, price="19.99", user_segment="vip", referrer=""),  # invalid (and late)
    event(34, event_id=uid(31)),  # duplicate of line 1 of the same file
]
R4_TEXT = f"{uid(41)},42,purchase,1001,2024-06-01T10:00:00Z"  # v1, one field short
R4 = [  # v1, malformed: the fields as Spark splits them, and the text as written
    event(41, price="2024-06-01T10:00:00Z", event_time="", record=R4_TEXT),
]


@pytest.fixture(scope="module")
def enriched() -> pa.Table:
    batch = latest_batch(
        {"r1.csv": ("v1", R1), "r2.csv": ("v2", R2), "r3.csv": ("v3", R3), "r4.csv": ("v1", R4)}
    )
    rules = replace(RULES, now=PROCESSED)
    return enrich_events(validate_events(batch, rules), rules, WATERMARK_S)


@pytest.fixture(scope="module")
def batch(enriched: pa.Table) -> pa.RecordBatch:
    """The routed rows as one Arrow batch, as a staging task receives them."""
    return routed(enriched).combine_chunks().to_batches()[0]


def by_line(rows: pa.RecordBatch) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["source_file"], r["source_line"]): r for r in rows.to_pylist()}


def table_columns(table: str) -> list[str]:
    """Column names of a CREATE TABLE in sql/001_tables.sql, in order, then those later
    migrations add to it."""
    text = (ROOT / "sql" / "001_tables.sql").read_text(encoding="utf-8")
    body = text.split(f"CREATE TABLE IF NOT EXISTS {table} (", 1)[1].split("CONSTRAINT", 1)[0]
    columns = re.findall(r"^\s+([a-z_]+)\s+[A-Z]", body, flags=re.MULTILINE)
    for path in sorted((ROOT / "sql").glob("0*.sql"))[1:]:
        for alter in re.findall(rf"ALTER TABLE {table}\b(.*?);", path.read_text(), re.DOTALL):
            columns += re.findall(r"ADD COLUMN IF NOT EXISTS ([a-z_]+)", alter)
    return columns


def test_event_columns_are_the_table_columns() -> None:
    assert list(EVENT_COLUMNS) == table_columns("ecommerce_events")


def test_routed_columns_and_types(enriched: pa.Table) -> None:
    table = routed(enriched)
    assert table.column_names == list(ROUTED_COLUMNS)
    types = {f.name: f.type for f in table.schema}
    assert [types[c] for c in ("user_id", "product_id", "price", "quantity")] == [
        pa.int64(),
        pa.int64(),
        pa.decimal128(12, 2),
        pa.int32(),
    ]
    assert [types[c] for c in ("total_amount", "event_time", "event_date", "event_hour")] == [
        pa.decimal128(14, 2),
        pa.timestamp("us", tz="UTC"),
        pa.date32(),
        pa.int32(),
    ]
    assert [types[c] for c in ("is_late", "source_line", "processed_at")] == [
        pa.bool_(),
        pa.int32(),
        pa.timestamp("us", tz="UTC"),
    ]
    codes_type = types["error_codes"]
    assert pa.types.is_list(codes_type) and codes_type.value_type == pa.string()
    assert [types[c] for c in DEAD_LETTER_FIELDS] == [pa.string()] * 3


def test_dead_letter_fields_only_on_invalid_rows(enriched: pa.Table) -> None:
    table = routed(enriched)
    fields = table.select(list(DEAD_LETTER_FIELDS)).to_pylist()
    invalid = [bool(codes) for codes in table.column("error_codes").to_pylist()]
    assert [any(row.values()) for row in fields] == invalid and sum(invalid) == 5
    # a batch without invalid rows builds none
    valid = routed(enriched.filter(pc.invert(pa.array(invalid))))
    assert valid.num_rows == 5 and valid.schema == table.schema
    assert all(valid.column(name).null_count == 5 for name in DEAD_LETTER_FIELDS)


def test_event_rows(batch: pa.RecordBatch) -> None:
    valid = event_rows(batch)
    assert valid.schema.names == list(EVENT_COLUMNS)
    rows = by_line(valid)
    assert sorted(rows) == [
        ("r1.csv", 1),
        ("r2.csv", 1),
        ("r2.csv", 2),
        ("r3.csv", 1),
        ("r3.csv", 2),
    ]
    assert rows[("r1.csv", 1)] == {
        "event_id": uid(1),
        "user_id": 42,
        "event_type": "purchase",
        "product_id": 1001,
        "category": "electronics",
        "price": Decimal("19.99"),
        "quantity": 1,
        "total_amount": Decimal("19.99"),
        "event_time": datetime(2024, 6, 1, 10, tzinfo=UTC),
        "event_date": date(2024, 6, 1),
        "event_hour": 10,
        "session_id": None,
        "user_segment": None,
        "device_type": None,
        "browser": None,
        "geo_country": None,
        "geo_city": None,
        "referrer": None,
        "campaign_id": None,
        "is_late": True,
        "schema_version": "v1",
        "source_file": "r1.csv",
        "source_line": 1,
        "processed_at": PROCESSED,
        "event_key": None,
        "quality_warnings": None,
        "extras": None,
    }
    late = {
        key: (row["is_late"], row["quantity"], row["total_amount"]) for key, row in rows.items()
    }
    assert late == {
        ("r1.csv", 1): (True, 1, Decimal("19.99")),
        ("r2.csv", 1): (False, None, None),
        ("r2.csv", 2): (False, 1, Decimal("19.99")),
        ("r3.csv", 1): (False, None, None),
        ("r3.csv", 2): (True, 3, Decimal("59.97")),
    }
    assert rows[("r3.csv", 1)]["geo_country"] == "DE"


def test_dead_letter_rows(batch: pa.RecordBatch) -> None:
    dead = dead_letter_rows(batch)
    assert dead.schema.names == list(DEAD_LETTER_COLUMNS)
    rows = by_line(dead)
    texts = {key: row.pop("raw_record") for key, row in rows.items()}
    records = {key: json.loads(text) for key, text in texts.items()}
    assert rows == {
        ("r1.csv", 2): {
            "source_file": "r1.csv",
            "source_line": 2,
            "event_id": uid(2).upper(),
            "error_codes": "{NEGATIVE_PRICE}",  # a PostgreSQL array literal
            "error_detail": "NEGATIVE_PRICE: price='-5.00'",
            "schema_version": "v1",
        },
        ("r1.csv", 3): {
            "source_file": "r1.csv",
            "source_line": 3,
            "event_id": None,
            "error_codes": "{MISSING_EVENT_ID,USER_REQUIRED}",
            "error_detail": "MISSING_EVENT_ID: event_id=NULL; "
            "USER_REQUIRED: event_type='purchase', user_id=NULL",
            "schema_version": "v1",
        },
        ("r3.csv", 3): {
            "source_file": "r3.csv",
            "source_line": 3,
            "event_id": uid(33),
            "error_codes": "{UNEXPECTED_PRICE,INVALID_USER_SEGMENT}",
            "error_detail": "UNEXPECTED_PRICE: event_type='view', price='19.99'; "
            "INVALID_USER_SEGMENT: user_segment='vip'",
            "schema_version": "v3",
        },
        ("r3.csv", 4): {
            "source_file": "r3.csv",
            "source_line": 4,
            "event_id": uid(31),
            "error_codes": "{DUPLICATE_EVENT_ID}",
            "error_detail": f"DUPLICATE_EVENT_ID: event_id='{uid(31)}'",
            "schema_version": "v3",
        },
        ("r4.csv", 1): {
            "source_file": "r4.csv",
            "source_line": 1,
            "event_id": uid(41),
            "error_codes": "{MALFORMED_ROW}",
            "error_detail": f"MALFORMED_ROW: record='{R4_TEXT}'",
            "schema_version": "v1",
        },
    }
    # the producer's field names and raw text, only the version's fields, blanks as null
    v1_line2 = {name: R1[1][name] for name in V1.column_names}
    assert records[("r1.csv", 2)] == v1_line2
    assert list(records[("r1.csv", 2)]) == list(V1.column_names)
    assert records[("r1.csv", 3)] == {name: R1[2][name] or None for name in V1.column_names}
    assert records[("r1.csv", 3)]["event_id"] is None
    expected_v3 = {name: R3[2][name] or None for name in V3.column_names}
    assert records[("r3.csv", 3)] == expected_v3
    assert list(records[("r3.csv", 3)]) == list(V3.column_names)
    assert records[("r3.csv", 3)]["quantity"] is None and records[("r3.csv", 3)]["price"] == "19.99"
    # a malformed row adds its text as written to the fields as split
    v1_as_split = {name: R4[0][name] or None for name in V1.column_names}
    assert records[("r4.csv", 1)] == {**v1_as_split, "record": R4_TEXT}
    assert list(records[("r4.csv", 1)]) == [*V1.column_names, "record"]
    # the text itself, as Spark's to_json(struct, ignoreNullFields=false) wrote it
    assert texts[("r1.csv", 3)] == (
        '{"event_id":null,"user_id":null,"event_type":"purchase","product_id":"1001",'
        '"price":"19.99","event_time":"2024-06-01T10:00:00Z"}'
    )
    assert texts[("r4.csv", 1)] == (
        f'{{"event_id":"{uid(41)}","user_id":"42","event_type":"purchase","product_id":"1001",'
        f'"price":"2024-06-01T10:00:00Z","event_time":null,"record":"{R4_TEXT}"}}'
    )


def test_raw_record_escapes_as_spark_did() -> None:
    """Spark (Jackson) escaped quote, backslash and control characters only, the latter with
    upper-case hex; Python's json.dumps differs (lower-case hex). Expected text from Spark 4."""
    text = "a\"b\\c\b\t\n\f\r\x00\x01\x1f\x7f é\u2028😀/<'"
    escaped = '"a\\"b\\\\c\\b\\t\\n\\f\\r\\u0000\\u0001\\u001F\x7f é\u2028😀/<\'"'
    rows = latest_batch({"e.csv": ("v1", [event(1, event_type=text, price="", record=text)])})
    assert raw_record(rows).to_pylist() == [
        f'{{"event_id":"{uid(1)}","user_id":"42","event_type":{escaped},"product_id":"1001",'
        f'"price":null,"event_time":"2024-06-01T10:00:00Z","record":{escaped}}}'
    ]


EXPECTED_COUNTS = {
    "r1.csv": FileCounts(
        rows_read=3,
        rows_valid=1,
        rows_late=1,
        error_counts={"MISSING_EVENT_ID": 1, "USER_REQUIRED": 1, "NEGATIVE_PRICE": 1},
    ),
    "r2.csv": FileCounts(rows_read=2, rows_valid=2, rows_late=0),
    "r3.csv": FileCounts(
        rows_read=4,
        rows_valid=2,
        rows_late=1,  # the late invalid row (line 3) is not counted
        error_counts={"DUPLICATE_EVENT_ID": 1, "UNEXPECTED_PRICE": 1, "INVALID_USER_SEGMENT": 1},
    ),
    "r4.csv": FileCounts(rows_read=1, rows_valid=0, rows_late=0, error_counts={"MALFORMED_ROW": 1}),
}


def test_count_by_file(batch: pa.RecordBatch) -> None:
    counts = count_by_file(batch)
    assert counts == EXPECTED_COUNTS
    assert counts["r1.csv"].rows_invalid == 2
    assert {name: FileCounts.from_json(c.to_json()) for name, c in counts.items()} == counts


def test_counts_of_a_file_spread_over_batches_add_up(batch: pa.RecordBatch) -> None:
    """After the duplicate rule's shuffle a file's rows reach several tasks and batches."""
    counts: dict[str, FileCounts] = {}
    for row in range(batch.num_rows):
        add_counts(counts, count_by_file(batch.slice(row, 1)))
    assert counts == EXPECTED_COUNTS


def test_route_batches_writes_each_side_as_csv_and_counts(batch: pa.RecordBatch) -> None:
    events: list[bytes] = []
    dead: list[bytes] = []
    empty = batch.slice(0, 0)
    counts = route_batches([batch.slice(0, 4), empty, batch.slice(4)], events.append, dead.append)
    assert counts == EXPECTED_COUNTS
    assert len(events) == len(dead) == 2  # the empty batch writes nothing
    event_lines = b"".join(events).decode().splitlines()
    dead_lines = b"".join(dead).decode().splitlines()
    assert len(event_lines) == 5 and len(dead_lines) == 5
    assert sum(line.startswith(f'"{uid(1)}",42,"purchase"') for line in event_lines) == 1
    assert sum('"{MISSING_EVENT_ID,USER_REQUIRED}"' in line for line in dead_lines) == 1


# test_routed_rows_counted_routes_every_row_through_spark: left for the lead, whose Spark side
# (transforms/file_rows.py, ingest_batch.py) replaces arrow_routing.routed_rows_counted, which
# it ran through mapInArrow.


def test_warnings_are_an_array_literal_on_stored_rows_and_extras_reach_the_raw_record() -> None:
    """A warn rule keeps the row, its code written as PostgreSQL reads a text[]; a dead letter's
    raw record carries the file's unknown columns, so a replay writes them back."""
    contract = with_severities(
        STRICT_CONTRACT, UNEXPECTED_PRICE="warn", INVALID_USER_SEGMENT="warn"
    )
    rules = ValidationRules(PROCESSED, contract, CATALOGUE)
    table = latest_batch(
        {"w.csv": ("v3", [view(1, price="5", user_segment="vip"), view(2), view(3, event_id="")])}
    )
    extras = pa.array(['{"page":"/a"}', None, '{"page":"/c\\"q\\""}'], pa.string())
    table = table.set_column(table.schema.get_field_index("extras"), "extras", extras)
    batch = routed(enrich_events(validate_events(table, rules), rules, WATERMARK_S))
    batch = batch.combine_chunks().to_batches()[0]
    stored = by_line(event_rows(batch))
    assert stored[("w.csv", 1)]["quality_warnings"] == "{UNEXPECTED_PRICE,INVALID_USER_SEGMENT}"
    assert stored[("w.csv", 1)]["extras"] == '{"page":"/a"}'
    assert stored[("w.csv", 2)]["quality_warnings"] is None
    dead = by_line(dead_letter_rows(batch))
    assert dead[("w.csv", 3)]["error_codes"] == "{MISSING_EVENT_ID}"
    assert json.loads(dead[("w.csv", 3)]["raw_record"])["page"] == '/c"q"'
    counts = count_by_file(batch)["w.csv"]
    assert (counts.rows_read, counts.rows_valid, counts.rows_warned) == (3, 2, 1)
    assert counts.warning_counts == {"UNEXPECTED_PRICE": 1, "INVALID_USER_SEGMENT": 1}


def test_nul_escapes_are_replaced_but_text_that_looks_like_one_is_kept() -> None:
    """jsonb refuses the escape of NUL; an escaped backslash before ``u0000`` is text."""
    texts = pa.array(
        [r'{"a":"\u0000"}', r'{"a":"\\u0000"}', r'{"a":"\\\u0000\u0000x"}', None, r'{"a":"b"}']
    )
    assert nul_escapes_replaced(texts).to_pylist() == [
        r'{"a":"\uFFFD"}', r'{"a":"\\u0000"}', r'{"a":"\\\uFFFD\uFFFDx"}', None, r'{"a":"b"}'
    ]  # fmt: skip
