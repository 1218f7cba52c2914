"""A corpus of bad input files, one kind each, through the sensor and one real ingest run.

Every file must end in exactly one place: quarantined with a readable reason, or committed with
each of its records either in ecommerce_events or in dead_letter_events and the count in
data_quality_metrics. Nothing may crash the sensor or the run, and the sensor must not follow
symlinks or descend into directories. One Spark ingest serves every kind; each kind is its own
parametrized test.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.ingest import IngestReport, ingest_partition
from ecom_assets.jobs import build_ingest_job
from ecom_assets.partitions import PARTITION_FORMAT
from ecom_assets.resources.event_files import NAME_MAX, original_name
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.schema.contract import ErrorCode
from ecom_assets.schema.versions import V1, V2, V3, SchemaVersion
from ecom_assets.sensors import make_input_files_sensor
from ecom_assets.settings import IngestionSettings, PathSettings, Settings, load_settings
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets_tests.test_transforms_support import event, uid

pytestmark = pytest.mark.integration

E = ErrorCode
HOUR = (datetime.now(tz=UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
PARTITION = HOUR.strftime(PARTITION_FORMAT)
H1, H2, H3 = (list(version.column_names) for version in (V1, V2, V3))
MALFORMED = (E.MALFORMED_ROW,)
BAD_NAME = "file name has characters Spark cannot read literally"
MAX_FILE_MB = 1

_ids = itertools.count(1)


def row(version: SchemaVersion = V3, **values: str) -> list[str]:
    """A valid record of ``version`` with an event id of its own, ``values`` overriding fields."""
    record = event(next(_ids), **values)
    return [record[name] for name in version.column_names]


def lines(*rows: Sequence[str], end: str = "\n", delimiter: str = ",") -> bytes:
    """Rows as CSV (quoted where needed, as csv.writer does), UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=end, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class Case:
    """One kind of bad input and where it must end up."""

    kind: str
    content: bytes
    reason: str | None = None
    """Quarantined: a phrase its reason must contain. None: the file is committed."""
    valid: int = 0
    """Committed: records that must land in ecommerce_events."""
    dead: dict[int, tuple[ErrorCode, ...]] = field(default_factory=dict)
    """Committed: the record numbers that must be dead letters, with their error codes."""
    name: str | None = None
    """The file name's last part, when it is not the kind."""

    @property
    def records(self) -> int:
        return self.valid + len(self.dead)

    def file_name(self, index: int) -> str:
        return f"events_{HOUR:%Y%m%dT%H%M%S}{index:06d}Z_{self.name or self.kind}.csv"


def _extra_field_in_middle() -> list[str]:
    shifted = row(V1, event_type="add_to_cart")
    shifted.insert(4, "9.99")  # a second price: event_time moves one column right
    return shifted


def _unterminated_quote() -> bytes:
    opened = row(V1, event_type="view", price="")
    opened[2] = '"view'  # written raw: the quote runs to the end of the file
    return lines(H1, row(V1)) + (",".join(opened) + "\n").encode() + lines(row(V1), row(V1))


def _header_quoting(header: str, *rows: Sequence[str], bom: bool = False) -> bytes:
    """A header line written raw (its quoting is the point), then well-formed rows."""
    return (b"\xef\xbb\xbf" if bom else b"") + header.encode() + b"\n" + lines(*rows)


LONG = "é" * 110 + "x"
"""With the corpus's file name around it: a 255-byte name, NAME_MAX (a quarantined file's
`<name>.reason.json` would be 267 bytes)."""


