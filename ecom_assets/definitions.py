"""The one Definitions object of the ecom code location."""

from __future__ import annotations

import dagster as dg

from ecom_assets.assets.analytics import build_analytics_assets
from ecom_assets.assets.database_schema import database_schema
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.settings import load_settings

settings = load_settings()

defs = dg.Definitions(
    assets=[database_schema, *build_analytics_assets(deps=[database_schema.key.to_user_string()])],
    resources={
        "postgres": PostgresResource(
            url=settings.database.database_url,
            connect_timeout_s=settings.database.db_connect_timeout_s,
        ),  # events, dead letters, metrics, file ledger
        "pyspark": spark_resource(settings.spark),  # Spark Connect session (or classic local)
    },
)
