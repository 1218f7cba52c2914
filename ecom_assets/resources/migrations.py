"""Numbered SQL migrations from `sql/`, applied in order, once each, and recorded.

Each file is itself idempotent (IF NOT EXISTS, OR REPLACE), and the runner records what it
applied with a checksum, so applying twice changes nothing and an edited, already-applied file
is refused: a change to the schema is a new numbered file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_301_001  # pg_advisory_xact_lock key: one migrator at a time

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT        PRIMARY KEY,
    name        TEXT        NOT NULL,
    checksum    TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration files or the recorded history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover_migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Every `NNN_name.sql` in version order; other file names are an error, not ignored."""
    migrations = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_lower_snake.sql")
        migrations.append(Migration(match.group(1), path.name, path.read_text(encoding="utf-8")))
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {sql_dir}: {versions}")
    if not migrations:
        raise MigrationError(f"no migrations found in {sql_dir}")
    return migrations


def apply_migrations(conn: psycopg.Connection, migrations: list[Migration]) -> list[str]:
    """Apply the pending migrations in one transaction; return the names applied."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(LEDGER)
        recorded = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        for migration in migrations:
            checksum = recorded.get(migration.version)
            if checksum == migration.checksum:
                continue
            if checksum is not None:
                raise MigrationError(
                    f"{migration.name} changed after it was applied; add a new numbered file"
                )
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration.name)
    return applied_now
