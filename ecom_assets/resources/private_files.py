"""Files only the stack's user may read: the secrets it hands to its own processes.

A secret file is written to a temporary file that ``mkstemp`` creates 0600, in the same directory,
and renamed over its name: it is never readable by others, not even while it is written (a file
created and then chmod-ed is, for a moment, under the umask), and a reader never sees half of it.
It is read without following a symbolic link, and refused when others could read it: a secret
that was readable is no secret any more, and saying so beats using it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ecom_assets.safe_open import NotRegularFileError, open_regular


class PrivateFileError(RuntimeError):
    """A secret file is not a regular file of ours, or others may read it; the message says
    which file and what to do (never its content)."""


def _written_beside(path: Path, text: str) -> str:
    """A temporary file beside ``path``, 0600 from its creation (``mkstemp``), holding ``text``
    on disk; the caller renames or links it into place and removes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically, mode 0600 from the first byte."""
    temporary = _written_beside(path, text)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def create_private(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` 0600 unless the file exists; False when it did (then it is
    left as it is). Two processes creating it at once: one wins, the other reads its text."""
    temporary = _written_beside(path, text)
    try:
        os.link(temporary, path)  # fails if path exists: never replaces another's file
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return True


def read_private(path: Path) -> str:
    """The text of the secret file ``path``; PrivateFileError if it is a link, not a regular
    file, or readable by group or others. FileNotFoundError when absent."""
    try:
        file = open_regular(path)  # no link followed, no FIFO waited on
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = str(exc) if isinstance(exc, NotRegularFileError) else exc.strerror
        raise PrivateFileError(f"cannot open the secret file {path}: {reason}") from None
    with file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & 0o077:
            raise PrivateFileError(
                f"the secret file {path} is readable by others (mode "
                f"{stat.S_IMODE(mode):o}): delete it to get a new secret, or run "
                f"`chmod 600 {path}` if nobody else could have read it"
            )
        return file.read().decode("utf-8")
