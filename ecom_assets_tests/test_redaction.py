"""Secrets never leak: one redaction function, and every output that can carry a URL uses it.

The redaction function itself is tested on a table of texts. Then, for a table of odd and
malformed database URLs with a password, the real `ecom up`, `ecom status` and `ecom health`
processes and the code location's load (its error, or the resource page's data) run with that
URL, and their output and every file they leave are searched for the password, as written and
percent-decoded, and for each part of it around a special character.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, unquote

import dagster as dg
import psycopg
import pytest

from ecom_assets.monitoring.alerts import Alert
from ecom_assets.monitoring.logs import Tee, file_logger
from ecom_assets.monitoring.run_failures import build_run_failure_sensors
from ecom_assets.redaction import MASK, redact, redact_data, redact_url, url_secrets
from ecom_assets.reliability import describe_error
from ecom_assets.resources.postgres import PostgresResource, connect
from ecom_assets.settings import Settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import free_port

# ------------------------------------------------------------------------- the function


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ("postgresql://u:Zq1xKw1v@h:5432/db", ["Zq1xKw1v"]),
        ("postgres://u:Zq2x@Kw2v@h/db", ["Zq2x@Kw2v"]),  # a raw '@' in the password
        ("postgresql://u:Zq3x/Kw3v@h/db", ["Zq3x", "Kw3v"]),  # a raw '/': no URL parser agrees
        ("postgresql://u:Zq4x#Kw4v@h/db", ["Zq4x", "Kw4v"]),
        ("postgresql://u:Zq5x?Kw5v@h/db", ["Zq5x", "Kw5v"]),
        ("connecting to postgresql://u:Zq6x Kw6v@h/db failed", ["Zq6x", "Kw6v"]),  # a space
        ("postgresql://u:Zq7x%40Kw7v@h/db", ["Zq7x%40Kw7v"]),
        ("postgresql://:Zq8xKw8v@h/db", ["Zq8xKw8v"]),
        ("postgresql://Zq9xKw9v@h/db", ["Zq9xKw9v"]),  # a token as the user: all userinfo
        ("postgresql://u:pässwörd10@h/db", ["pässwörd10"]),
        ("postgresql://u@h/db?password=Zq11xKw11v&sslmode=require", ["Zq11xKw11v"]),
        ("postgresql://u:Zq12x@h/db?sslpassword=Kw12v", ["Zq12x", "Kw12v"]),
        ("postgresql+psycopg://u:Zq13xKw13v@h/db", ["Zq13xKw13v"]),
        ("jdbc:postgresql://u:Zq14xKw14v@h/db", ["Zq14xKw14v"]),
        ("mysql://u:Zq15xKw15v@h/db", ["Zq15xKw15v"]),
        ('missing "=" after "postgres://u:Zq16xKw16v@[::1" in connection', ["Zq16xKw16v"]),
        ("host=h port=5432 password=Zq17xKw17v user=u", ["Zq17xKw17v"]),
        ("host=h password='Zq18x Kw18v' user=u", ["Zq18x", "Kw18v"]),
        ("sc://spark:15002/;token=Zq19xKw19v;use_ssl=true", ["Zq19xKw19v"]),
        ("ECOM_SPARK_TOKEN=Zq20xKw20v", ["Zq20xKw20v"]),
        ("https://Zq21xKw21v@hooks.example/x?token=Kw21vZq21x", ["Zq21xKw21v", "Kw21vZq21x"]),
        ('{"password": "Zq22x Kw22v", "user": "u"}', ["Zq22x", "Kw22v"]),
        ("Authorization: Bearer Zq23xKw23vAbCd", ["Zq23xKw23vAbCd"]),
        ("two: postgresql://a:Zq24x@h1/d and postgresql://b:Kw24v@h2/d", ["Zq24x", "Kw24v"]),
        ("line one\npostgresql://u:Zq25xKw25v@h/db\nline three", ["Zq25xKw25v"]),
    ],
)
def test_redact_removes_every_secret(text: str, secrets: list[str]) -> None:
    redacted = redact(text)
    assert MASK in redacted
    for secret in secrets:
        assert secret not in redacted
        assert unquote(secret) not in redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://ecom:pw@db.example:5432/ecom", "postgresql://ecom:***@db.example:5432/ecom"),
        ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://***@h/db?password=***&sslmode=require"),
        ("sc://h:15002/;token=t;use_ssl=true", "sc://h:15002/;token=***;use_ssl=true"),
        ("host=h password='p w' user=u", "host=h password=*** user=u"),
    ],
)  # fmt: skip
def test_redact_keeps_what_is_not_secret(text: str, expected: str) -> None:
    """The user stays when a password follows; a lone user may be a token and goes."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused',
        'password authentication failed for user "ecom"',
        "fe_sendauth: no password supplied",
        "partition 2026-01-29-10:00 validity 91.2% < 95.0% (3 consecutive batches)",
        "Spark Connect sc://localhost:15002",
        "http://127.0.0.1:3000",
        "postgresql://h/db",
        "",
    ],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@hooks.example.com/services/T/B/X?x=1#f", "https://hooks.example.com/…"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("postgresql://u:P@W@h:5432/db", "postgresql://h:5432/…"),
        ("postgres://u:PW@[::1", "postgres://…"),
        ("postgresql://u:PW@h:notaport/db", "postgresql://…"),
        ("sc://h:15002/;token=T", "sc://h:15002/…"),
        ("not a url PW", MASK),
    ],
)
def test_redact_url_shows_where_a_url_points_only(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_known_secrets_are_masked_where_no_pattern_sees_them() -> None:
    url = "postgresql://u:Zq1x%25Kw1v@h/db?sslpassword=Kw2vZq2x"
    assert set(url_secrets(url)) == {"Zq1x%25Kw1v", "Zq1x%Kw1v", "Kw2vZq2x"}
    assert redact('bad token "Zq1x%Kw1v" and Kw2vZq2x', url_secrets(url)) == (
        f'bad token "{MASK}" and {MASK}'
    )
    nested = {"reason": ["postgresql://u:Zq3x@h/db", ("token=Kw3v", 3)], "n": 1}
    assert redact_data(nested) == {
        "reason": [f"postgresql://u:{MASK}@h/db", (f"token={MASK}", 3)],
        "n": 1,
    }


# ------------------------------------------------------------- the outputs, in process


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("mysql://u:Zq1xKw1v@127.0.0.1:1/db", "Zq1xKw1v"),  # libpq quotes it whole
        ("postgres://u:Zq2xKw2v@[::1", "Zq2xKw2v"),
        ("postgresql://u:Zq3x%ZZKw3v@127.0.0.1:1/db", "Zq3x%ZZKw3v"),  # quotes the fragment
        ("postgresql://u:Zq4x Kw4v@127.0.0.1:1/db", "Zq4x Kw4v"),
        ("postgresql://u:Zq5x%40Kw5v@127.0.0.1:1/db", "Zq5x@Kw5v"),  # a connection failure
    ],
)
def test_a_failed_connection_never_words_its_password(url: str, secret: str) -> None:
    with pytest.raises(psycopg.Error) as error:
        connect(url, connect_timeout=2)
    assert secret not in str(error.value)
    assert secret not in describe_error(error.value)
    assert error.value.__suppress_context__  # the original, with the URL, is not chained
    with pytest.raises(psycopg.Error) as error, PostgresResource(url=url).connection():
        pass
    assert secret not in str(error.value)