def corpus() -> list[Case]:
    """The kinds, in file-name order; each record has an event id of its own."""
    return [
        Case("empty", b"", reason="empty header"),
        Case("whitespace_only", b" \t \r\n  \n", reason="empty header"),
        Case("leading_blank_line", b"\n" + lines(H1, row(V1)), reason="empty header"),
        Case("header_only", lines(H3)),
        Case("header_only_no_newline", ",".join(H1).encode()),
        Case(
            "semicolon_delimiter",
            lines(H3, row(), delimiter=";"),
            reason="header matches no schema version",
        ),
        Case(
            "tab_delimiter", lines(H2, row(V2), delimiter="\t"), reason="matches no schema version"
        ),
        Case("no_header", lines(row(), row()), reason="header matches no schema version"),
        Case(
            "unknown_header",
            lines(["id", "ts", "action", "amount"], ["1", "2", "3", "4"]),
            reason="header matches no schema version",
        ),
        Case(
            "duplicate_header_column",
            lines([*H1, "event_id"], [*row(V1), uid(0)]),
            reason="duplicated columns: event_id",
        ),
        Case(
            "v1_header_with_some_v2_columns",
            lines([*H1, "session_id", "category"], row(V2)[:8]),
            reason="not v2: missing columns quantity, user_segment",
        ),
        Case("huge_header_line", b"event_id," + b"x" * 200_000, reason="not v1: missing columns"),
        Case("binary_garbage", random.Random(7).randbytes(4096), reason="not UTF-8"),
        Case("gzip_bytes", gzip.compress(lines(H3, row()), mtime=0), reason="not UTF-8"),
        Case("utf16", lines(H1, row(V1)).decode().encode("utf-16"), reason="not UTF-8"),
        Case(
            "latin1_field",
            lines(H3) + lines(row(geo_city="München")).decode().encode("latin-1"),
            reason="not UTF-8",
        ),
        Case("nul_bytes", lines(H3, row(geo_city="Ber\x00lin"), row()), reason="NUL byte"),
        Case(
            "too_wide_line",
            lines(H1, row(V1)) + b"," * 30_000 + b"\n" + lines(row(V1)),
            reason="more fields than",
        ),
        Case("utf8_bom", b"\xef\xbb\xbf" + lines(H2, row(V2), row(V2)), valid=2),
        Case("utf8_multibyte", lines(H3, row(geo_city="São Paulo", browser="Firefox 🦊")), valid=1),
        Case("crlf_line_endings", lines(H3, row(), row(), end="\r\n"), valid=2),
        Case("cr_line_endings", lines(H1, row(V1), row(V1), end="\r"), valid=2),
        Case(
            "blank_lines_in_middle",
            lines(H2, row(V2)) + b"\n\n" + lines(row(V2)) + b"\n",
            valid=2,
        ),
        Case(
            "whitespace_line_in_middle",
            lines(H1, row(V1)) + b"   \n" + lines(row(V1)),
            valid=2,
            dead={2: MALFORMED},
        ),
        Case(
            "quoted_fields",
            lines(H3, row(geo_city="New\nYork", browser='Chrome "beta"', referrer="x.io/?a=1,b=2")),
            valid=1,
        ),
        Case("unterminated_quote", _unterminated_quote(), valid=1, dead={2: MALFORMED}),
        Case("huge_field", lines(H2, row(V2, session_id="s" * 1_000_000), row(V2)), valid=2),
        Case(
            "truncated_last_line",
            lines(H3, row(), row()) + ",".join(row()).encode()[:45],
            valid=2,
            dead={3: MALFORMED},
        ),
        Case(
            "extra_field_at_end",
            lines(H3, row(), [*row(), "surplus"], row()),
            valid=2,
            dead={2: MALFORMED},
        ),
        Case(
            "extra_field_in_middle",
            lines(H1, _extra_field_in_middle(), row(V1)),
            valid=1,
            dead={1: MALFORMED},
        ),
        Case("missing_last_field", lines(H3, row()[:-1], row()), valid=1, dead={1: MALFORMED}),
        Case("trailing_delimiter", lines([*H1, ""], [*row(V1), ""], [*row(V1), ""]), valid=2),
        Case(
            "trailing_delimiter_on_rows_only",
            lines(H1, [*row(V1), ""], [*row(V1), ""]),
            dead={1: MALFORMED, 2: MALFORMED},
        ),
        Case("v1_header_v2_rows", lines(H1, row(V2), row(V2)), dead={1: MALFORMED, 2: MALFORMED}),
        Case(
            "unknown_version_v4",
            lines([*H3, "loyalty_tier"], [*row(), "gold"], [*row(), "silver"]),
            valid=2,
        ),
        Case(
            "reserved_column_names",
            lines([*H1, "record_raw", "source_file", "_corrupt_record"], [*row(V1), "a", "b", "c"]),
            valid=1,
        ),
        Case(
            "header_repeated_mid_file",
            lines(H1, row(V1), H1, row(V1)),
            valid=2,
            dead={
                2: (
                    E.INVALID_EVENT_ID,
                    E.INVALID_USER_ID,
                    E.INVALID_EVENT_TYPE,
                    E.INVALID_PRODUCT_ID,
                    E.INVALID_PRICE,
                    E.INVALID_EVENT_TIME,
                )
            },
        ),
        Case(
            "all_fields_empty",
            lines(H1, [""] * len(H1), row(V1)),
            valid=1,
            dead={
                1: (
                    E.MISSING_EVENT_ID,
                    E.MISSING_EVENT_TYPE,
                    E.MISSING_PRODUCT_ID,
                    E.MISSING_EVENT_TIME,
                )
            },
        ),
        Case("punctuated_name", lines(H1, row(V1)), valid=1, name="export(1);v=2,a&b+c@d!~'é"),
        Case("dot_dot_name", lines(H1, row(V1)), name="..\\..\\..%2Fescape", reason=BAD_NAME),
        Case("space_in_name", lines(H1, row(V1)), name="my export", reason=BAD_NAME),
        Case("glob_characters_in_name", lines(H1, row(V1)), name="[1]{a,b}*?", reason=BAD_NAME),
        Case("colon_in_name", lines(H1, row(V1)), name="10:00", reason=BAD_NAME),
        Case(
            "header_quote_opened_at_end",  # python's csv read a blank 7th name, Arrow failed
            _header_quoting(",".join(H1) + ',"', row(V1), row(V1)),
            reason="header has an unterminated quote",
        ),
        Case(
            "header_unterminated_quote",
            _header_quoting('event_id,"user_id,' + ",".join(H1[2:]), row(V1)),
            reason="header has an unterminated quote",
        ),
        Case(
            "header_bom_quoted_comma",  # python's csv split the quoted name, Arrow did not
            _header_quoting('"event_id,user_id",' + ",".join(H1[2:]), row(V1), bom=True),
            reason="missing columns event_id, user_id",
        ),
        Case(
            "header_quoted_names",
            _header_quoting(",".join(f'"{name}"' for name in H3), row(), row()),
            valid=2,
        ),
        Case("name_max_garbage", random.Random(8).randbytes(512), name=LONG, reason="not UTF-8"),
        Case("name_max_events", lines(H2, row(V2)), name=LONG[:-1] + "y", valid=1),
        Case(
            "above_max_file_mb",
            lines(H3, row()) + b"\n" * (MAX_FILE_MB << 20),
            reason=f"above ECOM_INGEST_MAX_FILE_MB={MAX_FILE_MB}",
        ),
    ]


