"""The local stack as the settings describe it: which servers are embedded and their URLs."""

from __future__ import annotations

from ecom_assets.settings import Settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres, find_bin_dir
from ecom_assets.stack.spark_connect_server import LocalSparkConnect

ECOM_DATABASE = "ecom"
DAGSTER_DATABASE = "dagster"


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        root=settings.paths.state / "postgres",
        port=settings.database.pg_port,
        bin_dir=find_bin_dir(settings.database.pg_bin_dir),
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
