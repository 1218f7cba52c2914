"""The Spark Connect server down, for real: a server of this test's own is stopped before the run
and started again on the same port; the failed run says so clearly and loses nothing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from pyspark.sql import SparkSession

from ecom_assets.ingest import ingest_partition
from ecom_assets.reliability import DependencyUnavailableError
from ecom_assets.resources.spark_session import shared_session_url
from ecom_assets.settings import ReliabilitySettings, Settings, SparkSettings
from ecom_assets.stack.processes import free_port, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect
from ecom_assets_tests.test_fault_support import (
    RecordingLog,
    exactly_once,
    generate_backlog,
    landed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[LocalSparkConnect]:
    root = Path(tempfile.mkdtemp(prefix="ecom-fault-spark-"))
    try:
        yield LocalSparkConnect(root=root, port=free_port())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def connect(server: LocalSparkConnect) -> SparkSession:
    return SparkSession.builder.remote(server.url).create()


def test_spark_down_fails_clearly_keeps_the_files_and_recovers_on_rerun(
    server: LocalSparkConnect, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    url = migrated_database_url
    settings = ingest_settings.model_copy(
        update={"reliability": ReliabilitySettings(retry_attempts=3, retry_initial_delay_s=0.1)}
    )
    backlog = generate_backlog(settings, tmp_path / "truth", files=3, events=100)
    down = connect(server)  # nothing listens on its port
    log = RecordingLog()
    try:
        with pytest.raises(DependencyUnavailableError, match="Spark Connect server unreachable"):
            ingest_partition(down, url, settings, backlog.partition, "run-1", log)
    finally:
        down.stop()
    assert "ERROR [Batch 1] FAILED - DependencyUnavailableError: [Batch 1]: Spark" in log.text()
    assert len(list(settings.input_dir.glob("*.csv"))) == backlog.files  # nothing lost
    with psycopg.connect(url) as conn:
        files = conn.execute("SELECT DISTINCT status FROM ingest_files").fetchall()
        batch = conn.execute("SELECT status, error FROM ingest_batches").fetchone()
        events = conn.execute("SELECT count(*) FROM ecommerce_events").fetchone()[0]
    assert files == [("failed",)]
    assert batch[0] == "failed" and "UNAVAILABLE" in batch[1]
    assert events == 0

    process = server.start()
    try:
        server.wait_ready(process, timeout_s=180)
        up = connect(server)  # a re-run is a new process with a new session
        try:
            report = ingest_partition(up, url, settings, backlog.partition, "run-2", RecordingLog())
        finally:
            up.stop()
    finally:
        stop_group(process.pid)
    assert report.files_committed == backlog.files
    assert landed(url, settings) == exactly_once(backlog)


def test_a_run_goes_on_in_a_new_session_when_the_server_restarts_under_it(
    server: LocalSparkConnect, migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    """`ecom up` restarts a dead Spark Connect server; a client of the old one closes itself
    for good (another server-side session id) and failed every later batch with
    NO_ACTIVE_SESSION, each one isolated as if its file were at fault."""
    url = migrated_database_url
    settings = ingest_settings.model_copy(
        update={
            "reliability": ReliabilitySettings(retry_attempts=3, retry_initial_delay_s=0.1),
            "spark": SparkSettings(remote=server.url),
        }
    )
    backlog = generate_backlog(settings, tmp_path / "truth", files=3, events=100)
    held = sorted(settings.input_dir.glob("*.csv"))[-1]
    held.rename(tmp_path / held.name)
    process = server.start()
    try:
        server.wait_ready(process, timeout_s=180)
        spark = SparkSession.builder.remote(shared_session_url(server.url, datetime.now(UTC)))
        session = spark.create()
        ingest_partition(session, url, settings, backlog.partition, "run-1", RecordingLog())
    finally:
        stop_group(process.pid)
    (tmp_path / held.name).rename(held)
    process = server.start()
    log = RecordingLog()
    try:
        server.wait_ready(process, timeout_s=180)
        report = ingest_partition(session, url, settings, backlog.partition, "run-2", log)
    finally:
        stop_group(process.pid)
    assert "Spark session closed by a restarted server; continuing in a new one" in log.text()
    assert (report.files_committed, report.isolated, report.deferred) == (1, {}, {})
    assert landed(url, settings) == exactly_once(backlog)
