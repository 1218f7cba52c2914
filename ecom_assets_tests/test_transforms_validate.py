"""validate_events: each ErrorCode alone, several at once, normalisation before validation, the
per-file duplicate rule, severities, id formats and the catalogue, and agreement with the
generator's ground truth.

The cases run as one table under the strict contract (every rule an error) over the demo
catalogue; the parametrized tests look their row up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ecom_assets.resources.event_reader import ReadableFile, read_event_files
from ecom_assets.schema.catalogue import Catalogue
from ecom_assets.schema.contract import REFUSED_VALUE_RULES, ErrorCode, IdFormat, with_severities
from ecom_assets.schema.contract_file import parse_contract
from ecom_assets.schema.detection import detect_file
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.validate import (
    CODE_FIELDS,
    ValidationRules,
    rule_conditions,
    validate_events,
)
from ecom_assets_tests.test_generator_support import (
    LIMITS,
    csv_files,
    epoch_us,
    read_csv,
    read_truth,
    run_generator,
)
from ecom_assets_tests.test_transforms_support import (
    CATALOGUE,
    DEFAULT_CONTRACT,
    NOW,
    RULES,
    STRICT_CONTRACT,
    event,
    latest_batch,
    uid,
    view,
)

E = ErrorCode

# (case id, schema version, record, expected codes); every case has its own event id
_CASES: list[tuple[str, str, dict[str, str], list[ErrorCode]]] = []


def case(name: str, record: dict[str, str], *codes: ErrorCode, version: str = "v3") -> None:
    _CASES.append((name, version, record, list(codes)))


def n() -> int:
    return 1000 + len(_CASES)


# -- one defect, exactly one code (the generator's anomaly shapes and edge values)
case("malformed_row", event(n(), record="a,b,c"), E.MALFORMED_ROW)
case("missing_event_id", event(n(), event_id=""), E.MISSING_EVENT_ID)
case("missing_event_id_spaces", event(n(), event_id=" \t "), E.MISSING_EVENT_ID)
case("invalid_event_id", event(n(), event_id="evt-00000000abcd"), E.INVALID_EVENT_ID)
case("invalid_event_id_hex", event(n(), event_id=uid(n())[:-1] + "x"), E.INVALID_EVENT_ID)
for value in ("-5", "user_7", "7.5", "abc"):
    case(f"invalid_user_id_{value}", view(n(), user_id=value), E.INVALID_USER_ID)
case("user_required_zero", event(n(), user_id="0", user_segment=""), E.USER_REQUIRED)
case("user_required_blank", view(n(), event_type="wishlist", user_id=""), E.USER_REQUIRED)
case("missing_event_type", view(n(), event_type=""), E.MISSING_EVENT_TYPE)
for value in ("click", "add-to-cart"):
    case(f"invalid_event_type_{value}", view(n(), event_type=value), E.INVALID_EVENT_TYPE)
case("missing_product_id", view(n(), product_id="", category=""), E.MISSING_PRODUCT_ID)
for value in ("sku-1001", "0", "-1001", "1001.5"):
    case(
        f"invalid_product_id_{value}",
        view(n(), product_id=value, category=""),
        E.INVALID_PRODUCT_ID,
    )
for value in ("999", "13000"):
    case(f"unknown_product_{value}", view(n(), product_id=value, category=""), E.UNKNOWN_PRODUCT)
case("unknown_category", view(n(), category="furniture"), E.UNKNOWN_CATEGORY)
case("category_mismatch", view(n(), category="books"), E.CATEGORY_PRODUCT_MISMATCH)
case("missing_price", event(n(), price=""), E.MISSING_PRICE)
case("missing_price_spaces", event(n(), event_type="add_to_cart", price="  "), E.MISSING_PRICE)
for value in ("abc", "12,99", "$19.99"):
    case(f"invalid_price_{value}", event(n(), price=value), E.INVALID_PRICE)
case("negative_price_cart", event(n(), event_type="add_to_cart", price="-5.00"), E.NEGATIVE_PRICE)
case("negative_price_purchase", event(n(), price="-0.01"), E.NEGATIVE_PRICE)
case("extreme_price", event(n(), price="10000.01"), E.EXTREME_PRICE)
for value in ("0.00", "0"):
    case(f"zero_purchase_{value}", event(n(), price=value), E.NON_POSITIVE_PURCHASE_PRICE)
case("unexpected_price", view(n(), price="19.99"), E.UNEXPECTED_PRICE)
for value in ("0", "-1", "abc", "2.5", "101"):
    case(f"invalid_quantity_{value}", event(n(), quantity=value), E.INVALID_QUANTITY)
case("unexpected_quantity", view(n(), event_type="search", quantity="1"), E.UNEXPECTED_QUANTITY)
case("missing_event_time", event(n(), event_time=""), E.MISSING_EVENT_TIME)
for value in ("yesterday", "2024-02-30T10:00:00Z", "2024-06-01 10:00"):
    case(f"invalid_event_time_{value}", event(n(), event_time=value), E.INVALID_EVENT_TIME)
case("future_event_time", event(n(), event_time="2024-06-01T12:05:01Z"), E.FUTURE_EVENT_TIME)
case(
    "future_event_time_offset",
    event(n(), event_time="2024-06-01T14:05:00.000001+02:00"),
    E.FUTURE_EVENT_TIME,
)
case("invalid_user_segment", event(n(), user_segment="vip"), E.INVALID_USER_SEGMENT)
# what PostgreSQL refuses: Arrow reads year 0 (1 BC), TIMESTAMPTZ has none; an offset can carry
# a time over either end of years 1..9999
for value in ("0000-01-01T00:00:00Z", "0000-12-31 23:59:59.999999", "0001-01-01T00:30:00+01:00"):
    case(f"time_out_of_range_{value}", event(n(), event_time=value), E.EVENT_TIME_OUT_OF_RANGE)
case(
    "event_time_out_of_range_not_also_future",
    event(n(), event_time="9999-12-31T23:30:00-01:00"),
    E.EVENT_TIME_OUT_OF_RANGE,
)

SINGLE = {name for name, *_ in _CASES}

# -- several codes: too long to index, and not a declared category or segment either
case("category_too_long", view(n(), category="c" * 1025), E.UNKNOWN_CATEGORY, E.VALUE_TOO_LONG)
case(
    "segment_too_long_multibyte",
    view(n(), user_segment="\u00e9" * 513),  # 1026 bytes in 513 characters
    E.INVALID_USER_SEGMENT,
    E.VALUE_TOO_LONG,
)
case("far_future_event_time", event(n(), event_time="9999-12-31T23:59:59Z"), E.FUTURE_EVENT_TIME)

# -- valid rows, including normalisation before validation and boundary values
case("valid_purchase", event(n()))
case("valid_first_storable_instant", event(n(), event_time="0001-01-01T00:00:00Z"))
case("valid_offset_into_year_one", event(n(), event_time="0001-01-01T00:30:00+00:30"))
# 1024 bytes once trimmed: not too long (the demo catalogue does not know it)
case("category_at_the_length_limit", view(n(), category=" " + "\u00e9" * 512 + " "),
     E.UNKNOWN_CATEGORY)  # fmt: skip
# trackers write "none" as zero on types that carry no price or quantity
case("valid_view_zero_price_and_quantity", view(n(), price="0.0", quantity="0"))
case("valid_search_zero_price_blank_quantity", view(n(), event_type="search", price="0"))
# the default contract lets a search name no product (and its category then stays unknown)
case("valid_search_without_product", view(n(), event_type="search", product_id="", category=""))
case("valid_upper_case_uuid", event(n(), event_id=uid(n()).upper()))
case("valid_view_anonymous_blank_user", view(n(), user_id="", user_segment=""))
case("valid_search_user_zero", view(n(), event_type="search", user_id="0"))
case("valid_cart_without_quantity", event(n(), event_type="add_to_cart", quantity=""))
case("valid_cart_free", event(n(), event_type="add_to_cart", price="0.00"))
case(
    "valid_normalised",
    event(
        n(),
        event_id=f" {uid(n()).upper()} ",
        event_type=" PURCHASE ",
        user_id="42.0",
        product_id="1001.0",
        price=" 19.99 ",
        quantity="3.0",
        category=" Electronics ",
        user_segment=" Premium ",
        event_time="2024-06-01T10:00:00+00:00",
    ),
)
case("valid_time_space_z", event(n(), event_time="2024-06-01 10:00:00Z"))
case("valid_time_naive_is_utc", event(n(), event_time="2024-06-01T12:04:59.999999"))
case("valid_future_boundary", event(n(), event_time="2024-06-01T12:05:00Z"))
case("valid_future_boundary_offset", event(n(), event_time="2024-06-01T13:05:00+0100"))
case("valid_price_boundary", event(n(), price="10000.00", quantity="1"))
case("valid_quantity_boundary", event(n(), quantity="100"))
case("valid_plus_sign_ids", event(n(), user_id="+42", product_id="+1001"))
case("valid_v1_purchase", event(n(), user_id="5.0", product_id="1001.0"), version="v1")
case("valid_v1_view_anonymous", view(n(), user_id=""), version="v1")
case("valid_v2_cart", event(n(), event_type="add_to_cart"), version="v2")

# -- several codes on one row; none that merely follows from another
case(
    "invalid_type_hides_type_rules",
    event(n(), event_type="click", user_id="", quantity="2"),
    E.INVALID_EVENT_TYPE,
)
case(
    "malformed_hides_field_rules",
    event(n(), event_id="", price="-1", event_time="soon", record="1,2"),
    E.MALFORMED_ROW,
)
case("missing_type_hides_type_rules", event(n(), event_type="", user_id=""), E.MISSING_EVENT_TYPE)
case(
    "invalid_type_keeps_value_rules",
    event(n(), event_type="click", price="-1", quantity="abc"),
    E.INVALID_EVENT_TYPE,
    E.NEGATIVE_PRICE,
    E.INVALID_QUANTITY,
)
case("invalid_user_is_not_anonymous", event(n(), user_id="abc"), E.INVALID_USER_ID)
case("negative_user_is_not_anonymous", event(n(), user_id="-1"), E.INVALID_USER_ID)
case("bad_price_value_on_view", view(n(), price="-5"), E.NEGATIVE_PRICE, E.UNEXPECTED_PRICE)
case("bad_quantity_on_view", view(n(), quantity="-1"), E.UNEXPECTED_QUANTITY)
case("garbage_quantity_on_view", view(n(), quantity="abc"), E.UNEXPECTED_QUANTITY)
case("garbage_price_on_view", view(n(), price="n/a"), E.INVALID_PRICE, E.UNEXPECTED_PRICE)
case(
    "unknown_product_and_category",
    view(n(), product_id="999", category="furniture"),
    E.UNKNOWN_PRODUCT,
    E.UNKNOWN_CATEGORY,
)
case(
    "invalid_product_no_mismatch",
    view(n(), product_id="sku", category="books"),
    E.INVALID_PRODUCT_ID,
)
case(
    "unknown_product_no_mismatch", view(n(), product_id="999", category="books"), E.UNKNOWN_PRODUCT
)
case(
    "independent_defects",
    event(
        n(),
        event_id="",
        event_type="add_to_cart",
        price="-5.00",
        event_time="2024-06-02T00:00:00Z",
        user_segment="gold",
    ),
    E.MISSING_EVENT_ID,
    E.NEGATIVE_PRICE,
    E.FUTURE_EVENT_TIME,
    E.INVALID_USER_SEGMENT,
)
case(
    "many_defects",
    event(
        n(),
        event_id="evt-1",
        user_id="-1",
        product_id="",
        category="toys",
        price="",
        quantity="0",
        event_time="",
        user_segment="gold",
    ),
    E.INVALID_EVENT_ID,
    E.INVALID_USER_ID,
    E.MISSING_PRODUCT_ID,
    E.MISSING_PRICE,
    E.INVALID_QUANTITY,
    E.MISSING_EVENT_TIME,
    E.INVALID_USER_SEGMENT,
)
case("v1_anonymous_purchase", event(n(), user_id=""), E.USER_REQUIRED, version="v1")
case(
    "v1_purchase_without_price",
    event(n(), price="", event_time="soon"),
    E.MISSING_PRICE,
    E.INVALID_EVENT_TIME,
    version="v1",
)

CASES = {name: (version, codes) for name, version, _, codes in _CASES}
CASE_FILES = {version: f"cases_{version}.csv" for version in ("v1", "v2", "v3")}

# -- duplicates: first = smallest (source_file, source_line), across files of the batch
D1, D2, D3, D5, D6 = uid(1), uid(2), uid(3), uid(5), uid(6)
DUP_A = [
    event(9001, event_id=D2),
    event(9002, event_id=D1, user_segment="vip"),  # first D1 (in dup_a < dup_b), itself invalid
    event(9003, event_id=f" {D1.upper()} "),  # same id once normalised
    event(9004, event_id=D2),
    event(9005, event_id="evt-1"),  # invalid ids are never duplicates
    event(9006, event_id="evt-1"),
    event(9007, event_id=""),  # nor are blank ones
    event(9008, event_id=""),
    event(9009, event_id=D5),
    event(9010, event_id=D5),  # line 10 after line 9: ordered as numbers
    event(9011, event_id=D6, record="x"),  # a malformed row's id is not trusted: no duplicate
    event(9012, event_id=D6),
    event(9013, event_id=D5, record="x"),
]
DUP_B = [event(9101, event_id=D1), event(9102, event_id=D3)]
DUP_EXPECTED = {
    ("dup_a.csv", 1): [],
    ("dup_a.csv", 2): [E.INVALID_USER_SEGMENT],
    ("dup_a.csv", 3): [E.DUPLICATE_EVENT_ID],
    ("dup_a.csv", 4): [E.DUPLICATE_EVENT_ID],
    ("dup_a.csv", 5): [E.INVALID_EVENT_ID],
    ("dup_a.csv", 6): [E.INVALID_EVENT_ID],
    ("dup_a.csv", 7): [E.MISSING_EVENT_ID],
    ("dup_a.csv", 8): [E.MISSING_EVENT_ID],
    ("dup_a.csv", 9): [],
    ("dup_a.csv", 10): [E.DUPLICATE_EVENT_ID],
    ("dup_a.csv", 11): [E.MALFORMED_ROW],
    ("dup_a.csv", 12): [],
    ("dup_a.csv", 13): [E.MALFORMED_ROW],
    ("dup_b.csv", 1): [],  # the same id in another file is a replay, not an error
    ("dup_b.csv", 2): [],
}


@pytest.fixture(scope="module")
def codes() -> dict[Any, list[str]]:
    """error_codes by case name and by (file, line) for the duplicate files: one table."""
    files: dict[str, tuple[str, list[dict[str, str]]]] = {
        file: (version, []) for version, file in CASE_FILES.items()
    }
    where: dict[tuple[str, int], str] = {}
    for name, version, record, _ in _CASES:
        lines = files[CASE_FILES[version]][1]
        lines.append(record)
        where[(CASE_FILES[version], len(lines))] = name
    files["dup_a.csv"] = ("v3", DUP_A)
    files["dup_b.csv"] = ("v1", DUP_B)
    validated = validate_events(latest_batch(files), RULES)
    rows = validated.select(["source_file", "source_line", "error_codes"]).to_pylist()
    result: dict[Any, list[str]] = {}
    for row in rows:
        key = (row["source_file"], row["source_line"])
        result[where.get(key, key)] = row["error_codes"]
    return result


def test_every_code_has_a_single_defect_case() -> None:
    single = {code for name in SINGLE for code in CASES[name][1]}
    # a duplicate needs two rows; the other two only show alone under a laxer contract
    # (test_values_postgresql_refuses_are_dead_letters)
    others = {E.DUPLICATE_EVENT_ID, E.TOTAL_AMOUNT_OVERFLOW, E.VALUE_TOO_LONG}
    assert single | others == set(ErrorCode)
    assert all(len(CASES[name][1]) == 1 for name in SINGLE)


@pytest.mark.parametrize("name", list(CASES))
def test_case(codes: dict[Any, list[str]], name: str) -> None:
    assert codes[name] == [str(code) for code in CASES[name][1]]


def test_duplicates_first_occurrence_wins(codes: dict[Any, list[str]]) -> None:
    actual = {key: value for key, value in codes.items() if isinstance(key, tuple)}
    assert actual == {key: [str(c) for c in value] for key, value in DUP_EXPECTED.items()}


def test_duplicates_follow_source_line_not_table_order() -> None:
    batch = latest_batch({"a.csv": ("v3", [event(1), event(2), event(1, record="x"), event(1)])})
    shuffled = pa.concat_tables([batch.slice(3), batch.slice(1, 2), batch.slice(0, 1)])
    validated = validate_events(shuffled, RULES)
    rows = validated.select(["source_line", "error_codes"]).to_pylist()
    codes = {row["source_line"]: row["error_codes"] for row in rows}
    assert codes == {1: [], 2: [], 3: [E.MALFORMED_ROW], 4: [E.DUPLICATE_EVENT_ID]}


def test_output_adds_error_codes_and_warnings_to_the_input() -> None:
    batch = latest_batch({"a.csv": ("v3", [event(1)])})
    validated = validate_events(batch, RULES)
    assert validated.column_names == [*batch.column_names, "error_codes", "quality_warnings"]
    assert validated.schema.field("error_codes").type == pa.list_(pa.string())
    assert validated.schema.field("quality_warnings").type == pa.list_(pa.string())
    assert validated.drop_columns(["error_codes", "quality_warnings"]).equals(batch)


def test_empty_and_single_row_tables() -> None:
    batch = latest_batch({"a.csv": ("v3", [event(1)])})
    assert validate_events(batch, RULES)["error_codes"].to_pylist() == [[]]
    empty = validate_events(batch.slice(0, 0), RULES)
    assert empty.num_rows == 0
    assert empty.schema.field("error_codes").type == pa.list_(pa.string())


def test_every_code_has_a_rule_and_detail_fields() -> None:
    batch = latest_batch({"a.csv": ("v3", [event(1)])})
    conditions = rule_conditions(batch, RULES)
    assert list(conditions) == list(ErrorCode)
    assert all(condition.to_pylist() == [False] for condition in conditions.values())
    assert list(CODE_FIELDS) == list(ErrorCode)


def test_rule_parameters_come_from_the_contract() -> None:
    contract = parse_contract(
        "rules:\n  FUTURE_EVENT_TIME: {tolerance_s: 60}\n  EXTREME_PRICE: {max_price: 500}\n"
        "  INVALID_QUANTITY: {max_quantity: 7}\n"
    )
    rules = ValidationRules(NOW, contract)
    assert rules.future_limit_us == int(NOW.timestamp()) * 1_000_000 + 60_000_000
    batch = latest_batch({"a.csv": ("v3", [
        event(1, price="500.01"), event(2, quantity="8"), event(3, price="500", quantity="7"),
        event(4, event_time="2024-06-01T12:01:01Z"), event(5, event_time="2024-06-01T12:01:00Z"),
    ])})  # fmt: skip
    assert validate_events(batch, rules)["error_codes"].to_pylist() == [
        [E.EXTREME_PRICE], [E.INVALID_QUANTITY], [], [E.FUTURE_EVENT_TIME], []
    ]  # fmt: skip
    with pytest.raises(ValueError, match="timezone-aware"):
        ValidationRules(datetime(2024, 6, 1), contract)


def test_values_postgresql_refuses_are_dead_letters() -> None:
    """Where the contract's bounds are warnings, a total can outgrow NUMERIC(14,2), and with no
    rule on types a long one would be stored: storage's own rules dead-letter them, always."""
    lax = with_severities(
        DEFAULT_CONTRACT, EXTREME_PRICE="warn", INVALID_QUANTITY="warn", INVALID_EVENT_TYPE="off"
    )
    cart = "add_to_cart"
    batch = latest_batch({"a.csv": ("v3", [
        event(1, price="9999999999.99", quantity="99"),  # 989,999,999,999.01: fits
        event(2, price="9999999999.99", quantity="101"),  # 1.0099... x 10^12
        event(3, event_type=cart, price="10000000", quantity="100000"),  # exactly 10^12
        event(4, price="-9999999999.99", quantity="2147483647"),  # |total| counts
        event(5, price="9999999999.99", quantity=""),  # a blank quantity is one unit
        view(6, price="9999999999.99", quantity="2147483647"),  # a view carries no total
        view(7, event_type="x" * 1025),
        view(8, event_type=" " + "X" * 1024 + " "),  # 1024 bytes as stored: fits
        view(9, user_segment="s" * 2000),  # INVALID_USER_SEGMENT, a warning, goes with it
        event(10, event_time="0000-06-01T00:00:00Z", category="c" * 3000),
    ])})  # fmt: skip
    validated = validate_events(batch, ValidationRules(NOW, lax))
    overflow, too_long, out_of_range = (
        E.TOTAL_AMOUNT_OVERFLOW, E.VALUE_TOO_LONG, E.EVENT_TIME_OUT_OF_RANGE
    )  # fmt: skip
    assert validated["error_codes"].to_pylist() == [
        [], [overflow], [overflow], [E.NEGATIVE_PRICE, overflow], [], [], [too_long], [],
        [too_long], [out_of_range, too_long],
    ]  # fmt: skip
    assert validated["quality_warnings"].to_pylist()[0] == [E.EXTREME_PRICE]
    enriched = enrich_events(validated, ValidationRules(NOW, lax), 600)
    assert str(enriched["total_amount"][0]) == "989999999999.01"
    # under the default bounds (errors) the same rows report the bound they break, only
    default = validate_events(batch, ValidationRules(NOW, DEFAULT_CONTRACT))
    assert default["error_codes"].to_pylist()[1:4] == [
        [E.EXTREME_PRICE, E.INVALID_QUANTITY], [E.EXTREME_PRICE, E.INVALID_QUANTITY],
        [E.NEGATIVE_PRICE, E.INVALID_QUANTITY],
    ]  # fmt: skip