CASES = corpus()
CASES_BY_KIND = {case.kind: case for case in CASES}
OUTSIDE = lines(H1, row(V1))


@dataclass(frozen=True)
class Outcome:
    """Where everything was after the sensor and the run."""

    names: dict[str, str]
    """Kind -> file name."""
    requests: list[dg.RunRequest]
    requests_after_run: list[dg.RunRequest]
    report: IngestReport
    traps: list[str]
    """Entries the sensor and the run must leave in the input directory."""
    left_in_input: list[str]
    outside: bytes
    """The symlinks' target after the run."""
    processed: list[str]
    quarantined: list[str]
    """The names quarantined files arrived with (a stored name may be cut: event_files)."""
    reasons: dict[str, dict[str, Any]]
    """Arrival name -> reason document."""
    quarantine_entries: list[str]
    ledger: dict[str, str]
    events: dict[str, list[tuple[str, ...]]]
    """File -> (geo_city, browser, referrer) of its events, in record order."""
    dead: dict[str, dict[int, tuple[str, ...]]]
    """File -> record number -> error codes."""
    dead_records: dict[tuple[str, int], tuple[str, dict[str, Any]]]
    """(file, record number) -> (error_detail, raw_record)."""
    metrics: dict[str, tuple[int, int, int]]
    """File -> (rows_read, rows_valid, rows_invalid)."""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("corpus")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ECOM_ENV_FILE", str(home / "absent.env"))
        yield load_settings(
            paths=PathSettings(home=home),
            ingestion=IngestionSettings(file_settle_s=0, max_file_mb=MAX_FILE_MB),
        )


@pytest.fixture(scope="module")
def url(postgres_server: EmbeddedPostgres) -> str:
    """A fresh database with the schema, for this module's one run."""
    name = "t_bad_input_corpus"
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(postgres_server.url(name), autocommit=True) as conn:
        apply_migrations(conn, discover_migrations())
    return postgres_server.url(name)


