"""The reference catalogue in PostgreSQL: load it from a CSV file, read it for a batch.

``ecom catalog load FILE`` upserts products (``product_id``, ``category``, optionally ``name``
and ``price``) into the ``products`` table in one transaction and reports what changed; loading
the same file again changes nothing. A file with any bad line loads nothing: a catalogue missing
a few products would turn their events into UNKNOWN_PRODUCT warnings, or dead letters under a
strict contract, without anyone asking for it. Each batch reads the table once
(``read_catalogue``): an empty table means no catalogue, and the catalogue rules do not apply.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg

from ecom_assets.schema.catalogue import Catalogue

REQUIRED_COLUMNS = ("product_id", "category")
OPTIONAL_COLUMNS = ("name", "price")
_WHOLE = re.compile(r"^\+?[0-9]+(\.0*)?$")
_MAX_PRODUCT_ID = 2**63 - 1
MAX_PROBLEMS_SHOWN = 20


class CatalogueError(ValueError):
    """A catalogue file that cannot be loaded; nothing was loaded."""


@dataclass(frozen=True)
class Product:
    product_id: int
    category: str
    name: str | None
    price: Decimal | None


@dataclass
class CatalogueLoad:
    """What a load did: products new, changed, unchanged and removed (``replace``)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    categories: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        removed = f", {self.removed} removed" if self.removed else ""
        return (
            f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
            f"{removed}; {self.categories} categories"
        )


def parse_catalogue(text: str, source: str = "<catalogue>") -> list[Product]:
    """The products of a catalogue CSV; CatalogueError lists every bad line (up to a limit)."""
    reader = csv.reader(io.StringIO(text))
    header = [name.replace("\ufeff", "").strip().lower() for name in next(reader, [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise CatalogueError(
            f"{source}: the header needs the columns {', '.join(REQUIRED_COLUMNS)} "
            f"(optional: {', '.join(OPTIONAL_COLUMNS)}); missing: {', '.join(missing)}"
        )
    position = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
                if name in header}  # fmt: skip
    products: dict[int, Product] = {}
    first_line: dict[int, int] = {}
    problems: list[str] = []
    for line, record in enumerate(reader, start=2):
        if not any(value.strip() for value in record):
            continue
        if len(record) != len(header):
            problems.append(f"line {line}: {len(record)} fields, the header has {len(header)}")
            continue
        values = {name: record[index].strip() for name, index in position.items()}
        try:
            product = _product(values)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        earlier = products.get(product.product_id)
        if earlier is not None and earlier != product:
            problems.append(
                f"line {line}: product {product.product_id} differs from line "
                f"{first_line[product.product_id]}"
            )
            continue
        products[product.product_id] = product
        first_line.setdefault(product.product_id, line)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise CatalogueError(
            f"{source}: {len(problems)} bad line(s), nothing loaded:\n  "
            + "\n  ".join(shown)
            + tail
        )
    if not products:
        raise CatalogueError(f"{source}: no products")
    return list(products.values())


def _product(values: dict[str, str]) -> Product:
    """One line's product; ValueError says what is wrong with it."""
    raw_id = values["product_id"]
    if not _WHOLE.match(raw_id) or not 0 < int(raw_id.split(".")[0]) <= _MAX_PRODUCT_ID:
        raise ValueError(f"product_id {raw_id!r} is not a whole number > 0")
    category = values["category"].lower()
    if not category:
        raise ValueError("blank category")
    price: Decimal | None = None
    if values.get("price"):
        try:
            price = Decimal(values["price"]).quantize(Decimal("0.01"))
        except InvalidOperation:
            raise ValueError(f"price {values['price']!r} is not a number") from None
        if not 0 <= price < Decimal(10) ** 10:
            raise ValueError(f"price {values['price']!r} is out of range")
    return Product(int(raw_id.split(".")[0]), category, values.get("name") or None, price)


def load_catalogue(conn: psycopg.Connection, path: Path, replace: bool = False) -> CatalogueLoad:
    """Upsert the file's products in one transaction; ``replace`` also removes the products the
    file does not list. CatalogueError (nothing loaded) for a bad file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from exc
    products = parse_catalogue(text, str(path))
    report = CatalogueLoad()
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS pg_temp.catalogue_load")  # a caller's transaction
        conn.execute(
            "CREATE TEMP TABLE catalogue_load (LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with conn.cursor().copy(
            "COPY catalogue_load (product_id, category, name, price) FROM STDIN"
        ) as copy:
            for product in products:
                copy.write_row((product.product_id, product.category, product.name, product.price))
        changed = conn.execute(
            """
            INSERT INTO products AS p (product_id, category, name, price)
            SELECT product_id, category, name, price FROM catalogue_load
            ON CONFLICT (product_id) DO UPDATE
                SET category = excluded.category, name = excluded.name, price = excluded.price,
                    loaded_at = now()
                WHERE (p.category, p.name, p.price)
                      IS DISTINCT FROM (excluded.category, excluded.name, excluded.price)
            RETURNING xmax = 0
            """
        ).fetchall()
        report.inserted = sum(1 for (inserted,) in changed if inserted)
        report.updated = len(changed) - report.inserted
        report.unchanged = len(products) - len(changed)
        if replace:
            report.removed = conn.execute(
                "DELETE FROM products p WHERE NOT EXISTS "
                "(SELECT FROM catalogue_load c WHERE c.product_id = p.product_id)"
            ).rowcount
        report.categories = conn.execute(
            "SELECT count(DISTINCT category) FROM products"
        ).fetchone()[0]
    return report


def clear_catalogue(conn: psycopg.Connection) -> int:
    """Remove every product: the catalogue rules stop applying. Returns the products removed."""
    with conn.transaction():
        return conn.execute("DELETE FROM products").rowcount


_cached: tuple[tuple[object, ...], Catalogue | None] | None = None


def read_catalogue(conn: psycopg.Connection) -> Catalogue | None:
    """The loaded catalogue, or None when the products table is empty.

    Every batch asks, so the catalogue is read again only when its count of products or latest
    load time changed (every load that changes a row sets loaded_at); a run of live files asks
    one small aggregate per batch instead of copying the whole table.
    """
    global _cached
    version = tuple(
        conn.execute(
            "SELECT current_database(), inet_server_port(), count(*), max(loaded_at) FROM products"
        ).fetchone()
    )
    if _cached is not None and _cached[0] == version:
        return _cached[1]
    rows = conn.execute("SELECT product_id, category FROM products ORDER BY product_id").fetchall()
    catalogue = Catalogue.of(dict(rows)) if rows else None
    _cached = (version, catalogue)
    return catalogue
