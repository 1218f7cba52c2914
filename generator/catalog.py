"""Value sets that make generated traffic look like a real shop's, and fixed product prices.

Everything here is data: weights, context values and the price of every product. Prices come
from a fixed-seed generator independent of the run's seed, so a product costs the same in every
run and every file, as it would in a real catalogue.
"""

from __future__ import annotations

import random
from itertools import accumulate

from ecom_assets.schema.contract import CATEGORIES, Category

SESSION_GAP_S = 30 * 60
"""Inactivity after which a user's next event starts a new session (the web-analytics default)."""

ANONYMOUS_SHARE = 0.3
"""Share of new visits by visitors who are not logged in (user_id 0)."""

ANONYMOUS_TYPE_WEIGHTS: tuple[tuple[str, ...], tuple[int, ...]] = (("view", "search"), (78, 22))

# Logged-in weights per segment, in the order of contract.EVENT_TYPES (view, search, add_to_cart,
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
"""Popularity of contract.CATEGORIES, in its order."""

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
