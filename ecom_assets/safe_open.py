"""Open a listed file only as the regular file it was listed as: never through a link, never a FIFO.

Files are listed first (os.scandir, links and special files skipped) and opened later: by the
run's scan, a Spark task's read, a move across file systems, a replay. Whoever can write the
input directory can swap a name in between for a symbolic link (the open would follow it, and
the target's first line would land in a quarantine reason) or a FIFO (an open for reading
waits for a writer, forever). ``open_regular`` opens with O_NOFOLLOW (a link fails at once with
ELOOP), O_NONBLOCK (a FIFO opens at once instead of waiting) and O_CLOEXEC, checks the open
descriptor with fstat (a regular file, and when given, the one that was listed), and only then
clears O_NONBLOCK for ordinary reads. A refusal names the kind of thing found, never its
content or its target. Checking with lstat before an ordinary open was rejected: the swap can
happen between the two calls; fstat looks at what was actually opened.

It imports nothing of the project, so the schema checks, the resources and replay share it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFileError(OSError):
    """The name is not (or no longer) the regular file that was listed: a symbolic link, a
    FIFO, a device, or another file. Its message never holds the file's content or target."""


@dataclass(frozen=True)
class ListedFile:
    """What a listing saw of a file, to recognise it when it is opened later."""

    device: int
    inode: int
    size: int

    @classmethod
    def of(cls, info: os.stat_result) -> ListedFile:
        return cls(info.st_dev, info.st_ino, info.st_size)


def open_regular(path: str | os.PathLike[str], listed: ListedFile | None = None) -> BinaryIO:
    """The file at ``path`` opened for reading in binary, if it is a regular file (and, when
    ``listed`` is given, that very file: same device, inode and size); else
    NotRegularFileError. Other OSErrors (gone, no permission) pass unchanged."""
    name = os.path.basename(os.fsdecode(path))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:  # O_NOFOLLOW on a symbolic link
            raise NotRegularFileError(f"{name} is a symbolic link, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((kind for test, kind in _KINDS if test(info.st_mode)), "not a file")
            raise NotRegularFileError(f"{name} is {kind}, not a regular file")
        if listed is not None and ListedFile.of(info) != listed:
            raise NotRegularFileError(_other_file(name, listed, info))
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], listed: ListedFile | None = None) -> bytes:
    """The whole content of ``open_regular(path, listed)``."""
    with open_regular(path, listed) as file:
        return file.read()


def _other_file(name: str, listed: ListedFile, info: os.stat_result) -> str:
    if (info.st_dev, info.st_ino) != (listed.device, listed.inode):
        return f"{name} is another file than the one listed (it was replaced)"
    return f"{name} is {info.st_size} bytes, not the {listed.size} it had when listed"
