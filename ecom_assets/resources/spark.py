"""The Spark resource: a Spark Connect session by default, a classic local session on request."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

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
