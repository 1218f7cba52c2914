"""The embedded PostgreSQL server: a real server in a data directory owned by the project.

Used when ECOM_DATABASE_URL is unset (by `ecom up`) and by the test suite for its throwaway
server. It listens on 127.0.0.1 only, with a generated password (scram-sha-256) kept in a 0600
file beside the data directory. PostgreSQL refuses to run as root, so under root the server runs
as an unprivileged system user and the directories it writes are handed to that user.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

SUPERUSER = "ecom"
SCRAM_ITERATIONS = 16
"""PBKDF2 rounds of the password's SCRAM verifier (PostgreSQL's default: 4,096). Rounds slow down
the guessing of a weak password; this one is 192 random bits. At 4,096 every connection cost
both ends about 6 ms of CPU, and Dagster's storage opens one per query (about 800 a minute on an
idle stack): docs/decisions.md 39."""
UNPRIVILEGED_USERS = ("postgres", "nobody")
INGEST_SETTINGS = {"shared_buffers": "384MB", "max_wal_size": "2GB"}
"""Server settings for a run's concurrent commits (docs/decisions.md 43). With the default 128 MB
of buffers, two inserts into the events table evicted each other's dirty pages, flushing the WAL
first: together they took 9.2 s where one after the other took 10.9. With 384 MB, 7.6-7.8 s
against 12.3. A larger max_wal_size spaces the checkpoints a 1M-row backlog set off."""


class PostgresError(RuntimeError):
    """The embedded server could not be found, initialised or started; the message says why."""


@functools.cache
def find_bin_dir(configured: Path | None = None) -> Path:
    """initdb/pg_ctl/postgres: the configured directory, pgserver's wheel, or a system install.

    A candidate counts only if the server's user can run it (under root the server runs as an
    unprivileged user, who may not reach a virtualenv inside a private home directory).
    """
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    wheel = importlib.util.find_spec("pgserver")  # located, not imported: it has side effects
    if wheel is not None and wheel.submodule_search_locations:
        candidates.append(Path(wheel.submodule_search_locations[0]) / "pginstall" / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for candidate in candidates:
        if _runnable(candidate):
            return candidate
        if candidate == configured:
            raise PostgresError(
                f"ECOM_PG_BIN_DIR={configured} has no runnable initdb/pg_ctl/postgres"
            )
    raise PostgresError(
        "PostgreSQL server binaries not found: reinstall the project (`make install` brings the "
        "pgserver wheel), set ECOM_PG_BIN_DIR, or point ECOM_DATABASE_URL at a running server"
    )


def _runnable(bin_dir: Path) -> bool:
    if not all((bin_dir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
        return False
    probe = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, user=_run_as(), cwd="/"
    )
    return probe.returncode == 0


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresError("running as root, but no unprivileged user (postgres, nobody) exists")


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One server: ``root`` holds ``data/`` (PGDATA), ``log/server.log`` and ``password``.

    ``bin_dir`` None means "found on first use", so building a URL never probes binaries.
    """

    root: Path
    port: int
    bin_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = "ecom", driver: str = "postgresql") -> str:
        secret = quote(self.password(), safe="")
        return f"{driver}://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(find_bin_dir(self.bin_dir) / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            user=_run_as(),
            cwd="/",
        )

    def _checked(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = self._pg(tool, *args)
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout
            raise PostgresError(f"{tool} failed (exit {result.returncode}): {output}")
        return result

    def _hand_over(self, *paths: Path) -> None:
        """Under root, give the server's directories to the user it runs as."""
        user = _run_as()
        if user is None:
            return
        for path in paths:
            shutil.chown(path, user=user)

    def init(self) -> None:
        """Create the cluster once; a no-op when it exists (the data survives restarts)."""
        if self.initialised:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.parent.mkdir(exist_ok=True)
        if not self.password_file.exists():
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        pwfile = self.root / ".initdb-password"
        shutil.copyfile(self.password_file, pwfile)
        self._hand_over(self.data_dir, self.log_file.parent, pwfile)
        try:
            self._checked(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
        except PostgresError as exc:
            raise PostgresError(
                f"{exc}\n(the data directory {self.data_dir} and its parents must be writable and "
                "traversable by the server's user; set ECOM_STATE_DIR elsewhere if they are not)"
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def is_running(self) -> bool:
        if not self.initialised:
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def postmaster_pid(self) -> int | None:
        """The live postmaster of this data directory, from postmaster.pid; None when the file
        is missing or names a process that is gone or is not this server (a reused pid). Cheap
        enough to ask every second, unlike `pg_ctl status`."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if state != "Z" and os.fsencode(self.data_dir) in cmdline else None

    def orphans(self) -> list[int]:
        """Processes left by a postmaster that died (SIGKILL, OOM): its backends and auxiliary
        processes, whose working directory is the data directory. While one lives, a new
        postmaster refuses to start ("pre-existing shared memory block is still in use")."""
        live = self.postmaster_pid()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == live:
                continue
            try:
                if Path(os.readlink(entry / "cwd")) == self.data_dir.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def _wait_for_the_dead(self, timeout_s: float = 30.0) -> None:
        """A killed postmaster stays a zombie until its parent (init) reaps it, which some
        inits do only every few seconds; meanwhile `pg_ctl status` calls it running and a new
        postmaster refuses its lock file. Wait for the reaping."""

        def zombie() -> bool:
            try:
                pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
                stat = Path(f"/proc/{pid}/stat").read_text()
            except (OSError, ValueError, IndexError):
                return False
            return stat.rsplit(")", 1)[-1].split()[0] == "Z"

        deadline = time.monotonic() + timeout_s
        while zombie() and time.monotonic() < deadline:
            time.sleep(0.1)

    def end_orphans(self, timeout_s: float = 10.0) -> int:
        """SIGKILL the processes a dead postmaster left (none while it lives); how many."""
        if self.postmaster_pid() is not None:
            return 0
        orphans = self.orphans()
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while self.orphans() and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(orphans)

    def start(self, timeout_s: int = 60) -> None:
        """Initialise if needed and start; bound to 127.0.0.1, no Unix socket."""
        self.init()
        self._wait_for_the_dead()
        if self.is_running():
            return
        self.end_orphans()
        settings = " ".join(f"-c {name}={value}" for name, value in INGEST_SETTINGS.items())
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' {settings}"
        )
        result = self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(timeout_s),
        )
        if result.returncode != 0:
            log = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise PostgresError(
                f"PostgreSQL did not start on 127.0.0.1:{self.port}: "
                f"{result.stderr.strip()}\n{log.strip()}"
            )
        self._cheap_authentication()

    def _cheap_authentication(self) -> None:
        """Store the password's verifier with SCRAM_ITERATIONS rounds, once (PostgreSQL >= 16;
        an older server keeps its 4,096). It is computed here, so the password never travels."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.info.server_version < 160000:
                return
            (stored,) = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (SUPERUSER,)
            ).fetchone()
            if stored.startswith(f"SCRAM-SHA-256${SCRAM_ITERATIONS}:"):
                return
            # libpq takes the rounds from the server's (reported) scram_iterations
            conn.execute(sql.SQL("SET scram_iterations = {}").format(SCRAM_ITERATIONS))
            verifier = conn.pgconn.encrypt_password(
                self.password().encode(), SUPERUSER.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                )
            )

    def stop(self) -> None:
        self._wait_for_the_dead()
        if self.is_running():
            self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
