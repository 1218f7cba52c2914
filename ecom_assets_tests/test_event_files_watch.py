"""Listing the input directory: names to skip, and an idle directory watched, a busy one not."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from ecom_assets.resources.event_files import WATCH_POLL_S, list_input_files, watch_input_files

NAME = "events_20261206T101500000000Z_00000001.csv"


def land_later(input_dir: Path, delay_s: float, name: str = NAME) -> threading.Timer:
    """Write the file beside the directory and rename it in after delay_s, as producers do."""
    staged = input_dir.parent / name
    staged.write_text("event_id\n")
    timer = threading.Timer(delay_s, os.rename, (staged, input_dir / name))
    timer.start()
    return timer


def test_a_file_landing_during_the_watch_is_returned_within_a_poll(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    timer = land_later(input_dir, 0.5)
    started = time.monotonic()
    files, _ = watch_input_files(input_dir, settle_s=0, watch_s=5)
    waited = time.monotonic() - started
    timer.join()
    assert [file.name for file in files] == [NAME]
    assert 0.5 <= waited < 3  # when the file landed, well before the 5 s watch ends


def test_a_file_is_returned_only_once_settled(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    (input_dir / NAME).write_text("event_id\n")  # modified now: settled in 0.6 s
    started = time.monotonic()
    files, listed_at = watch_input_files(input_dir, settle_s=0.6, watch_s=5)
    waited = time.monotonic() - started
    assert [file.name for file in files] == [NAME]
    assert 0.6 - WATCH_POLL_S <= waited < 3
    assert (listed_at - files[0].modified_at).total_seconds() >= 0.6


def test_an_idle_directory_is_watched_for_watch_s_then_reported_empty(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    (input_dir / ".events_half_written.csv").write_text("event_id\n")  # never a candidate
    started = time.monotonic()
    files, _ = watch_input_files(input_dir, settle_s=0, watch_s=0.8)
    waited = time.monotonic() - started
    assert files == []
    assert waited >= 0.8


def test_waiting_files_are_listed_once_and_returned_at_once(tmp_path: Path) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    (input_dir / NAME).write_text("event_id\n")
    os.utime(input_dir / NAME, (time.time() - 10, time.time() - 10))
    started = time.monotonic()
    files, _ = watch_input_files(input_dir, settle_s=1, watch_s=5)
    assert [file.name for file in files] == [NAME]
    assert time.monotonic() - started < 2  # one listing, not the 5 s watch


def test_a_listing_passes_over_the_names_to_skip(tmp_path: Path) -> None:
    names = [f"events_20261206T1015{second:02d}000000Z_00000001.csv" for second in range(3)]
    for name in names:
        (tmp_path / name).write_text("event_id\n")
    listed = list_input_files(tmp_path, 0, datetime.now(tz=UTC), skip={names[0], names[2]})
    assert [file.name for file in listed] == [names[1]]
