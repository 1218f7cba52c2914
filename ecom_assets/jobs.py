"""The partitioned ingest job the sensor launches, and the jobs that refresh other assets."""

from __future__ import annotations

import dagster as dg

from ecom_assets.stack.dagster_home import INGEST_CONCURRENCY_TAG

TRIGGER_TAG = "ecom/refresh_trigger"
"""new_data | periodic: what made downstream_sensor request a refresh run."""
REASON_TAG = "ecom/refresh_reason"
"""Why, readable: the newest ingest materialization and how many came since the last refresh."""


def build_ingest_job(ingest_assets: dg.AssetsDefinition) -> dg.UnresolvedAssetJobDefinition:
    # in-process: one process and one Spark Connect session for all steps of a run
    return dg.define_asset_job(
        "ingest_job",
        # the checks are logged per committed batch, never planned (docs/decisions.md 53)
        selection=dg.AssetSelection.assets(ingest_assets).without_checks(),
        executor_def=dg.in_process_executor,
        tags={INGEST_CONCURRENCY_TAG: "true"},
        description="Ingest every pending input file of one hourly partition.",
    )


def refresh_job(
    name: str, selection: dg.AssetSelection, what: str
) -> dg.UnresolvedAssetJobDefinition:
    """`<name>_job`: materialises selection in one process (these assets only query
    PostgreSQL); `downstream_sensor` (ecom_assets/downstream.py) launches it."""
    return dg.define_asset_job(
        f"{name}_job",
        selection=selection,
        executor_def=dg.in_process_executor,
        description=f"Refresh {what}.",
    )


def refresh_reason(context: dg.AssetExecutionContext) -> str:
    """Why this run refreshes its assets, for their materialization metadata."""
    tags = context.run.tags
    if REASON_TAG in tags:
        return f"{tags.get(TRIGGER_TAG, 'new_data')}: {tags[REASON_TAG]}"
    return "launched by hand or a backfill, not by downstream_sensor"