def test_severities_send_each_code_to_errors_warnings_or_nowhere() -> None:
    """error: the row is a dead letter with every error code; warn: it is stored with the code;
    off: nothing. A row with an error keeps no warnings."""
    contract = with_severities(
        STRICT_CONTRACT, UNEXPECTED_PRICE="warn", INVALID_USER_SEGMENT="warn", UNKNOWN_PRODUCT="off"
    )
    batch = latest_batch({"a.csv": ("v3", [
        view(1, price="5", user_segment="vip"),  # two warnings
        view(2, price="5", user_segment="vip", event_time=""),  # an error hides them
        view(3, product_id="999", category=""),  # off
        view(4, price="5", user_segment="vip", event_id=uid(4).upper()),  # case does not matter
    ])})  # fmt: skip
    validated = validate_events(batch, ValidationRules(NOW, contract, CATALOGUE))
    assert validated["error_codes"].to_pylist() == [[], [E.MISSING_EVENT_TIME], [], []]
    assert validated["quality_warnings"].to_pylist() == [
        [E.UNEXPECTED_PRICE, E.INVALID_USER_SEGMENT], [], [],
        [E.UNEXPECTED_PRICE, E.INVALID_USER_SEGMENT],
    ]  # fmt: skip
    assert validated["event_id"].to_pylist()[3] == uid(4)  # normalised to lower case


