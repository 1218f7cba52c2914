"""The valid traffic: business rules, sessions, segments, catalogue, value sets, time spelling."""

from __future__ import annotations

import random
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from generator import catalog
from generator.anomalies import Limits
from generator.batch import BatchBuilder
from generator.catalog import (
    ANONYMOUS_EVENT_TYPES,
    CATEGORIES,
    CATEGORY_BY_NAME,
    EVENT_TYPES,
    PRICED_EVENT_TYPES,
    USER_SEGMENTS,
    category_of_product,
)
from generator.clock import US, EventTimeFormat, SimulatedClock, file_stamp, parse_start_time
from generator.model import COLUMNS, WIDTH, EventModel, random_uuid, segment_of

T0 = parse_start_time("2026-01-29T10:00:00Z")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
LIMITS = Limits(max_price=10_000.0, max_quantity=100, future_tolerance_s=300, late_watermark_s=600)


def valid_rows(count: int, seed: int = 1, gap_s: float = 0.05) -> list[dict[str, str]]:
    model = EventModel(random.Random(seed))
    return [
        dict(zip(COLUMNS, model.row(T0 + int(i * gap_s * US)), strict=True)) for i in range(count)
    ]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return valid_rows(50_000)


def test_columns_of_each_schema_version() -> None:
    assert COLUMNS[: WIDTH["v1"]] == (
        "event_id",
        "user_id",
        "event_type",
        "product_id",
        "price",
        "event_time",
    )
    assert COLUMNS[WIDTH["v1"] : WIDTH["v2"]] == (
        "session_id",
        "category",
        "quantity",
        "user_segment",
    )
    assert COLUMNS[WIDTH["v2"] :] == (
        "device_type",
        "browser",
        "geo_country",
        "geo_city",
        "referrer",
        "campaign_id",
    )


def test_anonymous_visitors_only_view_and_search(rows: list[dict[str, str]]) -> None:
    anonymous = [row for row in rows if row["user_id"] == "0"]
    assert {row["event_type"] for row in anonymous} == ANONYMOUS_EVENT_TYPES
    assert {row["user_segment"] for row in anonymous} == {""}
    logged_in_types = {row["event_type"] for row in rows if row["user_id"] != "0"}
    assert logged_in_types == set(EVENT_TYPES)


def test_only_priced_types_carry_price_and_quantity(rows: list[dict[str, str]]) -> None:
    for row in rows:
        priced = row["event_type"] in PRICED_EVENT_TYPES
        assert (row["price"] != "") is priced
        assert (row["quantity"] != "") is priced
        if priced:
            assert re.fullmatch(r"\d+\.\d\d", row["price"])
            assert row["quantity"] in {"1", "2", "3", "4", "5"}


def test_prices_are_the_products_fixed_price_within_the_category_range(
    rows: list[dict[str, str]],
) -> None:
    purchases = [row for row in rows if row["event_type"] == "purchase"]
    assert len(purchases) > 1000  # enough to mean something: 50,000 events
    for row in purchases + [row for row in rows if row["event_type"] == "add_to_cart"]:
        category = CATEGORY_BY_NAME[row["category"]]
        assert 0 < category.min_price <= float(row["price"]) <= category.max_price
        assert row["price"] == catalog.PRICES[int(row["product_id"])]


def test_products_belong_to_the_named_category_and_all_categories_occur(
    rows: list[dict[str, str]],
) -> None:
    for row in rows:
        category = category_of_product(int(row["product_id"]))
        assert category is not None
        assert category.name == row["category"]
    assert {row["category"] for row in rows} == {category.name for category in CATEGORIES}
    assert len(CATEGORIES) >= 10


def test_price_table_covers_every_product_inside_its_range() -> None:
    assert len(catalog.PRICES) == sum(
        c.last_product_id - c.first_product_id + 1 for c in CATEGORIES
    )
    for category in CATEGORIES:
        for product in (category.first_product_id, category.last_product_id):
            assert category.min_price <= float(catalog.PRICES[product]) <= category.max_price


def test_segment_is_fixed_per_user(rows: list[dict[str, str]]) -> None:
    segments: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["user_id"] != "0":
            segments[row["user_id"]].add(row["user_segment"])
            assert row["user_segment"] == segment_of(int(row["user_id"]))
    assert {len(values) for values in segments.values()} == {1}
    assert {segment_of(user) for user in range(1, 1000)} == set(USER_SEGMENTS)
    other_seed = valid_rows(5000, seed=2)
    for row in other_seed:
        if row["user_id"] in segments:
            assert segments[row["user_id"]] == {row["user_segment"]}


