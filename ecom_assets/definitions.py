"""The one Definitions object of the ecom code location."""

from __future__ import annotations

import dagster as dg

from ecom_assets.assets.analytics import build_analytics_assets
from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.jobs import build_ingest_job
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.sensors import make_input_files_sensor
from ecom_assets.settings import load_settings

settings = load_settings()
ingest_assets = build_ingest_assets(settings, upstream=[database_schema.key])
ingest_job = build_ingest_job(ingest_assets)

defs = dg.Definitions(
    assets=[database_schema, ingest_assets, *build_analytics_assets()],
    jobs=[ingest_job],
    sensors=[make_input_files_sensor(ingest_job, settings)],
    resources={
        "postgres": PostgresResource(
            url=settings.database.database_url,
            connect_timeout_s=settings.database.db_connect_timeout_s,
        ),  # events, dead letters, metrics, file ledger
        "pyspark": spark_resource(settings.spark),  # Spark Connect session (or classic local)
    },
)
