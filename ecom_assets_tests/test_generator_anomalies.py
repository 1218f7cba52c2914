"""Anomaly injection and its ground truth: every ErrorCode is producible, each injected row
breaks exactly the rule its truth names (checked by an independent reference validator), late
and replayed rows are what the truth says, and the rates hold."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ecom_assets.schema.contract import REFUSED_VALUE_RULES, ErrorCode
from ecom_assets_tests.test_generator_support import (
    LIMITS,
    csv_files,
    epoch_us,
    parse_time,
    read_csv,
    read_truth,
    reference_codes,
    run_generator,
)
from generator.anomalies import KIND_BY_NAME, KINDS, Defect, Limits
from generator.clock import US, EventTimeFormat
from generator.model import COLUMNS, PRICE, WIDTH, EventModel

V2_ONLY = {"unknown_category", "category_product_mismatch", "invalid_quantity"}
V2_ONLY |= {"unexpected_quantity", "invalid_user_segment"}


def malformed(record: dict[Any, Any]) -> bool:
    """A row short of its header (csv.DictReader fills None) or beyond it (under the None key)."""
    return None in record or None in record.values()


def expected_codes(record: dict[Any, Any], now_us: int, seen: set[str]) -> set[str]:
    """MALFORMED_ROW alone for a malformed row (its fields are not where the header says), else
    the reference validator's codes."""
    if malformed(record):
        return {ErrorCode.MALFORMED_ROW}
    return reference_codes(record, now_us, seen)


class File:
    def __init__(self, path: Path, truth_dir: Path) -> None:
        self.path = path
        self.header, self.records = read_csv(path)
        self.truth: dict[str, Any] = read_truth(truth_dir, path)
        self.lines = {entry["line"]: entry for entry in self.truth["lines"]}
        self.now_us = epoch_us(self.truth["file_time"])


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[File]:
    """30 files of 200 events, mixed versions, half of the rows anomalies, 10 % late."""
    root = tmp_path_factory.mktemp("anomalies")
    _, input_dir, truth_dir = run_generator(
        root,
        files=30,
        events_per_file=200,
        schema="mixed",
        seed=11,
        anomaly_rate=0.5,
        late_rate=0.1,
    )
    return [File(path, truth_dir) for path in csv_files(input_dir)]


def test_every_error_code_has_exactly_one_anomaly_kind() -> None:
    codes = [kind.code for kind in KINDS if kind.code is not None]
    assert sorted(codes) == sorted(set(ErrorCode) - REFUSED_VALUE_RULES)
    assert [kind.name for kind in KINDS if kind.code is None] == ["replayed"]


def test_the_sample_has_every_version_kind_and_code(sample: list[File]) -> None:
    assert len(sample) == 30
    assert {file.truth["schema_version"] for file in sample} == {"v1", "v2", "v3"}
    kinds = {entry["kind"] for file in sample for entry in file.truth["lines"]}
    assert kinds == {kind.name for kind in KINDS} | {"late"}
    codes = {code for file in sample for code in file.truth["codes"]}
    assert codes == set(ErrorCode) - REFUSED_VALUE_RULES  # test_refused_values writes those


def test_truth_codes_equal_the_reference_validator_on_every_line(sample: list[File]) -> None:
    checked = 0
    for file in sample:
        seen: set[str] = set()
        for line, record in enumerate(file.records, start=1):
            expected = expected_codes(record, file.now_us, seen)
            truth = file.lines.get(line, {"codes": []})["codes"]
            assert sorted(expected) == truth, (file.path.name, line, record)
            if not malformed(record):  # its event id is not trusted to be one
                seen.add(record["event_id"])
            checked += 1
    assert checked == 30 * 200


def test_each_anomaly_row_has_exactly_its_kinds_code(sample: list[File]) -> None:
    for file in sample:
        for entry in file.truth["lines"]:
            kind = KIND_BY_NAME.get(entry["kind"])
            expected = [] if kind is None or kind.code is None else [str(kind.code)]
            assert entry["codes"] == expected


def test_v1_files_never_get_kinds_that_need_v2_columns(sample: list[File]) -> None:
    v1 = [file for file in sample if file.truth["schema_version"] == "v1"]
    assert [file.header for file in v1] == [list(COLUMNS[: WIDTH["v1"]])] * len(v1)
    v1_kinds = {entry["kind"] for file in v1 for entry in file.truth["lines"]}
    assert v1_kinds & V2_ONLY == set()
    assert {kind.name for kind in KINDS if kind.min_width > WIDTH["v1"]} == V2_ONLY


def test_duplicates_copy_an_earlier_valid_row_of_the_same_file(sample: list[File]) -> None:
    for file in sample:
        for entry in file.truth["lines"]:
            if entry["kind"] != "duplicate_event_id":
                continue
            row = file.records[entry["line"] - 1]
            earlier = [
                (line, record)
                for line, record in enumerate(file.records[: entry["line"] - 1], start=1)
                if record["event_id"] == row["event_id"]
            ]
            assert len(earlier) == 1
            original_line, original = earlier[0]
            assert original == row
            assert original_line not in file.lines  # the original is valid and on time


