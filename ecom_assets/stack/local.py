"""The local stack as the settings describe it: which servers are embedded and their URLs."""

from __future__ import annotations

import os
from pathlib import Path

from ecom_assets.settings import Settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets.stack.processes import free_port
from ecom_assets.stack.spark_connect_server import LocalSparkConnect

ECOM_DATABASE = "ecom"
DAGSTER_DATABASE = "dagster"


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        root=settings.paths.state / "postgres",
        port=settings.database.pg_port,
        bin_dir=settings.database.pg_bin_dir,
    )


def local_spark_connect(settings: Settings) -> LocalSparkConnect:
    spark = settings.spark
    return LocalSparkConnect(
        root=settings.paths.state / "spark",
        port=spark.connect_port,
        master=spark.master,
        driver_memory=spark.driver_memory,
        shuffle_partitions=spark.shuffle_partitions,
    )


def database_url(settings: Settings) -> str:
    """ECOM_DATABASE_URL, or the embedded server's `ecom` database."""
    return settings.database.database_url or embedded_postgres(settings).url(ECOM_DATABASE)


def dagster_storage_url(settings: Settings) -> str:
    """Dagster's run storage; psycopg2 scheme, since dagster-postgres breaks on psycopg 3."""
    database = settings.database
    if database.dagster_database_url:
        url = database.dagster_database_url
    elif database.embedded:
        url = embedded_postgres(settings).url(DAGSTER_DATABASE)
    else:
        url = database.database_url or ""
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


def isolated_environment(home: Path) -> dict[str, str]:
    """Environment for an independent stack in home on free ports (tests and benchmarks).

    Every ECOM_/DAGSTER_ variable of the caller is dropped, so nothing leaks in from a stack
    the developer is running; home must be traversable by the PostgreSQL server's user.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOM_", "DAGSTER_"))}
    env.update(
        ECOM_HOME=str(home),
        ECOM_ENV_FILE=str(home / "absent.env"),
        ECOM_PG_PORT=str(free_port()),
        ECOM_SPARK_CONNECT_PORT=str(free_port()),
        ECOM_DAGSTER_PORT=str(free_port()),
    )
    return env
