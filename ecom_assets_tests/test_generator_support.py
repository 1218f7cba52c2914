"""Helpers shared by the generator tests (no tests here): an independent reference validator of
the default contract's rules, an in-process run of the generator and a clean environment for the
CLI.

The reference validator is written from contract.py's rule comments and default_contract.yaml,
not from the generator, so agreeing with it shows that each injected anomaly really carries the
defect its truth names. It judges catalogue rules against the demo catalogue, loaded.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from ecom_assets.schema.contract import ErrorCode
from generator.anomalies import Limits
from generator.catalog import (
    CATEGORY_BY_NAME,
    EVENT_TYPES,
    PRICED_EVENT_TYPES,
    USER_REQUIRED_EVENT_TYPES,
    USER_SEGMENTS,
    category_of_product,
)
from generator.clock import US, parse_start_time
from generator.run import Generator, RunConfig, Stats

LIMITS = Limits(max_price=10_000.0, max_quantity=100, future_tolerance_s=300, late_watermark_s=600)
START = "2026-01-29T10:00:00+00:00"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WHOLE_RE = re.compile(r"^\d+$")
NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
NAME_RE = re.compile(r"^events_(\d{8}T\d{12}Z)_([0-9a-f]{8})\.csv$")
LOG_LINE_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) *\| .+$"
)
E = ErrorCode


def epoch_us(text: str) -> int:
    return parse_start_time(text)


def reference_codes(
    record: dict[str, str], now_us: int, seen_ids: set[str], limits: Limits = LIMITS
) -> set[str]:
    """Every code of contract.ErrorCode the record fails; `seen_ids` are earlier ids of the file."""
    codes: set[str] = set()
    event_id = record["event_id"]
    if event_id == "":
        codes.add(E.MISSING_EVENT_ID)
    elif not UUID_RE.match(event_id.lower()):
        codes.add(E.INVALID_EVENT_ID)
    elif event_id in seen_ids:
        codes.add(E.DUPLICATE_EVENT_ID)

    user = record["user_id"].strip()
    anonymous = user in ("", "0")
    if user and not WHOLE_RE.match(user):
        codes.add(E.INVALID_USER_ID)

    event_type = record["event_type"].strip().lower()
    if event_type == "":
        codes.add(E.MISSING_EVENT_TYPE)
    elif event_type not in EVENT_TYPES:
        codes.add(E.INVALID_EVENT_TYPE)
    elif anonymous and event_type in USER_REQUIRED_EVENT_TYPES:
        codes.add(E.USER_REQUIRED)

    product = record["product_id"].strip()
    product_category = None
    if product == "":
        if event_type != "search":  # the default contract lets a search name no product
            codes.add(E.MISSING_PRODUCT_ID)
    elif not WHOLE_RE.match(product) or int(product) == 0:
        codes.add(E.INVALID_PRODUCT_ID)
    else:
        product_category = category_of_product(int(product))
        if product_category is None:
            codes.add(E.UNKNOWN_PRODUCT)

    category = record.get("category", "").strip().lower()
    if category and category not in CATEGORY_BY_NAME:
        codes.add(E.UNKNOWN_CATEGORY)
    elif category and product_category is not None and product_category.name != category:
        codes.add(E.CATEGORY_PRODUCT_MISMATCH)

    price = record["price"].strip()
    priced = event_type in PRICED_EVENT_TYPES
    if priced and price == "":
        codes.add(E.MISSING_PRICE)
    elif priced and not NUMBER_RE.match(price):
        codes.add(E.INVALID_PRICE)
    elif priced and float(price) < 0:
        codes.add(E.NEGATIVE_PRICE)
    elif priced and float(price) > limits.max_price:
        codes.add(E.EXTREME_PRICE)
    elif priced and event_type == "purchase" and float(price) == 0:
        codes.add(E.NON_POSITIVE_PURCHASE_PRICE)
    elif event_type in EVENT_TYPES and not priced and price and not _zero(price):
        codes.add(E.UNEXPECTED_PRICE)

    quantity = record.get("quantity", "").strip()
    if quantity and priced:
        if not WHOLE_RE.match(quantity) or not 1 <= int(quantity) <= limits.max_quantity:
            codes.add(E.INVALID_QUANTITY)
    elif quantity and event_type in EVENT_TYPES and not _zero(quantity):
        codes.add(E.UNEXPECTED_QUANTITY)

    event_time = record["event_time"].strip()
    if event_time == "":
        codes.add(E.MISSING_EVENT_TIME)
    else:
        moment = parse_time(event_time)
        if moment is None:
            codes.add(E.INVALID_EVENT_TIME)
        elif moment > now_us + limits.future_tolerance_s * US:
            codes.add(E.FUTURE_EVENT_TIME)

    segment = record.get("user_segment", "").strip()
    if segment and segment not in USER_SEGMENTS:
        codes.add(E.INVALID_USER_SEGMENT)
    return codes


def _zero(text: str) -> bool:
    """A price or quantity of exactly zero: "none" on a type that carries none."""
    return bool(NUMBER_RE.match(text)) and float(text) == 0


def parse_time(text: str) -> int | None:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return None
    return parse_start_time(text)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def read_truth(truth_dir: Path, csv_path: Path) -> dict[str, Any]:
    return json.loads((truth_dir / f"{csv_path.stem}.json").read_text(encoding="utf-8"))


def csv_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("events_*.csv"))


def run_generator(tmp_path: Path, **overrides: Any) -> tuple[Stats, Path, Path]:
    """Runs the generator in-process: 3 seeded files of 100 v3 events unless overridden."""
    config = RunConfig(
        output_dir=tmp_path / "input",
        truth_dir=tmp_path / "truth",
        events_per_file=100,
        interval_s=0,
        files=3,
        burst=None,
        schema="v3",
        seed=1,
        start_us=epoch_us(START),
        anomaly_rate=0.02,
        late_rate=0.02,
        limits=LIMITS,
    )
    config = dataclasses.replace(config, **overrides)
    stats = Generator(config, logging.getLogger("test.generator"), threading.Event()).run()
    return stats, config.output_dir, tmp_path / "truth"


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for `python -m generator`: no ECOM_* from outside, data under tmp_path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECOM_")}
    env["ECOM_DATA_DIR"] = str(tmp_path / "data")
    env["ECOM_ENV_FILE"] = str(tmp_path / "absent.env")
    return env


def cli_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "generator", *flags]


def generate_files(
    input_dir: Path, log_dir: Path, start: datetime, *flags: str, env: dict[str, str] | None = None
) -> None:
    """Run `python -m generator` as its own process, simulating time from start."""
    subprocess.run(
        cli_command("--output-dir", str(input_dir), "--log-dir", str(log_dir),
                    "--start-time", start.isoformat(), *flags),
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
