"""Atomic CSV and truth files: whole or absent, never partial; a failed write is a clear error."""

from __future__ import annotations

import csv
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_assets_tests.test_generator_support import csv_files, run_generator
from generator import writer
from generator.writer import WriteError, csv_chunks, ensure_directory, write_csv, write_json

HEADER = ["a", "b", "c"]


def test_csv_is_quoted_exactly_like_the_csv_module() -> None:
    rows = [
        ["1", "plain", ""],
        ["2", "12,99", 'say "hi"'],
        ["3", "line\nbreak", "carriage\rreturn"],
        ["4", "", "x"],
    ]
    text = b"".join(csv_chunks(HEADER, rows, chunk_rows=3)).decode()
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows([HEADER, *rows])
    # csv.writer quotes a lone \r only when it is part of the line terminator; we always quote
    assert text == expected.getvalue().replace("carriage\rreturn", '"carriage\rreturn"')
    assert list(csv.reader(io.StringIO(text, newline=""))) == [HEADER, *rows]


def test_write_csv_creates_the_file_and_no_temp(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events_x.csv", HEADER, [["1", "2", "3"]])
    assert path.read_bytes() == b"a,b,c\n1,2,3\n"
    assert sorted(os.listdir(tmp_path)) == ["events_x.csv"]


def test_only_the_hidden_temp_file_exists_while_writing(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def rows() -> Iterator[list[str]]:
        yield ["1", "2", "3"]
        seen.append(sorted(os.listdir(tmp_path)))
        raise RuntimeError("row source failed")

    with pytest.raises(RuntimeError, match="row source failed"):
        write_csv(tmp_path / "events_x.csv", HEADER, rows())
    assert seen == [[".events_x.csv.tmp"]]
    assert os.listdir(tmp_path) == []


def test_disk_full_on_fsync_is_a_write_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer.os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        write_csv(tmp_path / "events_x.csv", HEADER, [["1", "2", "3"]])
    assert str(caught.value) == f"cannot write {tmp_path / 'events_x.csv'}: No space left on device"
    assert os.listdir(tmp_path) == []


def test_disk_full_while_writing_chunks_leaves_nothing(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a,b,c\n"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError, match="No space left on device"):
        writer.write_atomic(tmp_path / "events_x.csv", chunks())
    assert os.listdir(tmp_path) == []


def test_a_directory_that_cannot_exist_is_a_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(
        WriteError, match=r"cannot create directory .*a_file/input: Not a directory"
    ):
        ensure_directory(blocker / "input")
    with pytest.raises(WriteError, match="Not a directory"):
        write_json(blocker / "x.json", {"a": 1})


def test_a_failed_run_leaves_no_file_in_the_input_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_fsync = os.fsync

    def full_on_second_csv(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 4:  # truth 1, csv 1, truth 2, csv 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", full_on_second_csv)
    with pytest.raises(WriteError, match="No space left on device"):
        run_generator(tmp_path, files=3)
    assert len(csv_files(tmp_path / "input")) == 1
    assert [p.name for p in (tmp_path / "input").iterdir() if p.name.startswith(".")] == []


def test_truth_file_is_written_before_its_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real = writer.write_atomic

    def record(path: Path, chunks: object) -> Path:
        order.append(path.suffix)
        return real(path, chunks)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "write_atomic", record)
    stats, _, _ = run_generator(tmp_path, files=2)
    assert order == [".json", ".csv", ".json", ".csv"]
    assert stats.files == 2
