"""Session fixtures: one real PostgreSQL and one real Spark Connect server for the whole suite.

Both are started with the same code `ecom up` uses (ecom_assets.stack), on free ports in
throwaway directories, so the suite needs nothing running beforehand and leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.resources.spark_session import TOKEN_ENV
from ecom_assets.settings import IngestionSettings, PathSettings, Settings, load_settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres, find_bin_dir
from ecom_assets.stack.processes import free_port, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect

RUNS_TAKE_ONLY_WAITING_FILES = {"ECOM_INGEST_LINGER_S": "0", "ECOM_INGEST_MAX_RUN_S": "0"}

SUITE_PARTITIONS_START = "2025-01-01-00:00"
"""The first ingest partition of every definition this process loads. Unset, it would be the
hour of the first test that loads the code location (recorded in this checkout's `.ecom/`), and a
test writing files of an earlier hour (a fresh clone, a suite running across an hour) would see
them held back for a reload. Set at import, before any test module loads the definitions; tests of
the default start (test_partitions, test_partitions_reload) remove it."""
os.environ.setdefault("ECOM_INGEST_PARTITIONS_START", SUITE_PARTITIONS_START)

os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(32))
"""The suite's Spark Connect token: every server a test starts without a token file of its own
takes it (LocalSparkConnect), and every client without a token of its own presents it, as
pyspark reads this variable; the processes tests start inherit it. Stacks that tests start use
their installation's token file instead, as `ecom up` does."""


@pytest.fixture(scope="session", autouse=True)
def runs_take_only_waiting_files() -> Iterator[None]:
    """Ingest runs take the files waiting at their start and end, instead of staying warm.

    Tests then control exactly which run takes which file. Set in the environment, so the stacks
    and run processes that tests start inherit it; test_ingest_linger passes its own values.
    """
    previous = {name: os.environ.get(name) for name in RUNS_TAKE_ONLY_WAITING_FILES}
    os.environ.update(RUNS_TAKE_ONLY_WAITING_FILES)
    yield
    for name, value in previous.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[EmbeddedPostgres]:
    """A started embedded server in a temporary directory on a free port, removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the server may run as an unprivileged user under root
    server = EmbeddedPostgres(root=root, port=free_port(), bin_dir=find_bin_dir())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    with throwaway_postgres("ecom-test-pg-") as server:
        yield server


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database per test, so tests never see each other's rows."""
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name.lower())[:50]
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.url(name)


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """A fresh database with the project's schema applied."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_migrations(conn, discover_migrations())
    return database_url


@pytest.fixture
def ingest_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with every directory under tmp_path and no settle delay for fresh files."""
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    return load_settings(
        paths=PathSettings(home=tmp_path), ingestion=IngestionSettings(file_settle_s=0)
    )


@pytest.fixture(scope="session")
def spark_server() -> Iterator[LocalSparkConnect]:
    root = Path(tempfile.mkdtemp(prefix="ecom-test-spark-"))
    server = LocalSparkConnect(root=root, port=free_port())
    process = server.start()
    try:
        server.wait_ready(process, timeout_s=180)
        yield server
    finally:
        _stop_client_sessions(server.url)
        stop_group(process.pid)
        shutil.rmtree(root, ignore_errors=True)


def _stop_client_sessions(url: str) -> None:
    """Stop every client session (the fixture's and the Dagster resources') before the server:
    a Connect client whose server is gone hangs at interpreter exit, retrying for minutes."""
    from pyspark.sql import SparkSession

    for _ in range(10):
        session = SparkSession.getActiveSession()
        if session is None:
            session = SparkSession.builder.remote(url).getOrCreate()
            session.stop()
            return
        session.stop()


@pytest.fixture(scope="session")
def spark(spark_server: LocalSparkConnect):
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(spark_server.url).getOrCreate()
    try:
        yield session
    finally:
        # stop the client before the server, or its exit hook retries against a dead server
        session.stop()
