"""The asset checks' verdicts on a partition's totals (the SQL behind them runs in the ingest
tests): validity counts error rows only; warnings never block."""

from __future__ import annotations

import dagster as dg

from ecom_assets.checks import PartitionQuality, validity_check, warnings_check
from ecom_assets.settings import QualitySettings

RULES = QualitySettings()


def test_rows_stored_with_warnings_are_valid() -> None:
    quality = PartitionQuality(
        files=1, rows_read=100, rows_valid=97, rows_invalid=3, rows_warned=60,
        warning_counts={"INVALID_USER_SEGMENT": 60},
    )  # fmt: skip
    assert validity_check(quality, RULES).passed
    assert validity_check(quality, RULES).metadata["validity_rate"].value == 0.97


def test_the_warning_check_warns_above_the_share_and_lists_the_rules() -> None:
    quiet = PartitionQuality(rows_read=100, rows_valid=100, rows_warned=25,
                             warning_counts={"UNEXPECTED_PRICE": 25})  # fmt: skip
    assert warnings_check(quiet, RULES).passed
    loud = PartitionQuality(
        rows_read=200, rows_valid=200, rows_warned=120,
        warning_counts={"UNEXPECTED_PRICE": 30, "INVALID_USER_SEGMENT": 100},
    )  # fmt: skip
    result = warnings_check(loud, RULES)
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert result.description == "60.0% of rows stored with warnings > 25%"
    table = result.metadata["warnings_by_rule"].value
    assert table.splitlines()[2:] == [
        "| INVALID_USER_SEGMENT | 100 | 50.00% |",
        "| UNEXPECTED_PRICE | 30 | 15.00% |",
    ]
    assert warnings_check(PartitionQuality(), RULES).metadata["warnings_by_rule"].value == (
        "no warnings"
    )
