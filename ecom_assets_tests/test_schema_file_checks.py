"""File names and bytes Spark and PostgreSQL cannot take faithfully (pure Python, no Spark)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecom_assets.schema.detection import detect_file, scan_file
from ecom_assets.schema.file_checks import (
    MAX_FIELDS,
    SCAN_CHUNK,
    ContentScan,
    chunks,
    name_problem,
    size_problem,
)
from ecom_assets.schema.versions import V1

HEADER = ",".join(V1.column_names).encode() + b"\n"


@pytest.mark.parametrize(
    "name",
    [
        "events_20260129T103020123456Z_1a2b3c4d.csv",
        "events_20260129T103020123456Z_replay-0a1b2c3d.csv",
        "export(1);v=2,a&b+c@d!~'$.csv",
        "café_名前.csv",
        "cafe\u0301.csv",  # decomposed, as macOS writes names
    ],
)
def test_names_spark_reads_literally(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("my export.csv", "' '"),
        ("..\\..\\..%2Fescape.csv", "'%' '\\\\'"),
        ("[1]{a,b}*?.csv", "'*' '?' '[' ']' '{' '}'"),
        ("10:00.csv", "':'"),
        ('a"b#c^d`e|f<g>.csv', "'\"' '#' '<' '>' '^' '`' '|'"),
        ("tab\tnew\nline.csv", "'\\t' '\\n'"),
        ("no\u00a0break\u2028.csv", "'\\xa0' '\\u2028'"),
    ],
)
def test_names_spark_would_misread(name: str, shown: str) -> None:
    reason = name_problem(name)
    assert reason is not None
    assert f"cannot read literally ({shown}); rename the file" in reason


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "events.csv"
    path.write_bytes(content)
    return path


def content_problem(path: Path) -> str | None:
    """The first problem ContentScan finds in the file's chunks, as scan_file reads them."""
    scan = ContentScan()
    with open(path, "rb") as file:
        for chunk in chunks(file):
            if problem := scan.feed(chunk):
                return problem
    return scan.finish()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        HEADER,
        HEADER + "São Paulo,🦊\r\n".encode(),
        HEADER + b"x," * (MAX_FIELDS - 1) + b"x\n",  # exactly MAX_FIELDS fields
        HEADER + b"a,b,c\r" * MAX_FIELDS,  # many commas, but on short (CR-ended) lines
    ],
    ids=["empty", "header", "multibyte", "widest", "cr-lines"],
)
def test_content_that_passes(tmp_path: Path, content: bytes) -> None:
    assert content_problem(write(tmp_path, content)) is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (HEADER + b"M\xfcnchen\n", f"byte 0xfc at byte {len(HEADER) + 1} (line 2)"),
        (b"\x1f\x8b\x08\x00", "byte 0x8b at byte 1 (line 1)"),
        (HEADER + "é".encode()[:1], f"byte 0xc3 at byte {len(HEADER)} (line 2)"),  # cut short
        (HEADER + b"a\r\nb\x00", f"NUL byte at byte {len(HEADER) + 4} (line 3): PostgreSQL text"),
        (HEADER + b"a\n" + b"," * MAX_FIELDS, f"line 3 has more fields than the {MAX_FIELDS}"),
    ],
    ids=["latin-1", "gzip", "truncated-character", "nul", "too-wide"],
)
def test_content_that_is_refused_says_where(tmp_path: Path, content: bytes, reason: str) -> None:
    problem = content_problem(write(tmp_path, content))
    assert problem is not None and reason in problem


def test_utf8_is_checked_across_chunk_boundaries(tmp_path: Path) -> None:
    character = "é".encode()
    straddling = b"a" * (SCAN_CHUNK - 1) + character + b"\n"
    assert content_problem(write(tmp_path, straddling)) is None
    broken = b"a" * (SCAN_CHUNK - 1) + character[:1] + b"b\n"  # held back, then invalid
    assert f"byte 0xc3 at byte {SCAN_CHUNK - 1} (line 1)" in str(
        content_problem(write(tmp_path, broken))
    )


def test_width_is_counted_across_chunk_boundaries(tmp_path: Path) -> None:
    wide = HEADER + b"a\n" + b"x" * (SCAN_CHUNK - 100) + b"," * MAX_FIELDS + b"\n"
    assert f"line 3 has more fields than the {MAX_FIELDS}" in str(
        content_problem(write(tmp_path, wide))
    )


def test_a_refused_file_is_not_ingestible_and_keeps_its_header_report(tmp_path: Path) -> None:
    match = detect_file(write(tmp_path, HEADER + b"M\xfcnchen\n"))
    assert not match.ingestible
    assert match.reason.startswith("not UTF-8 text")
    assert match.closest is V1 and match.columns == V1.column_names
    assert detect_file(write(tmp_path, HEADER)).version is V1
    named = tmp_path / "my events.csv"
    named.write_bytes(HEADER)
    assert "file name" in detect_file(named).reason


@pytest.mark.parametrize("lead", [b"", b"a\n"], ids=["line-after-header", "later-line"])
@pytest.mark.parametrize("spill", [0, MAX_FIELDS // 2], ids=["at-boundary", "spilled"])
def test_a_wide_line_is_found_however_the_chunks_split_it(
    tmp_path: Path, lead: bytes, spill: int
) -> None:
    """The shortcuts (a chunk shorter than the limit; fewer commas than it) must still carry
    the commas of a line left open at a chunk's end into the next chunk."""
    half = b"," * (MAX_FIELDS // 2)
    start = HEADER + lead + half
    content = start + b"x" * (SCAN_CHUNK - len(start) + spill) + half + b"\n"
    assert f"more fields than the {MAX_FIELDS}" in str(content_problem(write(tmp_path, content)))
    assert content_problem(write(tmp_path, content.replace(b",\n", b"\n"))) is None


def test_a_small_file_is_read_in_one_chunk(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + b"a,b\r\nc,d\n")
    with open(path, "rb") as file:
        assert list(chunks(file)) == [path.read_bytes()]


def test_a_file_above_the_size_setting_is_refused_naming_both(tmp_path: Path) -> None:
    content = HEADER + b"a,b\n" * ((2 << 20) // 4)  # just over 2 MB
    path = write(tmp_path, content)
    scanned = scan_file(path, max_file_mb=2)
    assert not scanned.header.ingestible
    assert f"file is {len(content):,} bytes (2.0 MB)" in scanned.header.reason
    assert "above ECOM_INGEST_MAX_FILE_MB=2" in scanned.header.reason
    assert scanned.sha256 == hashlib.sha256(content).hexdigest()  # the ledger's fingerprint
    assert scanned.header.closest is V1  # the header's report is kept
    assert scan_file(path, max_file_mb=3).header.version is V1
    assert scan_file(path).header.version is V1  # no limit given
    assert size_problem(2 << 20, 2) is None  # at the limit: taken


SCAN_PEAK = """
import resource, sys
from ecom_assets.schema.detection import scan_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scanned = scan_file(sys.argv[1], max_file_mb=64)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown // 1024, scanned.header.reason)
"""


def test_a_huge_file_is_scanned_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 GB file (sparse: no disk used) is hashed and refused; the scanning process grows by
    a few chunks, not by the file."""
    path = write(tmp_path, HEADER)
    os.truncate(path, 1 << 30)
    result = subprocess.run(
        [sys.executable, "-c", SCAN_PEAK, str(path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    grown_mb, reason = result.stdout.split(" ", 1)
    assert int(grown_mb) < 32, result.stdout
    assert "(1,024.0 MB), above ECOM_INGEST_MAX_FILE_MB=64" in reason
