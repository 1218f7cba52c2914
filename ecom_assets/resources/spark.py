"""The Spark resource: a Spark Connect session by default, a classic local session on request."""

from __future__ import annotations

from datetime import UTC, datetime

from dagster_pyspark import LazyPySparkResource

from ecom_assets.resources.spark_session import shared_session_url
from ecom_assets.settings import SparkSettings

__all__ = ["shared_session_url", "spark_config", "spark_resource"]


def spark_config(spark: SparkSettings, now: datetime | None = None) -> dict[str, str]:
    """Session settings for dagster-pyspark; spark.remote makes it a Spark Connect client."""
    if spark.mode == "connect":
        return {"spark.remote": shared_session_url(spark.connect_url, now or datetime.now(UTC))}
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
