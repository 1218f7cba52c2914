"""The Spark resource: a Spark Connect session by default, a classic local session on request."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource
from pyspark.sql import SparkSession

from ecom_assets.settings import SparkSettings


def spark_config(spark: SparkSettings) -> dict[str, str]:
    """Session settings for dagster-pyspark; spark.remote makes it a Spark Connect client."""
    if spark.mode == "connect":
        return {"spark.remote": spark.connect_url}
    return {
        "spark.master": spark.master,
        "spark.driver.memory": spark.driver_memory,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.showConsoleProgress": "false",
    }


def spark_resource(spark: SparkSettings) -> LazyPySparkResource:
    """Lazy, so assets that never touch Spark never pay for a session."""
    return LazyPySparkResource(spark_config=spark_config(spark))


INGEST_SQL_CONF = {
    # A batch reads thousands of files by name. Above this many paths Spark lists them with a
    # Spark job, at each analysis of the plan: 1,000 files of 100 rows took 21-26 s to read,
    # validate and cache with the default (32), 8-11 s with listing on the driver.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    # A task's files reach its Python worker as Arrow batches of whole files; the worker parses
    # and routes a batch at a time, so this bounds the worker's memory while keeping batches
    # large: a kernel's cost is per call, so small batches of small files would cost more.
    "spark.sql.execution.arrow.maxBytesPerBatch": str(16 << 20),
}
"""Session settings the ingest plan needs to be fast (bench/profile_ingest.py); runtime SQL
settings, so they work on any server, local or remote."""


def tune_for_ingest(spark: SparkSession) -> None:
    for key, value in INGEST_SQL_CONF.items():
        spark.conf.set(key, value)
