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
    # HotSpot does not JIT-compile a method over 8,000 bytes of bytecode: it stays interpreted.
    # Spark's default limit (65,535) keeps whole-stage code that large, and the stage that runs
    # the rules, enrichment and routing generated 12-38 KB. At 8,000 Spark falls back to
    # per-operator code for that stage, whose methods are small and compiled: the routed pass
    # fell from 49.8-54.2 to 37.8-39.0 us of CPU per row (bench/profile_spark.py, both orders
    # on one server; docs/decisions.md 33).
    "spark.sql.codegen.hugeMethodLimit": "8000",
}
"""Session settings the ingest plan needs to be fast (bench/profile_ingest.py); runtime SQL
settings, so they work on any server, local or remote."""


def tune_for_ingest(spark: SparkSession) -> None:
    for key, value in INGEST_SQL_CONF.items():
        spark.conf.set(key, value)