def add_traps(input_dir: Path, target: Path) -> list[str]:
    """Entries of the corpus's hour that no one may follow, open or claim; returns their names."""
    stamp = f"events_{HOUR:%Y%m%dT%H%M%S}999999Z"
    target.write_bytes(OUTSIDE)
    traps = {
        f"{stamp}_symlink.csv": lambda path: path.symlink_to(target),
        f"{stamp}_dangling.csv": lambda path: path.symlink_to(target.with_name("missing.csv")),
        f"{stamp}_directory.csv": lambda path: path.mkdir(),
        f"{stamp}_fifo.csv": os.mkfifo,  # opening it would block
        f".{stamp}_hidden.csv": lambda path: path.write_bytes(OUTSIDE),
    }
    for name, make in traps.items():
        make(input_dir / name)
    (input_dir / f"{stamp}_directory.csv" / "inner.csv").write_bytes(OUTSIDE)
    return sorted(traps)


# bytes that are not UTF-8 in a name: os.fsdecode keeps them as surrogates, PostgreSQL cannot
NON_UTF8_NAME = os.fsdecode(f"events_{HOUR:%Y%m%dT%H%M%S}999999Z_latin1_\xe9.csv".encode("latin-1"))


def evaluate_sensor(settings: Settings, cursor: str | None) -> dg.SensorResult:
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    sensor = make_input_files_sensor(build_ingest_job(ingest), settings)
    with dg.instance_for_test() as instance:
        return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def outcome(
    spark, url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """Write the corpus and the traps, evaluate the sensor, run one ingest, collect the result."""
    settings.input_dir.mkdir(parents=True)
    names = {case.kind: case.file_name(index) for index, case in enumerate(CASES)}
    for case in CASES:
        (settings.input_dir / names[case.kind]).write_bytes(case.content)
    target = tmp_path_factory.mktemp("outside") / "outside.csv"
    traps = add_traps(settings.input_dir, target)
    (settings.input_dir / NON_UTF8_NAME).write_bytes(OUTSIDE)
    first = evaluate_sensor(settings, cursor=None)
    report = ingest_partition(
        spark, url, settings, PARTITION, "corpus", log=logging.getLogger(__name__)
    )
    after = evaluate_sensor(settings, cursor=first.cursor)
    events: dict[str, list[tuple[str, ...]]] = {}
    for file, *values in query(
        url,
        "SELECT source_file, geo_city, browser, referrer FROM ecommerce_events "
        "ORDER BY source_file, source_line",
    ):
        events.setdefault(file, []).append(tuple(values))
    dead: dict[str, dict[int, tuple[str, ...]]] = {}
    dead_records = {}
    for file, line, codes, detail, record in query(
        url,
        "SELECT source_file, source_line, error_codes, error_detail, raw_record "
        "FROM dead_letter_events",
    ):
        dead.setdefault(file, {})[line] = tuple(codes)
        dead_records[(file, line)] = (detail, record)
    quarantine = settings.quarantine_dir
    metrics = "SELECT source_file, rows_read, rows_valid, rows_invalid FROM data_quality_metrics"
    return Outcome(
        names=names,
        requests=list(first.run_requests or []),
        requests_after_run=list(after.run_requests or []),
        report=report,
        traps=traps,
        left_in_input=sorted(path.name for path in settings.input_dir.iterdir()),
        outside=target.read_bytes(),
        processed=sorted(path.name for path in settings.processed_dir.glob("*/*")),
        quarantined=sorted(original_name(path) for path in quarantine.glob("*.csv")),
        reasons={
            reason["file"]: reason
            for reason in (json.loads(p.read_text()) for p in quarantine.glob("*.reason.json"))
        },
        quarantine_entries=sorted(path.name for path in quarantine.iterdir()),
        ledger=dict(query(url, "SELECT file_name, status FROM ingest_files")),
        events=events,
        dead=dead,
        dead_records=dead_records,
        metrics={file: tuple(counts) for file, *counts in query(url, metrics)},
    )


def test_the_corpus_has_at_least_twenty_distinct_kinds() -> None:
    kinds = [case.kind for case in CASES]
    assert len(set(kinds)) == len(kinds) >= 20
    assert len({case.content for case in CASES}) == len(CASES)
    assert {case.reason is None for case in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.kind)
def test_each_kind_ends_in_exactly_one_place(outcome: Outcome, case: Case) -> None:
    name = outcome.names[case.kind]
    assert name not in outcome.left_in_input
    if case.reason is not None:
        assert (outcome.processed.count(name), outcome.quarantined.count(name)) == (0, 1)
        reason = outcome.reasons[name]
        assert case.reason in reason["reason"], reason
        assert reason["file"] == name and reason["ingestible"] is False
        assert outcome.ledger[name] == "quarantined"
        assert (name in outcome.events, name in outcome.dead, name in outcome.metrics) == (
            False,
            False,
            False,
        )
        return
    assert (outcome.processed.count(name), outcome.quarantined.count(name)) == (1, 0)
    assert outcome.ledger[name] == "committed"
    dead = {line: tuple(map(str, codes)) for line, codes in case.dead.items()}
    assert len(outcome.events.get(name, [])) == case.valid
    assert outcome.dead.get(name, {}) == dead
    assert outcome.metrics[name] == (case.records, case.valid, len(case.dead))


def test_every_file_is_accounted_for_exactly_once(outcome: Outcome) -> None:
    names = set(outcome.names.values())
    assert sorted(outcome.processed + outcome.quarantined) == sorted([*names, NON_UTF8_NAME])
    assert set(outcome.ledger) == names
    assert outcome.left_in_input == outcome.traps
    report = outcome.report
    assert report.rows_read == sum(case.records for case in CASES)
    assert (report.rows_valid, report.rows_inserted) == (sum(case.valid for case in CASES),) * 2
    assert report.rows_invalid == sum(len(case.dead) for case in CASES)
    assert len(report.quarantined) == sum(case.reason is not None for case in CASES) + 1


def test_the_sensor_requests_the_corpus_and_follows_no_link_or_directory(
    outcome: Outcome,
) -> None:
    [request] = outcome.requests
    assert request.partition_key == PARTITION
    assert request.tags["ecom/waiting_files"] == str(len(CASES) + 1)  # and the non-UTF-8 name
    assert outcome.requests_after_run == []
    assert outcome.outside == OUTSIDE


def test_a_file_name_that_is_not_utf8_is_quarantined_with_its_reason(outcome: Outcome) -> None:
    reason = outcome.reasons[NON_UTF8_NAME]
    assert "file name is not UTF-8" in reason["reason"]
    printable = os.fsencode(NON_UTF8_NAME).decode("utf-8", "backslashreplace")
    assert outcome.report.quarantined[printable] == reason["reason"]
    assert printable.endswith("_latin1_\\xe9.csv")


def test_a_malformed_record_keeps_its_text_in_the_dead_letter(outcome: Outcome) -> None:
    written = CASES_BY_KIND["extra_field_at_end"].content.decode().splitlines()[2]
    detail, record = outcome.dead_records[(outcome.names["extra_field_at_end"], 2)]
    assert record["record"] == written
    assert record["campaign_id"] == "CMP-1"  # the fields as split, to fix and replay
    assert detail == f"MALFORMED_ROW: record='{written}'"


def test_quoted_and_multibyte_values_are_stored_exactly(outcome: Outcome) -> None:
    assert outcome.events[outcome.names["quoted_fields"]] == [
        ("New\nYork", 'Chrome "beta"', "x.io/?a=1,b=2")
    ]
    assert outcome.events[outcome.names["utf8_multibyte"]] == [
        ("São Paulo", "Firefox 🦊", "https://example.com/")
    ]


def test_a_name_of_name_max_bytes_is_quarantined_under_a_shorter_one(outcome: Outcome) -> None:
    name = outcome.names["name_max_garbage"]
    assert len(name.encode()) == NAME_MAX
    [stored] = [entry for entry in outcome.quarantine_entries if entry.endswith(".csv")
                and entry.startswith(name[:100]) and entry != name]  # fmt: skip
    assert f"{stored}.reason.json" in outcome.quarantine_entries
    assert max(len(os.fsencode(entry)) for entry in outcome.quarantine_entries) <= NAME_MAX
    assert not [entry for entry in outcome.quarantine_entries if entry.startswith(".")]
