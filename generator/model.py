"""Users, visits and the valid events they produce, as CSV rows of the widest schema (v3).

A row is a list of strings in COLUMNS order; narrower schema versions are prefixes of it, so a
file of any version is written by slicing. Visits are interleaved the way concurrent shoppers
are: a fixed number of visits is open at once and each event belongs to one of them. A user's
session id changes when more than 30 minutes pass between two of their events.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable

from ecom_assets.schema.contract import ANONYMOUS_USER_ID
from ecom_assets.schema.versions import LATEST, VERSIONS
from generator import catalog
from generator.catalog import CATEGORIES, EVENT_TYPES, PRICED_EVENT_TYPES, USER_SEGMENTS
from generator.clock import US, EventTimeFormat

# the schema registry owns the columns; versions only append, so each is a prefix of LATEST's
COLUMNS: tuple[str, ...] = LATEST.column_names
WIDTH: dict[str, int] = {version.name: len(version.column_names) for version in VERSIONS}
"""Number of leading COLUMNS each schema version has."""
SCHEMA_VERSIONS: tuple[str, ...] = tuple(WIDTH)

(EVENT_ID, USER_ID, EVENT_TYPE, PRODUCT_ID, PRICE, EVENT_TIME, SESSION_ID, CATEGORY, QUANTITY) = (
    range(9)
)
USER_SEGMENT = 9

SESSION_GAP_US = catalog.SESSION_GAP_S * US
_HEX = "0123456789abcdef"
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in _HEX}
_SEGMENT_BUCKETS = catalog.cumulative(catalog.SEGMENT_WEIGHTS[1])
# hot-loop constants as module globals (cheaper to look up than catalog.* attributes)
_CATEGORY_STAY = catalog.CATEGORY_STAY
_PRODUCT_RANGES = tuple(
    (category.first_product_id, category.last_product_id - category.first_product_id + 1)
    for category in CATEGORIES
)
_PRICES = catalog.PRICES
_CATEGORY_OF = catalog.CATEGORY_OF
_QUANTITIES = catalog.QUANTITY_WEIGHTS[0]
_CART_LIMIT = 10


def random_uuid(getrandbits: Callable[[int], int]) -> str:
    """A version-4 UUID string from the given bit source (seedable, unlike uuid.uuid4)."""
    h = getrandbits(128).to_bytes(16, "little").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def segment_of(user_id: int) -> str:
    """A user's segment: a pure function of the id, so it is fixed per user across all runs."""
    bucket = ((user_id * 2_654_435_761) & 0xFFFFFFFF) % _SEGMENT_BUCKETS[-1]
    return catalog.SEGMENT_WEIGHTS[0][bisect(_SEGMENT_BUCKETS, bucket)]


class _Visit:
    """One shopper's state: who, which session, since when, browsing what, holding what."""

    __slots__ = (
        "active",
        "cart",
        "category",
        "context",
        "last_us",
        "remaining",
        "segment",
        "session_id",
        "types",
        "user",
    )

    def __init__(self, user: int, segment: str, types: tuple[tuple[str, ...], tuple[int, ...]]):
        self.user = str(user)
        self.segment = segment
        self.types = types
        self.session_id = ""
        self.last_us = -SESSION_GAP_US - 1
        self.context: tuple[str, ...] = ()
        self.cart: list[int] = []
        self.category = 0
        self.remaining = 0
        self.active = False


