"""The pipeline's health as an asset, with a check on its state.

`downstream_sensor` (ecom_assets/downstream.py) materialises it after new ingest data, at most
every ECOM_DAGSTER_HEALTH_MIN_INTERVAL_S, and every 5 minutes without new data (no batch for a
while is what makes it DEGRADED); its metadata says why in `refreshed_because`.

The same report as `ecom health` (ecom_assets/monitoring/health.py), so the UI's metadata and
the terminal agree. Its check warns on DEGRADED; NO_DATA passes, since a platform that has not
ingested anything yet is new, not broken (the metadata says which it is).
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from ecom_assets.jobs import refresh_reason
from ecom_assets.monitoring.health import HealthReport, load_health
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.settings import Settings

HEALTH = dg.AssetKey("pipeline_health")


def health_metadata(report: HealthReport) -> dict[str, object]:
    facts = report.facts
    alerts = [alert.as_dict() for alert in facts.open_alerts]
    return {
        "state": report.state,
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reasons) or "none"),
        "events": facts.events,
        "dead_letters_open": facts.dead_letters_open,
        "files_committed": facts.files_committed,
        "files_quarantined": facts.files_quarantined,
        "batches_completed": facts.batches_completed,
        "batches_failed": facts.batches_failed,
        "window_batches": facts.window_batches,
        "success_rate": facts.success_rate,
        "validity_rate": facts.validity_rate,
        "last_batch_at": dg.MetadataValue.timestamp(facts.last_batch_at)
        if facts.last_batch_at
        else None,
        "last_batch_age_s": facts.last_batch_age_s,
        "open_alerts": len(alerts),
        "open_alert_list": dg.MetadataValue.json(alerts),
    }


def health_check(report: HealthReport) -> dg.AssetCheckResult:
    """Passes for HEALTHY and NO_DATA, fails with WARN severity for DEGRADED."""
    return dg.AssetCheckResult(
        check_name="pipeline_healthy",
        asset_key=HEALTH,
        passed=report.state != "DEGRADED",
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(report.reasons) if report.reasons else report.state,
        metadata={"state": report.state},
    )


def build_health_asset(settings: Settings, upstream: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=HEALTH,
        group_name="monitoring",
        kinds={"postgres"},
        deps=list(upstream),
        check_specs=[
            dg.AssetCheckSpec(
                "pipeline_healthy",
                asset=HEALTH,
                description="WARN when the pipeline is DEGRADED: an open ERROR alert, no batch "
                "for ECOM_ALERT_STALE_AFTER_S, a failed batch or low validity lately.",
            )
        ],
        description="HEALTHY / DEGRADED / NO_DATA with totals, recent success and validity "
        "rates, last batch age and open alerts (what `ecom health` prints).",
    )
    def pipeline_health(
        context: dg.AssetExecutionContext, postgres: PostgresResource
    ) -> dg.MaterializeResult:
        with postgres.connection() as conn:
            report = load_health(conn, settings, datetime.now(tz=UTC))
        metadata = {**health_metadata(report), "refreshed_because": refresh_reason(context)}
        return dg.MaterializeResult(metadata=metadata, check_results=[health_check(report)])

    return pipeline_health