def test_log_files_and_the_run_log_are_redacted(tmp_path: Path) -> None:
    secret = "Zq1x@Kw1v"  # noqa: S105 - a fake password to look for
    url = f"postgresql://u:{secret}@127.0.0.1:1/db"
    run_log: list[str] = []

    class RunLog:
        info = warning = error = run_log.append

    logger = file_logger("ecom.test_redaction", tmp_path, "redaction")
    try:
        raise ValueError(f"cannot use {url}")
    except ValueError:
        logger.exception("failed with %s", url)  # in the message, its args and the traceback
    Tee(logger, RunLog()).warning(f"retrying {url}")
    for handler in logger.handlers:
        handler.close()
    (written,) = tmp_path.glob("redaction_*.log")
    text = written.read_text()
    assert "ValueError: cannot use postgresql://u:***@127.0.0.1:1/db" in text
    assert text.count("postgresql://u:***@") == 3
    assert run_log == ["retrying postgresql://u:***@127.0.0.1:1/db"]
    assert "Zq1x" not in text + "".join(run_log)
    assert not logging.getLogger("ecom.test_redaction").propagate


def test_alerts_are_stored_logged_and_posted_redacted() -> None:
    alert = Alert(
        kind="run_failure",
        level="ERROR",
        message="run failed: postgresql://u:Zq1xKw1v@h/db",
        details={"reason": "password=Zq2xKw2v", "nested": {"url": "sc://h/;token=Zq3xKw3v"}},
    )
    payload = str(alert.as_dict())
    for secret in ("Zq1xKw1v", "Zq2xKw2v", "Zq3xKw3v"):
        assert secret not in payload


