"""Analytics views as downstream assets: materialising one refreshes it and records a preview.

The views live in `sql/`. Those over ecommerce_events read materialized views (a plain view
recomputed 10 million events on every read: 3 to 90 s), which their asset refreshes,
CONCURRENTLY so that readers are never blocked; the quality dashboard over the small metrics
table stays a plain view, always current. `downstream_sensor` (ecom_assets/downstream.py)
materialises them all when ingest data changed, at most once per ECOM_DAGSTER_ANALYTICS_CRON tick;
each materialization says why in `refreshed_because`.
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at runtime

import time
from collections.abc import Sequence

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from ecom_assets.jobs import refresh_reason
from ecom_assets.resources.postgres import PostgresResource

EVENTS_VIEW_DEPS = ("ecommerce_events",)
ANALYTICS_VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "v_hourly_event_summary": (
        "Events, users and purchase revenue per hour.",
        EVENTS_VIEW_DEPS,
    ),
    "v_category_performance": (
        "Views, carts, purchases, revenue and conversion per category.",
        EVENTS_VIEW_DEPS,
    ),
    "v_user_segment_analysis": (
        "Users, purchases and revenue per user segment.",
        EVENTS_VIEW_DEPS,
    ),
    "v_data_quality_dashboard": (
        "Rows read, valid, invalid, late and latency per ingestion hour.",
        ("data_quality_metrics",),
    ),
    "v_user_sessions": (
        "Sessions of logged-in users split at 30 minutes of inactivity.",
        EVENTS_VIEW_DEPS,
    ),
}
"""View name -> (what it answers, the ingest assets it reads)."""
MATERIALIZED_VIEWS = {
    "v_hourly_event_summary": "mv_hourly_event_summary",
    "v_category_performance": "mv_category_performance",
    "v_user_segment_analysis": "mv_user_segment_analysis",
    "v_user_sessions": "mv_user_sessions",
}
"""View -> the materialized view it reads (sql/005_analytics_materialized.sql)."""
PREVIEW_ROWS = 10


def refresh_view(conn: psycopg.Connection, view: str) -> float:
    """Recompute the view's stored result while readers keep the previous one; returns seconds."""
    started = time.monotonic()
    stored = sql.Identifier(MATERIALIZED_VIEWS[view])
    conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(stored))
    conn.commit()
    return time.monotonic() - started


def read_view_preview(postgres: PostgresResource, view: str) -> tuple[int, pd.DataFrame]:
    """Row count and the first rows of a view (the name is an identifier, never data)."""
    with postgres.connection() as conn:
        count_query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(view))
        total = conn.execute(count_query).fetchone()[0]
        cursor = conn.execute(
            sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(view)), (PREVIEW_ROWS,)
        )
        columns = [column.name for column in cursor.description or []]
        preview = pd.DataFrame(cursor.fetchall(), columns=columns)
    return int(total), preview


def build_view_asset(view: str, description: str, deps: Sequence[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name=view, group_name="analytics", deps=list(deps), description=description,
        kinds={"postgres"},
    )  # fmt: skip
    def _view(
        context: dg.AssetExecutionContext, postgres: PostgresResource
    ) -> dg.MaterializeResult:
        refreshed: dict[str, float] = {}
        if view in MATERIALIZED_VIEWS:
            with postgres.connection() as conn:
                refreshed["refresh_s"] = round(refresh_view(conn, view), 3)
        total, preview = read_view_preview(postgres, view)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
                **refreshed,
                "refreshed_because": refresh_reason(context),
            }
        )

    return _view


def build_analytics_assets() -> list[dg.AssetsDefinition]:
    return [build_view_asset(view, text, deps) for view, (text, deps) in ANALYTICS_VIEWS.items()]
