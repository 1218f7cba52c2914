"""Poison isolation on real Spark and PostgreSQL: a file that fails its batch cannot hold up others.

The poison here is real, not injected: a file rewritten after every scan (a producer that keeps
writing in place), which the tasks refuse because its bytes are no longer those the run claimed.
The other files are other shops' exports (generator/foreign.py), with their own defects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.ingest import (
    CulpritsNotIsolatedError,
    IngestReport,
    _batch_of,
    ingest_partition,
    order_suspects_last,
    suspect_batch_files,
)
from ecom_assets.jobs import build_ingest_job
from ecom_assets.monitoring.health import load_health
from ecom_assets.resources.event_files import InputFile, list_input_files
from ecom_assets.resources.file_ledger import (
    CRASHED,
    Fingerprinted,
    claim_files,
    failures_before,
)
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.settings import IngestionSettings, Settings, SparkSettings, load_settings
from generator.foreign import SHOPS, ShopFile, ShopWriter

pytestmark = pytest.mark.integration

POISON = "poison_export.csv"


@pytest.fixture
def url(migrated_database_url: str) -> str:
    return migrated_database_url


def settings_with(base: Settings, **ingestion: object) -> Settings:
    return load_settings(
        paths=base.paths,
        ingestion=IngestionSettings(file_settle_s=0, max_file_failures=3, **ingestion),
    )


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    ingest_settings.input_dir.mkdir(parents=True, exist_ok=True)
    return settings_with(ingest_settings)


def shop_files(settings: Settings, count: int, seed: int = 1) -> list[ShopFile]:
    """Other shops' files of this hour, with their defects."""
    now = datetime.now(tz=UTC)
    writers = [ShopWriter(SHOPS[name], seed) for name in sorted(SHOPS)[:2]]  # one id stream each
    return [writers[i % 2].write(settings.input_dir, i, 40, now) for i in range(count)]


def write_poison(settings: Settings) -> Path:
    """A good shop export, which ``keeps_writing`` then keeps changing."""
    shop = ShopWriter(SHOPS[sorted(SHOPS)[-1]], seed=99)
    written = shop.write(settings.input_dir, 99, 20, datetime.now(tz=UTC))
    return written.path.rename(settings.input_dir / POISON)


def keeps_writing(path: Path) -> Callable[[str], None]:
    """An on_step hook: after each claim, the producer appends to the claimed file in place."""

    def on_step(step: str) -> None:
        if step == "claimed" and path.exists():
            with path.open("a") as file:
                file.write(f"{os.urandom(4).hex()}\n")

    return on_step


def partition_of(settings: Settings) -> str:
    [partition] = {f.partition for f in list_input_files(settings.input_dir, 0, datetime.now(UTC))}
    return partition


def run(
    spark, url: str, settings: Settings, run_id: str, on_step: Callable[[str], None] | None = None
) -> IngestReport:
    kwargs = {"on_step": on_step} if on_step else {}
    return ingest_partition(
        spark, url, settings, partition_of(settings), run_id, logging.getLogger(__name__), **kwargs
    )


