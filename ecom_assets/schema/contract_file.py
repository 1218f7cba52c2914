"""Read an event contract from YAML, refusing anything doubtful with its line and the problem.

An operator's file declares only what differs from the shipped default (default_contract.yaml):
a section or a rule it leaves out keeps the default. Every other mistake is an error naming the
file, the line and what is wrong (an unknown key, a misspelt rule or severity, a storage rule
set to ``warn``, a parameter out of range, a key given twice), because a contract that silently
ignores a line dead-letters, or worse stores, the wrong rows. Bounds whose values PostgreSQL
could not store are refused too (``max_price`` x ``max_quantity`` must fit total_amount): a
contract is checked against the columns once, at load (``ecom up``, ``ecom contract check``),
not discovered by a batch that fails on every retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ecom_assets.schema.contract import (
    RULE_PARAMETERS,
    STORAGE_LIMITS,
    STORAGE_RULES,
    Contract,
    ErrorCode,
    EventType,
    IdFormat,
    Parameter,
    Severity,
)

DEFAULT_CONTRACT_FILE = Path(__file__).with_name("default_contract.yaml")
CONTRACT_VERSION = 1
SECTIONS = ("contract_version", "event_id", "event_types", "user_segments", "rules")
TYPE_KEYS = ("user", "product", "priced")
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class _Located:
    """A YAML node's value with the line it starts on (1-based), for messages."""

    node: Node
    path: str
    key: Node | None = None
    """The mapping key the value stands under, if any: a wrong key is reported on its line."""

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, problem: str) -> ContractError:
        return ContractError(f"{self.path}:{self.line}: {problem}")

    def fail_key(self, problem: str) -> ContractError:
        line = (self.key or self.node).start_mark.line + 1
        return ContractError(f"{self.path}:{line}: {problem}")

    def scalar(self, what: str) -> str:
        if not isinstance(self.node, ScalarNode):
            raise self.fail(f"{what} must be a single value, not a {_shape(self.node)}")
        return str(self.node.value).strip()

    def mapping(self, what: str) -> dict[str, _Located]:
        """A mapping's entries by key; a key given twice is an error (YAML keeps the last)."""
        if not isinstance(self.node, MappingNode):
            raise self.fail(f"{what} must be a mapping (key: value), not a {_shape(self.node)}")
        entries: dict[str, _Located] = {}
        for key_node, value_node in self.node.value:
            key = _Located(key_node, self.path).scalar(f"a key of {what}")
            if key in entries:
                raise _Located(key_node, self.path).fail(
                    f"{key!r} is given twice in {what} (first on line {entries[key].line})"
                )
            entries[key] = _Located(value_node, self.path, key_node)
        return entries

    def sequence(self, what: str) -> list[_Located]:
        if not isinstance(self.node, SequenceNode):
            raise self.fail(f"{what} must be a list, not a {_shape(self.node)}")
        return [_Located(item, self.path) for item in self.node.value]


def _shape(node: Node) -> str:
    return {MappingNode: "mapping", SequenceNode: "list"}.get(type(node), "value")


def _unknown_keys(entries: dict[str, _Located], known: tuple[str, ...], what: str) -> None:
    for key, value in entries.items():
        if key not in known:
            raise value.fail_key(f"unknown key {key!r} in {what}; known: {', '.join(known)}")


def load_contract(path: str | Path | None = None) -> Contract:
    """The contract of ``path`` over the shipped default (``None``: the default alone)."""
    default = _parse(DEFAULT_CONTRACT_FILE, DEFAULT_CONTRACT_FILE.read_text(encoding="utf-8"))
    if path is None or Path(path).resolve() == DEFAULT_CONTRACT_FILE.resolve():
        return default
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the contract file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ContractError(f"{path}: the contract file is not UTF-8 text") from exc
    return _parse(path, text, default)


def parse_contract(text: str, name: str = "<contract>", base: Contract | None = None) -> Contract:
    """A contract from YAML text over ``base`` (the shipped default when None)."""
    return _parse(Path(name), text, base or load_contract())


