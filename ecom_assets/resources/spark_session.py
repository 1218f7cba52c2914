"""Spark Connect sessions: authenticated, shared by every client of a server, renewed when it
restarts.

A Connect server runs any Python a client sends (``mapInArrow``) as the stack's user, so every
client presents a token: the local server's is generated per installation into a 0600 file of
the state directory, a remote one's is the ECOM_SPARK_TOKEN setting. It goes into the client's
channel (pyspark's ``token`` parameter), never into a URL or a Dagster config, which the UI
shows, nor into the process environment, which every child would inherit. With a token pyspark
opens an encrypted channel, or for the host ``localhost`` a local one (grpc's local credentials:
loopback only, in clear); any other host needs TLS.

Free of Dagster: the ingest core (ingest.py) renews its session itself between batches.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.connect.client import ChannelBuilder, DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession as ConnectSession

from ecom_assets.resources.private_files import create_private, read_private
from ecom_assets.settings import SparkSettings

SESSION_NAMESPACE = uuid.UUID("5d0c7a52-8f3e-4c1b-9a55-3e2f6b1d9c40")
TOKEN_FILE = "spark-connect.token"  # noqa: S105 - a file name
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # noqa: S105 - a variable name
"""pyspark's variable: the server takes its token from it (stack/spark_connect_server.py keeps it
off the command line), and a client without a token of its own presents it."""


def token_file(state_dir: Path) -> Path:
    """The local server's token: ``<ECOM_STATE_DIR>/spark-connect.token``."""
    return state_dir / TOKEN_FILE


def installation_token(path: Path) -> str:
    """The token in ``path``; a new one (created 0600) when the installation has none yet."""
    create_private(path, secrets.token_urlsafe(32) + "\n")
    return read_private(path).strip()


def client_token(spark: SparkSettings, state_dir: Path) -> str | None:
    """The token a client of ``spark``'s server presents: the local server's, or a remote's
    ECOM_SPARK_TOKEN (None: unset, then pyspark falls back on SPARK_CONNECT_AUTHENTICATE_TOKEN)."""
    if spark.mode != "connect":
        return None
    if spark.remote is not None:
        return spark.token.get_secret_value() if spark.token is not None else None
    return installation_token(token_file(state_dir))


def session_builder(url: str, token: str | None) -> ConnectSession.Builder:
    """A builder of Connect sessions at ``url`` whose channel presents ``token``."""
    channel = DefaultChannelBuilder(url)
    if token is not None:
        channel.set(ChannelBuilder.PARAM_TOKEN, token)
    return ConnectSession.builder.channelBuilder(channel)


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
    return session_builder(url, client.token).create()  # the token the closed client presented
