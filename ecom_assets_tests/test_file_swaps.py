"""A listed file swapped for a symbolic link or a FIFO before it is read: refused, never read.

The sensor and the run list regular files only, but a name can be swapped between the listing
and an open: a link would be followed (its target's first line then landed in the quarantine
reason as "columns"), a FIFO with no writer blocked the open forever. Each test swaps at one
point of the real sequence (listing, scan, a Spark task's read, a move across file systems,
one real ingest run) and checks that nothing blocks, the name is refused or quarantined with
a reason naming what it is, and the target's content appears in no reason, table or log.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ecom_assets import ingest
from ecom_assets.ingest import ingest_partition
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.resources.event_files import REASON_SUFFIX, list_input_files, quarantine
from ecom_assets.resources.event_reader import ReadableFile
from ecom_assets.safe_open import ListedFile, NotRegularFileError, open_regular, read_regular
from ecom_assets.schema.detection import scan_file
from ecom_assets.schema.versions import V3
from ecom_assets.settings import IngestionSettings, Settings, load_settings
from ecom_assets_tests.test_transforms_support import event

MARKER = "SECRET-LINE"  # the target's content, to be found nowhere
SHM = Path("/dev/shm")
BOUND_S = 1.0
"""A refusal takes microseconds; an open waiting on a FIFO would take forever."""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file nobody should see through the input directory; CSV-shaped, so a read of it
    through a link would parse as a header."""
    path = tmp_path / "secret.txt"
    path.write_text(f"{MARKER},{MARKER}-2\n{MARKER}-3,x\n")
    return path


def to_link(path: Path, secret: Path) -> None:
    path.unlink()
    path.symlink_to(secret)


def to_fifo(path: Path, _secret: Path) -> None:
    path.unlink()
    os.mkfifo(path)


SWAPS: dict[str, Callable[[Path, Path], None]] = {"link": to_link, "fifo": to_fifo}
KINDS = {"link": "a symbolic link, not a regular file", "fifo": "a FIFO, not a regular file"}


def csv_bytes(*numbers: int) -> bytes:
    columns = list(V3.column_names)
    rows = [",".join(columns)] + [",".join(event(n)[c] for c in columns) for n in numbers]
    return ("\n".join(rows) + "\n").encode()


def landed(settings: Settings, name: str, content: bytes) -> Path:
    """A settled file in the input directory (modified a minute ago)."""
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    path = settings.input_dir / name
    path.write_bytes(content)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("swap", SWAPS)
