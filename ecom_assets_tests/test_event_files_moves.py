"""Moves out of the input directory: quarantine names within NAME_MAX, a second quarantine of one
name beside the first, moves across file systems, and unfinished files held back. Real files on
real file systems: /dev/shm (tmpfs) is another file system than pytest's tmp_path here."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecom_assets.resources.event_files import (
    NAME_MAX,
    REASON_SUFFIX,
    STORED_NAME_MAX,
    UNTERMINATED_SETTLE_FACTOR,
    list_input_files,
    move,
    move_to_processed,
    original_name,
    quarantine,
    stored_name,
)

SHM = Path("/dev/shm")


def name_of(size: int, char: str = "x") -> str:
    """A name of exactly ``size`` bytes: events_..., padded with ``char`` (1 or 2 bytes)."""
    head, tail = "events_20260101T100000000000Z_", ".csv"
    room = size - len(head) - len(tail)
    width = len(char.encode())
    pad = char * (room // width) + "y" * (room % width)
    name = f"{head}{pad}{tail}"
    assert len(name.encode()) == size
    return name


def other_file_system(tmp_path: Path) -> Path:
    """A directory on another file system than tmp_path, or skip: EXDEV needs a real one."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    directory = SHM / f"ecom-test-{os.getpid()}-{tmp_path.name}"
    directory.mkdir()
    return directory


