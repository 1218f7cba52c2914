"""CSV bytes to numbered all-string records: one file, many files read as one, and the edges."""

from __future__ import annotations

import pyarrow as pa

from ecom_assets.schema.csv_records import FILE, SOURCE_LINE, read_records
from ecom_assets.schema.parsing import RECORD, raw_name

COLUMNS = ["event_id", "user_id", "event_type"]
RAW = raw_name(RECORD)


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    """(file, line, fields..., record text) per row, in file and line order."""
    ordered = table.sort_by([(FILE, "ascending"), (SOURCE_LINE, "ascending")])
    return [
        (row[FILE], row[SOURCE_LINE], *(row[c] for c in COLUMNS), row[RAW])
        for row in ordered.to_pylist()
    ]


def test_quotes_newlines_and_empty_fields() -> None:
    text = b'event_id,user_id,event_type\na,"1,5",view\n"b\nc",,"say ""hi"""\n'
    assert rows(read_records([text], COLUMNS)) == [
        (0, 1, "a", "1,5", "view", None),
        (0, 2, "b\nc", None, 'say "hi"', None),
    ]


def test_empty_lines_are_skipped_and_not_counted() -> None:
    text = b"event_id,user_id,event_type\n\na,1,view\n\n\nb,2,view\n"
    assert [row[:3] for row in rows(read_records([text], COLUMNS))] == [(0, 1, "a"), (0, 2, "b")]


def test_malformed_records_keep_their_number_text_and_fields_as_far_as_they_go() -> None:
    text = b'event_id,user_id,event_type\na,1,view\nb,2\nc,3,view,extra\n"d\nd",4,view\n'
    assert rows(read_records([text], COLUMNS)) == [
        (0, 1, "a", "1", "view", None),
        (0, 2, "b", "2", None, "b,2"),
        (0, 3, "c", "3", "view", "c,3,view,extra"),
        (0, 4, "d\nd", "4", "view", None),
    ]


def test_bom_crlf_and_no_final_newline() -> None:
    text = b"\xef\xbb\xbfevent_id,user_id,event_type\r\na,1,view\r\nb,2,view"
    assert [row[:3] for row in rows(read_records([text], COLUMNS))] == [(0, 1, "a"), (0, 2, "b")]


def test_files_read_as_one_keep_their_own_numbers() -> None:
    header = b"event_id,user_id,event_type\n"
    files = [
        header + b"a,1,view\nb,2\n",
        header,  # a header only: no rows
        b"\xef\xbb\xbf" + header.replace(b"\n", b"\r\n") + b"c,3,view\r\n\r\nd,4,view",
        header + b'e,5,view\n"f\nf",6,view\ng\n',
    ]
    assert rows(read_records(files, COLUMNS)) == [
        (0, 1, "a", "1", "view", None),
        (0, 2, "b", "2", None, "b,2"),
        (2, 1, "c", "3", "view", None),
        (2, 2, "d", "4", "view", None),
        (3, 1, "e", "5", "view", None),
        (3, 2, "f\nf", "6", "view", None),
        (3, 3, "g", None, None, "g"),
    ]


def test_old_mac_line_endings_in_files_read_as_one() -> None:
    header = b"event_id,user_id,event_type\r"
    files = [header + b"a,1,view\rb,2,view", header + b"c,3,view\r"]
    assert [row[:3] for row in rows(read_records(files, COLUMNS))] == [
        (0, 1, "a"),
        (0, 2, "b"),
        (1, 1, "c"),
    ]


def test_a_file_ending_inside_a_quote_is_read_alone() -> None:
    """Its open quote would swallow the next file: each file is then read on its own."""
    header = b"event_id,user_id,event_type\n"
    files = [header + b'a,1,"open\n', header + b"b,2,view\n", header + b"c,3\n"]
    assert rows(read_records(files, COLUMNS)) == [
        (0, 1, "a", "1", "open\n", None),
        (1, 1, "b", "2", "view", None),
        (2, 1, "c", "3", None, "c,3"),
    ]


def test_drifted_columns_are_named_by_position() -> None:
    text = b"event_id,coupon,user_id\na,SAVE,1\n"
    table = read_records([text], ["event_id", "coupon", "user_id"])
    assert table.column_names[:3] == ["event_id", "_c1", "user_id"]


def test_a_field_longer_than_arrows_default_block_is_read_whole() -> None:
    """A 3 MB value (a producer's stack trace in a column) straddled Arrow's 1 MB blocks, and
    the reader refused the whole file on every retry; quoted or not, and among other files."""
    long = "x" * (3 << 20)
    first = f'event_id,user_id,event_type\na,1,"{long}"\nb,2,view\n'.encode()
    second = f"event_id,user_id,event_type\nc,{long},view\n".encode()
    read = rows(read_records([first, second], COLUMNS))
    assert [(file, line, event_id) for file, line, event_id, *_ in read] == [
        (0, 1, "a"),
        (0, 2, "b"),
        (1, 1, "c"),
    ]
    assert read[0][4] == long and read[2][3] == long
