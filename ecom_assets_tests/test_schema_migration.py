"""Files of every version, in the shapes producers really write, round-trip into LATEST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_assets.schema.csv_records import SOURCE_LINE, read_records
from ecom_assets.schema.detection import detect_file
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import raw_name
from ecom_assets.schema.versions import LATEST, SCHEMA_VERSION_COLUMN


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# pandas-style v1: integer ids with gaps written as floats, "+00:00" offsets, mixed case types
V1_FILE = f"""event_id,user_id,event_type,product_id,price,event_time
{uid(1)},5.0,VIEW,1001.0,,2024-01-15T10:30:00+00:00
{uid(2)},,purchase,2002,199.99,2024-01-15T10:31:00+00:00
{uid(3)},7.0,Add_To_Cart,3003,49.5,2024-01-15T10:32:00.250000+00:00
"""
# v2 with a BOM, CRLF, a padded upper-case header in another order, "Z" times, blanks, padding
V2_FILE = (
    "\ufeff Quantity ,EVENT_TIME,user_segment,category,session_id,price,product_id,"
    "event_type,user_id,event_id\r\n"
    f"2.0,2024-01-15T11:00:00Z, premium ,Electronics,s-1, 1299.00 ,1500, PURCHASE ,12,"
    f"{uid(4).upper()}\r\n"
    f",2024-01-15 11:01:00Z,,,s-2,,4100,search,,{uid(5)}\r\n"
)
V3_FILE = (
    ",".join(LATEST.column_names) + "\n"
    f"{uid(6)},3,wishlist,7007,,2024-01-15T12:00:00.123456Z,s-3,sports,,returning,Mobile,Safari,"
    f'de,"Berlin, Mitte",https://example.com/?a=1,CMP-7\n'
    f'{uid(7)},""," view ",11011,,2024-01-15 13:00:00+02:00,,,,new, DESKTOP ,Chrome,us,'
    "New York,,\n"
)
V2_WITH_EXTRA_FILE = (
    "event_id,user_id,event_type,product_id,price,event_time,session_id,category,quantity,"
    "user_segment,coupon\n"
    f"{uid(8)},9,remove_from_cart,5005,,2024-01-15T14:00:00Z,s-4,fashion,,new,SAVE10\n"
)
V1_SECOND_FILE = f"""event_id,user_id,event_type,product_id,price,event_time
{uid(9)},11,search,8008,,2024-01-15T15:00:00Z
"""


def utc_micros(text: str) -> int:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def row(version: str, **values: object) -> dict[str, object]:
    """An expected LATEST row: unspecified fields NULL, event_time as UTC micros."""
    expected: dict[str, object] = dict.fromkeys(LATEST.column_names)
    expected.update(values, event_time=utc_micros(str(values["event_time"])))
    expected[SCHEMA_VERSION_COLUMN] = version
    return expected


EXPECTED = {
    "v1.csv": [
        row("v1", event_id=uid(1), user_id=5, event_type="view", product_id=1001,
            event_time="2024-01-15T10:30:00"),
        row("v1", event_id=uid(2), user_id=0, event_type="purchase", product_id=2002,
            price=Decimal("199.99"), event_time="2024-01-15T10:31:00"),
        row("v1", event_id=uid(3), user_id=7, event_type="add_to_cart", product_id=3003,
            price=Decimal("49.50"), event_time="2024-01-15T10:32:00.250"),
    ],
    "v2.csv": [
        row("v2", event_id=uid(4), user_id=12, event_type="purchase", product_id=1500,
            price=Decimal("1299.00"), event_time="2024-01-15T11:00:00", session_id="s-1",
            category="electronics", quantity=2, user_segment="premium"),
        row("v2", event_id=uid(5), user_id=0, event_type="search", product_id=4100,
            event_time="2024-01-15T11:01:00", session_id="s-2"),
    ],
    "v3.csv": [
        row("v3", event_id=uid(6), user_id=3, event_type="wishlist", product_id=7007,
            event_time="2024-01-15T12:00:00.123456", session_id="s-3", category="sports",
            user_segment="returning", device_type="mobile", browser="Safari", geo_country="DE",
            geo_city="Berlin, Mitte", referrer="https://example.com/?a=1", campaign_id="CMP-7"),
        row("v3", event_id=uid(7), user_id=0, event_type="view", product_id=11011,
            event_time="2024-01-15T11:00:00", user_segment="new", device_type="desktop",
            browser="Chrome", geo_country="US", geo_city="New York"),
    ],
    "v2_extra.csv": [
        row("v2", event_id=uid(8), user_id=9, event_type="remove_from_cart", product_id=5005,
            event_time="2024-01-15T14:00:00", session_id="s-4", category="fashion",
            user_segment="new"),
    ],
    "v1_second.csv": [
        row("v1", event_id=uid(9), user_id=11, event_type="search", product_id=8008,
            event_time="2024-01-15T15:00:00"),
    ],
}  # fmt: skip
FILES = {
    "v1.csv": V1_FILE,
    "v2.csv": V2_FILE,
    "v3.csv": V3_FILE,
    "v2_extra.csv": V2_WITH_EXTRA_FILE,
    "v1_second.csv": V1_SECOND_FILE,
}


def write_files(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8", newline="")


def read_latest(paths: list[Path]) -> pa.Table:
    """What ingestion does with files sharing one header: detect, read as strings, migrate."""
    match = detect_file(paths[0])
    assert match.version is not None, match.reason
    raw = read_records([path.read_bytes() for path in paths], match.columns)
    return to_latest(raw, match.version)


def read_directory(directory: Path) -> tuple[pa.Table, dict[str, str]]:
    """Every ingestible file, grouped by header so each group is one read; rejects with reasons."""
    groups: dict[tuple[str, ...], list[Path]] = {}
    rejected: dict[str, str] = {}
    for path in sorted(directory.glob("*.csv")):
        match = detect_file(path)
        if match.ingestible:
            groups.setdefault(match.columns, []).append(path)
        else:
            rejected[path.name] = match.reason
    return pa.concat_tables(read_latest(paths) for paths in groups.values()), rejected


def collect(table: pa.Table) -> list[dict[str, object]]:
    """LATEST's typed columns and schema_version, event_time as UTC micros, by event_id."""
    rows = table.select([*LATEST.column_names, SCHEMA_VERSION_COLUMN]).to_pylist()
    for row in rows:
        row["event_time"] = (row["event_time"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1
        )
    return sorted(rows, key=lambda row: str(row["event_id"]))


def first(table: pa.Table) -> dict[str, object]:
    """The row with the smallest event_id."""
    return min(table.to_pylist(), key=lambda row: str(row["event_id"]))


@pytest.mark.parametrize("name", ["v1.csv", "v2.csv", "v3.csv", "v2_extra.csv"])
def test_a_file_of_each_version_round_trips(tmp_path: Path, name: str) -> None:
    write_files(tmp_path, {name: FILES[name]})
    assert collect(read_latest([tmp_path / name])) == EXPECTED[name]


def test_output_has_the_latest_schema_whatever_the_input(tmp_path: Path) -> None:
    write_files(tmp_path, {"v1.csv": V1_FILE})
    table = read_latest([tmp_path / "v1.csv"])
    raws = [raw_name(name) for name in LATEST.column_names]
    assert table.column_names == [*LATEST.column_names, SCHEMA_VERSION_COLUMN, *raws]
    assert table.select(list(LATEST.column_names)).schema == LATEST.arrow_schema


def test_raw_columns_hold_what_the_producer_wrote(tmp_path: Path) -> None:
    write_files(tmp_path, {"v1.csv": V1_FILE, "v2.csv": V2_FILE})
    v1 = first(read_latest([tmp_path / "v1.csv"]))
    assert (v1["user_id_raw"], v1["event_type_raw"], v1["product_id_raw"]) == (
        "5.0",
        "VIEW",
        "1001.0",
    )
    # fields v1 lacks were not written: NULL raw and parsed values (enrichment makes a priced
    # event without a quantity a single unit)
    rows = read_latest([tmp_path / "v1.csv"]).to_pylist()
    purchase = next(row for row in rows if row["event_type"] == "purchase")
    assert (purchase["quantity"], purchase["quantity_raw"], purchase["user_id_raw"]) == (
        None,
        None,
        None,
    )
    v2 = first(read_latest([tmp_path / "v2.csv"]))
    assert (v2["event_type_raw"], v2["user_segment_raw"]) == (" PURCHASE ", " premium ")
    assert v2["event_id_raw"] == uid(4).upper()


def test_a_mixed_directory_round_trips(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    write_files(
        tmp_path,
        {
            "truncated.csv": "event_id,user_id,event_type,product_id,price\n",
            "garbage.csv": "\x00\x01PK binary junk\n",
            "empty.csv": "",
        },
    )
    table, rejected = read_directory(tmp_path)
    assert rejected == {
        "empty.csv": "empty header: no column names",
        "garbage.csv": "NUL byte at byte 0 (line 1): PostgreSQL text cannot hold it",
        "truncated.csv": "not v1: missing columns event_time",
    }
    expected = sorted(
        (r for rows in EXPECTED.values() for r in rows), key=lambda r: str(r["event_id"])
    )
    assert collect(table) == expected


def test_keep_carries_source_columns_through(tmp_path: Path) -> None:
    write_files(tmp_path, {"v2.csv": V2_FILE})
    match = detect_file(tmp_path / "v2.csv")
    assert match.version is not None
    raw = read_records([(tmp_path / "v2.csv").read_bytes()], match.columns)
    table = to_latest(raw, match.version, keep=[SOURCE_LINE])
    assert table.column_names[-1] == SOURCE_LINE
    assert table.column(SOURCE_LINE).to_pylist() == [1, 2]