def _parse(path: Path, text: str, base: Contract | None = None) -> Contract:
    where = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ContractError(f"{where}{line}: not valid YAML: {exc.problem or exc}") from exc
    if root is None:
        if base is None:
            raise ContractError(f"{where}: the contract file is empty")
        return replace(base, source=where)
    sections = _Located(root, where).mapping("the contract")
    _unknown_keys(sections, SECTIONS, "the contract")
    if "contract_version" in sections:
        version = sections["contract_version"]
        if version.scalar("contract_version") != str(CONTRACT_VERSION):
            raise version.fail(f"contract_version must be {CONTRACT_VERSION}")
    if base is None:
        missing = [name for name in SECTIONS[1:] if name not in sections]
        if missing:
            raise ContractError(f"{where}: the default contract lacks {', '.join(missing)}")
    id_format = _id_format(sections["event_id"]) if "event_id" in sections else base.id_format
    event_types = (
        _event_types(sections["event_types"]) if "event_types" in sections else base.event_types
    )
    segments = (
        _segments(sections["user_segments"]) if "user_segments" in sections else base.user_segments
    )
    severities = dict(base.severities) if base else {}
    parameters = {code: dict(values) for code, values in (base.parameters if base else {}).items()}
    given: dict[str, _Located] = {}
    if "rules" in sections:
        given = _rules(sections["rules"], severities, parameters)
    absent = [code.value for code in ErrorCode if code not in severities]
    if absent:
        raise ContractError(f"{where}: no severity for {', '.join(absent)}")
    for code, spec in RULE_PARAMETERS.items():
        for parameter in spec:
            parameters.setdefault(code, {}).setdefault(parameter.name, parameter.default)
    _check_storable(parameters, given, where)
    return Contract(event_types, segments, id_format, severities, parameters, where)


def _check_storable(
    parameters: dict[ErrorCode, dict[str, float]], given: dict[str, _Located], where: str
) -> None:
    """Refuse bounds whose values the columns cannot hold, naming them and the column.

    Each parameter's own range keeps it within its column (max_price below NUMERIC(12,2)'s
    10^10, max_quantity an INTEGER); their product is the largest total a valid purchase can
    have, and must be below NUMERIC(14,2)'s 10^12. Whatever the rules' severities: a bound is
    the operator's statement of what can happen, and TOTAL_AMOUNT_OVERFLOW still dead-letters a
    row beyond it when the bounds are warnings.
    """
    price_name = f"{ErrorCode.EXTREME_PRICE.value}.max_price"
    quantity_name = f"{ErrorCode.INVALID_QUANTITY.value}.max_quantity"
    max_price = parameters[ErrorCode.EXTREME_PRICE]["max_price"]
    max_quantity = parameters[ErrorCode.INVALID_QUANTITY]["max_quantity"]
    limit = STORAGE_LIMITS.total_limit
    largest = Decimal(repr(max_price)) * int(max_quantity)  # exact, as the rules compare
    if largest < limit:
        return
    digits = STORAGE_LIMITS.total_digits - STORAGE_LIMITS.scale
    problem = (
        f"{price_name} ({max_price:,.2f}) x {quantity_name} ({int(max_quantity):,}) = "
        f"{largest:,.2f}: a purchase total that large cannot be stored in "
        f"ecommerce_events.total_amount, NUMERIC({STORAGE_LIMITS.total_digits},"
        f"{STORAGE_LIMITS.scale}), which holds less than 10^{digits}; lower one of them"
    )
    located = given.get(price_name) or given.get(quantity_name)
    if located is None:
        raise ContractError(f"{where}: {problem}")
    raise located.fail(problem)


def _id_format(node: _Located) -> IdFormat:
    entries = node.mapping("event_id")
    _unknown_keys(entries, ("format",), "event_id")
    if "format" not in entries:
        raise node.fail("event_id needs a format: uuid, ulid or text")
    value = entries["format"].scalar("event_id.format").lower()
    try:
        return IdFormat(value)
    except ValueError:
        raise entries["format"].fail(
            f"unknown event id format {value!r}; use uuid, ulid or text"
        ) from None


