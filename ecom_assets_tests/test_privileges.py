"""Least privilege: the embedded PostgreSQL under root keeps none of root's ids, the files the
stack creates are private from their creation, and wider directories of an older installation
are tightened. Real servers, real users, real file systems; the whole stack's files are walked
in test_stack.py."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ecom_assets.resources.event_files import move_to_processed
from ecom_assets.settings import IngestionSettings, PathSettings, load_settings
from ecom_assets.stack.file_modes import PASSAGE, STACK_UMASK, stack_directories, tighten
from ecom_assets.stack.postgres_server import (
    SERVER_USER,
    EmbeddedPostgres,
    PostgresError,
    _create_server_user,
    find_bin_dir,
    server_user,
)
from ecom_assets.stack.processes import free_port, start_group, stop_group

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server changes user only under root")


@pytest.fixture
def server_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ecom-test-privileges-"))
    root.chmod(0o755)  # as the suite's fixtures do: wider than the server makes it
    yield root
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def ids(pid: int) -> dict[str, list[int]]:
    """Real, effective, saved and file-system uids and gids, and the supplementary groups."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(number) for number in value.split()]
    return fields


IN_MODIFY, IN_ATTRIB, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x80, 0x100


@contextmanager
def watched(directory: Path) -> Iterator[list[tuple[str, int]]]:
    """(name, mask) of every inotify event on the entries of directory while the block runs:
    what was created in it, and whose mode or owner changed after its creation."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    mask = IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_MODIFY
    assert libc.inotify_add_watch(fd, os.fsencode(directory), mask) >= 0
    events: list[tuple[str, int]] = []
    try:
        yield events
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _wd, event, _cookie, size = (
                    int.from_bytes(data[offset + i : offset + i + 4], "little")
                    for i in (0, 4, 8, 12)
                )
                name = data[offset + 16 : offset + 16 + size].rstrip(b"\0").decode()
                if name:  # events of the directory itself have none
                    events.append((name, event))
                offset += 16 + size
    finally:
        os.close(fd)


# --- the embedded PostgreSQL under root ----------------------------------------------------


@as_root
def test_the_postmaster_and_its_backends_keep_none_of_roots_ids(server_root: Path) -> None:
    server = EmbeddedPostgres(server_root, free_port(), find_bin_dir())
    server.start()
    try:
        with psycopg.connect(server.url("postgres")) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            expected = pwd.getpwnam(SERVER_USER)
            user = server_user()
            assert user is not None
            for pid in (server.postmaster_pid(), backend):
                found = ids(pid)
                assert found["Uid"] == [expected.pw_uid] * 4, pid
                assert found["Gid"] == [expected.pw_gid] * 4, pid
                assert sorted(found["Groups"]) == sorted(user.groups), pid
                assert 0 not in found["Gid"] + found["Groups"]
        assert expected.pw_uid not in (0, pwd.getpwnam("nobody").pw_uid)
        assert expected.pw_shell.endswith(("nologin", "false"))
    finally:
        server.stop()


@as_root
def test_nobody_and_root_are_refused_before_anything_is_written(server_root: Path) -> None:
    for name in ("nobody", "root"):
        server = EmbeddedPostgres(server_root, free_port(), find_bin_dir(), user=name)
        with pytest.raises(
            PostgresError, match=f"refusing to run the embedded PostgreSQL as '{name}'"
        ):
            server.start()
    assert list(server_root.iterdir()) == []
    with pytest.raises(PostgresError, match="'ecom-no-such-user' does not exist"):
        server_user("ecom-no-such-user")


@as_root
def test_the_dedicated_user_is_created_as_a_system_user_with_a_group_of_its_own() -> None:
    name = f"ecom-t-{uuid.uuid4().hex[:8]}"
    try:
        entry = _create_server_user(name)
        assert entry.pw_uid < 1000 and entry.pw_gid != 0
        assert entry.pw_shell.endswith(("nologin", "false"))
        assert not Path(entry.pw_dir).exists()
        assert os.getgrouplist(name, entry.pw_gid) == [entry.pw_gid]
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def test_the_servers_files_are_private_from_their_creation(server_root: Path) -> None:
    """Under umask 0 every file created with a default mode would be world-writable: what the
    server's code creates has its mode from the start. The password never goes through another
    file (initdb reads it from a pipe), and no mode is changed after creation."""
    server = EmbeddedPostgres(server_root, free_port(), find_bin_dir())
    with umask(0), watched(server_root) as events:
        server.init()
    created = {name for name, event in events if event & (IN_CREATE | IN_MOVED_TO)}
    assert created == {"password", "data", "log"}
    assert ("password", IN_ATTRIB) not in events  # written once, 0600 since its creation

    user = server_user()
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    assert server.password_file.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(server_root.stat().st_mode) == (0o700 | PASSAGE if user else 0o700)
    owner = (user.uid, user.gid) if user else (os.geteuid(), os.getegid())
    for path in [server.data_dir, server.log_file.parent, *server.data_dir.rglob("*")]:
        found = path.lstat()
        assert (found.st_uid, found.st_gid) == owner, path
        assert stat.S_IMODE(found.st_mode) & 0o077 == 0, path
    if user is not None:
        assert server_root.stat().st_gid == user.gid


@as_root
def test_an_older_installation_run_by_postgres_is_handed_over(server_root: Path) -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no `postgres` user to have run an older installation")
    port = free_port()
    older = EmbeddedPostgres(server_root, port, find_bin_dir(), user="postgres")
    older.start()
    with psycopg.connect(older.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    server = EmbeddedPostgres(server_root, port, find_bin_dir())
    try:
        with pytest.raises(
            PostgresError, match=r"runs as uid \d+, not as .ecom-postgres.: stop it"
        ):
            server.start()  # never takes the files of a running server
        server.stop()  # its pg_ctl cannot read the older user's data: the postmaster is signalled
        assert older.postmaster_pid() is None
        server.start()
        with psycopg.connect(server.url("postgres")) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
        expected = pwd.getpwnam(SERVER_USER)
        assert ids(server.postmaster_pid())["Uid"][0] == expected.pw_uid
        for path in [server.data_dir, *server.data_dir.rglob("*")]:
            assert (path.lstat().st_uid, path.lstat().st_gid) == (
                expected.pw_uid, expected.pw_gid
            ), path  # fmt: skip
    finally:
        server.stop()
        older.stop()


# --- the stack's files ---------------------------------------------------------------------


def test_every_process_the_stack_starts_creates_private_files(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "part.log"
    with umask(0):  # a caller with no umask at all
        process = start_group(["sh", "-c", "umask; echo x > made"], log, cwd=tmp_path)
        assert process.wait(timeout=30) == 0
    stop_group(process.pid, timeout_s=5)
    assert log.read_text().split() == [f"{STACK_UMASK:04o}"]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o600


def test_up_tightens_the_directories_it_owns_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, shared = tmp_path / "project", tmp_path / "shared-input"
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    settings = load_settings(
        paths=PathSettings(home=home),
        ingestion=IngestionSettings(input_dir=shared),
    )
    roots = [settings.paths.state, settings.paths.data]
    owned = [settings.paths.state / "dagster_home", settings.processed_dir, settings.log_dir]
    for directory in [home, shared, *roots, *owned, settings.quarantine_dir]:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    foreign = settings.quarantine_dir  # a directory of the stack's that another user owns
    if os.geteuid() == 0:
        os.chown(foreign, pwd.getpwnam("nobody").pw_uid, -1)
    (settings.processed_dir / "old.csv").write_text("x")
    (settings.processed_dir / "old.csv").chmod(0o644)

    changed = tighten(stack_directories(settings), settings.paths.root)

    assert set(changed) == set(roots + owned) | (set() if os.geteuid() == 0 else {foreign})
    for directory in roots + owned:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(home.stat().st_mode) == 0o755  # the project itself is the user's
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an input directory outside data/
    if os.geteuid() == 0:
        assert stat.S_IMODE(foreign.stat().st_mode) == 0o755
    assert tighten(stack_directories(settings), settings.paths.root) == []


def test_a_copy_to_another_file_system_is_private(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    elsewhere = Path(tempfile.mkdtemp(dir=shm, prefix="ecom-test-privileges-"))
    try:
        produced = tmp_path / "events_1.csv"
        produced.write_text("event_id\n1\n")
        produced.chmod(0o644)  # a producer's usual mode
        os.utime(produced, (1_700_000_000, 1_700_000_000))
        with umask(0o022):
            moved = move_to_processed(produced, elsewhere, "2025-01-01-00:00")
        assert stat.S_IMODE(moved.stat().st_mode) == 0o600
        assert moved.stat().st_mtime == 1_700_000_000  # partitions may use it
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_the_generator_writes_private_files(tmp_path: Path) -> None:
    from generator.writer import write_atomic

    with umask(0):
        path = write_atomic(tmp_path / "events.csv", [b"a\n"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
