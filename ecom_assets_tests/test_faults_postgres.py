"""PostgreSQL stopped in the middle of a run, for real: its own server is stopped from inside the
run (once a batch is staged, before its rows are counted and committed) and started again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.reliability import DependencyUnavailableError
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.settings import IngestionSettings, ReliabilitySettings, Settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets_tests.conftest import throwaway_postgres
from ecom_assets_tests.test_fault_support import (
    Backlog,
    RecordingLog,
    exactly_once,
    generate_backlog,
    landed,
)

pytestmark = pytest.mark.integration

RELIABILITY = ReliabilitySettings(
    retry_attempts=8,
    retry_initial_delay_s=0.05,
    retry_multiplier=2,
    retry_max_delay_s=0.8,
    breaker_failure_threshold=5,
    breaker_reset_timeout_s=1.0,
)


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so stopping it harms no other test."""
    with throwaway_postgres("ecom-fault-pg-") as server:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            apply_migrations(conn, discover_migrations())
        yield server


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    """Two files per batch, so a run has batches before and after the fault."""
    return ingest_settings.model_copy(
        update={
            "ingestion": IngestionSettings(file_settle_s=0, max_files_per_run=2),
            "reliability": RELIABILITY,
        }
    )


@pytest.fixture
def backlog(settings: Settings, tmp_path: Path) -> Backlog:
    return generate_backlog(settings, tmp_path / "truth", files=6, events=200)


def stop_at(server: EmbeddedPostgres, step: str, batch: int, then=None):
    """An on_step hook stopping the server when the batch-th batch reaches step."""
    seen = {"n": 0}

    def on_step(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] == batch:
                server.stop()
                if then is not None:
                    then()

    return on_step


def test_postgres_down_opens_the_breaker_fails_clearly_and_a_rerun_commits_once(
    spark, server: EmbeddedPostgres, settings: Settings, backlog: Backlog
) -> None:
    url, log = server.url("postgres"), RecordingLog()
    with pytest.raises(DependencyUnavailableError) as failure:
        ingest_partition(spark, url, settings, backlog.partition, "run-1", log,
                         on_step=stop_at(server, "staged", batch=2))  # fmt: skip
    message = str(failure.value)
    assert message.startswith("[Batch 2]: circuit breaker OPEN (postgres)")
    assert "OperationalError" in message
    text = log.text()
    assert "[Batch 1] COMPLETED SUCCESSFULLY" in text
    # batch 2 commits in the background while batch 3 stages: batch 3's attempts open the
    # breaker, then batch 2's failed commit is done again and fails fast on the open breaker
    assert "[Batch 2] commit failed, staging it again: OperationalError" in text
    assert text.count("[Batch 3]: attempt") == RELIABILITY.breaker_failure_threshold - 1
    assert "WARNING circuit breaker postgres: CLOSED -> OPEN" in text
    assert "ERROR [Batch 2] FAILED - DependencyUnavailableError" in text
    assert "ERROR [Batch 3] FAILED - DependencyUnavailableError" in text
    assert "WARNING [Batch 2] failure not recorded" in text  # PostgreSQL is still down

    server.start()
    with psycopg.connect(url) as conn:
        batches = conn.execute("SELECT run_id, batch_no, status FROM ingest_batches").fetchall()
    assert batches == [("run-1", 1, "completed")]  # batch 1 committed, batch 2 nothing

    time.sleep(RELIABILITY.breaker_reset_timeout_s)  # the step retry's delay, in production
    rerun_log = RecordingLog()
    report = ingest_partition(spark, url, settings, backlog.partition, "run-2", rerun_log)
    assert report.files_committed == backlog.files - 2
    assert landed(url, settings) == exactly_once(backlog)
    assert "circuit breaker postgres: HALF_OPEN -> CLOSED" in rerun_log.text()


def test_a_short_outage_is_ridden_out_by_retries_within_the_run(
    spark, server: EmbeddedPostgres, settings: Settings, backlog: Backlog
) -> None:
    url, log = server.url("postgres"), RecordingLog()

    def restart_soon() -> None:
        threading.Timer(1.0, server.start).start()

    # the next statement fails at once, so the retries (not the breaker) must span the restart
    patient = settings.model_copy(
        update={"reliability": RELIABILITY.model_copy(update={"breaker_failure_threshold": 8})}
    )
    on_step = stop_at(server, "staged", 1, restart_soon)
    report = ingest_partition(spark, url, patient, backlog.partition, "r1", log, on_step=on_step)
    assert report.retries >= 1
    assert report.files_committed == backlog.files
    assert landed(url, settings) == exactly_once(backlog)
    # batch 1's commit fails in the background; batch 2's staging retries span the outage,
    # then batch 1 is done again
    assert "[Batch 1] commit failed, staging it again: OperationalError" in log.text()
    assert "[Batch 2]: attempt 1 failed" in log.text()
    assert "[Batch 1] COMPLETED SUCCESSFULLY" in log.text()
