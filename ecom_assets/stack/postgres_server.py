"""The embedded PostgreSQL server: a real server in a data directory owned by the project.

Used when ECOM_DATABASE_URL is unset (by `ecom up`) and by the test suite for its throwaway
server. It listens on 127.0.0.1 only, with a generated password (scram-sha-256) kept in a 0600
file beside the data directory. PostgreSQL refuses to run as root, so under root the server runs
as a system user of its own, SERVER_USER (created when absent), with that user's group and
supplementary groups only: none of root's ids stays with it, and no other daemon shares them
(`nobody` is refused, since many do). Its directories are 0700 and handed to that user; the
directory holding them lets its group pass (0710) and keeps the password root's (0600).
"""

from __future__ import annotations

import contextlib
import functools
import grp
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

from ecom_assets.stack.file_modes import PASSAGE, STACK_UMASK

SUPERUSER = "ecom"
SCRAM_ITERATIONS = 16
"""PBKDF2 rounds of the password's SCRAM verifier (PostgreSQL's default: 4,096). Rounds slow down
the guessing of a weak password; this one is 192 random bits. At 4,096 every connection cost
both ends about 6 ms of CPU, and Dagster's storage opens one per query (about 800 a minute on an
idle stack): docs/decisions.md 39."""
SERVER_USER = "ecom-postgres"
"""The system user and group the server runs as under root. Its own: the `postgres` of a system
PostgreSQL would share our data with that server (and ours with it), `nobody` shares its uid with
other daemons. An installation whose data another user owns (`postgres` before) is handed over at
its next start."""
REFUSED_USERS = ("root", "nobody")
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
        [str(bin_dir / "postgres"), "--version"],
        capture_output=True,
        cwd="/",
        **_as(server_user()),
    )
    return probe.returncode == 0


@dataclass(frozen=True)
class ServerUser:
    """Who the server runs as under root: its uid, its group and the supplementary groups
    initgroups(3) gives it. subprocess sets the groups, then the gid, then the uid, so no id of
    root's survives the switch (``user=`` alone keeps gid 0 and root's groups)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def server_user(name: str = SERVER_USER) -> ServerUser | None:
    """None unless root (the server then runs as the caller). Under root: the user ``name``,
    created when it is SERVER_USER and absent; root's and nobody's ids are refused."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name != SERVER_USER:
            raise PostgresError(
                f"the embedded PostgreSQL's user {name!r} does not exist; create it or use "
                f"{SERVER_USER!r}, which is created when absent"
            ) from None
        entry = _create_server_user(name)
    user = ServerUser(name, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(name, entry.pw_gid)))
    _refuse_shared_ids(user)
    return user


def _refuse_shared_ids(user: ServerUser) -> None:
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        nobody = 65534
    if user.name in REFUSED_USERS or user.uid in (0, nobody) or 0 in (user.gid, *user.groups):
        raise PostgresError(
            f"refusing to run the embedded PostgreSQL as {user.name!r} (uid {user.uid}, gid "
            f"{user.gid}, groups {list(user.groups)}): root's ids would give it root's files, and "
            f"nobody's uid is shared by other daemons. Use {SERVER_USER!r} (created when absent), "
            "run `ecom` as a non-root user, or set ECOM_DATABASE_URL to a running server"
        )


def _create_server_user(name: str) -> pwd.struct_passwd:
    """``useradd --system``: no home, no login shell, a group of its own (or the existing group
    of that name). A concurrent `ecom` creating it too is fine: the user is looked up again."""
    shell = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin") if Path(s).exists()), "/bin/false"
    )
    try:
        grp.getgrnam(name)
        group = ["--gid", name]
    except KeyError:
        group = ["--user-group"]
    command = ["useradd", "--system", *group, "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", shell, "--comment", "ecom embedded PostgreSQL", name]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        reason = result.stderr.strip() or f"useradd exited with {result.returncode}"
    except OSError as exc:
        reason = f"useradd: {exc.strerror or exc}"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(
            f"running as root, the embedded PostgreSQL needs an unprivileged user of its own, "
            f"{name!r}, and it could not be created ({reason}). Create it (`useradd --system "
            f"--user-group --no-create-home --shell /usr/sbin/nologin {name}`), run `ecom` as a "
            "non-root user, or set ECOM_DATABASE_URL to a running server"
        ) from None