def test_default_contract_accepts_other_shops_and_judges_the_catalogue_only_when_loaded() -> None:
    """Out of the box a product or category nobody declared, a foreign segment and a price on a
    view are warnings; with no catalogue the catalogue rules do not apply at all."""
    records = [
        view(1, product_id="77", category="garden_tools"),
        view(2, user_segment="anonymous", user_id="0"),
        view(3, price="12.50"),
        event(4, event_type="purchase", price="0"),
    ]
    batch = latest_batch({"a.csv": ("v3", records)})
    without = validate_events(batch, ValidationRules(NOW, DEFAULT_CONTRACT))
    assert without["error_codes"].to_pylist() == [[], [], [], [E.NON_POSITIVE_PURCHASE_PRICE]]
    assert without["quality_warnings"].to_pylist() == [
        [], [E.INVALID_USER_SEGMENT], [E.UNEXPECTED_PRICE], []
    ]  # fmt: skip
    shop = Catalogue.of({77: "garden_tools", 78: "kitchen"})
    loaded = validate_events(batch, ValidationRules(NOW, DEFAULT_CONTRACT, shop))
    assert loaded["quality_warnings"].to_pylist()[0] == []
    records[0] = view(1, product_id="78", category="garden_tools")
    mismatch = latest_batch({"a.csv": ("v3", [*records[:1], view(5, product_id="79")])})
    judged = validate_events(mismatch, ValidationRules(NOW, DEFAULT_CONTRACT, shop))
    assert judged["quality_warnings"].to_pylist() == [
        [E.CATEGORY_PRODUCT_MISMATCH], [E.UNKNOWN_PRODUCT, E.UNKNOWN_CATEGORY]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("id_format", "valid", "invalid"),
    [
        (IdFormat.UUID, [uid(1), " " + uid(2).upper()], ["01J9Z3Q4V5W6X7Y8Z9A0B1C2D3", "evt-1"]),
        (IdFormat.ULID, ["01J9Z3Q4V5W6X7Y8Z9A0B1C2D3", "01j9z3q4v5w6x7y8z9a0b1c2d4"],
         [uid(1), "81J9Z3Q4V5W6X7Y8Z9A0B1C2D3", "01J9Z3Q4V5W6X7Y8Z9A0B1C2DU"]),
        (IdFormat.TEXT, ["evt-1", "shop:2024/123", uid(1), "x" * 256],
         ["two words", "x" * 257, "tab\there"]),
    ],
)  # fmt: skip
def test_event_id_formats(id_format: IdFormat, valid: list[str], invalid: list[str]) -> None:
    contract = parse_contract(f"event_id: {{format: {id_format.value}}}\n")
    ids = [*valid, *invalid]
    batch = latest_batch({"a.csv": ("v3", [event(i, event_id=v) for i, v in enumerate(ids)])})
    codes = validate_events(batch, ValidationRules(NOW, contract))["error_codes"].to_pylist()
    assert codes == [[]] * len(valid) + [[E.INVALID_EVENT_ID]] * len(invalid)


