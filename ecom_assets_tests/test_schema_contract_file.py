"""Contract files: the shipped default, an operator's overrides, and every mistake refused with
its line; the docs' rule table agrees with the default."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from ecom_assets.schema.contract import (
    RULE_PARAMETERS,
    STORAGE_LIMITS,
    STORAGE_RULES,
    ErrorCode,
    IdFormat,
    Severity,
)
from ecom_assets.schema.contract_file import (
    DEFAULT_CONTRACT_FILE,
    ContractError,
    contract_markdown,
    load_contract,
    parse_contract,
)

ROOT = Path(__file__).resolve().parents[1]
WARN_BY_DEFAULT = {
    ErrorCode.UNKNOWN_PRODUCT,
    ErrorCode.UNKNOWN_CATEGORY,
    ErrorCode.CATEGORY_PRODUCT_MISMATCH,
    ErrorCode.UNEXPECTED_PRICE,
    ErrorCode.UNEXPECTED_QUANTITY,
    ErrorCode.INVALID_USER_SEGMENT,
}


def test_the_default_accepts_real_producers() -> None:
    contract = load_contract()
    assert contract.source == str(DEFAULT_CONTRACT_FILE)
    assert set(contract.codes(Severity.WARN)) == WARN_BY_DEFAULT
    assert set(contract.codes(Severity.ERROR)) == set(ErrorCode) - WARN_BY_DEFAULT
    assert contract.codes(Severity.OFF) == ()
    assert contract.id_format is IdFormat.UUID
    assert contract.type_names == (
        "view", "search", "add_to_cart", "remove_from_cart", "wishlist", "purchase"
    )  # fmt: skip
    assert contract.types_where("priced") == ("add_to_cart", "purchase")
    assert contract.types_where("user_required") == (
        "add_to_cart", "remove_from_cart", "wishlist", "purchase"
    )  # fmt: skip
    assert [t.name for t in contract.event_types if not t.product_required] == ["search"]
    assert (contract.max_price, contract.max_quantity, contract.future_tolerance_s) == (
        10_000.0, 100, 300
    )  # fmt: skip
    assert contract.user_segments == {"new", "returning", "premium", "inactive", "at_risk"}
    assert pickle.loads(pickle.dumps(contract)) == contract  # noqa: S301 - into Spark's tasks


def test_an_operator_file_overrides_only_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(
        "# my shop\n"
        "event_id: {format: ULID}\n"
        "event_types:\n"
        "  page_view: {user: optional, product: optional}\n"
        "  order: {user: required, priced: true}\n"
        "user_segments: any\n"
        "rules:\n"
        "  UNKNOWN_PRODUCT: error\n"
        "  unexpected_price: 'off'\n"
        "  UNEXPECTED_QUANTITY: off\n"
        "  EXTREME_PRICE: {max_price: 25000.5}\n"
        "  FUTURE_EVENT_TIME: {severity: warn, tolerance_s: 0}\n"
    )
    contract = load_contract(path)
    assert contract.source == str(path)
    assert contract.id_format is IdFormat.ULID
    assert contract.type_names == ("page_view", "order")
    assert contract.types_where("priced") == ("order",)
    assert contract.user_segments is None
    assert contract.severity(ErrorCode.UNKNOWN_PRODUCT) is Severity.ERROR
    assert contract.severity(ErrorCode.UNEXPECTED_PRICE) is Severity.OFF
    assert contract.severity(ErrorCode.UNEXPECTED_QUANTITY) is Severity.OFF
    assert contract.severity(ErrorCode.FUTURE_EVENT_TIME) is Severity.WARN
    assert contract.severity(ErrorCode.EXTREME_PRICE) is Severity.ERROR  # kept
    assert contract.severity(ErrorCode.INVALID_USER_SEGMENT) is Severity.WARN  # kept
    assert (contract.max_price, contract.max_quantity, contract.future_tolerance_s) == (
        25_000.5, 100, 0
    )  # fmt: skip
    assert load_contract(None) == load_contract(DEFAULT_CONTRACT_FILE)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing to change\n")
    assert load_contract(empty).severities == load_contract().severities


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("rules:\n  UNKNOWN_PRODUCT: eror\n", 2, "severity must be error, warn or off, not 'eror'"),
        ("rules:\n  MISSING_EVENT_ID: warn\n", 2, "MISSING_EVENT_ID can only be an error"),
        ("rules:\n  MALFORMED_ROW: 'off'\n", 2, "MALFORMED_ROW can only be an error"),
        ("rules:\n  UNKNOWN_PRODCT: warn\n", 2, "unknown rule 'UNKNOWN_PRODCT'"),
        ("rules:\n  EXTREME_PRICE: {max_price: -1}\n", 2, "between 0.01 and 1e+09, not -1"),
        ("rules:\n  EXTREME_PRICE: {max_price: lots}\n", 2, "must be a number, not 'lots'"),
        ("rules:\n  INVALID_QUANTITY: {max_quantity: 2.5}\n", 2, "must be a whole number"),
        ("rules:\n  INVALID_QUANTITY: {limit: 5}\n", 2,
         "unknown key 'limit' in rule INVALID_QUANTITY"),
        ("rules:\n  UNKNOWN_PRODUCT: warn\n  UNKNOWN_PRODUCT: 'off'\n", 3,
         "'UNKNOWN_PRODUCT' is given twice in rules (first on line 2)"),
        ("\n\nevent_types:\n  view: {user: maybe}\n", 4,
         "event type 'view': user must be required or optional, not 'maybe'"),
        ("event_types:\n  Page View: {}\n", 2, "'Page View' is not a valid name for an event type"),
        ("event_types: {}\n", 1, "event_types must declare at least one type"),
        ("event_types:\n  view: {priced: yes}\n", 2, "priced must be true or false"),
        ("user_segments: all\n", 1, "user_segments must be a list of segments or `any`"),
        ("event_id: {format: snowflake}\n", 1, "unknown event id format 'snowflake'"),
        ("event_id: uuid\n", 1, "event_id must be a mapping"),
        ("contract_version: 2\n", 1, "contract_version must be 1"),
        ("rule:\n  UNKNOWN_PRODUCT: warn\n", 1, "unknown key 'rule' in the contract"),
        ("rules: [UNKNOWN_PRODUCT]\n", 1, "rules must be a mapping"),
        ("rules:\n  UNKNOWN_PRODUCT: [warn]\n", 2, "must be a single value, not a list"),
        ("rules:\n  UNKNOWN_PRODUCT: warn\n bad indent: x\n", 3, "not valid YAML"),
        ("- a list\n", 1, "the contract must be a mapping"),
        # bounds whose product total_amount NUMERIC(14,2) cannot hold: on the parameter given
        ("rules:\n  EXTREME_PRICE: {max_price: 1000000000}\n"
         "  INVALID_QUANTITY: {max_quantity: 1000}\n", 2,
         "EXTREME_PRICE.max_price (1,000,000,000.00) x INVALID_QUANTITY.max_quantity (1,000) = "
         "1,000,000,000,000.00"),
        ("rules:\n  INVALID_QUANTITY: {max_quantity: 1000000}\n  EXTREME_PRICE: {max_price: 1e6}\n",
         3, "ecommerce_events.total_amount, NUMERIC(14,2), which holds less than 10^12"),
        ("rules:\n  INVALID_QUANTITY: {severity: 'off', max_quantity: 100000}\n"
         "  EXTREME_PRICE: {severity: warn, max_price: 10000000}\n", 3,
         "= 1,000,000,000,000.00: a purchase total that large cannot be stored"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_with_their_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ContractError) as error:
        parse_contract(text, "shop.yaml")
    message = str(error.value)
    assert message.startswith(f"shop.yaml:{line}: "), message
    assert problem in message


def test_bounds_just_within_total_amount_are_accepted() -> None:
    """999,999.99 x 1,000,000 < 10^12; the default's 10,000 x 100 is far from it."""
    contract = parse_contract(
        "rules:\n  EXTREME_PRICE: {max_price: 999999.99}\n"
        "  INVALID_QUANTITY: {max_quantity: 1000000}\n"
    )
    assert (contract.max_price, contract.max_quantity) == (999999.99, 1_000_000)


