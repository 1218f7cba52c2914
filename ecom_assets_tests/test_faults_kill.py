"""The run process killed with SIGKILL at every point where a crash leaves a different state
behind; a re-run must then land every row exactly once.

The run is a real child process (`python -c`), ingesting with the real Spark Connect server and
PostgreSQL, that SIGKILLs itself when ingest_partition reports the chosen step (`on_step`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.settings import IngestionSettings, Settings
from ecom_assets.stack.spark_connect_server import LocalSparkConnect
from ecom_assets_tests.test_fault_support import Backlog, exactly_once, generate_backlog, landed

pytestmark = pytest.mark.integration

KILLED_RUN = """
import logging, os, signal, sys
from pyspark.sql import SparkSession
from ecom_assets.ingest import ingest_partition
from ecom_assets.settings import load_settings

url, spark_url, partition, step, occurrence = sys.argv[1:]
seen = []

def on_step(name):
    seen.append(name)
    if name == step and seen.count(name) == int(occurrence):
        os.kill(os.getpid(), signal.SIGKILL)

spark = SparkSession.builder.remote(spark_url).create()
log = logging.getLogger()
ingest_partition(spark, url, load_settings(), partition, "killed", log, on_step=on_step)
"""

# (step, occurrence): two batches of two files; the last point is inside the second batch
KILL_POINTS = [
    ("claimed", 1),  # files claimed in the ledger, nothing staged
    ("staged", 1),  # everything staged, nothing committed
    ("commit_pending", 1),  # every statement of the commit ran, COMMIT not sent
    ("committed", 1),  # committed, no file moved
    ("moved", 1),  # one file of the batch moved, the other not
    ("staged", 2),  # the first batch done and moved, the second staged
]


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings.model_copy(
        update={"ingestion": IngestionSettings(file_settle_s=0, max_files_per_run=2)}
    )


def run_killed(url: str, spark_url: str, home: Path, backlog: Backlog, step: str, nth: int):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECOM_")}
    env |= {
        "ECOM_HOME": str(home),
        "ECOM_ENV_FILE": str(home / "absent.env"),
        "ECOM_INGEST_FILE_SETTLE_S": "0",
        "ECOM_INGEST_MAX_FILES_PER_RUN": "2",
    }
    return subprocess.run(
        [sys.executable, "-c", KILLED_RUN, url, spark_url, backlog.partition, step, str(nth)],
        env=env, capture_output=True, text=True, timeout=300, cwd=home,
    )  # fmt: skip


@pytest.mark.parametrize(("step", "nth"), KILL_POINTS, ids=[f"{s}#{n}" for s, n in KILL_POINTS])
def test_sigkill_then_rerun_lands_every_row_exactly_once(
    spark,
    spark_server: LocalSparkConnect,
    migrated_database_url: str,
    settings: Settings,
    tmp_path: Path,
    step: str,
    nth: int,
) -> None:
    url = migrated_database_url
    backlog = generate_backlog(settings, tmp_path / "truth", files=4, events=150)

    killed = run_killed(url, spark_server.url, tmp_path, backlog, step, nth)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert landed(url, settings) != exactly_once(backlog)  # the kill left work undone

    ingest_partition(spark, url, settings, backlog.partition, "rerun", logging.getLogger())
    assert landed(url, settings) == exactly_once(backlog)
