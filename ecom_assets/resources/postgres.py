"""The PostgreSQL resource: connections for assets, checks and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.settings import load_settings
from ecom_assets.stack.local import database_url


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL that stores events, dead letters, quality metrics and the file ledger."""

    url: str | None = Field(
        default=None, description="Connection URL; unset means the embedded server of `ecom up`."
    )
    connect_timeout_s: int = 10

    def resolved_url(self) -> str:
        # resolved on use, not at load: the embedded server's password exists only after `up`
        return self.url or database_url(load_settings())

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error."""
        with psycopg.connect(self.resolved_url(), connect_timeout=self.connect_timeout_s) as conn:
            yield conn

    def migrate(self) -> list[str]:
        """Bring the schema up to date; returns the migrations applied now."""
        with self.connection() as conn:
            return apply_migrations(conn, discover_migrations())
