"""Files shaped the way other shops' trackers write them, each with a truth of its own.

The demo generator agrees with the default contract by construction, so a pipeline that only
ever sees its files proves little. These shops do what real producers do: their own catalogue
and categories, their own segments (guests as "anonymous" or "guest"), other column orders and
names the schema does not know, "5.0" user ids, offsets, space-separated or fractional times,
zeros or blanks for "no price", upper-case UUIDs, a BOM, CRLF line endings and quoted fields,
and names that are not the demo's ``events_<stamp>_<id>.csv``.

A few rows of each file carry a defect drawn from ``DEFECTS``, written here without reference
to the validator; the truth names the error code each must get, and the warnings the default
contract should keep on the shop's good rows (its segments are not the default's, some of its
trackers send a price on views). No catalogue is assumed loaded.

    python -m generator.foreign --shop acme --files 3 --events-per-file 700 \\
        --output-dir data/input [--truth-dir DIR] [--write-catalogue FILE]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DEFAULT_SEGMENTS = frozenset({"new", "returning", "premium", "inactive", "at_risk"})
"""The default contract's segments: another shop's others keep a warning."""

Row = dict[str, str]


@dataclass(frozen=True)
class Shop:
    """How one shop's tracker writes events."""

    name: str
    columns: tuple[str, ...]
    """The header as written, in the shop's order; names no schema version knows are extras."""
    categories: dict[str, tuple[int, int]]
    """The shop's catalogue: category -> (first, last) product id."""
    segments: tuple[str, ...]
    """What it writes for logged-in users' segment."""
    guest_segment: str
    """What it writes for guests' segment ("" for a blank)."""
    guest_user: str
    """What it writes as a guest's user id ("", "0", "0.0")."""
    write_time: Callable[[datetime], str]
    write_user: Callable[[int], str]
    write_id: Callable[[uuid.UUID], str]
    no_price: str
    """What it writes as price on types that carry none: "0.0" or ""."""
    no_quantity: str
    """What it writes as quantity on types that carry none: "0" or ""."""
    view_price_share: float = 0.0
    """Share of views that carry the product's price (some trackers send it)."""
    extras: dict[str, Callable[[random.Random], str]] = field(default_factory=dict)
    line_ending: str = "\n"
    bom: bool = False
    file_name: str = "{shop}_{index:04d}.csv"

    def price_of(self, product_id: int) -> str:
        """A fixed price per product, as the shop writes it."""
        cents = 99 + (product_id * 7919) % 25_000
        return f"{cents / 100:.2f}"

    def catalogue_rows(self) -> list[tuple[int, str]]:
        return [(product, name) for name, (first, last) in self.categories.items()
                for product in range(first, last + 1)]  # fmt: skip


