"""The stack's files are its user's only: one umask for everything it starts, and directories
that an older installation made wider are tightened by `ecom up`.

Under the usual umask 022, `data/` (user and session ids), the logs, quarantine reasons, the
Dagster home and the Spark log were readable by every local user. Every `ecom` command runs under
STACK_UMASK and passes it to each process it starts (processes.start_group), so what those
create, Dagster's storage and compute logs and Spark's scratch included, is private from its
creation. `ecom up` also tightens the directories an older installation made: the state and data
roots and the stack's directories inside them. The files inside are left as they are (a private
parent already closes them off, and a walk of processed/ would grow with every file); a directory
configured outside those roots (an input directory shared with a producer running as another
user) is its operator's, and left as it is.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecom_assets.settings import Settings

STACK_UMASK = 0o077
"""No group or other bits on anything the stack creates."""

PASSAGE = 0o010
"""Group may enter, not list: what the embedded PostgreSQL's group is granted on the state
directory under root (postgres_server.EmbeddedPostgres.admit_through)."""


def stack_directories(settings: Settings) -> list[Path]:
    """The directories `ecom up` owns: the state and data roots and the stack's own directories
    that lie inside them."""
    state, data = settings.paths.state, settings.paths.data
    candidates = [state, state / "dagster_home", state / "spark", data, settings.input_dir,
                  settings.processed_dir, settings.quarantine_dir, settings.log_dir]  # fmt: skip
    return [
        path
        for path in dict.fromkeys(candidates)
        if path.is_relative_to(state) or path.is_relative_to(data)
    ]


def tighten(directories: Iterable[Path], project_root: Path) -> list[Path]:
    """Remove group and other access from each existing directory the caller owns; the ones
    changed. Never the project root or one of its parents (a data directory set to `.`), and
    a group's right to pass granted to another group than the caller's (PASSAGE) is kept."""
    changed = []
    for directory in directories:
        if project_root.is_relative_to(directory):
            continue
        try:
            found = directory.stat()
        except OSError:
            continue
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            continue
        kept = PASSAGE if found.st_gid != os.getegid() else 0
        wider = stat.S_IMODE(found.st_mode) & 0o077 & ~kept
        if wider:
            directory.chmod(stat.S_IMODE(found.st_mode) & ~wider)
            changed.append(directory)
    return changed
