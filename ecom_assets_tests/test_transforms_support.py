"""Helpers shared by the transform tests (no tests here): batches built the way ingestion builds
them, through the real schema registry (header detection, all-string raw schema, to_latest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pyarrow as pa

from ecom_assets.resources.event_reader import KEEP
from ecom_assets.schema.contract import ErrorCode, Severity, with_severities
from ecom_assets.schema.contract_file import load_contract
from ecom_assets.schema.detection import detect_header
from ecom_assets.schema.extras import EXTRAS
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import RECORD, raw_column_names, raw_name
from ecom_assets.schema.versions import version_by_name
from ecom_assets.transforms.validate import ValidationRules
from generator.catalog import demo_catalogue

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
ARRIVED = datetime(2024, 6, 1, 11, 0, tzinfo=UTC)
DEFAULT_CONTRACT = load_contract()
STRICT_CONTRACT = with_severities(DEFAULT_CONTRACT, **{code: Severity.ERROR for code in ErrorCode})
"""The default contract with every rule an error: each code shows in ``error_codes``."""
CATALOGUE = demo_catalogue()
RULES = ValidationRules(NOW, STRICT_CONTRACT, CATALOGUE)
"""Strict rules over the demo catalogue (the default limits: max price 10,000, quantity 100,
5 minutes into the future)."""

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
    files: Mapping[str, File], arrived_at: datetime | Mapping[str, datetime] = ARRIVED
) -> pa.Table:
    """Each file's ``to_latest`` output with source_file, source_line, arrived_at, concatenated.

    Each file's header is detected by the registry and its records become the all-string rows
    the CSV reader gives: an empty field is NULL, other text is kept verbatim. A record's
    ``record`` value, if any, is the text the reader keeps for a malformed record.
    """
    tables = []
    for name, (version_name, records) in files.items():
        match = detect_header(list(version_by_name(version_name).column_names))
        assert match.version is not None, match.reason
        arrived = arrived_at if isinstance(arrived_at, datetime) else arrived_at[name]
        columns = {
            column: pa.array([record.get(column, "") or None for record in records], pa.string())
            for column in raw_column_names(match.columns)
        }
        columns["source_file"] = pa.array([name] * len(records), pa.string())
        columns["source_line"] = pa.array(range(1, len(records) + 1), pa.int32())
        columns[raw_name(RECORD)] = pa.array([r.get(RECORD) for r in records], pa.string())
        columns["arrived_at"] = pa.array([arrived] * len(records), pa.timestamp("us", tz="UTC"))
        columns[EXTRAS] = pa.nulls(len(records), pa.string())
        tables.append(to_latest(pa.table(columns), match.version, keep=KEEP))
    return pa.concat_tables(tables)
