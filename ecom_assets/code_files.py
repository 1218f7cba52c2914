"""The files a run's code comes from, and a cheap way to tell that one changed.

Both the warm run pool (which refuses to fork a run from stale imports) and a lingering ingest
run (which stops taking new files, so the next run executes the new code) ask the same question.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ecom_assets.partitions import watched_start_record
from ecom_assets.settings import env_file

WATCHED_PACKAGE = "ecom_assets"

Fingerprint = dict[str, int | None]


def fingerprint(paths: list[str]) -> Fingerprint:
    """Each file's modification time in ns (None: absent)."""
    stamps: Fingerprint = {}
    for path in paths:
        try:
            stamps[path] = os.stat(path).st_mtime_ns
        except OSError:
            stamps[path] = None
    return stamps


def watched_files() -> list[str]:
    """What a run would read again if it started afresh: every module of the code location's
    package (imported or not, so that a fix to a module that failed to import counts too) and
    the settings file."""
    package = Path(importlib.import_module(WATCHED_PACKAGE).__file__).parent
    files = [*sorted(map(str, package.rglob("*.py"))), str(env_file().resolve())]
    return [*files, *watched_start_record()]  # the first hourly partition (partitions.py)


class CodeWatch:
    """Has the code location changed since this object was made? (About 1 ms per look.)"""

    def __init__(self) -> None:
        self.paths = watched_files()
        self.stamps = fingerprint(self.paths)

    def changed(self) -> bool:
        return fingerprint(self.paths) != self.stamps