def test_sessions_span_several_events_and_keep_user_and_context(
    rows: list[dict[str, str]],
) -> None:
    sessions: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        sessions[row["session_id"]].append(row)
    sizes = [len(events) for events in sessions.values()]
    assert 4 <= sum(sizes) / len(sizes) <= 12  # about 8 events per visit
    context = COLUMNS[WIDTH["v2"] :]
    for events in sessions.values():
        assert len({row["user_id"] for row in events}) == 1
        assert len({tuple(row[c] for c in context) for row in events}) == 1
    anonymous_sessions = {row["session_id"] for row in rows if row["user_id"] == "0"}
    assert max(len(sessions[s]) for s in anonymous_sessions) > 1


def test_a_user_gets_a_new_session_after_30_minutes_of_inactivity() -> None:
    model = EventModel(random.Random(5), users=1, concurrent=1)
    minute = 60 * US
    times = [T0, T0 + 29 * minute, T0 + 59 * minute, T0 + 89 * minute + 1, T0 + 90 * minute]
    sessions = [model.row(at, "view")[COLUMNS.index("session_id")] for at in times]
    assert sessions[0] == sessions[1] == sessions[2]
    assert sessions[3] == sessions[4]
    assert sessions[2] != sessions[3]


def test_sessions_split_exactly_at_30_minute_gaps_in_sparse_traffic() -> None:
    model = EventModel(random.Random(6), users=30, concurrent=8)
    rng = random.Random(7)
    at = T0
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _ in range(5000):
        at += int(rng.expovariate(1 / 90) * US)  # one event per 90 s on average
        row = model.row(at)
        if row[1] != "0":
            by_user[row[1]].append((at, row[COLUMNS.index("session_id")]))
    gap = catalog.SESSION_GAP_S * US
    long_gaps = short_gaps = 0
    for events in by_user.values():
        for (before, session_before), (after, session_after) in pairwise(events):
            if after - before > gap:
                long_gaps += 1
                assert session_after != session_before
            else:
                short_gaps += 1
                assert session_after == session_before
    assert long_gaps and short_gaps  # both cases occurred, so both were checked


def test_v3_context_comes_from_the_documented_value_sets(rows: list[dict[str, str]]) -> None:
    devices = set(catalog.DEVICE_BROWSERS)
    cities = set(catalog.GEO_WEIGHTS[0])
    assert {row["device_type"] for row in rows} == devices
    for row in rows:
        assert row["browser"] in catalog.DEVICE_BROWSERS[row["device_type"]][0]
        assert (row["geo_country"], row["geo_city"]) in cities
        assert row["referrer"] in catalog.REFERRER_WEIGHTS[0]
        campaigns = catalog.REFERRER_CAMPAIGNS.get(row["referrer"], ())
        if row["referrer"] in catalog.ALWAYS_CAMPAIGN_REFERRERS:
            assert row["campaign_id"] in campaigns
        else:
            assert row["campaign_id"] in (*campaigns, "")
    assert {row["campaign_id"] for row in rows if row["referrer"] == "direct"} == {""}


def test_ids_are_version_4_uuids_and_unique(rows: list[dict[str, str]]) -> None:
    for row in rows[:2000]:
        assert uuid.UUID(row["event_id"]).version == 4
        assert str(uuid.UUID(row["event_id"])) == row["event_id"]
        assert uuid.UUID(row["session_id"]).version == 4
    assert len({row["event_id"] for row in rows}) == len(rows)
    assert random_uuid(random.Random(1).getrandbits) == random_uuid(random.Random(1).getrandbits)


def test_event_time_spelling_and_file_stamp() -> None:
    moment = datetime(2026, 1, 29, 10, 30, 20, 123456, tzinfo=UTC)
    us = int(moment.timestamp()) * US + 123456
    assert EventTimeFormat()(us) == "2026-01-29T10:30:20.123456+00:00"
    assert file_stamp(us) == "20260129T103020123456Z"
    assert parse_start_time("2026-01-29T10:30:20.123456Z") == us
    assert parse_start_time("2026-01-29T11:30:20.123456+01:00") == us
    assert parse_start_time("2026-01-29T10:30:20.123456") == us
    fmt = EventTimeFormat()
    for offset_s in (0, 59, 60, 3599, 86_400 * 40 + 1):
        at = us + offset_s * US
        expected = datetime.fromtimestamp(at / US, tz=UTC).isoformat(timespec="microseconds")
        assert fmt(at) == expected
        assert TIME_RE.match(fmt(at))


def test_simulated_clock_steps_from_its_start() -> None:
    clock = SimulatedClock(T0, 5 * US)
    assert [clock.next_file_time() for _ in range(3)] == [T0, T0 + 5 * US, T0 + 10 * US]


def test_on_time_events_lie_in_the_file_window_in_order() -> None:
    builder = BatchBuilder(EventModel(random.Random(8)), random.Random(9), LIMITS, 0.0, 0.0)
    now = T0 + 5 * US
    batch = builder.build(500, WIDTH["v3"], T0, now)
    times = [parse_start_time(row[COLUMNS.index("event_time")]) for row in batch.rows]
    assert times == sorted(times)
    assert times[0] >= T0 and times[-1] <= now
    assert batch.lines == []
    assert batch.truth()["valid_new"] == 500
