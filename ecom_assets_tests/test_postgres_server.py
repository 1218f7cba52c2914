"""The embedded PostgreSQL server `ecom up` starts: real binaries, real restarts."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from ecom_assets.stack.postgres_server import (
    INGEST_SETTINGS,
    SCRAM_ITERATIONS,
    EmbeddedPostgres,
    PostgresError,
    find_bin_dir,
)
from ecom_assets.stack.processes import free_port


@pytest.fixture
def server_root():
    root = Path(tempfile.mkdtemp(prefix="ecom-test-embedded-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_data_survives_a_restart_and_the_password_is_private(server_root: Path) -> None:
    server = EmbeddedPostgres(server_root, free_port(), find_bin_dir())
    server.start()
    try:
        server.ensure_database("ecom")
        server.ensure_database("ecom")  # idempotent
        with psycopg.connect(server.url()) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        server.stop()
        assert server.is_running() is False
        server.start()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
            listen = conn.execute("SHOW listen_addresses").fetchone()
            ingest = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in INGEST_SETTINGS}
        assert listen == ("127.0.0.1",)
        assert ingest == INGEST_SETTINGS
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    finally:
        server.stop()


def test_the_password_is_checked_by_a_verifier_of_few_rounds(server_root: Path) -> None:
    server = EmbeddedPostgres(server_root, free_port(), find_bin_dir())
    server.start()
    try:
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"postgresql://ecom:wrong@127.0.0.1:{server.port}/postgres")
        with psycopg.connect(server.url("postgres")) as conn:
            (stored,) = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'ecom'"
            ).fetchone()
            newer = conn.info.server_version >= 160000
        assert stored.startswith(f"SCRAM-SHA-256${SCRAM_ITERATIONS if newer else 4096}:")
        assert server.password() not in stored
    finally:
        server.stop()


def test_a_port_in_use_is_a_clear_error(server_root: Path, postgres_server) -> None:
    server = EmbeddedPostgres(server_root, postgres_server.port, find_bin_dir())
    with pytest.raises(PostgresError, match=f"did not start on 127.0.0.1:{postgres_server.port}"):
        server.start(timeout_s=10)


def test_a_configured_bin_dir_without_binaries_is_named(tmp_path: Path) -> None:
    with pytest.raises(PostgresError, match="ECOM_PG_BIN_DIR"):
        find_bin_dir(tmp_path)
