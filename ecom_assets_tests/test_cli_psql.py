"""`ecom psql` and `ecom db-url`: the database in use, its password on no command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ecom_assets.stack.processes import wait_until

pytestmark = pytest.mark.integration

ECOM = [sys.executable, "-m", "ecom_assets.cli"]


def _environment(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOM_", "PG"))}
    env.update(ECOM_HOME=str(home), ECOM_ENV_FILE=str(home / "absent.env"), ECOM_DATABASE_URL=url)
    return env


def _password(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["password"]


def test_psql_runs_on_the_database_in_use(migrated_database_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [*ECOM, "psql", "-At", "-c", "SELECT count(*) FROM ingest_files"],
        env=_environment(migrated_database_url, tmp_path), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "0\n", "")


def test_psqls_command_line_holds_no_password(migrated_database_url: str, tmp_path: Path) -> None:
    """`ecom psql` becomes psql (exec): its /proc/<pid>/cmdline, which every local user reads,
    names the database, and the password comes from the 0600 file PGPASSFILE names."""
    process = subprocess.Popen(
        [*ECOM, "psql", "-At", "-c", "SELECT pg_sleep(5)"],
        env=_environment(migrated_database_url, tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc = Path("/proc") / str(process.pid)
    try:
        assert wait_until(lambda: b"psql" in (proc / "cmdline").read_bytes().split(b"\0")[0], 30)
        time.sleep(0.5)  # connected by now: the password was read
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        environ = dict(
            item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if item
        )
    finally:
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    password = _password(migrated_database_url).encode()
    assert not any(password in arg for arg in argv)
    assert b"@127.0.0.1:" in argv[1] and b"-c" in argv
    passfile = Path(environ[b"PGPASSFILE"].decode())
    assert passfile == tmp_path / ".ecom" / "pgpass"
    assert oct(passfile.stat().st_mode & 0o777) == oct(0o600)
    assert password not in b"".join(environ.values())


def test_psql_missing_is_said_plainly(migrated_database_url: str, tmp_path: Path) -> None:
    nothing = tmp_path / "empty-bin"
    nothing.mkdir()
    env = _environment(migrated_database_url, tmp_path)
    env.update(PATH=str(nothing), ECOM_PG_BIN_DIR=str(nothing))
    result = subprocess.run(
        [*ECOM, "psql", "-c", "SELECT 1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 127
    assert "psql not found" in result.stderr and "ECOM_PG_BIN_DIR" in result.stderr


def test_db_url_names_the_password_file_not_the_password(
    migrated_database_url: str, tmp_path: Path
) -> None:
    env = _environment(migrated_database_url, tmp_path)
    printed = subprocess.run(
        [*ECOM, "db-url"], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert _password(migrated_database_url) not in printed
    assert printed.endswith(f"?passfile={tmp_path / '.ecom' / 'pgpass'}")
    with psycopg.connect(printed) as conn:  # any libpq client connects with it alone
        assert conn.execute("SELECT current_database()").fetchone()[0] in migrated_database_url
    shown = subprocess.run(
        [*ECOM, "db-url", "--show-password"], env=env, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert shown == migrated_database_url
