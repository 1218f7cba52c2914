"""Spark Connect sessions shared by every client of a server, and renewed when it restarts.

Free of Dagster: the ingest core (ingest.py) renews its session itself between batches.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from ecom_assets.settings import SparkSettings

SESSION_NAMESPACE = uuid.UUID("5d0c7a52-8f3e-4c1b-9a55-3e2f6b1d9c40")


def shared_session_url(connect_url: str, now: datetime) -> str:
    """``connect_url`` naming the Connect session that every client shares within the hour.

    The server gives each session a Python daemon and workers of its own, and a run's first
    task in a new session waited about 2 s for them to start and import Arrow; clients of one
    session find them warm, and ``ecom up``'s warm-up warms the runs' own session. The name
    changes every hour, so it is never used again after an idle server could have expired it
    (Spark's default idle timeout is an hour; a closed name is refused) (docs/decisions.md 42).
    """
    hour = now.astimezone(UTC).strftime("%Y-%m-%dT%H")
    session = uuid.uuid5(SESSION_NAMESPACE, f"{connect_url} {hour}")
    separator = ";" if "/;" in connect_url else "/;"
    return f"{connect_url}{separator}session_id={session}"


def live_session(spark: SparkSession, settings: SparkSettings) -> SparkSession:
    """``spark``, or a new session of the shared name if the server closed it.

    A Spark Connect client that sees another server-side session id (the server restarted:
    ``ecom up`` heals a dead one) closes itself for good, and every later call raises
    NO_ACTIVE_SESSION; a run kept failing each batch for minutes. The new server knows the
    shared name afresh, so the run's next batch goes on in a new session of that name.
    """
    client = getattr(spark, "client", None)
    if client is None or not client.is_closed or settings.mode != "connect":
        return spark
    url = shared_session_url(settings.connect_url, datetime.now(UTC))
    return SparkSession.builder.remote(url).create()
