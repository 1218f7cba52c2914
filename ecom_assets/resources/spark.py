"""The Spark resource: a Spark Connect session by default, a classic local session on request."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from ecom_assets.resources.spark_session import (
    installation_token,
    session_builder,
    shared_session_url,
    token_file,
)
from ecom_assets.settings import PathSettings, SparkSettings, env_file

__all__ = ["SparkResource", "shared_session_url", "spark_config", "spark_resource"]


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


class SparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy session, whose Connect client presents the server's token.

    The token is not in the config, which the UI's resource page shows: the session reads it
    when it starts, from the local server's token file, or for a remote server from
    ECOM_SPARK_TOKEN (the environment or the settings file, as ``load_settings`` reads them).
    """

    token_file: str = Field(
        "", description="The local server's token file; empty for a remote (ECOM_SPARK_TOKEN)."
    )

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def _init_session(self) -> None:
        remote = self.spark_config.get("spark.remote")
        if self._spark_session is not None or remote is None:
            super()._init_session()
            return
        builder = session_builder(remote, self._token())
        for key, value in self.spark_config.items():
            if key != "spark.remote":
                builder = builder.config(key, value)
        self._spark_session = builder.getOrCreate()

    def _token(self) -> str | None:
        if self.token_file:
            return installation_token(Path(self.token_file))
        token = SparkSettings(_env_file=env_file()).token
        return token.get_secret_value() if token is not None else None


def spark_resource(spark: SparkSettings, state_dir: Path | None = None) -> SparkResource:
    """Lazy, so assets that never touch Spark never pay for a session. ``state_dir`` holds the
    local server's token; unset, the one the environment names (ECOM_HOME, ECOM_STATE_DIR)."""
    config = spark_config(spark)
    if not spark.managed:
        return SparkResource(spark_config=config)
    state = state_dir or PathSettings(_env_file=env_file()).state
    return SparkResource(spark_config=config, token_file=str(token_file(state)))