# ------------------------------------------------------------------ the real processes

SPECIALS = "@/#? "


def _url_table() -> list[tuple[str, str, bool]]:
    """(ECOM_DATABASE_URL, its password as the server would see it, accepted by the settings)."""
    port = free_port()  # nothing listens: every connection is refused at once
    rows = [
        ("postgresql://u:Zq1xKw1v@127.0.0.1:notaport/db", "Zq1xKw1v", False),
        ("postgres://u:Zq2xKw2v@[::1", "Zq2xKw2v", False),
        (f"mysql://u:Zq3xKw3v@127.0.0.1:{port}/db", "Zq3xKw3v", False),
        (f"postgresql+psycopg://u:Zq4xKw4v@127.0.0.1:{port}/db", "Zq4xKw4v", False),
        (f"host=127.0.0.1 port={port} password=Zq5xKw5v", "Zq5xKw5v", False),
        (f"postgresql://u:Zq6x%ZZKw6v@127.0.0.1:{port}/db", "Zq6x%ZZKw6v", False),
        *(
            (
                f"postgresql://u:Zq{n}x{special}Kw{n}v@127.0.0.1:{port}/db",
                f"Zq{n}x{special}Kw{n}v",
                False,
            )
            for n, special in enumerate(SPECIALS, start=7)
        ),
        ("postgresql://u:Zq20xKw20v@/db?host=/nonexistent", "Zq20xKw20v", True),
        (f"postgresql://u:Zq21x%40Kw21v@127.0.0.1:{port}/db", "Zq21x@Kw21v", True),
        (f"postgresql://:Zq22xKw22v@127.0.0.1:{port}/db", "Zq22xKw22v", True),
        (f"postgresql://u:Zq23xKw23v@127.0.0.1:{port}/db?password=Zq23xKw23v", "Zq23xKw23v", True),
        (f"postgresql://u:Zq24x%2F%23%3F%20Kw24v@127.0.0.1:{port}/db", "Zq24x/#? Kw24v", True),
        (f"postgresql://u:Zq25xpässwördKw25v@127.0.0.1:{port}/db", "Zq25xpässwördKw25v", True),
        (f"postgresql://u@127.0.0.1:{port}/db?sslpassword=Zq26xKw26v", "Zq26xKw26v", True),
    ]
    return rows


URLS = _url_table()

LOAD_CODE_LOCATION = """
import sys
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
try:
    from ecom_assets.definitions import defs
except Exception:  # what the UI shows as the code location's error
    print(serializable_error_info_from_exc_info(sys.exc_info()).to_string())
    sys.exit(3)
print(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))  # the resource page
"""


def forms(secret: str) -> set[str]:
    """The password, decoded and encoded, and each part of it around a special character."""
    parts = {part for part in re.split(r"[@/#? %]", secret) if len(part) >= 4}
    return {secret, unquote(secret), quote(secret, safe=""), *parts}


def leaks(text: str, secret: str) -> list[str]:
    return sorted(form for form in forms(secret) if form in text)


def run(home: Path, url: str, *command: str) -> subprocess.CompletedProcess[str]:
    env = isolated_environment(home)
    env["ECOM_DATABASE_URL"] = url
    env["ECOM_GENERATOR_ENABLED"] = "false"
    return subprocess.run(
        [sys.executable, *command], env=env, cwd=home, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("url", "secret", "accepted"), URLS, ids=[row[1] for row in URLS])
