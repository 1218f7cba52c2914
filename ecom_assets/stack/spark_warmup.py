"""Warm a new Spark Connect server up before live files arrive.

A cold server runs its first ingest batch several times slower than a warm one (class loading,
JIT compilation, the first Python worker and its imports), and every file that lands meanwhile
waits: the live latency's tail came from this warm-up, paid by the first files of a fresh stack
(docs/decisions.md). So `ecom up` runs the ingest plan once over a few generated files, every
schema version and every kind of defect, before it starts the generator, in the Connect session
that this hour's runs share (resources/spark.py). Nothing is written anywhere: the rows are
counted and dropped. It runs as its own short process
(``python -m ecom_assets.stack.spark_warmup``), so the long-lived supervisor never holds Spark's
client libraries in memory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from ecom_assets.resources.event_reader import ReadableFile, file_names, readable_in
from ecom_assets.resources.event_sink import routing_counter, run_tasks
from ecom_assets.resources.spark_session import client_token, session_builder, shared_session_url
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.settings import Settings, load_settings
from ecom_assets.transforms.file_rows import FileRows
from generator.catalog import demo_catalogue

SAMPLE_FILES = 3
SAMPLE_EVENTS = 200


def warm_up(spark: SparkSession, settings: Settings) -> int:
    """Run the ingest plan on generated sample files; returns the rows it went through."""
    with tempfile.TemporaryDirectory(prefix="ecom-warmup-") as directory:
        files = _sample_files(Path(directory))
        contract = load_contract(settings.paths.contract)
        rows = FileRows.of(
            files, contract, demo_catalogue(), settings.quality, datetime.now(tz=UTC)
        )
        counts = run_tasks(file_names(spark, files), routing_counter(rows))
        return sum(counted.rows_read for counted in counts.values())


def _sample_files(directory: Path) -> list[ReadableFile]:
    """Files of every schema version, a tenth of their rows defective, from the generator."""
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(directory / "files"),
         "--log-dir", str(directory / "logs"), "--files", str(SAMPLE_FILES),
         "--events-per-file", str(SAMPLE_EVENTS), "--schema", "mixed", "--anomaly-rate", "0.1",
         "--interval", "0"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return readable_in(directory / "files")


def main() -> int:
    """Warm up the server of the current settings; prints the rows the plan went through."""
    settings = load_settings()
    url = shared_session_url(settings.spark.connect_url, datetime.now(tz=UTC))
    token = client_token(settings.spark, settings.paths.state)
    spark = session_builder(url, token).getOrCreate()
    try:
        print(warm_up(spark, settings))
    finally:
        # close the client (one left open hangs at exit once the server is gone) but keep the
        # session, with its warm Python workers, for the runs (resources/spark.py)
        spark.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