def _event_types(node: _Located) -> tuple[EventType, ...]:
    entries = node.mapping("event_types")
    if not entries:
        raise node.fail("event_types must declare at least one type")
    types = []
    for name, spec in entries.items():
        _check_name(name, spec, "an event type")  # on the key's line
        keys = spec.mapping(f"event type {name!r}")
        _unknown_keys(keys, TYPE_KEYS, f"event type {name!r}")
        user = _choice(keys, "user", ("required", "optional"), name, "optional")
        product = _choice(keys, "product", ("required", "optional"), name, "required")
        priced = _choice(keys, "priced", ("true", "false"), name, "false")
        types.append(EventType(name, user == "required", product == "required", priced == "true"))
    return tuple(types)


def _check_name(name: str, node: _Located, what: str) -> None:
    if not re.match(NAME_PATTERN, name):
        raise node.fail_key(
            f"{name!r} is not a valid name for {what}: lower-case letters, digits and _, "
            "starting with a letter (values are compared trimmed and lower-cased)"
        )


def _choice(
    keys: dict[str, _Located], key: str, allowed: tuple[str, ...], type_name: str, default: str
) -> str:
    if key not in keys:
        return default
    value = keys[key].scalar(f"{type_name}.{key}").lower()
    if value not in allowed:
        raise keys[key].fail(
            f"event type {type_name!r}: {key} must be {' or '.join(allowed)}, not {value!r}"
        )
    return value


def _segments(node: _Located) -> frozenset[str] | None:
    if isinstance(node.node, ScalarNode):
        if node.scalar("user_segments").lower() == "any":
            return None
        raise node.fail("user_segments must be a list of segments or `any`")
    segments = []
    for item in node.sequence("user_segments"):
        name = item.scalar("a user segment").lower()
        _check_name(name, item, "a user segment")
        segments.append(name)
    return frozenset(segments)


def _rules(
    node: _Located,
    severities: dict[ErrorCode, Severity],
    parameters: dict[ErrorCode, dict[str, float]],
) -> dict[str, _Located]:
    """Apply the rules section; the parameters it gives, as ``RULE.name``, with their lines."""
    given: dict[str, _Located] = {}
    for name, spec in node.mapping("rules").items():
        try:
            code = ErrorCode(name.upper())
        except ValueError:
            raise spec.fail_key(
                f"unknown rule {name!r}; rules: {', '.join(code.value for code in ErrorCode)}"
            ) from None
        known = tuple(parameter.name for parameter in RULE_PARAMETERS.get(code, ()))
        if isinstance(spec.node, MappingNode):
            entries = spec.mapping(f"rule {code.value}")
            _unknown_keys(entries, ("severity", *known), f"rule {code.value}")
            if "severity" in entries:
                severities[code] = _severity(code, entries["severity"])
            for parameter in RULE_PARAMETERS.get(code, ()):
                if parameter.name in entries:
                    value = _number(entries[parameter.name], code, parameter)
                    parameters.setdefault(code, {})[parameter.name] = value
                    given[f"{code.value}.{parameter.name}"] = entries[parameter.name]
        else:
            severities[code] = _severity(code, spec)
    return given


def _severity(code: ErrorCode, node: _Located) -> Severity:
    value = node.scalar(f"the severity of {code.value}").lower()
    try:
        severity = Severity(value)
    except ValueError:
        raise node.fail(
            f"{code.value}: severity must be error, warn or off, not {value!r}"
        ) from None
    if code in STORAGE_RULES and severity is not Severity.ERROR:
        raise node.fail(
            f"{code.value} can only be an error: a row failing it cannot be stored as an event"
        )
    return severity


def _number(node: _Located, code: ErrorCode, parameter: Parameter) -> float:
    text = node.scalar(f"{code.value}.{parameter.name}")
    try:
        value = parameter.kind(text)
    except ValueError:
        kind = "a whole number" if parameter.kind is int else "a number"
        raise node.fail(f"{code.value}.{parameter.name} must be {kind}, not {text!r}") from None
    if not parameter.minimum <= value <= parameter.maximum:
        raise node.fail(
            f"{code.value}.{parameter.name} must be between {parameter.minimum:g} and "
            f"{parameter.maximum:g}, not {text}"
        )
    return value


def rule_rows(contract: Contract) -> list[tuple[str, str, str, str]]:
    """(rule, severity, parameters, what it checks) for every rule, in ErrorCode order."""
    rows = []
    for code in ErrorCode:
        values = contract.parameters.get(code, {})
        shown = ", ".join(f"{name}={value:g}" for name, value in values.items())
        fixed = " (always)" if code in STORAGE_RULES else ""
        rows.append((code.value, f"{contract.severity(code).value}{fixed}", shown, RULE_DOCS[code]))
    return rows


