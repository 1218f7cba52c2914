"""The one Definitions object of the ecom code location.

No secret is a plain value here: the UI shows resources' configured values, so the database
URL reaches its resource as an EnvVar (ecom_assets/resources/postgres.py).
"""

from __future__ import annotations

import dagster as dg

from ecom_assets.assets.analytics import build_analytics_assets
from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets, build_ingest_checks
from ecom_assets.assets.monitoring import build_health_asset
from ecom_assets.downstream import build_downstream_sensor
from ecom_assets.jobs import build_ingest_job
from ecom_assets.monitoring.run_failures import build_run_failure_sensors
from ecom_assets.resources.postgres import postgres_resource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.sensors import make_input_files_sensor
from ecom_assets.settings import load_settings

settings = load_settings()
contract = load_contract(settings.paths.contract)  # a bad contract file fails the code location
ingest_assets = build_ingest_assets(settings, upstream=[database_schema.key], contract=contract)
ingest_job = build_ingest_job(ingest_assets)
pipeline_health = build_health_asset(settings, upstream=list(ingest_assets.keys))
analytics_assets = build_analytics_assets()

defs = dg.Definitions(
    assets=[database_schema, ingest_assets, *analytics_assets, pipeline_health],
    asset_checks=[build_ingest_checks(settings)],
    jobs=[ingest_job],
    sensors=[
        make_input_files_sensor(ingest_job, settings),
        *build_run_failure_sensors(ingest_job, settings),
        # pipeline_health and the analytics views follow ingest materializations
        build_downstream_sensor(
            settings, list(ingest_assets.keys), pipeline_health, analytics_assets
        ),
    ],
    resources={
        # events, dead letters, metrics, file ledger, alerts
        "postgres": postgres_resource(settings.database),
        # a Spark Connect session (or classic local), with the installation's token
        "pyspark": spark_resource(settings.spark, settings.paths.state),
    },
)
