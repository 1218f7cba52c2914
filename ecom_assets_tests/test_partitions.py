"""A file's moment and hourly partition from its name, else its modification time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ecom_assets.partitions import PARTITION_START, partition_key, produced_at

MODIFIED = datetime(2026, 11, 30, 5, 17, 42, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events_20261130T041502Z_ab12.csv", datetime(2026, 11, 30, 4, 15, 2, tzinfo=UTC)),
        ("events_20261130T041502123456Z_ab12.csv", datetime(2026, 11, 30, 4, 15, 2, tzinfo=UTC)),
        ("events_20240229T235959_x.csv", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("events_20261330T041502Z_ab12.csv", MODIFIED),  # month 13
        ("events_20250229T000000Z_ab12.csv", MODIFIED),  # no February 29 in 2025
        ("events_20261130T246000Z_ab12.csv", MODIFIED),  # hour 24
        ("events_20261130T041502Z_ab12.txt", MODIFIED),
        ("clicks.csv", MODIFIED),
    ],
)
def test_produced_at_reads_the_name_or_falls_back_to_the_modification_time(
    name: str, expected: datetime
) -> None:
    assert produced_at(name, MODIFIED) == expected


def test_produced_at_agrees_with_strptime_on_any_digits() -> None:
    draw = random.Random(7)
    for _ in range(5000):
        digits = "".join(draw.choice("0123456789") for _ in range(14))
        digits = draw.choice([digits, f"{draw.randrange(1, 9999):04d}{digits[4:]}"])
        try:
            expected = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            expected = MODIFIED
        assert produced_at(f"events_{digits[:8]}T{digits[8:]}Z_x.csv", MODIFIED) == expected


def test_a_name_outside_the_partition_range_falls_back_to_the_modification_time() -> None:
    early = (PARTITION_START - timedelta(days=1)).strftime("%Y%m%dT%H%M%S")
    assert partition_key(f"events_{early}Z_x.csv", MODIFIED, NOW) == "2026-11-30-05:00"
    assert partition_key("events_20261130T071502Z_x.csv", MODIFIED, NOW) == "2026-11-30-05:00"
    assert partition_key("events_20261130T041502Z_x.csv", MODIFIED, NOW) == "2026-11-30-04:00"
    future = MODIFIED + timedelta(days=2)
    assert partition_key("events_20261202T041502Z_x.csv", future, NOW) == "2026-11-30-06:00"
