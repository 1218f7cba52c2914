"""The PostgreSQL resource: connections for assets, checks and the CLI.

The URL carries the password, so it never becomes a plain config string: the UI shows a
resource's configured values on its page. An external URL reaches the resource as
`EnvVar("ECOM_DATABASE_URL")` (the page shows the variable's name), the embedded server's URL is
read at use; `connect` words a failed connection without the URL's secrets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from ecom_assets.redaction import redact, url_secrets
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.settings import DatabaseSettings, env_var_name, load_settings
from ecom_assets.stack.local import database_url

DATABASE_URL_ENV = env_var_name(DatabaseSettings, "database_url")


def connect(url: str, **options: Any) -> psycopg.Connection:
    """`psycopg.connect`, but a failure's message is redacted: libpq quotes a URL it cannot
    parse whole (`missing "=" after "…"`), and the error travels on to logs and the UI."""
    try:
        return psycopg.connect(url, **options)
    except psycopg.Error as exc:
        exc.args = (redact(str(exc), url_secrets(url)),)
        raise exc from None  # the chained original still holds the URL: suppressed


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL that stores events, dead letters, quality metrics and the file ledger."""

    url: str | None = Field(
        default=None,
        description="Connection URL (an EnvVar in the code location); unset means the embedded "
        "server of `ecom up`.",
    )
    connect_timeout_s: int = 10

    def resolved_url(self) -> str:
        # resolved on use, not at load: the embedded server's password exists only after `up`
        return self.url or database_url(load_settings())

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error."""
        with connect(self.resolved_url(), connect_timeout=self.connect_timeout_s) as conn:
            yield conn

    def migrate(self) -> list[str]:
        """Bring the schema up to date; returns the migrations applied now."""
        with self.connection() as conn:
            return apply_migrations(conn, discover_migrations())


def postgres_resource(database: DatabaseSettings) -> PostgresResource:
    """The code location's resource. An external URL is passed as `EnvVar(ECOM_DATABASE_URL)`;
    a URL read from the env file is exported to this process first, so the EnvVar resolves in
    it and in the run workers that load the same definitions."""
    if database.database_url is None:
        return PostgresResource(connect_timeout_s=database.db_connect_timeout_s)
    os.environ.setdefault(DATABASE_URL_ENV, database.database_url)
    return PostgresResource(
        url=dg.EnvVar(DATABASE_URL_ENV), connect_timeout_s=database.db_connect_timeout_s
    )
