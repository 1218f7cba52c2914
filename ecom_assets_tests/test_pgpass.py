"""The database password stays out of Spark's plan: tasks get the URL without it and a 0600
libpq password file, which libpq in the worker reads; real PostgreSQL and Spark."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ecom_assets.resources.catalogue import read_catalogue
from ecom_assets.resources.event_reader import file_names, readable_in
from ecom_assets.resources.event_sink import (
    StagingTables,
    prepare_staging,
    routing_writer,
    stage_routed,
    staged_rows,
    task_plan,
)
from ecom_assets.resources.pgpass import (
    Passwordless,
    PasswordSplitError,
    passwordless,
    split_password,
    upsert_lines,
)
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.settings import Settings
from ecom_assets.transforms.file_rows import FileRows
from ecom_assets_tests.test_fault_support import generate_backlog

SPLITS = [
    ("postgresql://u:pw@h:5432/db", "postgresql://u@h:5432/db", ["h:5432:*:u:pw"]),
    ("postgres://u:p%40ss%3Aw@h/db", "postgres://u@h/db", ["h:*:*:u:p@ss\\:w"]),
    ("postgresql://u:pw@h1:1,h2:2/db", "postgresql://u@h1:1,h2:2/db",
     ["h1:1:*:u:pw", "h2:2:*:u:pw"]),
    ("postgresql://u@[::1]:5/db?password=pw&sslmode=disable",
     "postgresql://u@[::1]:5/db?sslmode=disable", ["\\:\\:1:5:*:u:pw"]),
    ("postgresql://u:pw@h/db?pass%77ord=other", "postgresql://u@h/db", ["h:*:*:u:other"]),
    ("postgresql://:pw@h/db", "postgresql://h/db", ["h:*:*:*:pw"]),
    ("postgresql://u:back\\slash@h/db", "postgresql://u@h/db", ["h:*:*:u:back\\\\slash"]),
    ("postgresql://u:a@b@h/db", "postgresql://u@b@h/db", ["b@h:*:*:u:a"]),  # libpq: first @
    ("postgresql://u@h/db", "postgresql://u@h/db", []),
    ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql", []),
]  # fmt: skip


@pytest.mark.parametrize(("url", "stripped", "lines"), SPLITS)
def test_a_url_splits_into_one_without_password_and_password_file_lines(
    url: str, stripped: str, lines: list[str]
) -> None:
    split = split_password(url)
    assert (split.url, list(split.lines)) == (stripped, lines)
    assert "password" not in conninfo_to_dict(split.url)
    expected = conninfo_to_dict(url)
    expected.pop("password", None)
    assert conninfo_to_dict(split.url) == expected  # libpq reads the rest unchanged


def test_a_password_a_password_file_cannot_hold_is_refused_without_echoing_it() -> None:
    with pytest.raises(PasswordSplitError) as refused:
        split_password("postgresql://u:line%0Abreak-77@h/db")
    assert "break-77" not in str(refused.value)
    with pytest.raises(PasswordSplitError) as refused:
        split_password("mysql://u:secret-78@h/db")
    assert "secret-78" not in str(refused.value)


def test_the_password_file_is_private_and_keeps_one_line_per_server_and_user(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "pgpass"
    previous = os.umask(0)
    try:
        upsert_lines(path, ("h:1:*:u:old",))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    upsert_lines(path, ("other:2:*:v:kept",))
    upsert_lines(path, ("h:1:*:u:new",))
    assert path.read_text().splitlines() == ["other:2:*:v:kept", "h:1:*:u:new"]
    inode = path.stat().st_ino
    upsert_lines(path, ("h:1:*:u:new",))  # every batch asks: nothing to write
    assert path.stat().st_ino == inode


def test_writers_at_once_each_keep_their_line(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    lines = [f"h{i}:5432:*:u:pw{i}" for i in range(16)]
    threads = [threading.Thread(target=upsert_lines, args=(path, (line,))) for line in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(path.read_text().splitlines()) == sorted(lines)


@pytest.mark.integration
def test_libpq_reads_the_password_from_the_file_alone(
    migrated_database_url: str, tmp_path: Path
) -> None:
    assert "PGPASSWORD" not in os.environ  # else the password could come from there
    database = passwordless(migrated_database_url, tmp_path / "pgpass")
    with psycopg.connect(database.url, **database.connect_options()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(database.with_passfile()) as conn:  # what `ecom db-url` prints
        assert conn.execute("SELECT 1").fetchone() == (1,)
    elsewhere = Passwordless(database.url, str(tmp_path / "not-on-this-machine"))
    assert elsewhere.connect_options() == {}  # a remote executor: libpq's own defaults
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(elsewhere.url, passfile=elsewhere.passfile, connect_timeout=5)


def _rows(settings: Settings, url: str, tmp_path: Path) -> tuple[list, FileRows, int]:
    """Generated files, their rows for the tasks, and how many rows they hold."""
    backlog = generate_backlog(settings, tmp_path / "truth", files=2, events=60)
    files = readable_in(settings.input_dir)
    with psycopg.connect(url) as conn:
        catalogue = read_catalogue(conn)
    now = datetime.now(tz=UTC)
    rows = FileRows.of(files, load_contract(None), catalogue, settings.quality, now)
    return files, rows, backlog.rows


def _password(postgres_server) -> bytes:
    return postgres_server.password().encode()


@pytest.mark.integration
def test_the_plan_sent_to_spark_carries_no_password(
    spark, postgres_server, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    files, rows, _ = _rows(ingest_settings, migrated_database_url, tmp_path)
    names = file_names(spark, files)
    tables = StagingTables.for_partition("p", 0)
    database = passwordless(migrated_database_url, tmp_path / "pgpass")
    plan = task_plan(names, routing_writer(database, tables, rows))
    sent = plan._plan.to_proto(spark.client).SerializeToString()  # what crosses to the server
    password = _password(postgres_server)
    assert b"routing_writer" in sent  # the task is in it, pickled
    assert password not in sent and quote(password.decode()).encode() not in sent
    # control: a task closing over the whole URL puts the password into the plan
    whole = Passwordless(migrated_database_url, str(tmp_path / "pgpass"))
    leaked = task_plan(names, routing_writer(whole, tables, rows))
    assert password in leaked._plan.to_proto(spark.client).SerializeToString()


@pytest.mark.integration
def test_tasks_stage_rows_with_the_password_from_the_file(
    spark, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    assert "PGPASSWORD" not in os.environ
    files, rows, read = _rows(ingest_settings, migrated_database_url, tmp_path)
    tables = StagingTables.for_partition("p", 0)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        prepare_staging(conn, tables)
    passfile = tmp_path / "state" / "pgpass"
    counts = stage_routed(
        file_names(spark, files), migrated_database_url, tables, rows, passfile=passfile
    )
    with psycopg.connect(migrated_database_url) as conn:
        staged = staged_rows(conn, tables)
    valid = sum(c.rows_valid for c in counts.values())
    invalid = sum(c.rows_invalid for c in counts.values())
    assert staged == (valid, invalid) and valid > 0 and invalid > 0
    assert sum(c.rows_read for c in counts.values()) == valid + invalid == read
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
