"""The registry itself: versions, their order and documentation (pure, no Spark)."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from ecom_assets.schema.versions import LATEST, V1, V2, V3, VERSIONS, SchemaVersion, version_by_name

V1_COLUMNS = ("event_id", "user_id", "event_type", "product_id", "price", "event_time")
V2_ADDS = ("session_id", "category", "quantity", "user_segment")
V3_ADDS = ("device_type", "browser", "geo_country", "geo_city", "referrer", "campaign_id")


def test_versions_have_the_documented_columns_in_order() -> None:
    assert [v.name for v in VERSIONS] == ["v1", "v2", "v3"]
    assert V1.column_names == V1_COLUMNS
    assert V2.column_names == V1_COLUMNS + V2_ADDS
    assert V3.column_names == V1_COLUMNS + V2_ADDS + V3_ADDS
    assert LATEST is V3


def test_each_version_only_adds_columns_to_the_previous_one() -> None:
    # detection and migration rely on it (see detection.py's policy)
    for older, newer in itertools.pairwise(VERSIONS):
        assert newer.fields[: len(older.fields)] == older.fields


def test_every_field_and_version_is_documented_and_unique() -> None:
    for version in VERSIONS:
        assert version.doc
        assert len(set(version.column_names)) == len(version.column_names)
        assert all(field.doc for field in version.fields)


def test_arrow_schema_has_the_parsed_types() -> None:
    types = {f.name: f.type for f in LATEST.arrow_schema}
    assert types["event_id"] == pa.string()
    assert types["user_id"] == pa.int64()
    assert types["product_id"] == pa.int64()
    assert types["price"] == pa.decimal128(12, 2)
    assert types["quantity"] == pa.int32()
    assert types["event_time"] == pa.timestamp("us", tz="UTC")
    assert all(f.nullable for f in LATEST.arrow_schema)


def test_required_values_match_the_contract() -> None:
    required = {f.name for f in LATEST.fields if f.required}
    assert required == {"event_id", "event_type", "product_id", "event_time"}


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.name)
def test_version_by_name(version: SchemaVersion) -> None:
    assert version_by_name(version.name) is version


def test_version_by_name_rejects_unknown() -> None:
    with pytest.raises(KeyError, match="v9"):
        version_by_name("v9")
