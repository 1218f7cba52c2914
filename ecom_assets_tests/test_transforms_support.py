"""Helpers shared by the transform tests (no tests here): batches built the way ingestion builds
them, through the real schema registry (header detection, all-string raw schema, to_latest)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

from ecom_assets.schema.detection import detect_header
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import RECORD, raw_name, raw_schema
from ecom_assets.schema.versions import version_by_name
from ecom_assets.transforms.validate import ValidationRules

KEEP = ("source_file", "source_line", raw_name(RECORD), "arrived_at")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
ARRIVED = datetime(2024, 6, 1, 11, 0, tzinfo=UTC)
RULES = ValidationRules(now=NOW, future_tolerance_s=300, max_price=10_000.0, max_quantity=100)

Record = Mapping[str, str]
File = tuple[str, Sequence[Record]]
"""(schema version name, records); a record's fields beyond the version are not written."""


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def event(n: int, **values: str) -> dict[str, str]:
    """A valid v3 purchase by a registered user, with ``values`` overriding fields."""
    record = {
        "event_id": uid(n),
        "user_id": "42",
        "event_type": "purchase",
        "product_id": "1001",
        "price": "19.99",
        "event_time": "2024-06-01T10:00:00Z",
        "session_id": "s-1",
        "category": "electronics",
        "quantity": "3",
        "user_segment": "returning",
        "device_type": "mobile",
        "browser": "Safari",
        "geo_country": "de",
        "geo_city": "Berlin",
        "referrer": "https://example.com/",
        "campaign_id": "CMP-1",
    }
    record.update(values)
    return record


def view(n: int, **values: str) -> dict[str, str]:
    """A valid v3 view (no price, no quantity) by a registered user."""
    return event(n, **{"event_type": "view", "price": "", "quantity": "", **values})


def latest_batch(
    spark: SparkSession,
    files: Mapping[str, File],
    arrived_at: datetime | Mapping[str, datetime] = ARRIVED,
) -> DataFrame:
    """The union of each file's ``to_latest`` output with source_file, source_line, arrived_at.

    Each file's header is detected by the registry and its records become the all-string rows a
    CSV read gives: an empty field is NULL (Spark's default), other text is kept verbatim. A
    record's ``record`` value, if any, is the text the reader keeps for a malformed record.
    """
    frames = []
    for name, (version_name, records) in files.items():
        match = detect_header(list(version_by_name(version_name).column_names))
        assert match.version is not None, match.reason
        arrived = arrived_at if isinstance(arrived_at, datetime) else arrived_at[name]
        rows = [
            [record.get(column, "") or None for column in match.columns]
            + [name, line, record.get(RECORD), arrived]
            for line, record in enumerate(records, start=1)
        ]
        schema = StructType(
            [
                *raw_schema(match.columns).fields,
                StructField("source_file", StringType()),
                StructField("source_line", IntegerType()),
                StructField(raw_name(RECORD), StringType()),
                StructField("arrived_at", TimestampType()),
            ]
        )
        raw = spark.createDataFrame(rows, schema)
        frames.append(to_latest(raw, match.version, keep=KEEP))
    return functools.reduce(DataFrame.unionByName, frames)