class EventModel:
    """Produces valid events of `concurrent` interleaved visits by `users` registered users.

    All randomness comes from `rng`, so a seeded model yields the same rows for the same times.
    """

    def __init__(self, rng: random.Random, users: int = 5000, concurrent: int = 40) -> None:
        self._rng = rng
        self._random = rng.random
        self._concurrent = concurrent
        self._users = rng.sample(range(1, 200_001), users)
        self._known: dict[int, _Visit] = {}
        self._active: list[_Visit] = []
        self._anonymous_types = (
            catalog.ANONYMOUS_TYPE_WEIGHTS[0],
            catalog.cumulative(catalog.ANONYMOUS_TYPE_WEIGHTS[1]),
        )
        self._segment_types = {
            segment: (EVENT_TYPES, catalog.cumulative(catalog.SEGMENT_TYPE_WEIGHTS[segment]))
            for segment in USER_SEGMENTS
        }
        self._categories = catalog.cumulative(catalog.CATEGORY_WEIGHTS)
        self._quantities = catalog.cumulative(catalog.QUANTITY_WEIGHTS[1])
        self._devices = catalog.cumulative(catalog.DEVICE_WEIGHTS[1])
        self._browsers = {
            device: (names, catalog.cumulative(weights))
            for device, (names, weights) in catalog.DEVICE_BROWSERS.items()
        }
        self._geos = catalog.cumulative(catalog.GEO_WEIGHTS[1])
        self._referrers = catalog.cumulative(catalog.REFERRER_WEIGHTS[1])
        self._format_time = EventTimeFormat()

    def _pick(self, cumulative: tuple[int, ...]) -> int:
        return bisect(cumulative, self._random() * cumulative[-1])

    def _context(self) -> tuple[str, ...]:
        """device_type, browser, geo_country, geo_city, referrer, campaign_id of a session."""
        device = catalog.DEVICE_WEIGHTS[0][self._pick(self._devices)]
        names, weights = self._browsers[device]
        country, city = catalog.GEO_WEIGHTS[0][self._pick(self._geos)]
        referrer = catalog.REFERRER_WEIGHTS[0][self._pick(self._referrers)]
        campaigns = catalog.REFERRER_CAMPAIGNS.get(referrer, ())
        campaign = ""
        if campaigns and (
            referrer in catalog.ALWAYS_CAMPAIGN_REFERRERS or self._random() < catalog.PAID_SHARE
        ):
            campaign = campaigns[int(self._random() * len(campaigns))]
        return (device, names[self._pick(weights)], country, city, referrer, campaign)

    def _new_visit(self, logged_in: bool) -> _Visit:
        if logged_in or self._random() >= catalog.ANONYMOUS_SHARE:
            user = self._users[int(self._random() * len(self._users))]
            segment = segment_of(user)
            return _Visit(user, segment, self._segment_types[segment])
        return _Visit(ANONYMOUS_USER_ID, "", self._anonymous_types)

    def _open_visit(self, logged_in: bool) -> _Visit:
        """Starts a visit; a registered user keeps their state (and session, if recent)."""
        visit = self._new_visit(logged_in)
        if visit.user != "0":
            visit = self._known.setdefault(int(visit.user), visit)
            if visit.active:
                return visit
        visit.active = True
        visit.remaining = 1 + int(self._rng.expovariate(1 / (catalog.SESSION_EVENTS_MEAN - 1)))
        visit.category = self._pick(self._categories)
        self._active.append(visit)
        return visit

    def _choose_visit(self, logged_in: bool) -> _Visit:
        active = self._active
        if len(active) < self._concurrent:
            visit = self._open_visit(logged_in)
        else:
            visit = active[int(self._random() * len(active))]
            if logged_in and visit.user == "0":
                visit = self._open_visit(True)
        visit.remaining -= 1
        if visit.remaining <= 0 and visit.active:
            visit.active = False
            active.remove(visit)
        return visit

    def _event(self, visit: _Visit, at_us: int, event_type: str | None) -> list[str]:
        random_ = self._random
        if at_us - visit.last_us > SESSION_GAP_US:
            visit.session_id = random_uuid(self._rng.getrandbits)
            visit.context = self._context()
        visit.last_us = at_us
        cart = visit.cart
        if event_type is None:
            names, weights = visit.types
            event_type = names[bisect(weights, random_() * weights[-1])]
            if event_type == "remove_from_cart" and not cart:
                event_type = "view"
        if cart and (event_type == "purchase" or event_type == "remove_from_cart"):
            product = cart.pop(int(random_() * len(cart)))
        else:
            if random_() >= _CATEGORY_STAY:
                visit.category = self._pick(self._categories)
            first, size = _PRODUCT_RANGES[visit.category]
            product = first + int(random_() * size)
            if event_type == "add_to_cart" and len(cart) < _CART_LIMIT:
                cart.append(product)
        price = quantity = ""
        if event_type in PRICED_EVENT_TYPES:
            price = _PRICES[product]
            quantity = _QUANTITIES[bisect(self._quantities, random_() * self._quantities[-1])]
        return [
            random_uuid(self._rng.getrandbits),
            visit.user,
            event_type,
            str(product),
            price,
            self._format_time(at_us),
            visit.session_id,
            _CATEGORY_OF[product],
            quantity,
            visit.segment,
            *visit.context,
        ]

    def row(self, at_us: int, event_type: str | None = None) -> list[str]:
        """The next event of some open visit, at `at_us` epoch microseconds.

        With `event_type`, a registered user's visit produces an event of that type.
        """
        visit = self._choose_visit(logged_in=event_type is not None)
        return self._event(visit, at_us, event_type)

    def late_row(self, at_us: int) -> list[str]:
        """An event delivered late (e.g. from an app that was offline): its own one-off session,
        leaving the live visits untouched."""
        visit = self._new_visit(logged_in=False)
        visit.category = self._pick(self._categories)
        return self._event(visit, at_us, None)