def contract_markdown(contract: Contract) -> str:
    """The contract in force as Markdown: the UI's asset metadata and `ecom contract show`."""
    segments = (
        "any" if contract.user_segments is None else ", ".join(sorted(contract.user_segments))
    )
    lines = [
        f"Contract: `{contract.source}`; event ids: {contract.id_format.value}; "
        f"user segments: {segments}",
        "",
        "| event type | user | product | price and quantity |",
        "| --- | --- | --- | --- |",
    ]
    for event_type in contract.event_types:
        lines.append(
            f"| {event_type.name} | {'required' if event_type.user_required else 'optional'} "
            f"| {'required' if event_type.product_required else 'optional'} "
            f"| {'carried' if event_type.priced else 'none'} |"
        )
    lines += ["", "| rule | severity | parameters | checks |", "| --- | --- | --- | --- |"]
    lines += [f"| {code} | {severity} | {shown} | {doc} |" for code, severity, shown, doc in
              rule_rows(contract)]  # fmt: skip
    return "\n".join(lines)


RULE_DOCS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_ROW: "more or fewer fields than the header",
    ErrorCode.MISSING_EVENT_ID: "blank event_id",
    ErrorCode.INVALID_EVENT_ID: "event_id not of the id format",
    ErrorCode.DUPLICATE_EVENT_ID: "an event_id repeated within a file",
    ErrorCode.INVALID_USER_ID: "user_id not a whole number >= 0",
    ErrorCode.USER_REQUIRED: "an anonymous visitor doing a type that needs a user",
    ErrorCode.MISSING_EVENT_TYPE: "blank event_type",
    ErrorCode.INVALID_EVENT_TYPE: "event_type not declared",
    ErrorCode.MISSING_PRODUCT_ID: "blank product_id on a type that needs a product",
    ErrorCode.INVALID_PRODUCT_ID: "product_id not a whole number > 0",
    ErrorCode.UNKNOWN_PRODUCT: "product not in the loaded catalogue",
    ErrorCode.UNKNOWN_CATEGORY: "category not in the loaded catalogue",
    ErrorCode.CATEGORY_PRODUCT_MISMATCH: "the catalogue gives the product another category",
    ErrorCode.MISSING_PRICE: "priced type without a price",
    ErrorCode.INVALID_PRICE: "price that is not a number",
    ErrorCode.NEGATIVE_PRICE: "price below 0",
    ErrorCode.EXTREME_PRICE: "price above max_price",
    ErrorCode.NON_POSITIVE_PURCHASE_PRICE: "purchase priced exactly 0",
    ErrorCode.UNEXPECTED_PRICE: "non-zero price on a type that carries none",
    ErrorCode.INVALID_QUANTITY: "quantity not a whole number in 1..max_quantity",
    ErrorCode.UNEXPECTED_QUANTITY: "non-zero quantity on a type that carries none",
    ErrorCode.MISSING_EVENT_TIME: "blank event_time",
    ErrorCode.INVALID_EVENT_TIME: "event_time not an ISO 8601 instant",
    ErrorCode.FUTURE_EVENT_TIME: "event_time later than now + tolerance_s",
    ErrorCode.INVALID_USER_SEGMENT: "user_segment not an accepted one",
    ErrorCode.EVENT_TIME_OUT_OF_RANGE: (
        f"event_time (UTC) outside years {STORAGE_LIMITS.first_year}.."
        f"{STORAGE_LIMITS.last_year}: PostgreSQL has no year 0"
    ),
    ErrorCode.TOTAL_AMOUNT_OVERFLOW: (
        f"price x quantity of 10^{STORAGE_LIMITS.total_digits - STORAGE_LIMITS.scale} or more: "
        f"total_amount is NUMERIC({STORAGE_LIMITS.total_digits},{STORAGE_LIMITS.scale})"
    ),
    ErrorCode.VALUE_TOO_LONG: (
        f"event_type, category or user_segment over {STORAGE_LIMITS.indexed_text_bytes} bytes: "
        "too long for an index entry"
    ),
}