def test_duplicates_of_text_ids_are_found_per_file() -> None:
    contract = parse_contract("event_id: {format: text}\n")
    batch = latest_batch({
        "a.csv": ("v3", [event(1, event_id="a-1"), event(2, event_id="a-22"),
                         event(3, event_id="a-1"), event(4, event_id="A-1")]),
        "b.csv": ("v3", [event(5, event_id="a-1")]),
    })  # fmt: skip
    codes = validate_events(batch, ValidationRules(NOW, contract))["error_codes"].to_pylist()
    assert codes == [[], [], [E.DUPLICATE_EVENT_ID], [], []]  # text ids compare exactly


def test_generator_ground_truth(tmp_path: Path) -> None:
    """Generated files (all versions, half anomalies, late and replayed rows), read as ingestion
    reads them, validate and flag lateness exactly as the generator's truth says; a replay of an
    earlier file is valid here (the sink skips it as a duplicate)."""
    _, input_dir, truth_dir = run_generator(
        tmp_path, files=6, events_per_file=150, schema="mixed", seed=7, anomaly_rate=0.5
    )
    files: list[ReadableFile] = []
    versions: set[str] = set()
    expected: dict[tuple[str, int], tuple[list[str], bool]] = {}
    for path in csv_files(input_dir):
        _, records = read_csv(path)
        truth = read_truth(truth_dir, path)
        versions.add(truth["schema_version"])
        arrived = datetime.fromtimestamp(epoch_us(truth["file_time"]) / 1_000_000, tz=UTC)
        files.append(ReadableFile(path, detect_file(path), arrived, landed_at=arrived))
        lines = {entry["line"]: entry for entry in truth["lines"]}
        for line in range(1, len(records) + 1):
            entry = lines.get(line, {"codes": [], "replayed": False, "late": False})
            line_codes = entry["codes"]
            expected[(path.name, line)] = (line_codes, entry["late"] and not line_codes)
    assert versions == {"v1", "v2", "v3"}
    rules = ValidationRules(max(file.arrived_at for file in files), STRICT_CONTRACT, CATALOGUE)
    assert (rules.contract.max_price, rules.contract.max_quantity) == (
        LIMITS.max_price,
        LIMITS.max_quantity,
    )
    batch = read_event_files(files)
    enriched = enrich_events(validate_events(batch, rules), rules, LIMITS.late_watermark_s)
    rows = enriched.select(["source_file", "source_line", "error_codes", "is_late"]).to_pylist()
    actual = {
        (r["source_file"], r["source_line"]): (
            r["error_codes"],
            r["is_late"] and not r["error_codes"],
        )
        for r in rows
    }
    assert actual == expected
    seen = {code for line_codes, _ in expected.values() for code in line_codes}
    assert seen == set(ErrorCode) - REFUSED_VALUE_RULES
    assert any(late for _, late in expected.values())
