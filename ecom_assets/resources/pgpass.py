"""The database password out of what travels and what others see: a libpq password file.

Spark pickles a task's closure into the plan, which crosses to the Connect server (over the
network to a remote one), and a command line is visible to every local user in
``/proc/<pid>/cmdline``. So what travels is the URL without its password, and libpq reads the
password in the process that connects, from a password file (``passfile``; PostgreSQL's docs,
"The Password File") written 0600 under the state directory. Its lines name host, port and user
with ``*`` for the database: a role's password is the same in every database of a server.

The URL is split the way libpq reads it (the user's part ends at the first ``@``, where Python's
``urlsplit`` takes the last), and the result is checked with libpq's own parser: a URL this
module would split differently is refused, never half-stripped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from psycopg.conninfo import conninfo_to_dict

from ecom_assets.resources.private_files import read_private, write_private

PGPASS_FILE = "pgpass"


class PasswordSplitError(ValueError):
    """The URL cannot be split into a password-free URL and a password line; the message never
    holds the URL."""


def pgpass_file(state_dir: Path) -> Path:
    """The password file of an installation: ``<ECOM_STATE_DIR>/pgpass``."""
    return state_dir / PGPASS_FILE


@dataclass(frozen=True)
class SplitURL:
    """A database URL split in two: ``url`` without its password, and ``lines`` for a password
    file that hold it (none when the URL had no password)."""

    url: str
    lines: tuple[str, ...]


def split_password(url: str) -> SplitURL:
    """``url`` without its password (in the user part or a ``password`` parameter) and the
    password file lines for it: one per host, ``host:port:*:user:password``."""
    try:
        parsed = conninfo_to_dict(url)
    except Exception:
        raise PasswordSplitError("not a PostgreSQL URL libpq can read") from None
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise PasswordSplitError("not a postgresql:// URL")
    end = next((i for i, char in enumerate(rest) if char in "@/"), len(rest))
    if end < len(rest) and rest[end] == "@":  # libpq: the user's part ends at the first @
        user = rest[:end].partition(":")[0]
        rest = (f"{user}@" if user else "") + rest[end + 1 :]
    base, question, query = rest.partition("?")
    if question:
        kept = [p for p in query.split("&") if unquote(p.partition("=")[0]) != "password"]
        rest = base + ("?" + "&".join(kept) if kept else "")
    stripped = f"{scheme}://{rest}"
    password = parsed.pop("password", None)
    if conninfo_to_dict(stripped) != parsed:
        raise PasswordSplitError("libpq reads this URL differently than it can be split")
    if not password:
        return SplitURL(stripped, ())
    return SplitURL(stripped, _lines(parsed, password))


def _lines(parsed: dict[str, str], password: str) -> tuple[str, ...]:
    if "\n" in password or "\r" in password:
        raise PasswordSplitError("a password with a line break cannot go to a password file")
    hosts = (parsed.get("host") or parsed.get("hostaddr") or "").split(",")
    ports = (parsed.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    user = _field(parsed.get("user", ""))
    return tuple(
        f"{_field(host)}:{_field(port)}:*:{user}:{_escaped(password)}"
        for host, port in zip(hosts, ports, strict=False)
    )


def _field(value: str) -> str:
    """A host, port or user field: ``*`` (any) where the URL leaves it to libpq's default."""
    return _escaped(value) if value else "*"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def line_key(line: str) -> str:
    """A password file line's host, port, database and user: what identifies it."""
    fields, escaped = 0, False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields += 1
            if fields == 4:
                return line[:index]
    return line


def upsert_lines(path: Path, lines: tuple[str, ...]) -> None:
    """Put ``lines`` into the password file ``path`` (0600), replacing lines of the same host,
    port, database and user; nothing is written when they are in it already."""
    if not lines:
        return
    with _locked(path):
        try:
            existing = read_private(path).splitlines()
        except FileNotFoundError:
            existing = []
        if all(line in existing for line in lines):
            return
        keys = {line_key(line) for line in lines}
        kept = [line for line in existing if line_key(line) not in keys]
        write_private(path, "\n".join([*kept, *lines]) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Runs of two stacks (or test sessions) writing one file at once each keep their line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Passwordless:
    """A database URL without its password and the password file that holds it: what may be
    pickled into a Spark plan, printed, or put on a command line."""

    url: str
    passfile: str

    def connect_options(self) -> dict[str, str]:
        """libpq's ``passfile`` where this process has the file; elsewhere (a remote Spark
        cluster's executors) nothing, so libpq takes PGPASSWORD, PGPASSFILE, ~/.pgpass or a
        service file of that machine."""
        return {"passfile": self.passfile} if os.path.isfile(self.passfile) else {}

    def with_passfile(self) -> str:
        """The URL with a ``passfile`` parameter: any libpq client connects with it alone."""
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}passfile={quote(self.passfile, safe='/')}"


def passwordless(url: str, passfile: Path) -> Passwordless:
    """``url`` without its password, which goes to the password file ``passfile``."""
    split = split_password(url)
    upsert_lines(passfile, split.lines)
    return Passwordless(split.url, str(passfile.absolute()))