@pytest.fixture
def elsewhere(tmp_path: Path):
    directory = other_file_system(tmp_path)
    yield directory
    for path in sorted(directory.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    directory.rmdir()


def reasons(directory: Path) -> dict[str, dict]:
    """Stored name -> reason document, for every reason file."""
    return {
        path.name[: -len(REASON_SUFFIX)]: json.loads(path.read_text())
        for path in directory.glob(f"*{REASON_SUFFIX}")
    }


def drop(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    return path


# --- 1. quarantine names within NAME_MAX ------------------------------------------------------


@pytest.mark.parametrize("size", [200, 238, 239, 243, 244, 250, 254, 255])
@pytest.mark.parametrize("char", ["x", "é"])
def test_a_long_name_is_quarantined_with_its_reason_within_name_max(
    tmp_path: Path, size: int, char: str
) -> None:
    name = name_of(size, char)
    source = drop(tmp_path / "input", name, b"\x00garbage")
    target = quarantine(source, tmp_path / "quarantine", {"reason": "NUL byte"})
    assert not source.exists()
    assert target.read_bytes() == b"\x00garbage"
    everything = [path.name for path in (tmp_path / "quarantine").iterdir()]
    assert sorted(everything) == sorted([target.name, target.name + REASON_SUFFIX])
    assert max(len(entry.encode()) for entry in everything) <= NAME_MAX
    [(stored, reason)] = reasons(tmp_path / "quarantine").items()
    assert (stored, reason["file"], reason["reason"]) == (target.name, name, "NUL byte")
    assert original_name(target) == name
    if len((name + REASON_SUFFIX).encode()) <= NAME_MAX:
        assert target.name == name  # short enough: kept as it arrived
    else:
        assert target.name.endswith(".csv") and len(target.name.encode()) <= STORED_NAME_MAX
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        assert f"~{digest}.csv" in target.name
        assert target.name.encode().decode("utf-8")  # cut between characters, never inside one


def test_long_names_sharing_their_start_are_stored_apart(tmp_path: Path) -> None:
    first, second = name_of(255), name_of(254) + ""
    second = second[:-5] + "zz.csv"  # same first 240 bytes, another name
    assert stored_name(first) != stored_name(second)
    for name in (first, second):
        quarantine(drop(tmp_path / "input", name, name.encode()), tmp_path / "q", {})
    assert {reason["file"] for reason in reasons(tmp_path / "q").values()} == {first, second}


# --- 2. a second quarantine of one name keeps both -----------------------------------------


@pytest.mark.parametrize("size", [60, 255])
def test_quarantining_one_name_again_keeps_every_copy_and_reason(tmp_path: Path, size: int):
    name = name_of(size)
    targets = []
    for attempt in range(3):
        source = drop(tmp_path / "input", name, f"copy {attempt}".encode())
        targets.append(quarantine(source, tmp_path / "q", {"reason": f"reason {attempt}"}))
    assert [path.read_bytes() for path in targets] == [b"copy 0", b"copy 1", b"copy 2"]
    assert len({path.name for path in targets}) == 3
    found = reasons(tmp_path / "q")
    assert {stored: (r["file"], r["reason"]) for stored, r in found.items()} == {
        target.name: (name, f"reason {attempt}") for attempt, target in enumerate(targets)
    }
    assert all(len(entry.name.encode()) <= NAME_MAX for entry in (tmp_path / "q").iterdir())
    if size == 60:
        assert [path.name for path in targets] == [name, f"{name[:-4]}~2.csv", f"{name[:-4]}~3.csv"]


def test_a_file_whose_name_looks_like_a_second_copy_is_not_overwritten(tmp_path: Path) -> None:
    quarantine(drop(tmp_path / "in", "a.csv", b"a1"), tmp_path / "q", {})
    quarantine(drop(tmp_path / "in", "a~2.csv", b"producer's a~2"), tmp_path / "q", {})
    second = quarantine(drop(tmp_path / "in", "a.csv", b"a2"), tmp_path / "q", {})
    assert second.name == "a~2~2.csv" or second.read_bytes() == b"a2"
    contents = {path.read_bytes() for path in (tmp_path / "q").glob("*.csv")}
    assert contents == {b"a1", b"a2", b"producer's a~2"}
    assert sorted(r["file"] for r in reasons(tmp_path / "q").values()) == [
        "a.csv",
        "a.csv",
        "a~2.csv",
    ]


def test_a_reason_left_by_a_crash_before_the_move_is_reused(tmp_path: Path) -> None:
    """The state a crash between writing the reason and moving the file leaves: the retry takes
    that slot again instead of leaving an orphan reason behind; another file's reason is kept."""
    q = tmp_path / "q"
    q.mkdir()
    (q / f"a.csv{REASON_SUFFIX}").write_text(json.dumps({"file": "a.csv", "reason": "first try"}))
    (q / f"b.csv{REASON_SUFFIX}").write_text(json.dumps({"file": "other.csv", "reason": "keep"}))
    assert quarantine(drop(tmp_path / "in", "a.csv", b"a"), q, {"reason": "retry"}) == q / "a.csv"
    assert quarantine(drop(tmp_path / "in", "b.csv", b"b"), q, {"reason": "b"}) == q / "b~2.csv"
    found = reasons(q)
    assert found["a.csv"]["reason"] == "retry"
    assert found["b.csv"] == {"file": "other.csv", "reason": "keep"}
    assert found["b~2.csv"]["file"] == "b.csv"
    assert sorted(path.name for path in q.iterdir() if path.name.startswith(".")) == []


def test_a_name_that_is_not_utf8_round_trips_through_its_reason(tmp_path: Path) -> None:
    name = os.fsdecode(b"events_20260101T100000000000Z_latin1_\xe9.csv")
    target = quarantine(drop(tmp_path / "in", name, b"x"), tmp_path / "q", {"reason": "name"})
    again = quarantine(drop(tmp_path / "in", name, b"y"), tmp_path / "q", {"reason": "name"})
    assert (target.name, original_name(target), original_name(again)) == (name, name, name)
    assert again.name != name


# --- 3. moves across file systems --------------------------------------------------------


def test_processed_on_another_file_system(tmp_path: Path, elsewhere: Path) -> None:
    content = os.urandom(3 << 20)  # more than one copy chunk
    source = drop(tmp_path / "input", "events_a.csv", content)
    os.utime(source, (1_700_000_000, 1_700_000_000))
    target = move_to_processed(source, elsewhere / "processed", "2026-01-01-10:00")
    assert os.stat(target).st_dev != os.stat(tmp_path).st_dev
    assert (target.read_bytes(), target.stat().st_mtime) == (content, 1_700_000_000)
    assert not source.exists()
    # a replay's copy comes back: the processed copy is replaced, as within one file system
    again = drop(tmp_path / "input", "events_a.csv", b"again")
    assert move_to_processed(again, elsewhere / "processed", "2026-01-01-10:00") == target
    assert target.read_bytes() == b"again"
    assert [path.name for path in target.parent.iterdir()] == ["events_a.csv"]  # no temporary


def test_quarantine_on_another_file_system_keeps_both_copies(
    tmp_path: Path, elsewhere: Path
) -> None:
    name = name_of(250, "é")
    first = quarantine(drop(tmp_path / "in", name, b"one"), elsewhere, {"reason": "r1"})
    second = quarantine(drop(tmp_path / "in", name, b"two"), elsewhere, {"reason": "r2"})
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    assert sorted(r["reason"] for r in reasons(elsewhere).values()) == ["r1", "r2"]
    assert list((tmp_path / "in").iterdir()) == []
    assert not [path for path in elsewhere.iterdir() if path.name.startswith(".")]


def test_an_exclusive_move_never_replaces_a_file(tmp_path: Path, elsewhere: Path) -> None:
    for directory in (tmp_path / "same", elsewhere):
        source = drop(tmp_path / "from", "f.csv", b"replayed")
        waiting = drop(directory, "f.csv", b"producer's new file")
        with pytest.raises(FileExistsError):
            move(source, waiting, exclusive=True)
        assert (source.read_bytes(), waiting.read_bytes()) == (b"replayed", b"producer's new file")
        assert sorted(path.name for path in directory.iterdir()) == ["f.csv"]  # nothing left
        move(source, directory / "g.csv", exclusive=True)
        assert (directory / "g.csv").read_bytes() == b"replayed" and not source.exists()


MOVER = """
import sys
from pathlib import Path
from ecom_assets.resources.event_files import move
move(Path(sys.argv[1]), Path(sys.argv[2]), exclusive=sys.argv[3] == "1")
print("moved", flush=True)
"""


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_move_across_file_systems_killed_at_any_moment_loses_nothing(
    tmp_path: Path, elsewhere: Path, exclusive: bool
) -> None:
    """kill -9 of a process moving a 96 MB file to another file system, at several moments:
    the file is always whole somewhere, and never partial under its final name."""
    content = os.urandom(96 << 20)
    digest = hashlib.sha256(content).hexdigest()
    outcomes = set()
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 5.0):
        source = drop(tmp_path / "input", "big.csv", content)
        target = elsewhere / "big.csv"
        target.unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-c", MOVER, str(source), str(target), "1" if exclusive else "0"],
            stdout=subprocess.PIPE,
        )
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        at_source = source.exists() and hashlib.sha256(source.read_bytes()).hexdigest()
        at_target = target.exists() and hashlib.sha256(target.read_bytes()).hexdigest()
        assert at_target in (False, digest), "a partial file under its final name"
        assert digest in (at_source, at_target), "the file is nowhere whole"
        outcomes.add((bool(at_source), bool(at_target)))
        source.unlink(missing_ok=True)
    assert (False, True) in outcomes  # the unkilled move completed


