"""The partitioned ingest job the sensor launches."""

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
