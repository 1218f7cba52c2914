"""The event contract shared by producers (the generator) and the pipeline (validation).

Event types, which of them carry a price or need a user, user segments, the product catalogue
(each category owns a product-id range and a price range) and the catalogue of validation error
codes. Keeping them in one place is what lets the generator inject exactly the anomalies the
validator detects, and lets tests compare both against one ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ANONYMOUS_USER_ID = 0

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "wishlist",
    "purchase",
)
ANONYMOUS_EVENT_TYPES: frozenset[str] = frozenset({"view", "search"})
"""Anonymous visitors (user_id 0) may only do these; every other type needs a user."""
USER_REQUIRED_EVENT_TYPES: frozenset[str] = frozenset(EVENT_TYPES) - ANONYMOUS_EVENT_TYPES
PRICED_EVENT_TYPES: frozenset[str] = frozenset({"add_to_cart", "purchase"})
"""Only these carry price and quantity; revenue counts purchases only."""
REVENUE_EVENT_TYPE = "purchase"

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


class ErrorCode(StrEnum):
    """Stable validation error codes; a row keeps every code it fails.

    Each code is one rule, so an injected anomaly maps to exactly one code.
    """

    MALFORMED_ROW = "MALFORMED_ROW"  # more or fewer fields than its header; no other code then
    MISSING_EVENT_ID = "MISSING_EVENT_ID"  # blank event_id
    INVALID_EVENT_ID = "INVALID_EVENT_ID"  # not a UUID
    DUPLICATE_EVENT_ID = "DUPLICATE_EVENT_ID"  # second and later rows of one id within a file
    INVALID_USER_ID = "INVALID_USER_ID"  # not a whole number >= 0 (blank means anonymous, 0)
    USER_REQUIRED = "USER_REQUIRED"  # cart, wishlist or purchase by an anonymous visitor
    MISSING_EVENT_TYPE = "MISSING_EVENT_TYPE"  # blank event_type
    INVALID_EVENT_TYPE = "INVALID_EVENT_TYPE"  # not one of EVENT_TYPES after trim + lower-case
    MISSING_PRODUCT_ID = "MISSING_PRODUCT_ID"  # blank product_id
    INVALID_PRODUCT_ID = "INVALID_PRODUCT_ID"  # not a whole number > 0
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"  # product id in no category's range
    UNKNOWN_CATEGORY = "UNKNOWN_CATEGORY"  # category given but not in the catalogue
    CATEGORY_PRODUCT_MISMATCH = "CATEGORY_PRODUCT_MISMATCH"  # product belongs to another category
    MISSING_PRICE = "MISSING_PRICE"  # priced type (cart, purchase) without a price
    INVALID_PRICE = "INVALID_PRICE"  # price that is not a number
    NEGATIVE_PRICE = "NEGATIVE_PRICE"  # price < 0
    EXTREME_PRICE = "EXTREME_PRICE"  # price > ECOM_QUALITY_MAX_PRICE
    NON_POSITIVE_PURCHASE_PRICE = "NON_POSITIVE_PURCHASE_PRICE"  # purchase with price exactly 0
    UNEXPECTED_PRICE = "UNEXPECTED_PRICE"  # price on a type that carries none
    INVALID_QUANTITY = "INVALID_QUANTITY"  # not a whole number in 1..ECOM_QUALITY_MAX_QUANTITY
    UNEXPECTED_QUANTITY = "UNEXPECTED_QUANTITY"  # quantity on a type that carries none
    MISSING_EVENT_TIME = "MISSING_EVENT_TIME"  # blank event_time
    INVALID_EVENT_TIME = "INVALID_EVENT_TIME"  # unparseable timestamp
    FUTURE_EVENT_TIME = "FUTURE_EVENT_TIME"  # later than now + ECOM_QUALITY_FUTURE_TOLERANCE_S
    INVALID_USER_SEGMENT = "INVALID_USER_SEGMENT"  # segment given but not in USER_SEGMENTS