def test_replayed_rows_repeat_an_event_of_an_earlier_file(sample: list[File]) -> None:
    earlier: dict[str, dict[str, str]] = {}
    replays = 0
    for file in sample:
        ids_here = Counter(record["event_id"] for record in file.records)
        for entry in file.truth["lines"]:
            if entry["kind"] != "replayed":
                assert entry["replayed"] is False
                continue
            replays += 1
            assert entry["replayed"] is True
            row = file.records[entry["line"] - 1]
            original = earlier[row["event_id"]]
            shared = original.keys() & row.keys()  # the earlier file may be another version
            assert {c: original[c] for c in shared} == {c: row[c] for c in shared}
            assert ids_here[row["event_id"]] == 1
            assert reference_codes(row, file.now_us, set()) == set()
        earlier.update((record["event_id"], record) for record in file.records)
    assert replays == sum(file.truth["replayed"] for file in sample)


def test_late_flags_match_event_time_against_the_file_time(sample: list[File]) -> None:
    watermark_us = LIMITS.late_watermark_s * US
    for file in sample:
        late_lines = 0
        for line, record in enumerate(file.records, start=1):
            moment = None if malformed(record) else parse_time(record["event_time"])
            is_late = moment is not None and file.now_us - moment > watermark_us
            assert file.lines.get(line, {"late": False})["late"] is is_late
            late_lines += is_late
            if file.lines.get(line, {}).get("kind") == "late":
                assert reference_codes(record, file.now_us, set()) == set()
                lag_s = (file.now_us - moment) / US
                assert LIMITS.late_watermark_s + 60 <= lag_s <= LIMITS.late_watermark_s + 3 * 3600
        assert file.truth["late"] == late_lines


def test_truth_counts_add_up(sample: list[File]) -> None:
    for file in sample:
        truth = file.truth
        invalid = [entry for entry in truth["lines"] if entry["codes"]]
        assert truth["rows"] == len(file.records) == 200
        assert truth["invalid"] == len(invalid)
        assert truth["replayed"] == sum(entry["replayed"] for entry in truth["lines"])
        assert truth["valid_new"] == 200 - truth["invalid"] - truth["replayed"]
        assert truth["codes"] == dict(
            sorted(Counter(c for e in invalid for c in e["codes"]).items())
        )
        assert truth["file"] == file.path.name
        assert truth["schema_version"] == {6: "v1", 10: "v2", 16: "v3"}[len(file.header)]


def test_future_times_are_hours_beyond_the_tolerance(sample: list[File]) -> None:
    for file in sample:
        for entry in file.truth["lines"]:
            if entry["kind"] == "future_event_time":
                moment = parse_time(file.records[entry["line"] - 1]["event_time"])
                assert moment is not None
                ahead_s = (moment - file.now_us) / US
                assert LIMITS.future_tolerance_s + 3600 <= ahead_s
                assert ahead_s <= LIMITS.future_tolerance_s + 6 * 3600


def test_price_and_quantity_defects_follow_the_configured_limits() -> None:
    limits = Limits(max_price=5000.0, max_quantity=7, future_tolerance_s=60, late_watermark_s=60)
    now_us = 1_000 * US
    model = EventModel(random.Random(3))
    defect = Defect(random.Random(4), limits, now_us, EventTimeFormat(), len(COLUMNS))
    for _ in range(200):
        row = model.row(now_us, "purchase")
        KIND_BY_NAME["extreme_price"].apply(row, defect)  # type: ignore[misc]
        assert 5000.0 < float(row[PRICE]) <= 5 * 5000.0 + 1
        record = dict(zip(COLUMNS, row, strict=True))
        assert reference_codes(record, now_us, set(), limits) == {ErrorCode.EXTREME_PRICE}
        row = model.row(now_us, "add_to_cart")
        KIND_BY_NAME["invalid_quantity"].apply(row, defect)  # type: ignore[misc]
        record = dict(zip(COLUMNS, row, strict=True))
        assert reference_codes(record, now_us, set(), limits) == {ErrorCode.INVALID_QUANTITY}


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_a_malformed_row_is_one_field_short_of_its_version(version: str) -> None:
    model = EventModel(random.Random(3))
    width = WIDTH[version]
    defect = Defect(random.Random(4), LIMITS, 1_000 * US, EventTimeFormat(), width)
    dropped = set()
    for _ in range(100):
        row = model.row(1_000 * US, "view")
        fields = row[:width]
        KIND_BY_NAME["malformed_row"].apply(row, defect)  # type: ignore[misc]
        assert len(row) == width - 1
        dropped |= {i for i in range(width) if row == fields[:i] + fields[i + 1 :]}
    assert len(dropped) > width // 2  # any field may go, not always the same one


@pytest.mark.parametrize(("anomaly_rate", "late_rate"), [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_rates_at_their_bounds(tmp_path: Path, anomaly_rate: float, late_rate: float) -> None:
    _, input_dir, truth_dir = run_generator(
        tmp_path, anomaly_rate=anomaly_rate, late_rate=late_rate
    )
    truths = [read_truth(truth_dir, path) for path in csv_files(input_dir)]
    anomalies = sum(1 for t in truths for e in t["lines"] if e["kind"] != "late")
    late_kind = sum(1 for t in truths for e in t["lines"] if e["kind"] == "late")
    assert (anomalies, late_kind) == (300 * anomaly_rate, 300 * late_rate)


def test_default_rates_hold_within_five_sigma(tmp_path: Path) -> None:
    stats, input_dir, truth_dir = run_generator(tmp_path, files=10, events_per_file=10_000)
    truths = [read_truth(truth_dir, path) for path in csv_files(input_dir)]
    late_kind = sum(1 for t in truths for e in t["lines"] if e["kind"] == "late")
    sigma = (100_000 * 0.02 * 0.98) ** 0.5
    assert stats.events == 100_000
    assert abs(stats.kinds.total() - 2000) < 5 * sigma
    assert abs(late_kind - 2000) < 5 * sigma
