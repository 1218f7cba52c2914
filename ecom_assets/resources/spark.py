"""The Spark resource: a Spark Connect session by default, a classic local session on request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from dagster_pyspark import LazyPySparkResource

from ecom_assets.settings import SparkSettings

SESSION_NAMESPACE = uuid.UUID("5d0c7a52-8f3e-4c1b-9a55-3e2f6b1d9c40")


def shared_session_url(connect_url: str, now: datetime) -> str:
    """``connect_url`` naming the Connect session that every client shares within the hour.

    The server gives each session a Python daemon and workers of its own, and a run's first
    task in a new session waited about 2 s for them to start and import Arrow; clients of one
    session find them warm, and ``ecom up``'s warm-up warms the runs' own session. The name
    changes every hour, so it is never used again after an idle server could have expired it
    (Spark's default idle timeout is an hour; a closed name is refused) (docs/decisions.md 42).
    """
    hour = now.astimezone(UTC).strftime("%Y-%m-%dT%H")
    session = uuid.uuid5(SESSION_NAMESPACE, f"{connect_url} {hour}")
    separator = ";" if "/;" in connect_url else "/;"
    return f"{connect_url}{separator}session_id={session}"


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
