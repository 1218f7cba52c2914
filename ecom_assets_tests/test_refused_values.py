"""Values PostgreSQL refuses, in other producers' files, through real Spark and PostgreSQL.

Before the storage rules (contract.STORAGE_LIMITS), one such row failed the COPY or the commit of
its whole batch on every retry, and every other file of its hour waited behind it. Now each
poison row is a dead letter with its code, the good rows beside it land, every file commits.
The files are shaped like other trackers': their own column orders, space-separated times with
offsets, upper-case ids, extra columns, CRLF, v1 and v2 headers.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.schema.contract import INDEXED_TEXT_FIELDS, STORAGE_LIMITS
from ecom_assets.schema.contract_file import ContractError, load_contract, parse_contract
from ecom_assets.settings import Settings
from ecom_assets.transforms.arrow_routing import as_csv, dead_letter_rows
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import ValidationRules, validate_events
from ecom_assets_tests.test_transforms_support import NOW, event, latest_batch

pytestmark = pytest.mark.integration

HOUR = datetime(2025, 3, 1, 10, tzinfo=UTC)
PARTITION = f"{HOUR:%Y-%m-%d-%H}:00"
LAX = "rules:\n  EXTREME_PRICE: warn\n  INVALID_QUANTITY: warn\n"
"""The shop's own contract: price and quantity bounds only warn, so a total can outgrow its
column; everything else is the default."""


def uid(n: int) -> str:
    return f"5e1a0000-0000-4000-8000-{n:012d}"


def write(path: Path, header: list[str], rows: list[dict[str, str]], end: str = "\n") -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, lineterminator=end, extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    stamp = HOUR.timestamp() + 60
    os.utime(path, (stamp, stamp))


# (file, line) -> the codes of its dead letter; rows not listed must land
EXPECTED_DEAD: dict[tuple[str, int], list[str]] = {}
EXPECTED_EVENTS: set[tuple[str, int]] = set()


def acme(input_dir: Path) -> None:
    """v3 in its own order, space-separated local times with offsets, upper-case ids, extras."""
    header = [
        "EVENT_ID",
        "event_time",
        "event_type",
        "user_id",
        "product_id",
        "price",
        "quantity",
        "category",
        "user_segment",
        "session_id",
        "device_type",
        "browser",
        "geo_country",
        "geo_city",
        "referrer",
        "campaign_id",
        "page_url",
        "ab_variant",
    ]

    def row(n: int, **values: str) -> dict[str, str]:
        base = {
            "EVENT_ID": uid(n).upper(), "event_time": "2025-03-01 11:05:00+01:00",
            "event_type": "purchase", "user_id": "7.0", "product_id": "1001", "price": "19.99",
            "quantity": "2", "category": "Garden", "user_segment": "returning",
            "session_id": "s1", "device_type": "Mobile", "browser": "Firefox",
            "geo_country": "de", "geo_city": "Köln", "referrer": "", "campaign_id": "",
            "page_url": "/p/1?a=b,c", "ab_variant": "B",
        }  # fmt: skip
        return {**base, **values}

    rows = [
        row(1),
        row(2, event_time="0000-06-01 12:00:00+00:00"),  # year 0: Arrow reads it, PG has none
        row(3, event_type="view", price="", quantity=""),
        row(4, event_time="0001-01-01 00:30:00+01:00"),  # year 0 once in UTC
        row(5, category="x" * 3000),  # over the btree entry limit of its index
        row(6, user_segment="Ü" * 1500),  # INVALID_USER_SEGMENT only warns: would be stored
        row(7, event_time="0001-01-01 01:00:00+01:00"),  # year 1: fits
        row(8, price="9999999999.99", quantity="99"),  # 989,999,999,999.01: fits
        row(9, price="9999999999.99", quantity="101"),  # 1.0099... x 10^12: does not
        row(10, event_type="add_to_cart", price="10000000", quantity="100000"),  # exactly 10^12
        row(11, event_type="clic" + "k" * 2000),  # undeclared and too long
        row(12, page_url="say \\u0000 and \\\\u0000"),  # JSON-looking text in an extra column
        row(13, page_url="\\u0000", event_time="0000-01-01 00:00:00+00:00"),
    ]
    write(input_dir / "acme_export_0001.csv", header, rows)
    name = "acme_export_0001.csv"
    dead = {
        2: ["EVENT_TIME_OUT_OF_RANGE"], 4: ["EVENT_TIME_OUT_OF_RANGE"], 5: ["VALUE_TOO_LONG"],
        6: ["VALUE_TOO_LONG"], 9: ["TOTAL_AMOUNT_OVERFLOW"], 10: ["TOTAL_AMOUNT_OVERFLOW"],
        11: ["INVALID_EVENT_TYPE", "VALUE_TOO_LONG"], 13: ["EVENT_TIME_OUT_OF_RANGE"],
    }  # fmt: skip
    EXPECTED_DEAD.update({(name, line): codes for line, codes in dead.items()})
    EXPECTED_EVENTS.update((name, line) for line in range(1, 14) if line not in dead)


def legacy(input_dir: Path) -> None:
    """v1 with CRLF and compact offsets: the oldest trackers."""
    header = ["event_id", "user_id", "event_type", "product_id", "price", "event_time"]
    rows = [
        {"event_id": uid(101), "user_id": "3", "event_type": "view", "product_id": "5",
         "price": "", "event_time": "2025-03-01T10:01:00Z"},
        {"event_id": uid(102), "user_id": "3", "event_type": "purchase", "product_id": "5",
         "price": "12.50", "event_time": "0000-12-31T23:59:59.999999Z"},
        {"event_id": uid(103), "user_id": "3", "event_type": "purchase", "product_id": "5",
         "price": "12.50", "event_time": "9999-12-31T23:30:00-0100"},  # year 10000 in UTC
        {"event_id": uid(104), "user_id": "3", "event_type": "purchase", "product_id": "5",
         "price": "9999999999.99", "event_time": "2025-03-01T10:02:00+0000"},  # quantity 1
    ]  # fmt: skip
    write(input_dir / "legacy.CSV", header, rows, end="\r\n")
    EXPECTED_DEAD.update({("legacy.CSV", 2): ["EVENT_TIME_OUT_OF_RANGE"],
                          ("legacy.CSV", 3): ["EVENT_TIME_OUT_OF_RANGE"]})  # fmt: skip
    EXPECTED_EVENTS.update({("legacy.CSV", 1), ("legacy.CSV", 4)})


def good_only(input_dir: Path) -> None:
    """A v2 file with nothing wrong, in the same batch: it must not wait for the others."""
    header = ["event_id", "user_id", "event_type", "product_id", "price", "event_time",
              "session_id", "category", "quantity", "user_segment"]  # fmt: skip
    rows = [
        {"event_id": uid(200 + n), "user_id": "9", "event_type": "view", "product_id": "8",
         "price": "", "event_time": f"2025-03-01T10:{n:02d}:00Z", "session_id": "x",
         "category": "toys", "quantity": "", "user_segment": "new"}
        for n in range(1, 6)
    ]  # fmt: skip
    write(input_dir / "events_20250301T100500000000Z_good.csv", header, rows)
    EXPECTED_EVENTS.update(("events_20250301T100500000000Z_good.csv", n) for n in range(1, 6))


@pytest.fixture
def contract_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop_contract.yaml"
    path.write_text(LAX)
    return path


def test_refused_values_are_dead_letters_and_the_rest_commits(
    spark, migrated_database_url: str, ingest_settings: Settings, contract_file: Path
) -> None:
    url = migrated_database_url
    input_dir = ingest_settings.input_dir
    input_dir.mkdir(parents=True, exist_ok=True)
    for writer in (acme, legacy, good_only):
        writer(input_dir)
    report = ingest_partition(
        spark, url, ingest_settings, PARTITION, "refused", logging.getLogger(__name__),
        contract=load_contract(contract_file),
    )  # fmt: skip

    assert report.quarantined == {} and report.isolated == {} and report.deferred == {}
    assert report.files_committed == 3 and not list(input_dir.iterdir())
    with psycopg.connect(url) as conn:
        dead = {
            (file, line): codes
            for file, line, codes in conn.execute(
                "SELECT source_file, source_line, error_codes FROM dead_letter_events"
            ).fetchall()
        }
        events = {
            (file, line): (total, extras)
            for file, line, total, extras in conn.execute(
                "SELECT source_file, source_line, total_amount::text, extras FROM ecommerce_events"
            ).fetchall()
        }
        records = dict(
            conn.execute(
                "SELECT source_line, raw_record FROM dead_letter_events "
                "WHERE source_file = 'acme_export_0001.csv'"
            ).fetchall()
        )
        files = dict(conn.execute("SELECT file_name, status FROM ingest_files").fetchall())
    assert dead == EXPECTED_DEAD
    assert set(events) == EXPECTED_EVENTS
    assert set(files.values()) == {"committed"}
    # the largest total that fits is stored exactly; a v1 purchase's blank quantity is 1
    assert events[("acme_export_0001.csv", 8)][0] == "989999999999.01"
    assert events[("legacy.CSV", 4)][0] == "9999999999.99"
    # text that looks like JSON's NUL escape is text: stored and read back as written
    assert events[("acme_export_0001.csv", 12)][1]["page_url"] == "say \\u0000 and \\\\u0000"
    # a dead letter keeps the values as written, to fix and replay
    assert records[2]["event_time"] == "0000-06-01 12:00:00+00:00"
    assert records[5]["category"] == "x" * 3000
    assert records[13]["page_url"] == "\\u0000"
    assert report.error_counts["EVENT_TIME_OUT_OF_RANGE"] == 5


def test_a_dead_letter_stays_storable_even_with_a_nul(migrated_database_url: str) -> None:
    """No NUL reaches a row today (its file is quarantined), but a dead letter is where refused
    rows go: its text and JSON must hold in PostgreSQL whatever the reader lets through."""
    poison = event(1, event_time="0000-01-01T00:00:00Z", geo_city="K\x00ln", session_id="a\\u0000")
    batch = latest_batch({"a.csv": ("v3", [poison])})
    extras = '{"page_url":"\\u0000 \\\\u0000"}'  # a NUL escaped, then text that looks like one
    batch = batch.set_column(batch.schema.get_field_index("extras"), "extras", pa.array([extras]))
    rules = ValidationRules(NOW, load_contract())
    rows = routed(enrich_events(validate_events(batch, rules), rules, late_watermark_s=600))
    dead = dead_letter_rows(rows.combine_chunks().to_batches()[0])
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        copy = f"COPY dead_letter_events ({', '.join(dead.schema.names)}) FROM STDIN (FORMAT csv)"
        with conn.cursor().copy(copy) as stream:
            stream.write(as_csv(dead))
        detail, record = conn.execute(
            "SELECT error_detail, raw_record FROM dead_letter_events"
        ).fetchone()
    assert record["geo_city"] == "K\ufffdln" and record["session_id"] == "a\\u0000"
    assert record["page_url"] == "\ufffd \\u0000"
    assert detail == "EVENT_TIME_OUT_OF_RANGE: event_time='0000-01-01T00:00:00Z'"


def test_a_contract_whose_totals_overflow_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("rules:\n  EXTREME_PRICE: {max_price: 1000000000}\n"
                    "  INVALID_QUANTITY: {severity: warn, max_quantity: 1000}\n")  # fmt: skip
    with pytest.raises(ContractError) as refused:
        load_contract(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:2: EXTREME_PRICE.max_price (1,000,000,000.00) x ")
    assert "INVALID_QUANTITY.max_quantity (1,000)" in message
    assert "NUMERIC(14,2)" in message and "total_amount" in message
    # just below the limit is fine: 999,999.99 x 1,000,000 < 10^12
    parse_contract("rules:\n  EXTREME_PRICE: {max_price: 999999.99}\n"
                   "  INVALID_QUANTITY: {max_quantity: 1000000}\n")  # fmt: skip


def test_the_limits_the_rules_guard_are_the_databases(migrated_database_url: str) -> None:
    """STORAGE_LIMITS restates the columns: a migration that changed one must change it too."""
    with psycopg.connect(migrated_database_url) as conn:
        columns = {
            name: (kind, precision, scale)
            for name, kind, precision, scale in conn.execute(
                "SELECT column_name, data_type, numeric_precision, numeric_scale "
                "FROM information_schema.columns WHERE table_name = 'ecommerce_events'"
            ).fetchall()
        }
        indexed = " ".join(
            row[0] for row in conn.execute("SELECT indexdef FROM pg_indexes").fetchall()
        )
    limits = STORAGE_LIMITS
    assert columns["price"] == ("numeric", limits.price_digits, limits.scale)
    assert columns["total_amount"] == ("numeric", limits.total_digits, limits.scale)
    assert columns["quantity"][0] == "integer" and limits.quantity_max == 2**31 - 1
    assert columns["event_time"][0] == "timestamp with time zone"
    for field in INDEXED_TEXT_FIELDS:  # each is in an index, so each needs the length rule
        assert columns[field][0] == "text"
        assert f"({field}" in indexed or f" {field})" in indexed, field
    # two of them share ecommerce_events_category_idx: both at the limit fit its 2704 bytes
    assert 2 * (limits.indexed_text_bytes + 4) + 16 < 2704
