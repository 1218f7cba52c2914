"""The partitioned ingest job the sensor launches, and the schedules that refresh other assets."""

from __future__ import annotations

import dagster as dg

from ecom_assets.stack.dagster_home import INGEST_CONCURRENCY_TAG


def build_ingest_job(ingest_assets: dg.AssetsDefinition) -> dg.UnresolvedAssetJobDefinition:
    # in-process: one process and one Spark Connect session for all steps of a run
    return dg.define_asset_job(
        "ingest_job",
        selection=dg.AssetSelection.assets(ingest_assets),
        executor_def=dg.in_process_executor,
        tags={INGEST_CONCURRENCY_TAG: "true"},
        description="Ingest every pending input file of one hourly partition.",
    )


def refresh_schedule(
    name: str, selection: dg.AssetSelection, cron: str, what: str
) -> dg.ScheduleDefinition:
    """`<name>_schedule`, running by default: materialises selection as `<name>_job`, in one
    process (these assets only query PostgreSQL)."""
    job = dg.define_asset_job(
        f"{name}_job",
        selection=selection,
        executor_def=dg.in_process_executor,
        description=f"Refresh {what}.",
    )
    return dg.ScheduleDefinition(
        name=f"{name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Materialise {what} on '{cron}' (UTC).",
    )
