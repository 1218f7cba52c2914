"""The database schema as an asset: materialising it applies the pending `sql/` migrations."""

from __future__ import annotations

import dagster as dg

from ecom_assets.resources.migrations import discover_migrations
from ecom_assets.resources.postgres import PostgresResource


@dg.asset(group_name="platform", kinds={"postgres"})
def database_schema(postgres: PostgresResource) -> dg.MaterializeResult:
    """Tables, constraints, indexes and views every other asset reads or writes."""
    applied = postgres.migrate()
    known = [migration.name for migration in discover_migrations()]
    return dg.MaterializeResult(
        metadata={
            "applied_now": dg.MetadataValue.json(applied),
            "migrations": dg.MetadataValue.json(known),
        }
    )
