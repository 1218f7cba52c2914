"""The demo shop: its event types, segments, catalogue and the value sets that make its traffic
look real.

Everything here is data: weights, context values and the price of every product. The event types
and segments are those of the default contract (ecom_assets/schema/default_contract.yaml), which
accepts them; the catalogue is the demo's reference data, which `ecom up` loads into the
``products`` table when it starts the generator (``write_catalogue``), so the catalogue rules
have something to check. Prices come from a fixed-seed generator independent of the run's seed,
so a product costs the same in every run and every file, as it would in a real catalogue.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from ecom_assets.schema.catalogue import Catalogue

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "wishlist",
    "purchase",
)
ANONYMOUS_EVENT_TYPES: frozenset[str] = frozenset({"view", "search"})
"""Anonymous visitors (user_id 0) only do these; every other type needs a user."""
USER_REQUIRED_EVENT_TYPES: frozenset[str] = frozenset(EVENT_TYPES) - ANONYMOUS_EVENT_TYPES
PRICED_EVENT_TYPES: frozenset[str] = frozenset({"add_to_cart", "purchase"})
"""Only these carry price and quantity."""
USER_SEGMENTS: tuple[str, ...] = ("new", "returning", "premium", "inactive", "at_risk")


@dataclass(frozen=True)
class Category:
    """A product category: its products are ids first_product_id..last_product_id."""

    name: str
    first_product_id: int
    last_product_id: int
    min_price: float
    max_price: float

    def owns(self, product_id: int) -> bool:
        return self.first_product_id <= product_id <= self.last_product_id


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", 1000, 1999, 49.0, 2499.0),
    Category("computers", 2000, 2999, 199.0, 4999.0),
    Category("phones", 3000, 3999, 99.0, 1799.0),
    Category("home_kitchen", 4000, 4999, 9.0, 899.0),
    Category("fashion", 5000, 5999, 9.0, 499.0),
    Category("beauty", 6000, 6999, 4.0, 199.0),
    Category("sports", 7000, 7999, 9.0, 1299.0),
    Category("books", 8000, 8999, 3.0, 89.0),
    Category("toys", 9000, 9999, 5.0, 299.0),
    Category("grocery", 10000, 10999, 1.0, 99.0),
    Category("garden", 11000, 11999, 5.0, 1499.0),
    Category("automotive", 12000, 12999, 5.0, 999.0),
)
CATEGORY_BY_NAME: dict[str, Category] = {category.name: category for category in CATEGORIES}


def category_of_product(product_id: int) -> Category | None:
    for category in CATEGORIES:
        if category.owns(product_id):
            return category
    return None


SESSION_GAP_S = 30 * 60
"""Inactivity after which a user's next event starts a new session (the web-analytics default)."""

ANONYMOUS_SHARE = 0.3
"""Share of new visits by visitors who are not logged in (user_id 0)."""

ANONYMOUS_TYPE_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (("view", "search"), (78, 22))

# Logged-in weights per segment, in the order of EVENT_TYPES (view, search, add_to_cart,
# remove_from_cart, wishlist, purchase). Premium users buy more, inactive and at-risk users browse.
SEGMENT_TYPE_WEIGHTS: dict[str, tuple[int, ...]] = {
    "new": (60, 18, 10, 3, 5, 4),
    "returning": (55, 15, 12, 4, 6, 8),
    "premium": (50, 12, 14, 4, 7, 13),
    "inactive": (68, 18, 6, 2, 4, 2),
    "at_risk": (64, 17, 8, 4, 5, 2),
}
SEGMENT_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (
    ("new", "returning", "premium", "inactive", "at_risk"),
    (20, 45, 10, 15, 10),
)

SESSION_EVENTS_MEAN = 8
"""Mean number of events in a visit (geometric distribution, at least one)."""

CATEGORY_STAY = 0.75
"""Chance that the next event of a session stays in the category of the previous one."""

QUANTITY_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (
    ("1", "2", "3", "4", "5"),
    (72, 17, 6, 3, 2),
)

DEVICE_BROWSERS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "desktop": (("chrome", "edge", "firefox", "safari", "opera"), (62, 14, 9, 12, 3)),
    "mobile": (("chrome", "safari", "samsung_internet", "firefox"), (55, 33, 10, 2)),
    "tablet": (("safari", "chrome", "samsung_internet"), (55, 38, 7)),
}
DEVICE_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (
    ("mobile", "desktop", "tablet"),
    (55, 38, 7),
)

