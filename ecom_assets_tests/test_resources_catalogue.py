"""The reference catalogue on a real PostgreSQL: loads are atomic, idempotent and reported; a
batch reads it back as the rules use it; the `ecom catalog` and `ecom contract` commands."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from ecom_assets import cli
from ecom_assets.resources.catalogue import (
    CatalogueError,
    load_catalogue,
    parse_catalogue,
    read_catalogue,
)
from ecom_assets.schema.contract_file import DEFAULT_CONTRACT_FILE
from generator.catalog import CATEGORY_OF, demo_catalogue, write_catalogue

pytestmark = pytest.mark.integration

CSV = (
    "\ufeffProduct_ID, Category ,name,price\n"
    "1,Garden Tools,Spade,12.5\n"
    "2, kitchen ,,\n"
    "3.0,kitchen,Pan,30\n"
    "\n"
)


def test_a_catalogue_loads_once_and_reports_what_changed(
    migrated_database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    path.write_text(CSV, encoding="utf-8")
    with psycopg.connect(migrated_database_url) as conn:
        assert read_catalogue(conn) is None  # nothing loaded: the catalogue rules do not apply
        first = load_catalogue(conn, path)
        loaded = read_catalogue(conn)
        assert loaded is not None and loaded.category_of(pa.array([3, 9])).to_pylist() == [
            "kitchen", None
        ]  # fmt: skip
        again = load_catalogue(conn, path)
        assert read_catalogue(conn) is loaded  # unchanged: not read again
        path.write_text(CSV.replace("Pan,30", "Pan,35") + "4,toys,,\n", encoding="utf-8")
        changed = load_catalogue(conn, path)
        path.write_text("product_id,category\n4,toys\n", encoding="utf-8")
        replaced = load_catalogue(conn, path, replace=True)
        reread = read_catalogue(conn)
        assert reread is not None and reread.product_ids.to_pylist() == [4]
        rows = conn.execute("SELECT product_id, category, name, price FROM products").fetchall()
    assert (first.inserted, first.updated, first.unchanged, first.categories) == (3, 0, 0, 2)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert (changed.inserted, changed.updated, changed.unchanged) == (1, 1, 2)
    assert changed.summary() == "1 inserted, 1 updated, 2 unchanged; 3 categories"
    assert (replaced.removed, replaced.unchanged, replaced.categories) == (3, 1, 1)
    assert rows == [(4, "toys", None, None)]


def test_a_bad_file_loads_nothing_and_names_every_bad_line(
    migrated_database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    path.write_text(
        "product_id,category,price\n1,a,1\nx,a,1\n0,a,1\n2,,1\n3,b,abc\n1,b,1\n4,c\n5,c,-1\n"
    )
    with psycopg.connect(migrated_database_url) as conn:
        with pytest.raises(CatalogueError) as error:
            load_catalogue(conn, path)
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
    message = str(error.value)
    assert "7 bad line(s), nothing loaded" in message
    for expected in ("line 3: product_id 'x'", "line 4: product_id '0'", "line 5: blank category",
                     "line 6: price 'abc'", "line 7: product 1 differs from line 2",
                     "line 8: 2 fields", "line 9: price '-1' is out of range"):  # fmt: skip
        assert expected in message
    with pytest.raises(CatalogueError, match="the header needs the columns product_id, category"):
        parse_catalogue("id,category\n1,a\n", "f.csv")
    with pytest.raises(CatalogueError, match="no products"):
        parse_catalogue("product_id,category\n", "f.csv")


def test_the_demo_catalogue_round_trips(migrated_database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "demo.csv"
    assert write_catalogue(path) == len(CATEGORY_OF) == 12_000
    with psycopg.connect(migrated_database_url) as conn:
        assert load_catalogue(conn, path).inserted == 12_000
        loaded = read_catalogue(conn)
    assert loaded is not None
    assert loaded.product_ids.equals(demo_catalogue().product_ids)
    assert loaded.categories.equals(demo_catalogue().categories)


@pytest.fixture
def cli_env(migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The `ecom` command's settings: the test database, nothing from outside."""
    for name in list(os.environ):
        if name.startswith("ECOM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("ECOM_HOME", str(tmp_path))
    monkeypatch.setenv("ECOM_DATABASE_URL", migrated_database_url)
    return tmp_path


def test_ecom_catalog_load(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli_env / "p.csv").write_text(CSV, encoding="utf-8")
    assert cli.main(["catalog", "load", str(cli_env / "p.csv")]) == 0
    assert "3 inserted, 0 updated, 0 unchanged; 2 categories" in capsys.readouterr().out
    (cli_env / "bad.csv").write_text("product_id,category\nx,a\n", encoding="utf-8")
    assert cli.main(["catalog", "load", str(cli_env / "bad.csv")]) == 2
    assert "line 2: product_id 'x'" in capsys.readouterr().err
    assert cli.main(["catalog", "clear"]) == 0
    assert "3 products removed" in capsys.readouterr().out
    with psycopg.connect(os.environ["ECOM_DATABASE_URL"]) as conn:
        assert read_catalogue(conn) is None


def test_ecom_contract_check_and_show(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = cli_env / "good.yaml"
    good.write_text("user_segments: any\nrules:\n  UNKNOWN_PRODUCT: error\n")
    assert cli.main(["contract", "check", str(good)]) == 0
    assert "valid; 6 event types, rules: 23 error, 5 warn, 0 off" in capsys.readouterr().out
    bad = cli_env / "bad.yaml"
    bad.write_text("rules:\n  UNKNOWN_PRODUCT: sometimes\n")
    assert cli.main(["contract", "check", str(bad)]) == 2
    assert f"{bad}:2: UNKNOWN_PRODUCT: severity must be" in capsys.readouterr().err
    assert cli.main(["contract", "show"]) == 0
    shown = capsys.readouterr().out
    assert f"Contract: `{DEFAULT_CONTRACT_FILE}`" in shown and "| UNKNOWN_PRODUCT | warn |" in shown
    monkeypatch.setenv("ECOM_CONTRACT_FILE", str(good))
    assert cli.main(["contract", "show"]) == 0
    shown = capsys.readouterr().out
    assert "user segments: any" in shown and "| UNKNOWN_PRODUCT | error |" in shown


def test_ecom_up_refuses_a_bad_contract_before_starting_anything(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = cli_env / "bad.yaml"
    bad.write_text("rules:\n  MISSING_EVENT_ID: warn\n")
    monkeypatch.setenv("ECOM_CONTRACT_FILE", str(bad))
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert f"the event contract cannot be used: {bad}:2: MISSING_EVENT_ID can only be" in err
    assert not (cli_env / ".ecom" / "stack.json").exists()  # nothing was started
