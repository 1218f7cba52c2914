"""A backlog in size-bounded batches, one or two committing at once while the next one stages,
with real Spark and PostgreSQL; a commit that fails is done again as the whole batch, and nothing
is lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ecom_assets.ingest import (
    RAMP_BATCHES,
    batch_budget,
    ingest_partition,
    next_files,
    pending_files,
)
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.resources.event_sink import StagingTables
from ecom_assets.settings import IngestionSettings, Settings
from ecom_assets_tests.test_fault_support import (
    Backlog,
    RecordingLog,
    exactly_once,
    generate_backlog,
    landed,
)
from ecom_assets_tests.test_generator_support import generate_files

pytestmark = pytest.mark.integration


def batched(
    settings: Settings, max_files: int = 5000, max_mb: int = 64, commits: int = 2
) -> Settings:
    ingestion = IngestionSettings(
        file_settle_s=0, max_files_per_run=max_files, max_batch_mb=max_mb, linger_s=0,
        max_run_s=0, commits_in_flight=commits,
    )  # fmt: skip
    return settings.model_copy(update={"ingestion": ingestion})


@pytest.fixture
def backlog(ingest_settings: Settings, tmp_path: Path) -> Backlog:
    return generate_backlog(ingest_settings, tmp_path / "truth", files=6, events=300)


def test_batches_are_bounded_by_size_and_by_count(ingest_settings: Settings) -> None:
    now = datetime.now(tz=UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    generate_files(ingest_settings.input_dir, ingest_settings.log_dir, hour, "--files", "3",
                   "--events-per-file", "5000", "--schema", "v3")  # fmt: skip
    partition, now = hour.strftime(PARTITION_FORMAT), datetime.now(tz=UTC)  # after the files
    waiting = pending_files(ingest_settings, partition, now)
    sizes = sorted(path.stat().st_size for path in ingest_settings.input_dir.glob("*.csv"))
    assert sizes[0] > 512 * 1024 and sizes[-1] < 1024 * 1024  # one fits in 1 MB, two do not

    def files_of_batch(settings: Settings, number: int = RAMP_BATCHES + 1) -> int:
        return len(next_files(settings, partition, waiting, set(), 0.0, lambda: now, number))

    assert files_of_batch(batched(ingest_settings, max_mb=1)) == 1
    assert files_of_batch(batched(ingest_settings, max_mb=2)) == 2
    assert files_of_batch(batched(ingest_settings, max_files=1)) == 1
    assert files_of_batch(batched(ingest_settings)) == 3
    # a run's first batch takes an eighth of the size: 1 MB of 8
    assert files_of_batch(batched(ingest_settings, max_mb=8), number=1) == 1
    assert files_of_batch(batched(ingest_settings, max_mb=8), number=4) == 3


def test_a_runs_first_batches_ramp_up_to_the_batch_size(ingest_settings: Settings) -> None:
    settings = batched(ingest_settings, max_mb=64)
    budgets = [batch_budget(settings, number) >> 20 for number in range(1, 7)]
    assert budgets == [8, 16, 32, 64, 64, 64]


@pytest.mark.parametrize("commits", [1, 2])
def test_each_batch_commits_while_the_next_one_stages(
    spark, migrated_database_url: str, ingest_settings: Settings, backlog: Backlog, commits: int
) -> None:
    settings = batched(ingest_settings, max_files=2, commits=commits)
    steps: list[tuple[str, str]] = []

    def record(step: str) -> None:
        steps.append((threading.current_thread().name, step))

    report = ingest_partition(
        spark, migrated_database_url, settings, backlog.partition, "overlap", RecordingLog(),
        on_step=record,
    )  # fmt: skip
    assert (report.batches, report.files_committed) == (3, backlog.files)
    assert landed(migrated_database_url, settings) == exactly_once(backlog)

    # staging runs on the run's thread, commits and moves on the committing thread
    def threads(step: str) -> set[str]:
        return {thread for thread, name in steps if name == step}

    assert threads("claimed") == threads("staged") == {threading.current_thread().name}
    assert threads("committed") == threads("moved") != threads("staged")
    # batch N + commits is handed to a committing thread only once batch N has committed
    order = [name for _, name in steps]
    staged_at = [i for i, name in enumerate(order) if name == "staged"]
    committed_at = [i for i, name in enumerate(order) if name == "committed"]
    assert len(staged_at) == len(committed_at) == 3
    assert committed_at[0] < staged_at[commits]


def test_a_commit_that_fails_is_done_again_as_the_whole_batch(
    spark, migrated_database_url: str, ingest_settings: Settings, backlog: Backlog
) -> None:
    settings = batched(ingest_settings, max_files=3)
    tables = StagingTables.for_partition(backlog.partition, slot=1)
    spoiled = {"done": False}

    def spoil_first_staging(step: str) -> None:
        if step == "staged" and not spoiled["done"]:
            spoiled["done"] = True  # one staged event lost: the commit's count check must fail
            with psycopg.connect(migrated_database_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE ctid = (SELECT min(ctid) FROM {})").format(
                        sql.Identifier(tables.events), sql.Identifier(tables.events)
                    )
                )

    log = RecordingLog()
    report = ingest_partition(
        spark, migrated_database_url, settings, backlog.partition, "redo", log,
        on_step=spoil_first_staging,
    )  # fmt: skip
    assert "[Batch 1] commit failed, staging it again: StagingMismatchError" in log.text()
    assert "[Batch 1] COMPLETED SUCCESSFULLY" in log.text()
    assert "[Batch 2] COMPLETED SUCCESSFULLY" in log.text()
    assert report.files_committed == backlog.files
    assert landed(migrated_database_url, settings) == exactly_once(backlog)


def test_two_batches_commit_at_once_and_the_earlier_keeps_a_replayed_event(
    spark, migrated_database_url: str, ingest_settings: Settings
) -> None:
    settings = batched(ingest_settings, max_files=1)
    hour = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    generate_files(settings.input_dir, settings.log_dir, hour, "--files", "2",
                   "--events-per-file", "200", "--schema", "v3", "--anomaly-rate", "0")  # fmt: skip
    first, second = sorted(settings.input_dir.glob("*.csv"))
    header, replayed, *_ = first.read_text().splitlines(keepends=True)
    # named after the first file and before the second: batch 2 of three, holding batch 1's event
    replay = settings.input_dir / f"{first.name.split('Z_')[0]}Z_ffffffff.csv"
    replay.write_text(header + replayed)
    assert sorted(settings.input_dir.glob("*.csv")) == [first, replay, second]
    both_open, lock = threading.Event(), threading.Lock()
    pending: list[str] = []
    waited: list[bool] = []

    def hold_the_first_commit(step: str) -> None:
        """The first COMMIT waits until a second commit has run all of its statements."""
        if step == "commit_pending":
            with lock:
                pending.append(step)
                first = len(pending) == 1
            if first:
                waited.append(both_open.wait(timeout=30))
            else:
                both_open.set()

    report = ingest_partition(
        spark, migrated_database_url, settings, hour.strftime(PARTITION_FORMAT), "at-once",
        RecordingLog(), on_step=hold_the_first_commit,
    )  # fmt: skip
    assert waited == [True], "the second batch did not commit beside the first"
    assert (report.batches, report.files_committed, report.rows_inserted) == (3, 3, 400)
    with psycopg.connect(migrated_database_url) as conn:
        kept = conn.execute(
            "SELECT source_file FROM ecommerce_events WHERE event_id = %s",
            (replayed.split(",")[0],),
        ).fetchall()
        metrics = conn.execute(
            "SELECT rows_inserted, rows_duplicate FROM data_quality_metrics WHERE source_file = %s",
            (replay.name,),
        ).fetchone()
    assert kept == [(first.name,)]
    assert metrics == (0, 1)
    backlog = Backlog(hour.strftime(PARTITION_FORMAT), files=3, rows=401, events=400,
                      dead_letters=0)  # fmt: skip
    assert landed(migrated_database_url, settings) == exactly_once(backlog)