def test_no_output_of_the_platform_carries_the_password(
    tmp_path: Path, url: str, secret: str, accepted: bool
) -> None:
    ecom = ("-m", "ecom_assets.cli")
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    if accepted:  # `up` fails at PostgreSQL, after opening its log: `status` then shows why
        results["up"] = run(tmp_path, url, *ecom, "up")
    commands = {
        "status": (*ecom, "status"),
        "health": (*ecom, "health"),
        "code location": ("-c", LOAD_CODE_LOCATION),
    }
    if accepted:  # a refused URL stops every command at the same settings error
        commands["status --json"] = (*ecom, "status", "--json")
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {name: pool.submit(run, tmp_path, url, *cmd) for name, cmd in commands.items()}
        results.update({name: future.result() for name, future in futures.items()})

    for name, result in results.items():
        assert not leaks(result.stdout + result.stderr, secret), name
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    for path in files:
        assert not leaks(path.read_bytes().decode(errors="replace"), secret), path

    status, health, location = results["status"], results["health"], results["code location"]
    if not accepted:  # refused by the settings, by name
        for result in (status, health):
            assert result.returncode == 2
            assert "ECOM_DATABASE_URL (value not shown" in result.stderr
        assert location.returncode == 3
        assert "SettingsError" in location.stdout
        assert "ECOM_DATABASE_URL (value not shown" in location.stdout
        return
    assert results["up"].returncode == 1
    assert "[up] postgresql failed to start" in results["up"].stdout
    assert any(path.name.startswith("stack_") for path in files)  # the stack log was searched
    assert status.returncode == 1
    assert re.search(r"^postgresql +DOWN", status.stdout, re.M)
    assert health.returncode == 1
    assert health.stderr.startswith("[health] cannot read the pipeline's health")
    assert location.returncode == 0, location.stdout
    assert '"name": "ECOM_DATABASE_URL"' in location.stdout  # the page names the variable


# --------------------------------------------------- the failure sensor and stored alerts


@pytest.mark.integration
def test_the_failure_sensor_and_its_alert_never_repeat_a_password(
    migrated_database_url: str, ingest_settings: Settings, tmp_path: Path
) -> None:
    """A step fails with libpq's own error quoting a URL; the failure sensor words it into an
    alert, stored, logged and shown by `ecom health`, and once more with PostgreSQL down."""
    secret = "Zq1xKw1v"  # noqa: S105 - a fake password to look for
    bad = f"mysql://u:{secret}@127.0.0.1:1/db"

    @dg.asset
    def connects() -> None:
        psycopg.connect(bad)  # libpq: missing "=" after "mysql://u:…@127.0.0.1:1/db"

    job = dg.define_asset_job("ingest_job", selection=[connects])
    instance = dg.DagsterInstance.ephemeral()
    result = (
        dg.Definitions(assets=[connects], jobs=[job])
        .resolve_job_def("ingest_job")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not result.success
    step_error = result.get_step_failure_events()[0].step_failure_data.error
    assert secret in step_error.to_string()  # the fault is real: the driver quotes the URL

    failure_sensor, _ = build_run_failure_sensors(job, ingest_settings)  # type: ignore[arg-type]
    refused = f"postgresql://u:Kw2vZq2x@127.0.0.1:{free_port()}/db"
    for database in (migrated_database_url, refused):
        context = dg.build_run_status_sensor_context(
            sensor_name=failure_sensor.name,
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"postgres": PostgresResource(url=database)},
        )
        failure_sensor(context.for_run_failure())

    (log,) = ingest_settings.log_dir.glob("ingest_*.log")
    logged = log.read_text()
    assert logged.count("ALERT [run_failure]") == 2  # stored once, then logged with PG down
    assert "mysql://u:***@127.0.0.1:1/db" in logged
    with psycopg.connect(migrated_database_url) as conn:
        stored = conn.execute("SELECT message, details::text FROM alerts").fetchall()
    (tmp_path / "health").mkdir()
    health = run(tmp_path / "health", migrated_database_url, "-m", "ecom_assets.cli", "health")
    assert re.search(r"^  WARNING +run_failure +ingest_job run ", health.stdout, re.M)
    assert "mysql://u:***@127.0.0.1:1/db" in health.stdout
    for text in (logged, str(stored), health.stdout + health.stderr):
        assert not leaks(text, secret)
        assert not leaks(text, "Kw2vZq2x")


RESOLVE_RESOURCE = """
import dagster as dg
from ecom_assets.definitions import defs
from ecom_assets.settings import load_settings
with dg.build_resources({"postgres": defs.resources["postgres"]}) as built:
    url = built.postgres.url
    print("embedded" if url is None else url == load_settings().database.database_url)
"""


@pytest.mark.parametrize(
    ("where", "expected"), [("env", "True"), ("env file", "True"), (None, "embedded")]
)
def test_the_resource_resolves_its_env_var_wherever_the_url_is_set(
    tmp_path: Path, where: str | None, expected: str
) -> None:
    url = "postgresql://u:Zq1xKw1v@127.0.0.1:1/db"
    env = isolated_environment(tmp_path)
    if where == "env":
        env["ECOM_DATABASE_URL"] = url
    elif where == "env file":  # not in the environment: the code location exports it
        (tmp_path / "absent.env").write_text(f"ECOM_DATABASE_URL={url}\n")
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_RESOURCE],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout.strip() == expected, result.stderr[-2000:]