def _as(user: ServerUser | None) -> dict:
    """subprocess options that run a tool as the server's user, private files included."""
    if user is None:
        return {"umask": STACK_UMASK}
    return {
        "user": user.uid,
        "group": user.gid,
        "extra_groups": list(user.groups),
        "umask": STACK_UMASK,
    }


def _chown_tree(top: Path, user: ServerUser) -> None:
    """Give a directory and everything in it to user (symbolic links themselves, not targets)."""
    os.chown(top, user.uid, user.gid, follow_symlinks=False)
    for directory, subdirectories, files in os.walk(top):
        for name in (*subdirectories, *files):
            os.chown(Path(directory) / name, user.uid, user.gid, follow_symlinks=False)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One server: ``root`` holds ``data/`` (PGDATA), ``log/server.log`` and ``password``.

    ``bin_dir`` None means "found on first use", so building a URL never probes binaries.
    ``user``: who the server runs as under root (server_user); unused otherwise.
    """

    root: Path
    port: int
    bin_dir: Path | None = None
    user: str = SERVER_USER

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

    def _pg(
        self, tool: str, *args: str, stdin: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(find_bin_dir(self.bin_dir) / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=stdin,
            cwd="/",
            **_as(server_user(self.user)),
        )

    def _checked(
        self, tool: str, *args: str, stdin: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = self._pg(tool, *args, stdin=stdin)
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout
            raise PostgresError(f"{tool} failed (exit {result.returncode}): {output}")
        return result

    def admit_through(self, directory: Path) -> None:
        """Under root, let the server's user pass through ``directory``, an ancestor of ``root``
        that is otherwise root's only (the state directory): its group may enter, not list."""
        user = server_user(self.user)
        if user is None:
            return
        os.chown(directory, -1, user.gid)
        directory.chmod(0o700 | PASSAGE)

    def _prepare(self, user: ServerUser | None) -> None:
        """The directories, private from their creation on, and the server's user's. Data that
        another user owns (the `postgres` of an older installation, or its files of group 0)
        is handed over while no server runs on it."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        mine = (self.data_dir, self.log_file.parent)
        for directory in mine:
            directory.mkdir(mode=0o700, exist_ok=True)
        if self.password_file.exists():
            self.password_file.chmod(0o600)
        if user is None:
            self.root.chmod(0o700)
            return
        handed = [
            directory
            for directory in mine
            if (directory.stat().st_uid, directory.stat().st_gid) != (user.uid, user.gid)
        ]
        pid = self.postmaster_pid() if handed else None
        if pid is not None:
            raise PostgresError(
                f"the server of {self.data_dir} (pid {pid}) runs as uid "
                f"{self.data_dir.stat().st_uid}, not as {user.name!r}: stop it (`ecom down`) and "
                f"start again, and its files go to {user.name!r}"
            )
        self.admit_through(self.root)
        for directory in handed:
            _chown_tree(directory, user)
        for directory in mine:
            directory.chmod(0o700)

    def init(self) -> None:
        """Create the cluster once; a no-op when it exists (the data survives restarts). The
        password file is created 0600 before the secret goes in; initdb reads the secret from a
        pipe, so no copy of it ever lands on disk."""
        user = server_user(self.user)
        self._prepare(user)
        if self.initialised:
            return
        if not self.password_file.exists():
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
            with os.fdopen(os.open(self.password_file, flags, 0o600), "w") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
        secret, feed = os.pipe()
        try:
            with os.fdopen(feed, "w") as writer:  # far below a pipe's buffer: never blocks
                writer.write(self.password() + "\n")
            if user is not None:  # a pipe is its creator's (0600): /dev/stdin reopens it
                os.fchown(secret, user.uid, user.gid)
            self._checked(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--pwfile=/dev/stdin",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                stdin=secret,
            )
        except PostgresError as exc:
            raise PostgresError(
                f"{exc}\n(the data directory {self.data_dir} and its parents must be writable and "
                "traversable by the server's user; set ECOM_STATE_DIR elsewhere if they are not)"
            ) from exc
        finally:
            os.close(secret)

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

    def stop(self, timeout_s: float = 60.0) -> None:
        self._wait_for_the_dead()
        if self.is_running():
            self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
            return
        pid = self.postmaster_pid()
        if pid is not None and os.geteuid() == 0:
            # alive, but pg_ctl (as the server's user) cannot read its data: the server of an
            # older installation, run by that installation's user. SIGINT: a fast shutdown.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            while self.postmaster_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)

    def ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
