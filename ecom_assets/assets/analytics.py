"""Analytics views as downstream assets: materialising one reads the view and records a preview.

The views themselves live in `sql/` (they are always current); the asset makes their state
visible in the UI - row counts and the first rows - and places them in the lineage graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pandas as pd
from psycopg import sql

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
PREVIEW_ROWS = 10


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
    def _view(postgres: PostgresResource) -> dg.MaterializeResult:
        total, preview = read_view_preview(postgres, view)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
            }
        )

    return _view


def build_analytics_assets() -> list[dg.AssetsDefinition]:
    return [build_view_asset(view, text, deps) for view, (text, deps) in ANALYTICS_VIEWS.items()]
