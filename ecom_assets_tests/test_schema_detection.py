"""Header detection and drift reports (pure Python, no Spark)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ecom_assets.schema.csv_records import header_fields, read_records
from ecom_assets.schema.detection import (
    HeaderMatch,
    detect_file,
    detect_header,
    header_line,
    scan_file,
)
from ecom_assets.schema.file_checks import SCAN_CHUNK
from ecom_assets.schema.versions import V1, V2, V3, VERSIONS, SchemaVersion


def line(*columns: str) -> str:
    return ",".join(columns)


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (line(*V1.column_names), V1),
        (line(*V2.column_names), V2),
        (line(*V3.column_names), V3),
        (line(*V1.column_names) + "\r\n", V1),
        ("\ufeff" + line(*V2.column_names) + "\n", V2),
        (line(*(f"  {c}\t" for c in V3.column_names)), V3),
        (line(*(c.upper() for c in V2.column_names)), V2),
        (line(*(f'"{c}"' for c in V1.column_names)), V1),
        (line(*reversed(V2.column_names)), V2),
        (line(*sorted(V3.column_names)), V3),
        (list(V2.column_names), V2),
    ],
    ids=[
        "v1", "v2", "v3", "crlf", "bom", "whitespace", "upper-case", "quoted", "reversed",
        "sorted", "list",
    ],
)  # fmt: skip
def test_detects_each_version_tolerantly(header: str | list[str], version: SchemaVersion) -> None:
    match = detect_header(header)
    assert match.version is version
    assert match.closest is version
    assert match.ingestible
    assert not match.drifted
    assert (match.missing, match.extra, match.duplicated) == ((), (), ())
    assert match.reason == f"header is {version.name}"
    assert set(match.columns) == set(version.column_names)


def test_columns_keep_file_order_for_a_positional_read() -> None:
    header = "\ufeff Event_Type ," + line(*(c for c in V1.column_names if c != "event_type"))
    match = detect_header(header)
    assert match.columns[0] == "event_type"
    assert match.columns[1:] == tuple(c for c in V1.column_names if c != "event_type")


@pytest.mark.parametrize(
    ("header", "closest", "missing"),
    [
        (line(*V1.column_names[:-1]), V1, ("event_time",)),
        (line(*(c for c in V1.column_names if c != "event_id")), V1, ("event_id",)),
        (line(*V3.column_names[:-1]), V3, ("campaign_id",)),
        # an older version plus part of a newer one is a damaged newer file, not v1
        (line(*V1.column_names, "session_id"), V2, ("category", "quantity", "user_segment")),
        (
            line(*V2.column_names, "browser"),
            V3,
            ("device_type", "geo_country", "geo_city", "referrer", "campaign_id"),
        ),
    ],
    ids=[
        "v1-no-event-time",
        "v1-no-event-id",
        "v3-no-campaign",
        "v1-plus-session",
        "v2-plus-browser",
    ],
)
def test_missing_columns_are_reported_and_not_ingestible(
    header: str,
    closest: SchemaVersion,
    missing: tuple[str, ...],
) -> None:
    match = detect_header(header)
    assert match.version is None
    assert not match.ingestible
    assert match.drifted
    assert match.closest is closest
    assert match.missing == missing
    assert match.extra == ()
    assert match.reason == f"not {closest.name}: missing columns {', '.join(missing)}"


@pytest.mark.parametrize(
    ("header", "version", "extra"),
    [
        (line(*V1.column_names, "coupon"), V1, ("coupon",)),
        (line("tenant", *V2.column_names, "Coupon "), V2, ("tenant", "coupon")),
        (line(*V3.column_names, "loyalty_tier"), V3, ("loyalty_tier",)),
        (line(*V2.column_names) + ",", V2, ("_c10",)),  # trailing comma: a blank column name
    ],
    ids=["v1", "v2-both-ends", "v3", "trailing-comma"],
)
def test_unknown_extra_columns_are_drift_but_ingestible(
    header: str,
    version: SchemaVersion,
    extra: tuple[str, ...],
) -> None:
    match = detect_header(header)
    assert match.version is version
    assert match.ingestible
    assert match.drifted
    assert match.extra == extra
    assert match.missing == ()
    assert (
        match.reason == f"{version.name} plus unknown columns (kept in extras): {', '.join(extra)}"
    )


@pytest.mark.parametrize(
    ("header", "duplicated"),
    [
        (line(*V1.column_names, "price"), ("price",)),
        (line(*V2.column_names, "USER_ID", " quantity"), ("user_id", "quantity")),
    ],
)
def test_duplicated_columns_are_not_ingestible(header: str, duplicated: tuple[str, ...]) -> None:
    match = detect_header(header)
    assert match.version is None
    assert match.drifted
    assert match.duplicated == duplicated
    assert match.reason == f"duplicated columns: {', '.join(duplicated)}"


@pytest.mark.parametrize("header", ["", "\n", "\ufeff\r\n", " , ,", []])
def test_empty_header(header: str | list[str]) -> None:
    match = detect_header(header)
    assert match.version is None
    assert match.closest is None
    assert match.reason == "empty header: no column names"


@pytest.mark.parametrize(
    "header",
    [
        "foo,bar,baz",
        "0b3e5a8e-8f0e-4d53-9a43-3f0c7a1d2b11,5,view,1001,,2024-01-15T10:30:00Z",  # no header
        "\x00\x01\x02PK\x03\x04",
        "event_id;user_id;event_type;product_id;price;event_time",  # wrong delimiter
    ],
    ids=["unknown-names", "data-row", "binary", "semicolons"],
)
def test_garbage_matches_no_version(header: str) -> None:
    match = detect_header(header)
    assert match.version is None
    assert match.closest is None
    assert match.missing == ()
    assert match.extra == match.columns
    assert match.reason.startswith("header matches no schema version: ")


def test_reason_lists_at_most_ten_names() -> None:
    match = detect_header(line(*(f"c{i}" for i in range(1000))))
    assert match.reason == (
        "header matches no schema version: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ... (990 more)"
    )
    assert len(match.extra) == 1000


def test_as_dict_is_a_json_ready_summary() -> None:
    match = detect_header(line(*V1.column_names, "session_id"))
    assert match.as_dict() == {
        "version": None,
        "closest": "v2",
        "ingestible": False,
        "drifted": True,
        "columns": [*V1.column_names, "session_id"],
        "missing": ["category", "quantity", "user_segment"],
        "extra": [],
        "duplicated": [],
        "reason": "not v2: missing columns category, quantity, user_segment",
    }


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
def test_detect_file_reads_the_first_line_only(tmp_path: Path, version: SchemaVersion) -> None:
    body = line(*version.column_names) + "\r\n" + "x," * 1000 + "\n" + "not,a,header\n"
    path = write(tmp_path / "events.csv", "\ufeff" + body)
    assert header_line(path.read_bytes()) == "\ufeff" + line(*version.column_names) + "\r\n"
    assert detect_file(path).version is version


def test_header_line_of_empty_and_headerless_files(tmp_path: Path) -> None:
    assert header_line(write(tmp_path / "empty.csv", "").read_bytes()) == ""
    assert detect_file(tmp_path / "empty.csv").reason == "empty header: no column names"
    assert header_line(write(tmp_path / "one.csv", "event_id").read_bytes()) == "event_id"


def test_header_line_stops_on_a_huge_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "blob.csv", "x" * 1_000_000)
    assert len(header_line(path.read_bytes())) == 64 * 1024
    assert isinstance(detect_file(path), HeaderMatch)


def test_header_line_survives_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe" + line(*V1.column_names).encode() + b"\n")
    assert not detect_file(path).ingestible


@pytest.mark.parametrize(
    ("first_bytes", "line"),
    [
        (b"a,b\nc,d\n", "a,b\n"),
        (b"a,b\r\nc,d\r\n", "a,b\r\n"),
        (b"a,b\rc,d\r", "a,b\r"),  # a lone CR ends a line, as in text mode
        (b"a,b", "a,b"),
    ],
    ids=["lf", "crlf", "cr", "unterminated"],
)
def test_header_line_ends_where_text_mode_ends_a_line(first_bytes: bytes, line: str) -> None:
    assert header_line(first_bytes) == line


@pytest.mark.parametrize("size", [10, SCAN_CHUNK + 10], ids=["one-chunk", "two-chunks"])
def test_scan_file_fingerprints_every_byte_once(tmp_path: Path, size: int) -> None:
    header = line(*V1.column_names) + "\n"
    content = header.encode() + b"x" * (size - 1) + b"\n"
    path = tmp_path / "events.csv"
    path.write_bytes(content)
    scanned = scan_file(path)
    assert scanned.sha256 == hashlib.sha256(content).hexdigest()
    assert scanned.header.version is V1


V1_LINE = line(*V1.column_names)
ROW = "00000000-0000-4000-8000-000000000001,1,view,1001,9.99,2024-01-15T10:30:00Z\n"


@pytest.mark.parametrize(
    ("header", "ingestible"),
    [
        (V1_LINE, True),
        (line(*(f'"{c}"' for c in V1.column_names)), True),
        ('"event_id"  ,' + line(*V1.column_names[1:]), True),  # spaces after the quote
        ('"event""id",' + line(*V1.column_names[1:]), False),  # an escaped quote: event"id
        ('event_id,"user_id,' + line(*V1.column_names[2:]), False),  # unterminated
        (V1_LINE + ',"', False),  # a quote opened at the end
        ('"' + V1_LINE, False),
        ('"event_id,user_id",' + line(*V1.column_names[2:]), False),  # one quoted name
        ('\ufeff"event_id,user_id",' + line(*V1.column_names[2:]), False),
        ('event_id,user"_id,' + line(*V1.column_names[2:]), False),  # a quote inside a name
        ('event_id,"user\n_id",' + line(*V1.column_names[2:]), False),  # a quoted line end
        ('event_id,"user_id""",' + line(*V1.column_names[2:]), True),  # user_id" is user_id
    ],
    ids=[
        "plain", "quoted", "space-after-quote", "escaped-quote", "unterminated", "open-at-end",
        "open-at-start", "quoted-comma", "bom-quoted-comma", "quote-in-name", "quoted-newline",
        "escaped-quote-at-end",
    ],
)  # fmt: skip
def test_header_quoting_is_judged_as_the_tasks_read_it(
    tmp_path: Path, header: str, ingestible: bool
) -> None:
    """Whatever the scan says of a header, the tasks' CSV reader (Arrow) agrees: a file the scan
    finds ingestible is read with exactly its columns, and one it refuses would have failed the
    task (or been read as other columns), failing its batch on every retry."""
    path = tmp_path / "events.csv"
    path.write_bytes((header + "\n" + ROW + ROW).encode())
    match = scan_file(path).header
    assert match.ingestible is ingestible, match.reason
    if ingestible:
        records = read_records([path.read_bytes()], match.columns)
        assert records.num_rows == 2
        assert records.column("event_id").to_pylist() == [ROW.split(",")[0]] * 2


@pytest.mark.parametrize(
    "header",
    ['event_id,"user_id,' + line(*V1.column_names[2:]), V1_LINE + ',"', '"' + V1_LINE],
)
def test_an_unterminated_quote_in_a_header_says_so(header: str) -> None:
    match = detect_header(header + "\n")
    assert match.reason.startswith("header has an unterminated quote")
    assert (match.version, match.closest) == (None, None)
    with pytest.raises(ValueError, match="header has an unterminated quote"):
        header_fields(header)


def test_header_fields_split_as_arrow_reads_a_file() -> None:
    assert header_fields('a,"b,c",,"d""e"\r\n') == ["a", "b,c", "", 'd"e']
    assert header_fields("\ufeffa,b\n") == ["a", "b"]
    assert header_fields("") == []
