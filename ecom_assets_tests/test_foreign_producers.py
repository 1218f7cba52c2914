"""Other shops' files, through the real sensor and ingest job, on real Spark and PostgreSQL.

Each shop (generator/foreign.py) writes events its own way: its own catalogue and segments,
other column orders, extra columns, "5.0" user ids, offsets or space-separated times, zeros or
blanks for "no price", upper-case ids, a BOM, CRLF, .CSV names. With the default contract and no
catalogue, every row without an injected defect must land in ecommerce_events (with the warnings
the shop's conventions earn) and every defect in dead_letter_events with exactly its code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from ecom_assets import replay
from ecom_assets.assets.database_schema import database_schema
from ecom_assets.assets.ingestion import build_ingest_assets
from ecom_assets.jobs import build_ingest_job
from ecom_assets.resources.catalogue import load_catalogue
from ecom_assets.resources.postgres import PostgresResource
from ecom_assets.resources.spark import spark_resource
from ecom_assets.schema.contract import ErrorCode
from ecom_assets.sensors import make_input_files_sensor
from ecom_assets.settings import (
    IngestionSettings,
    PathSettings,
    Settings,
    SparkSettings,
    load_settings,
)
from generator.foreign import DEFECTS, SHOPS, ShopFile, write_catalogue, write_shop

pytestmark = pytest.mark.integration


@pytest.fixture
def resources(database_url: str, spark_server) -> dict[str, object]:
    return {
        "postgres": PostgresResource(url=database_url),
        "pyspark": spark_resource(SparkSettings(remote=spark_server.url)),
    }


def ingest_waiting_files(
    settings: Settings, resources: dict[str, object]
) -> list[dg.ExecuteInProcessResult]:
    """What the daemon does: a sensor tick, then a run of the ingest job per run request."""
    ingest = build_ingest_assets(settings, upstream=[database_schema.key])
    job = build_ingest_job(ingest)
    definitions = dg.Definitions(assets=[database_schema, ingest], jobs=[job], resources=resources)
    sensor = make_input_files_sensor(job, settings)
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    results = []
    with dg.instance_for_test() as instance:
        requests = sensor(dg.build_sensor_context(instance=instance, cursor=None)).run_requests
        assert requests, "the sensor requested no run"
        for request in requests:
            results.append(
                definitions.resolve_job_def("ingest_job").execute_in_process(
                    partition_key=request.partition_key, instance=instance, tags=request.tags,
                    raise_on_error=False,
                )
            )  # fmt: skip
    return results


def stored(url: str) -> tuple[dict, dict]:
    """(events by (file, line): (event_id, warnings), dead letters by (file, line): codes)."""
    with psycopg.connect(url) as conn:
        events = conn.execute(
            "SELECT source_file, source_line, event_id::text, quality_warnings "
            "FROM ecommerce_events"
        ).fetchall()
        dead = conn.execute(
            "SELECT source_file, source_line, error_codes FROM dead_letter_events "
            "WHERE status = 'open'"
        ).fetchall()
    return (
        {(f, line): (event_id, sorted(warnings or [])) for f, line, event_id, warnings in events},
        {(f, line): codes for f, line, codes in dead},
    )


def expected(files: list[ShopFile]) -> tuple[dict, dict]:
    events, dead = {}, {}
    for file in files:
        for line, truth in file.lines.items():
            if truth["codes"]:
                dead[(file.path.name, line)] = truth["codes"]
            else:
                events[(file.path.name, line)] = (
                    truth["event_id"].lower(),
                    sorted(truth["warnings"]),
                )
    return events, dead


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {check.check_name: check for check in result.get_asset_check_evaluations()}


def test_other_shops_land_with_the_default_contract_and_no_catalogue(
    ingest_settings: Settings, resources: dict[str, object], database_url: str
) -> None:
    files = [
        file
        for seed, shop in enumerate(SHOPS.values())
        for file in write_shop(shop, ingest_settings.input_dir, files=2, rows=350, seed=seed)
    ]
    results = ingest_waiting_files(ingest_settings, resources)
    assert all(result.success for result in results)

    events, dead = stored(database_url)
    expected_events, expected_dead = expected(files)
    assert len(expected_events) + len(expected_dead) == 6 * 350
    assert {code for codes in expected_dead.values() for code in codes} == {
        defect.code for defect in DEFECTS
    }  # every kind of defect was written
    assert dead == expected_dead
    assert events == expected_events
    warned = {code for _, warnings in events.values() for code in warnings}
    assert warned == {"UNEXPECTED_PRICE", "INVALID_USER_SEGMENT"}

    checks = {name: check for result in results for name, check in checks_of(result).items()}
    assert checks["validity_rate"].passed and checks["rows_conserved"].passed
    # the nordic shop's segments are all its own: the warning check says so, without blocking
    assert checks["quality_warnings"].passed is False
    assert checks["quality_warnings"].severity == dg.AssetCheckSeverity.WARN
    assert "INVALID_USER_SEGMENT" in checks["quality_warnings"].metadata["warnings_by_rule"].value

    with psycopg.connect(database_url) as conn:
        extras = conn.execute(
            "SELECT extras->>'page_url', extras->>'consent', geo_city FROM ecommerce_events "
            "WHERE source_file LIKE 'tracker-export-%' ORDER BY source_file, source_line LIMIT 1"
        ).fetchone()
        drift = dict(
            conn.execute("SELECT source_file, unknown_columns FROM data_quality_metrics").fetchall()
        )
        acme = conn.execute(
            "SELECT user_id, price::text, quantity, user_segment, event_time FROM ecommerce_events "
            "WHERE source_file = 'acme_0001.csv' AND event_type = 'view' AND user_id > 0 LIMIT 1"
        ).fetchone()
    assert extras[0].startswith("https://shop.example/p/") and extras[0].endswith("?ref=a,b")
    assert extras[1] in ("granted", "denied")
    assert drift["tracker-export-1.csv"] == ["page_url", "ab_variant", "consent"]
    assert drift["acme_0001.csv"] == [] and drift["dump_01.CSV"] == []
    assert acme[1:3] == ("0.00", 0)  # "0.0" and "0" on a view: no price, kept as written
    assert acme[0] > 0 and acme[3] in ("new", "returning", "vip")


def test_a_strict_product_rule_dead_letters_unknown_products_until_the_catalogue_has_them(
    tmp_path: Path, resources: dict[str, object], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator makes UNKNOWN_PRODUCT an error and loads half of the shop's catalogue: the
    other half's events are dead letters. Loading the rest and replaying the dead letters of
    that code lands them, exactly once, however often the replay runs."""
    contract = tmp_path / "contract.yaml"
    contract.write_text("rules:\n  UNKNOWN_PRODUCT: error\n  INVALID_USER_SEGMENT: 'off'\n")
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    settings = load_settings(
        paths=PathSettings(home=tmp_path, contract_file=contract),
        ingestion=IngestionSettings(file_settle_s=0),
    )
    shop = SHOPS["acme"]
    catalogue = tmp_path / "acme_products.csv"
    write_catalogue(shop, catalogue)
    lines = catalogue.read_text().splitlines()
    half = tmp_path / "acme_half.csv"
    half.write_text("\n".join([line for line in lines if not line.split(",")[0].isdigit()
                               or int(line.split(",")[0]) <= 250]) + "\n")  # fmt: skip
    dg.materialize([database_schema], resources={"postgres": resources["postgres"]})
    with psycopg.connect(database_url) as conn:
        loaded = load_catalogue(conn, half)
    assert (loaded.inserted, loaded.categories) == (250, 3)

    files = write_shop(shop, settings.input_dir, files=2, rows=300, seed=9)
    product_of = {}
    for file in files:
        for number, row in enumerate(_records(file.path), start=1):
            product_of[(file.path.name, number)] = row.get("product_id", "")
    (result,) = ingest_waiting_files(settings, resources)
    # half the rows are dead letters now: the blocking validity check says so, after the commit
    validity = checks_of(result)["validity_rate"]
    assert (validity.passed, validity.severity) == (False, dg.AssetCheckSeverity.ERROR)
    expected_events, expected_dead = expected(files)
    unknown = {key for key in expected_events if product_of[key] and int(product_of[key]) > 250}
    assert len(unknown) > 100
    events, dead = stored(database_url)
    assert set(events) == set(expected_events) - unknown
    order = list(ErrorCode)
    for key, codes in expected_dead.items():  # a defective row of an unknown product has both
        if codes != ["MALFORMED_ROW"] and product_of[key] and int(product_of[key]) > 250:
            expected_dead[key] = sorted(
                [*codes, "UNKNOWN_PRODUCT"], key=lambda code: order.index(ErrorCode(code))
            )
    assert dead == {**expected_dead, **{key: ["UNKNOWN_PRODUCT"] for key in unknown}}
    assert all(not warnings for _, warnings in events.values())  # the segment rule is off

    with psycopg.connect(database_url) as conn:
        assert load_catalogue(conn, catalogue).inserted == 250
        replayed = replay.replay_dead_letters(conn, settings, code="UNKNOWN_PRODUCT")
    both = [key for key, codes in expected_dead.items() if "UNKNOWN_PRODUCT" in codes]
    assert replayed.dead_letters == len(unknown) + len(both)  # those come back without it
    # (its run still fails the blocking check: the hour's validity counts the first dead letters)
    (result,) = ingest_waiting_files(settings, resources)
    assert result.asset_materializations_for_node("ingest_events")[0].metadata[
        "rows_inserted"
    ].value == len(unknown)
    with psycopg.connect(database_url) as conn:
        ids = [row[0] for row in conn.execute("SELECT event_id::text FROM ecommerce_events")]
        open_unknown = conn.execute(
            "SELECT count(*) FROM dead_letter_events WHERE status = 'open' "
            "AND 'UNKNOWN_PRODUCT' = ANY(error_codes)"
        ).fetchone()[0]
    assert len(ids) == len(set(ids)) == len(expected_events)
    assert sorted(ids) == sorted(event_id for event_id, _ in expected_events.values())
    assert open_unknown == 0
    # nothing is left to replay
    with psycopg.connect(database_url) as conn, pytest.raises(replay.ReplayError):
        replay.replay_dead_letters(conn, settings, code="UNKNOWN_PRODUCT")


def _records(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_truth_files_round_trip(tmp_path: Path) -> None:
    """The command line writes the same files and truths as the library (for demos)."""
    from generator.foreign import main

    assert main(["--shop", "legacy", "--files", "1", "--events-per-file", "20",
                 "--output-dir", str(tmp_path / "in"), "--truth-dir", str(tmp_path / "truth"),
                 "--write-catalogue", str(tmp_path / "products.csv")]) == 0  # fmt: skip
    truth = json.loads((tmp_path / "truth" / "dump_01.CSV.json").read_text())
    assert len(truth["lines"]) == 20
    assert (tmp_path / "products.csv").read_text().startswith("product_id,category,price\n")