GEO_WEIGHTS: tuple[tuple[tuple[str, str], ...], tuple[int, ...]] = (
    (
        ("US", "New York"),
        ("US", "Los Angeles"),
        ("US", "Chicago"),
        ("GB", "London"),
        ("GB", "Manchester"),
        ("DE", "Berlin"),
        ("DE", "Munich"),
        ("FR", "Paris"),
        ("FR", "Lyon"),
        ("ES", "Madrid"),
        ("IT", "Milan"),
        ("NL", "Amsterdam"),
        ("PL", "Warsaw"),
        ("SE", "Stockholm"),
        ("CA", "Toronto"),
        ("BR", "Sao Paulo"),
        ("IN", "Bengaluru"),
        ("JP", "Tokyo"),
        ("AU", "Sydney"),
    ),
    (14, 9, 6, 9, 3, 7, 4, 7, 2, 5, 4, 4, 3, 2, 5, 4, 5, 4, 3),
)

REFERRER_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (
    ("direct", "google", "bing", "facebook", "instagram", "tiktok", "newsletter", "affiliate"),
    (30, 34, 4, 9, 8, 5, 6, 4),
)
PAID_SHARE = 0.35
"""Share of visits from search engines and social networks that came through a paid campaign."""
SEASONAL_CAMPAIGNS: tuple[str, ...] = (
    "cmp-2026-winter-sale",
    "cmp-2026-spring-launch",
    "cmp-2026-summer-deals",
    "cmp-2026-back-to-school",
    "cmp-2026-black-friday",
    "cmp-retargeting",
)
REFERRER_CAMPAIGNS: dict[str, tuple[str, ...]] = {
    "google": SEASONAL_CAMPAIGNS,
    "bing": SEASONAL_CAMPAIGNS,
    "facebook": SEASONAL_CAMPAIGNS,
    "instagram": SEASONAL_CAMPAIGNS,
    "tiktok": SEASONAL_CAMPAIGNS,
    "newsletter": ("cmp-newsletter-weekly", "cmp-2026-black-friday", "cmp-2026-winter-sale"),
    "affiliate": ("cmp-affiliate-tech", "cmp-affiliate-fashion"),
}
"""Campaigns a visit from each referrer can carry; direct visits never carry one."""
ALWAYS_CAMPAIGN_REFERRERS = frozenset({"newsletter", "affiliate"})
"""Referrers whose links are always tagged; the others carry a campaign in PAID_SHARE of visits."""

CATEGORY_WEIGHTS: tuple[int, ...] = (14, 9, 11, 10, 14, 8, 7, 7, 6, 6, 4, 4)
"""Popularity of CATEGORIES, in its order."""

_PRICE_SEED = 20260129


def cumulative(weights: tuple[int, ...]) -> tuple[int, ...]:
    """Cumulative weights: random.choices is faster with them than with plain weights."""
    return tuple(accumulate(weights))


def _product_prices(category: Category, rng: random.Random) -> list[str]:
    """Prices skewed to the cheap end of the range, as in most shops, rounded to cents."""
    span = category.max_price - category.min_price
    prices = []
    for _ in range(category.first_product_id, category.last_product_id + 1):
        price = round(category.min_price + span * rng.random() ** 2.5, 2)
        prices.append(f"{min(max(price, category.min_price), category.max_price):.2f}")
    return prices


def _price_table() -> dict[int, str]:
    rng = random.Random(_PRICE_SEED)
    table: dict[int, str] = {}
    for category in CATEGORIES:
        first = category.first_product_id
        for offset, price in enumerate(_product_prices(category, rng)):
            table[first + offset] = price
    return table


PRICES: dict[int, str] = _price_table()
"""Price (2 decimals, as written to the CSV) of every product id in the catalogue."""

CATEGORY_OF: dict[int, str] = {
    product_id: category.name
    for category in CATEGORIES
    for product_id in range(category.first_product_id, category.last_product_id + 1)
}
"""Category name of every product id in the catalogue."""


def demo_catalogue() -> Catalogue:
    """The demo shop's catalogue as the pipeline holds a loaded one."""
    return Catalogue.of(CATEGORY_OF)


def write_catalogue(path: Path) -> int:
    """The demo catalogue as the CSV `ecom catalog load` reads; returns the products written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["product_id", "category", "name", "price"])
        for product_id, category in CATEGORY_OF.items():
            writer.writerow(
                [product_id, category, f"{category} item {product_id}", PRICES[product_id]]
            )
    temporary.replace(path)
    return len(CATEGORY_OF)
