"""The runs' shared Spark Connect session: named per server and hour, warm across clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql.connect.client.core import DefaultChannelBuilder

from ecom_assets.resources.spark import shared_session_url

NOON = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)


def _session_id(url: str) -> str:
    return DefaultChannelBuilder(url).session_id


def test_one_session_per_server_and_hour() -> None:
    url = "sc://127.0.0.1:15002"
    same_hour = shared_session_url(url, NOON + timedelta(minutes=29))
    assert _session_id(shared_session_url(url, NOON)) == _session_id(same_hour)
    next_hour = shared_session_url(url, NOON + timedelta(minutes=30))
    assert _session_id(next_hour) != _session_id(same_hour)
    other_server = shared_session_url("sc://127.0.0.1:15003", NOON)
    assert _session_id(other_server) != _session_id(same_hour)
    uuid.UUID(_session_id(same_hour))  # Spark Connect accepts only UUIDs


def test_the_hour_is_utc_and_the_url_keeps_its_parameters() -> None:
    local = NOON.astimezone(timezone(timedelta(hours=5, minutes=30)))
    url = "sc://spark:15002"
    assert shared_session_url(url, local) == shared_session_url(url, NOON)
    with_token = shared_session_url("sc://spark:15002/;use_ssl=true", NOON)
    assert DefaultChannelBuilder(with_token).get("use_ssl") == "true"
    assert _session_id(with_token) is not None


def _daemon_of_workers(spark: SparkSession) -> set[int]:
    """The parent of the Python workers that ran a task: the session's Python daemon."""

    def parent(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"daemon": [os.getppid()]})

    rows = spark.range(4).coalesce(2).mapInArrow(parent, "daemon long").collect()
    return {row["daemon"] for row in rows}


def test_clients_of_the_shared_session_find_its_python_workers(spark_server) -> None:
    # an hour of its own, so releasing it at the end cannot close the runs' session
    url = shared_session_url(spark_server.url, datetime(2001, 1, 1, tzinfo=UTC))
    warm_up = SparkSession.builder.remote(url).create()
    daemon = _daemon_of_workers(warm_up)
    warm_up.client.close()  # as `ecom up`'s warm-up leaves it: the session stays
    run = SparkSession.builder.remote(url).create()
    alone = SparkSession.builder.remote(spark_server.url).create()
    try:
        assert _daemon_of_workers(run) == daemon
        assert _daemon_of_workers(alone).isdisjoint(daemon)  # a session of its own: new workers
    finally:
        run.stop()
        alone.stop()