def test_each_bound_alone_fits_its_column() -> None:
    """The parameters' own ranges keep each bound within its column: a wider range would let a
    valid price or quantity overflow NUMERIC(12,2) or INTEGER (test_refused_values checks the
    limits against the database)."""
    maxima = {p.name: p.maximum for spec in RULE_PARAMETERS.values() for p in spec}
    assert maxima["max_price"] < STORAGE_LIMITS.price_limit
    assert maxima["max_quantity"] <= STORAGE_LIMITS.quantity_max


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read the contract file"):
        load_contract(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"rules:\n  \xff\xfe: warn\n")
    with pytest.raises(ContractError, match="not UTF-8"):
        load_contract(binary)


def test_storage_rules_are_errors_in_the_default_and_marked_in_the_table() -> None:
    contract = load_contract()
    assert all(contract.severity(code) is Severity.ERROR for code in STORAGE_RULES)
    table = contract_markdown(contract)
    for code in ErrorCode:
        always = " (always)" if code in STORAGE_RULES else ""
        assert f"| {code.value} | {contract.severity(code).value}{always} |" in table


def test_the_docs_rule_table_matches_the_default_contract() -> None:
    """docs/contract.md lists every rule with its default severity and parameters."""
    text = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE))
    contract = load_contract()
    assert set(rows) == {code.value for code in ErrorCode}
    for code in ErrorCode:
        documented = rows[code.value].strip()
        assert documented.startswith(contract.severity(code).value), code
        assert ("(always)" in documented) == (code in STORAGE_RULES), code
        for name, value in contract.parameters.get(code, {}).items():
            assert f"`{name}: {value:g}`" in documented, code