def test_a_swapped_name_is_refused_at_once_naming_what_it_is(
    tmp_path: Path, secret: Path, swap: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n")
    listed = ListedFile.of(os.stat(path))
    assert read_regular(path, listed) == b"a,b\n"
    SWAPS[swap](path, secret)
    began = time.monotonic()
    with pytest.raises(NotRegularFileError) as error:
        open_regular(path)
    assert time.monotonic() - began < BOUND_S
    assert str(error.value) == f"a.csv is {KINDS[swap]}"
    assert MARKER not in str(error.value) and str(secret) not in str(error.value)


def test_a_file_replaced_or_grown_since_its_listing_is_not_the_listed_one(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n")
    listed = ListedFile.of(os.stat(path))
    with open(path, "ab") as grown:
        grown.write(b"1,2\n")
    with pytest.raises(NotRegularFileError, match=r"a\.csv is 8 bytes, not the 4 it had"):
        read_regular(path, listed)
    other = tmp_path / "other"
    other.write_bytes(b"a,b\n")
    os.replace(other, path)  # same size, another inode
    with pytest.raises(NotRegularFileError, match="another file than the one listed"):
        read_regular(path, listed)
    with pytest.raises(NotRegularFileError, match="a directory"):
        open_regular(tmp_path)
    with pytest.raises(FileNotFoundError):  # gone is not "not regular": it passes unchanged
        open_regular(tmp_path / "gone.csv")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("swap", SWAPS)
def test_a_name_swapped_after_the_listing_is_quarantined_by_the_scan_unread(
    ingest_settings: Settings, secret: Path, swap: str
) -> None:
    """listing -> swap -> scan -> quarantine, as a run does them: the reason names the kind,
    the link or FIFO itself is what goes to quarantine/."""
    settings = ingest_settings
    path = landed(settings, "events_20260101T100000000000Z_swap.csv", csv_bytes(1))
    [listed] = list_input_files(settings.input_dir, 0, datetime.now(tz=UTC))
    SWAPS[swap](path, secret)
    began = time.monotonic()
    scanned = scan_file(listed.path, max_file_mb=1)
    assert time.monotonic() - began < BOUND_S
    assert not scanned.header.ingestible
    assert scanned.header.reason == f"{listed.name} is {KINDS[swap]}; it was not read"
    stored = quarantine(listed.path, settings.quarantine_dir, scanned.header.as_dict())
    reason = (settings.quarantine_dir / (stored.name + REASON_SUFFIX)).read_text()
    assert json.loads(reason)["columns"] == [] and MARKER not in reason
    assert stored.is_symlink() == (swap == "link") and list(settings.input_dir.iterdir()) == []
    assert secret.read_text().startswith(MARKER)  # the target is untouched


@pytest.mark.timeout(30)
@pytest.mark.parametrize("swap", SWAPS)
def test_a_name_swapped_after_the_scan_is_not_read_by_the_task(
    ingest_settings: Settings, secret: Path, swap: str
) -> None:
    """scan -> swap -> a task's read (ReadableFile.read, what FileRows.routed calls)."""
    path = landed(ingest_settings, "events_20260101T100000000000Z_swap.csv", csv_bytes(1))
    scanned = scan_file(path)
    assert scanned.header.ingestible
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    readable = ReadableFile.landed(path, scanned.header, modified, scanned.sha256)
    assert len(readable.read()) == path.stat().st_size
    SWAPS[swap](path, secret)
    began = time.monotonic()
    with pytest.raises(NotRegularFileError) as error:
        readable.read()
    assert time.monotonic() - began < BOUND_S
    assert str(error.value) == f"{path.name} is {KINDS[swap]}" and MARKER not in str(error.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("swap", SWAPS)
def test_a_swapped_name_is_quarantined_across_file_systems_as_what_it_is(
    ingest_settings: Settings, secret: Path, swap: str, tmp_path: Path
) -> None:
    """quarantine/ on another file system: the move copies, and a copy would read the link's
    target (or wait on the FIFO); the link or FIFO is recreated there instead, never read."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    elsewhere = SHM / f"ecom-test-swaps-{os.getpid()}-{swap}"
    settings = load_settings(
        paths=ingest_settings.paths,
        ingestion=IngestionSettings(file_settle_s=0, quarantine_dir=elsewhere),
    )
    try:
        path = landed(settings, "a.csv", b"a,b\n")
        SWAPS[swap](path, secret)
        scanned = scan_file(path)
        stored = quarantine(path, settings.quarantine_dir, scanned.header.as_dict())
        assert stored.parent == elsewhere and not os.path.lexists(path)
        if swap == "link":
            assert stored.is_symlink() and os.readlink(stored) == str(secret)
        else:
            assert stat.S_ISFIFO(os.lstat(stored).st_mode)
        assert sorted(p.name for p in elsewhere.iterdir()) == ["a.csv", "a.csv" + REASON_SUFFIX]
        assert MARKER not in (elsewhere / ("a.csv" + REASON_SUFFIX)).read_text()
    finally:
        for leftover in elsewhere.iterdir() if elsewhere.exists() else ():
            leftover.unlink()
        if elsewhere.exists():
            elsewhere.rmdir()


# --- one real ingest run (PostgreSQL, Spark Connect) with the swap at each point --------------


def rows_holding(url: str, text: str) -> dict[str, int]:
    """Rows of every table of the database whose JSON form holds ``text``, by table."""
    found = {}
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {} t WHERE row_to_json(t)::text LIKE %s")
            count = conn.execute(query.format(sql.Identifier(table)), (f"%{text}%",)).fetchone()[0]
            if count:
                found[table] = count
    return found


@pytest.mark.timeout(600)
@pytest.mark.parametrize("when", ["listed", "scanned"])
@pytest.mark.parametrize("swap", SWAPS)
def test_a_real_run_quarantines_a_swapped_file_and_commits_the_rest(
    spark,
    migrated_database_url: str,
    ingest_settings: Settings,
    secret: Path,
    swap: str,
    when: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two files of one hour; ``victim.csv`` is swapped after the run listed it (before its
    scan) or after the scan claimed it (before the Spark task reads it). The run ends, the
    other file is committed, the swapped name is quarantined with a reason naming what it is,
    and the target's content is in no reason file, table or log line."""
    settings, url = ingest_settings, migrated_database_url
    moment = datetime.now(tz=UTC) - timedelta(minutes=5)
    stamp = moment.strftime("%Y%m%dT%H%M%S%fZ")
    partition = moment.strftime(PARTITION_FORMAT)
    landed(settings, f"events_{stamp}_good.csv", csv_bytes(1, 2))
    victim = landed(settings, f"events_{stamp}_victim.csv", csv_bytes(3))

    def swap_once() -> None:
        if not victim.is_symlink() and victim.is_file():
            SWAPS[swap](victim, secret)

    if when == "listed":
        listed = ingest.pending_files

        def listed_then_swapped(*args, **kwargs):  # the real listing, then the swap
            files = listed(*args, **kwargs)
            swap_once()
            return files

        monkeypatch.setattr(ingest, "pending_files", listed_then_swapped)
        on_step: Callable[[str], None] = lambda _step: None  # noqa: E731
    else:

        def on_step(step: str) -> None:
            if step == "claimed":
                swap_once()

    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(f"{__name__}.run")
    report = ingest_partition(spark, url, settings, partition, f"r-{swap}-{when}", log=log,
                              on_step=on_step)  # fmt: skip
    assert os.path.lexists(settings.quarantine_dir / victim.name)
    reason = json.loads((settings.quarantine_dir / (victim.name + REASON_SUFFIX)).read_text())
    assert KINDS[swap] in reason["reason"], reason
    assert [p.name for p in (settings.processed_dir / partition).iterdir()] == [
        f"events_{stamp}_good.csv"
    ]
    assert list(settings.input_dir.iterdir()) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0] == 2
        statuses = dict(conn.execute("SELECT file_name, status FROM ingest_files").fetchall())
    assert statuses == {f"events_{stamp}_good.csv": "committed", victim.name: "quarantined"}
    everything = "\n".join(p.read_text(errors="replace") for p in _regular_files(settings))
    assert MARKER not in everything
    assert rows_holding(url, MARKER) == {}
    assert MARKER not in caplog.text and MARKER not in repr(report)
    assert secret.read_text().startswith(MARKER)


def _regular_files(settings: Settings) -> list[Path]:
    """Every regular file of the data directory (reasons, logs, processed files)."""
    return [
        path
        for path in settings.paths.root.rglob("*")
        if not path.is_symlink() and path.is_file() and path.name != "secret.txt"
    ]
