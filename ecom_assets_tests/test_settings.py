"""Settings: defaults, clear errors naming the variable and its range, and the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecom_assets.settings import SettingsError, load_settings, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, *_ in settings_table():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))


def test_defaults_match_the_documented_platform() -> None:
    settings = load_settings()
    assert settings.database.embedded is True
    assert settings.spark.managed is True
    assert settings.spark.connect_url == "sc://localhost:15002"  # the token travels to it
    assert settings.quality.min_validity == 0.95
    assert settings.quality.max_error_share == 0.10
    assert settings.generator.events_per_file == 100
    assert settings.generator.interval_s == 5.0
    assert settings.generator.anomaly_rate == 0.02
    assert settings.reliability.breaker_failure_threshold == 5
    assert settings.reliability.breaker_reset_timeout_s == 30.0
    assert settings.monitoring.latency_s == 10.0
    assert settings.dagster.host == "127.0.0.1"


def test_paths_resolve_under_home_and_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ECOM_HOME", str(tmp_path))
    monkeypatch.setenv("ECOM_INGEST_QUARANTINE_DIR", "/var/tmp/q")
    settings = load_settings()
    assert settings.input_dir == tmp_path / "data" / "input"
    assert settings.processed_dir == tmp_path / "data" / "processed"
    assert settings.quarantine_dir == Path("/var/tmp/q")
    assert settings.paths.state == tmp_path / ".ecom"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ECOM_QUALITY_MIN_VALIDITY", "1.5", "ECOM_QUALITY_MIN_VALIDITY='1.5'"),
        ("ECOM_QUALITY_MIN_VALIDITY", "1.5", "allowed: >= 0, <= 1"),
        ("ECOM_INGEST_SENSOR_INTERVAL_S", "0", "allowed: >= 1, <= 3600"),
        ("ECOM_PG_PORT", "80", "ECOM_PG_PORT='80'"),
        ("ECOM_SPARK_DRIVER_MEMORY", "lots", "matching"),
        ("ECOM_SPARK_REMOTE", "http://x:1", "must be a Spark Connect URL"),
        ("ECOM_DATABASE_URL", "mysql://x", "must be a postgresql:// or postgres:// URL"),
        ("ECOM_DATABASE_URL", "mysql://x", "ECOM_DATABASE_URL (value not shown"),
        ("ECOM_GENERATOR_SCHEMA_VERSION", "v9", "ECOM_GENERATOR_SCHEMA_VERSION='v9'"),
        ("ECOM_ALERT_WEBHOOK_URL", "ftp://x", "http:// or https://"),
        ("ECOM_DAGSTER_ANALYTICS_CRON", "every hour", "cron expression"),
        ("ECOM_RETRY_ATTEMPTS", "many", "ECOM_RETRY_ATTEMPTS='many'"),
    ],
)
def test_bad_value_names_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert expected in str(error.value)


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_PG_PORT", "1")
    monkeypatch.setenv("ECOM_GENERATOR_ANOMALY_RATE", "2")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "ECOM_PG_PORT" in str(error.value)
    assert "ECOM_GENERATOR_ANOMALY_RATE" in str(error.value)


def test_blocking_threshold_cannot_exceed_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_QUALITY_MIN_VALIDITY", "0.9")
    monkeypatch.setenv("ECOM_QUALITY_BLOCKING_VALIDITY", "0.95")
    with pytest.raises(SettingsError, match="must not exceed ECOM_QUALITY_MIN_VALIDITY"):
        load_settings()


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("ECOM_GENERATOR_EVENTS_PER_FILE=250\nECOM_SPARK_MODE=classic\n")
    monkeypatch.setenv("ECOM_ENV_FILE", str(env_file))
    settings = load_settings()
    assert settings.generator.events_per_file == 250
    assert settings.spark.mode == "classic"
    assert settings.spark.managed is False


def test_settings_that_became_contract_parameters_say_where_they_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECOM_QUALITY_MAX_PRICE", "50000")
    monkeypatch.setenv("ECOM_QUALITY_FUTURE_TOLERANCE_S", "60")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "ECOM_QUALITY_MAX_PRICE is now rules.EXTREME_PRICE.max_price" in str(error.value)
    assert "ECOM_QUALITY_FUTURE_TOLERANCE_S is now rules.FUTURE_EVENT_TIME" in str(error.value)


def test_a_moved_setting_in_the_env_file_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ECOM_QUALITY_MAX_QUANTITY=7\n")
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / ".env"))
    with pytest.raises(SettingsError, match=r"ECOM_QUALITY_MAX_QUANTITY is now rules\.INVALID_Q"):
        load_settings()


def test_the_contract_file_resolves_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ECOM_HOME", str(tmp_path))
    assert load_settings().paths.contract is None  # the shipped default
    monkeypatch.setenv("ECOM_CONTRACT_FILE", "conf/shop.yaml")
    assert load_settings().paths.contract == tmp_path / "conf" / "shop.yaml"


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    missing = [name for name, *_ in settings_table() if f"`{name}`" not in readme]
    assert missing == []


def test_max_file_mb_defaults_to_a_worker_sized_limit_and_refuses_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().ingestion.max_file_mb == 64
    monkeypatch.setenv("ECOM_INGEST_MAX_FILE_MB", "0")
    with pytest.raises(SettingsError, match=r"ECOM_INGEST_MAX_FILE_MB='0'.*allowed: >= 1"):
        load_settings()
    monkeypatch.setenv("ECOM_INGEST_MAX_FILE_MB", "2048")
    assert load_settings().ingestion.max_file_mb == 2048


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ecom:pw@db.example:5432/ecom",
        "postgres://ecom:pw@db.example/ecom",
        "postgresql://ecom:p%40ss%2Fw%23rd%3F%20x@db.example/ecom",  # every special char encoded
        "postgresql://ecom:pässwörd@db.example/ecom",  # libpq takes raw UTF-8
        "postgresql://:pw@db.example/ecom",
        "postgresql://ecom@/ecom?host=/var/run/postgresql",
        "postgresql://ecom:pw@[::1]:5432/ecom",
        "postgresql://ecom:pw@h1:5432,h2:5433/ecom?target_session_attrs=read-write",
        "postgresql://ecom@db.example/ecom?password=pw&sslmode=require",
    ],
)
def test_plain_libpq_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ECOM_DATABASE_URL", url)
    assert load_settings().database.database_url == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://u:PW@h/db", "no +driver"),
        ("mysql://u:PW@h/db", "must be a postgresql:// or postgres:// URL"),
        ("host=h password=PW", "must be a postgresql:// or postgres:// URL"),
        ("postgresql://u:P W@h/db", "spaces"),
        ("postgresql://u:P%ZZW@h/db", "not a %XX escape"),
        ("postgresql://u:P#W@h/db", "'#'"),
        ("postgresql://u:P@W@h/db", "unencoded '@'"),
        ("postgresql://u:12/W@h/db", "unencoded '@'"),
        ("postgresql://u:12?W@h/db", "unencoded '@'"),
        ("postgresql://u:P/W@h/db", "unencoded '@'"),
        ("postgresql://u:P?W@h/db", "unencoded '@'"),
        ("postgresql://u:PW@h:notaport/db", "port that is not a number"),
        ("postgres://u:PW@[::1", "unclosed '['"),
        ("postgresql://u:PW@h/db?PW", "without '='"),
    ],
)
def test_other_database_urls_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    for variable in ("ECOM_DATABASE_URL", "ECOM_DAGSTER_DATABASE_URL"):
        monkeypatch.setenv(variable, url)
        with pytest.raises(SettingsError) as error:
            load_settings()
        message = str(error.value)
        assert f"{variable} (value not shown" in message
        assert expected in message
        assert "PW" not in message and "P W" not in message
        monkeypatch.delenv(variable)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ECOM_SPARK_REMOTE", "grpc://u:PW@h:15002/;token=PW"),
        ("ECOM_ALERT_WEBHOOK_URL", "ftp://u:PW@hooks.example/PW"),
    ],
)
def test_settings_that_may_hold_a_secret_are_named_not_echoed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert f"{variable} (value not shown" in str(error.value)
    assert "PW" not in str(error.value)


def test_an_echoed_value_is_redacted_and_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_SPARK_DRIVER_MEMORY", "postgresql://u:PW@h/db")
    monkeypatch.setenv("ECOM_GENERATOR_SCHEMA_VERSION", "v" * 500)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "ECOM_SPARK_DRIVER_MEMORY='postgresql://u:***@h/db'" in message
    assert "PW" not in message
    assert f"ECOM_GENERATOR_SCHEMA_VERSION='{'v' * 79}…" in message