# --- 7. a file whose writer paused mid-record is held back --------------------------------


def aged(path: Path, seconds: float, now: float) -> Path:
    os.utime(path, (now - seconds, now - seconds))
    return path


@pytest.mark.parametrize(
    ("content", "age_s", "listed"),
    [
        (b"event_id\n1\n", 2, True),  # finished: settled after the settle time
        (b"event_id\r\n1\r\n", 2, True),
        (b"event_id\r1\r", 2, True),
        (b"event_id\n1,2,par", 2, False),  # paused mid-record: held back
        (b"", 2, False),  # created, nothing written yet
        (b"event_id\n1,2,par", UNTERMINATED_SETTLE_FACTOR + 1, True),  # held long enough
        (b"", UNTERMINATED_SETTLE_FACTOR + 1, True),  # the run quarantines it as empty
        (b"event_id\n1\n", 0.5, False),  # within the settle time, finished or not
    ],
)
def test_an_unfinished_last_line_holds_a_file_back_longer(
    tmp_path: Path, content: bytes, age_s: float, listed: bool
) -> None:
    now = time.time()
    aged(drop(tmp_path, "events_x.csv", content), age_s, now)
    found = list_input_files(tmp_path, 1.0, datetime.fromtimestamp(now, tz=UTC))
    assert [file.name for file in found] == (["events_x.csv"] if listed else [])


def test_a_settle_time_of_zero_holds_nothing_back(tmp_path: Path) -> None:
    drop(tmp_path, "events_x.csv", b"event_id\n1,2,par")
    assert len(list_input_files(tmp_path, 0, datetime.now(tz=UTC))) == 1


def test_a_writer_pausing_mid_record_has_its_file_taken_only_once_finished(tmp_path: Path):
    """A producer writing in place pauses 5 s (longer than the 1 s settle time) in the middle
    of a record, then finishes: the listing never offers the truncated file."""
    path = tmp_path / "events_x.csv"
    seen = []
    with open(path, "wb", buffering=0) as writer:
        writer.write(b"event_id,user_id\n1,2\n3,")
        now = time.time()
        aged(path, 5, now)
        seen.append(list_input_files(tmp_path, 1.0, datetime.fromtimestamp(now, tz=UTC)))
        writer.write(b"4\n")
    now = time.time()
    aged(path, 1.5, now)
    seen.append(list_input_files(tmp_path, 1.0, datetime.fromtimestamp(now, tz=UTC)))
    assert [[file.size_bytes for file in files] for files in seen] == [[], [25]]