def stored_per_file(url: str) -> dict[str, int]:
    """Events and dead letters per source file: every record of a file is one or the other."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT source_file, count(*) FROM (SELECT source_file FROM ecommerce_events "
            "UNION ALL SELECT source_file FROM dead_letter_events) s GROUP BY source_file"
        ).fetchall()
    return dict(rows)


def ledger(url: str) -> dict[str, tuple[str, int, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT file_name, status, failures, error FROM ingest_files")
        return {name: (status, failures, error) for name, status, failures, error in rows}


def test_the_culprit_is_split_out_quarantined_and_every_other_file_commits(
    spark, url: str, settings: Settings
) -> None:
    shops = shop_files(settings, 6)
    poison = write_poison(settings)
    report = run(spark, url, settings, "split", keeps_writing(poison))

    assert list(report.isolated) == [POISON]
    assert "changed after its scan" in report.isolated[POISON]
    assert report.files_committed == len(shops) and report.batches > 1
    assert stored_per_file(url) == {shop.path.name: len(shop.lines) for shop in shops}
    assert not poison.exists() and not any(settings.input_dir.iterdir())
    [reason_file] = settings.quarantine_dir.glob("*.reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["file"] == POISON and "changed after its scan" in reason["reason"]
    status, _, error = ledger(url)[POISON]
    assert status == "quarantined" and "changed after its scan" in error


def test_a_lone_poison_fails_its_run_once_then_waits_behind_the_others_and_is_quarantined(
    spark, url: str, settings: Settings
) -> None:
    poison = write_poison(settings)
    with pytest.raises(CulpritsNotIsolatedError, match=POISON):
        run(spark, url, settings, "alone", keeps_writing(poison))
    assert poison.exists()
    assert ledger(url)[POISON][:2] == ("failed", 1)

    shops = shop_files(settings, 3)
    report = run(spark, url, settings, "after", keeps_writing(poison))
    with psycopg.connect(url) as conn:
        batches = conn.execute(
            "SELECT batch_no, files, status FROM ingest_batches WHERE run_id = 'after' "
            "ORDER BY batch_no"
        ).fetchall()
    # the good files went first, in a batch of their own: the poison (a suspect) came after
    assert batches == [(1, len(shops), "completed")]
    assert list(report.isolated) == [POISON]
    assert stored_per_file(url) == {shop.path.name: len(shop.lines) for shop in shops}


def test_a_file_that_keeps_failing_is_quarantined_after_max_file_failures(
    spark, url: str, settings: Settings
) -> None:
    poison = write_poison(settings)
    for attempt in range(settings.ingestion.max_file_failures):
        with pytest.raises(CulpritsNotIsolatedError):
            run(spark, url, settings, f"attempt-{attempt}", keeps_writing(poison))
    assert ledger(url)[POISON][:2] == ("failed", settings.ingestion.max_file_failures)

    report = run(spark, url, settings, "gives-up", keeps_writing(poison))
    reason = report.quarantined[POISON]
    assert reason.startswith("failed 3 times (ECOM_INGEST_MAX_FILE_FAILURES=3); last:")
    assert "changed after its scan" in reason
    assert not poison.exists() and report.files_committed == 0


def test_a_claim_left_by_a_dead_run_counts_as_a_failure(url: str, settings: Settings) -> None:
    """A file that kills the run reading it raises nothing anyone could catch: the next claim
    that finds it still claimed by another run counts the failure."""
    path = write_poison(settings)
    listed = InputFile(settings.input_dir, POISON, path.stat().st_size, datetime.now(UTC), "p")
    item = [Fingerprinted(listed, "sha")]
    with psycopg.connect(url, autocommit=True) as conn:
        assert claim_files(conn, "dead-run", item).failures == {}
        assert failures_before(conn, [POISON]) == {POISON: 1}  # the next claim will count it
        first = claim_files(conn, "next-run", item).failures[POISON]
        again = claim_files(conn, "next-run", item).failures[POISON]  # the run's own retry
    assert (first.count, first.last_error) == (1, CRASHED)
    assert again.count == 1


# --- batching of suspects (pure) --------------------------------------------------------------


def _files(names: list[str]) -> list[InputFile]:
    now = datetime.now(UTC)
    return [InputFile(Path("/in"), name, 10, now, "p") for name in names]


def test_suspects_come_last_in_batches_that_shrink_to_one_before_quarantine() -> None:
    assert [suspect_batch_files(k, 5) for k in range(1, 5)] == [64, 16, 4, 1]
    assert suspect_batch_files(1, 2) == 1
    files = _files([f"f{i:03}.csv" for i in range(100)])
    suspects = {f"f{i:03}.csv": 1 for i in range(0, 100, 3)} | {"f001.csv": 3}
    ordered = order_suspects_last(files, suspects)
    clean = [file.name for file in ordered if file.name not in suspects]
    assert [file.name for file in ordered[: len(clean)]] == clean
    assert ordered[-1].name == "f001.csv"

    settings = load_settings().model_copy(
        update={"ingestion": IngestionSettings(max_file_failures=4)}
    )
    first = _batch_of(ordered, settings, 5, suspects)
    assert [file.name for file in first] == clean  # never a suspect among them
    rest = ordered[len(clean) :]
    assert len(_batch_of(rest, settings, 5, suspects)) == 16  # 34 suspects of 1 failure
    assert [f.name for f in _batch_of(rest[-1:], settings, 5, suspects)] == ["f001.csv"]


# --- through Dagster, with a producer writing in place ----------------------------------------


@pytest.fixture
def resources(url: str, spark_server) -> dict[str, object]:
    return {
        "postgres": PostgresResource(url=url),
        "pyspark": spark_resource(SparkSettings(remote=spark_server.url)),
    }


def test_the_run_succeeds_says_what_it_isolated_and_health_lists_it(
    url: str, settings: Settings, resources: dict[str, object]
) -> None:
    shops = shop_files(settings, 4)
    poison = write_poison(settings)
    writing = threading.Event()

    def producer() -> None:  # a producer that appends to its file in place, every 20 ms
        while not writing.wait(0.02) and poison.exists():
            with contextlib.suppress(FileNotFoundError), poison.open("a") as file:
                file.write(f"{os.urandom(4).hex()}\n")

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        ingest = build_ingest_assets(settings, upstream=[database_schema.key])
        job = build_ingest_job(ingest)
        definitions = dg.Definitions(
            assets=[database_schema, ingest], jobs=[job], resources=resources
        )
        dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
        with dg.instance_for_test() as instance:
            result = definitions.resolve_job_def("ingest_job").execute_in_process(
                partition_key=partition_of(settings), instance=instance, raise_on_error=False
            )
            messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    finally:
        writing.set()
        thread.join()
    assert result.success
    [summary] = [line for line in messages if "ISOLATED" in line]
    assert f"ISOLATED {POISON}: failed alone" in summary and "changed after its scan" in summary
    assert stored_per_file(url) == {shop.path.name: len(shop.lines) for shop in shops}
    with psycopg.connect(url) as conn:
        facts = load_health(conn, settings, datetime.now(tz=UTC)).facts
    [(name, reason)] = facts.latest_quarantined
    assert name == POISON and "changed after its scan" in reason