def _iso_offset(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")  # 2026-12-07T10:00:00+00:00


def _space_millis_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _local_plus_one(moment: datetime) -> str:
    local = moment.astimezone(_CET)
    return local.strftime("%Y-%m-%dT%H:%M:%S%z")  # 2026-12-07T11:00:00+0100


_CET = timezone(timedelta(hours=1))

SHOPS: dict[str, Shop] = {
    shop.name: shop
    for shop in (
        Shop(
            name="acme",  # a pandas export: v2 in another order, floats, zeros for "none"
            columns=(
                "event_time",
                "event_type",
                "event_id",
                "user_id",
                "product_id",
                "category",
                "price",
                "quantity",
                "session_id",
                "user_segment",
            ),
            categories={
                "apparel": (1, 120),
                "footwear": (121, 220),
                "accessories": (221, 330),
                "outdoor": (331, 430),
                "kids": (431, 500),
            },
            segments=("new", "returning", "vip"),
            guest_segment="anonymous",
            guest_user="0.0",
            write_time=_iso_offset,
            write_user=lambda user: f"{user}.0",
            write_id=str,
            no_price="0.0",
            no_quantity="0",
        ),
        Shop(
            name="nordic",  # a JS tracker: v3 plus its own columns, prices on views, CRLF, BOM
            columns=(
                "event_id",
                "event_type",
                "user_id",
                "user_segment",
                "product_id",
                "category",
                "price",
                "quantity",
                "event_time",
                "session_id",
                "device_type",
                "browser",
                "geo_country",
                "geo_city",
                "referrer",
                "campaign_id",
                "page_url",
                "ab_variant",
                "consent",
            ),
            categories={
                "home decor": (50_000, 50_399),
                "lighting": (50_400, 50_699),
                "textiles": (50_700, 50_999),
            },
            segments=("gold", "silver", "bronze"),
            guest_segment="guest",
            guest_user="",
            write_time=_space_millis_z,
            write_user=str,
            write_id=lambda value: str(value).upper(),
            no_price="",
            no_quantity="",
            view_price_share=0.6,
            extras={
                "page_url": lambda rng: f"https://shop.example/p/{rng.randrange(10_000)}?ref=a,b",
                "ab_variant": lambda rng: rng.choice(("control", "b", "")),
                "consent": lambda rng: rng.choice(("granted", "denied")),
            },
            line_ending="\r\n",
            bom=True,
            file_name="tracker-export-{index}.csv",
        ),
        Shop(
            name="legacy",  # a nightly dump of the original click stream: v1, local offsets
            columns=("event_type", "event_time", "product_id", "price", "user_id", "event_id"),
            categories={"spares": (7_000_000, 7_000_499)},
            segments=(),
            guest_segment="",
            guest_user="",
            write_time=_local_plus_one,
            write_user=str,
            write_id=str,
            no_price="",
            no_quantity="",
            file_name="dump_{index:02d}.CSV",
        ),
    )
}


@dataclass(frozen=True)
class Defect:
    """A defect a shop's row can carry, and the code the default contract must give it."""

    name: str
    code: str
    base_type: str
    """The type of the good event, by a logged-in user, that the defect is applied to."""
    apply: Callable[[Row, Shop, datetime], None]


DEFECTS: tuple[Defect, ...] = (
    Defect("no_event_id", "MISSING_EVENT_ID", "view",
           lambda row, shop, now: row.update(event_id="")),
    Defect("day_first_time", "INVALID_EVENT_TIME", "view",
           lambda row, shop, now: row.update(event_time=now.strftime("%d/%m/%Y %H:%M"))),
    Defect("clock_ahead", "FUTURE_EVENT_TIME", "view",
           lambda row, shop, now: row.update(event_time=shop.write_time(now + timedelta(hours=3)))),
    Defect("guest_checkout", "USER_REQUIRED", "purchase",
           lambda row, shop, now: row.update(user_id=shop.guest_user,
                                             user_segment=shop.guest_segment)),
    Defect("refund_as_negative", "NEGATIVE_PRICE", "add_to_cart",
           lambda row, shop, now: row.update(price="-12.50")),
    Defect("free_purchase", "NON_POSITIVE_PURCHASE_PRICE", "purchase",
           lambda row, shop, now: row.update(price="0.00")),
    Defect("undeclared_type", "INVALID_EVENT_TYPE", "view",
           lambda row, shop, now: row.update(event_type="checkout_started", price="",
                                             quantity="")),
    Defect("torn_row", "MALFORMED_ROW", "view", lambda row, shop, now: row.update(__torn__="1")),
)  # fmt: skip
"""Each breaks exactly one rule of the default contract, so its row must get exactly its code."""


@dataclass
class ShopFile:
    """One written file and its truth."""

    path: Path
    lines: dict[int, dict[str, Any]]
    """Per record number (1-based): event_id as written, its expected error codes and
    warnings."""

    def truth(self) -> dict[str, Any]:
        return {"file": self.path.name, "lines": {str(k): v for k, v in self.lines.items()}}


class ShopWriter:
    """Writes a shop's files: sessions of visitors browsing its catalogue, some buying."""

    def __init__(self, shop: Shop, seed: int, defect_rate: float = 0.02) -> None:
        self.shop = shop
        self.rng = random.Random(f"{shop.name}:{seed}")  # shops never share event ids
        self.defect_rate = defect_rate
        self.products = shop.catalogue_rows()

    def write(self, directory: Path, index: int, rows: int, now: datetime) -> ShopFile:
        """A file of ``rows`` events with times in the minutes before ``now``."""
        shop, rng = self.shop, self.rng
        name = shop.file_name.format(shop=shop.name, index=index)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=shop.line_ending)
        writer.writerow(shop.columns)
        lines: dict[int, dict[str, Any]] = {}
        for line in range(1, rows + 1):
            row, truth = self._row(now - timedelta(seconds=rng.uniform(30, 900)), now)
            values = [row.get(column, "") for column in shop.columns]
            if row.get("__torn__"):
                del values[rng.randrange(len(values))]
            writer.writerow(values)
            lines[line] = truth
        text = ("\ufeff" if shop.bom else "") + buffer.getvalue()
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{name}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with open(os.open(temporary, flags, 0o600), "w", encoding="utf-8", newline="") as out:
            out.write(text)  # 0600, as generator.writer: user and session ids
        temporary.replace(directory / name)  # atomic, as producers should
        return ShopFile(directory / name, lines)

    def _row(self, moment: datetime, now: datetime) -> tuple[Row, dict[str, Any]]:
        rng = self.rng
        if rng.random() < self.defect_rate:
            defect = rng.choice(DEFECTS)
            row, _ = self._valid(defect.base_type, False, moment)
            defect.apply(row, self.shop, now)
            return row, {"event_id": row["event_id"], "codes": [defect.code], "warnings": []}
        guest = rng.random() < 0.3
        browse = ("view", "view", "view", "search")
        event_type = rng.choice(browse if guest else (*browse, "add_to_cart", "purchase",
                                                      "wishlist"))  # fmt: skip
        row, warnings = self._valid(event_type, guest, moment)
        return row, {"event_id": row["event_id"], "codes": [], "warnings": warnings}

    def _valid(self, event_type: str, guest: bool, moment: datetime) -> tuple[Row, list[str]]:
        """A good event and the warnings the default contract keeps on it."""
        shop, rng = self.shop, self.rng
        product, category = rng.choice(self.products)
        priced = event_type in ("add_to_cart", "purchase")
        no_product = event_type == "search" and rng.random() < 0.5
        row: Row = {
            "event_id": shop.write_id(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": shop.guest_user if guest else shop.write_user(rng.randrange(1, 5000)),
            "event_type": event_type,
            "product_id": "" if no_product else str(product),
            "category": "" if no_product else category,
            "price": shop.price_of(product) if priced else shop.no_price,
            "quantity": str(rng.choice((1, 1, 1, 2, 3))) if priced else shop.no_quantity,
            "event_time": shop.write_time(moment),
            "session_id": f"{shop.name}-{rng.getrandbits(40):010x}",
            "device_type": rng.choice(("mobile", "Desktop", "tablet")),
            "browser": rng.choice(("Chrome", "Safari", "Firefox")),
            "geo_country": rng.choice(("se", "NO", "dk", "FI")),
            "geo_city": rng.choice(("Stockholm", "Oslo", "Washington, D.C.", 'The "Hague"')),
            "referrer": rng.choice(("", "https://www.google.com/", "newsletter")),
            "campaign_id": rng.choice(("", "", "cmp-123")),
            "user_segment": shop.guest_segment if guest else rng.choice(shop.segments or ("",)),
        }
        row.update({name: value(rng) for name, value in shop.extras.items()})
        warnings = []
        if event_type == "view" and rng.random() < shop.view_price_share:
            row["price"] = shop.price_of(product)
            warnings.append("UNEXPECTED_PRICE")
        segment = row["user_segment"]
        if "user_segment" in shop.columns and segment and segment not in DEFAULT_SEGMENTS:
            warnings.append("INVALID_USER_SEGMENT")
        return row, warnings


def write_shop(
    shop: Shop, directory: Path, files: int, rows: int, seed: int, now: datetime | None = None
) -> list[ShopFile]:
    """``files`` files of ``rows`` events each, the last event minutes before ``now``."""
    writer = ShopWriter(shop, seed)
    now = now or datetime.now(tz=UTC)
    return [writer.write(directory, index, rows, now) for index in range(1, files + 1)]


def write_catalogue(shop: Shop, path: Path) -> int:
    """The shop's catalogue as `ecom catalog load` reads it."""
    rows = shop.catalogue_rows()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["product_id", "category", "price"])
        writer.writerows((product, category, shop.price_of(product)) for product, category in rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator.foreign", description=__doc__)
    parser.add_argument("--shop", choices=sorted(SHOPS), required=True)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--events-per-file", type=int, default=700)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--truth-dir", type=Path, help="a JSON truth per file here")
    parser.add_argument("--write-catalogue", type=Path, metavar="FILE",
                        help="also write the shop's catalogue CSV here")  # fmt: skip
    args = parser.parse_args(argv)
    shop = SHOPS[args.shop]
    written = write_shop(shop, args.output_dir, args.files, args.events_per_file, args.seed)
    if args.truth_dir:
        args.truth_dir.mkdir(parents=True, exist_ok=True)
        for file in written:
            (args.truth_dir / f"{file.path.name}.json").write_text(json.dumps(file.truth()))
    if args.write_catalogue:
        write_catalogue(shop, args.write_catalogue)
    print(f"{len(written)} {shop.name} file(s) in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
