"""Every setting of the platform, typed and validated, read from ``ECOM_*`` env vars and ``.env``.

Settings are grouped by concern; each group reads variables with its own prefix so the name a
user sets is the name the error message and the README table show. ``load_settings`` turns
pydantic's errors into one ``SettingsError`` that names the variable and its allowed range, so a
bad value fails at start instead of deep inside a Spark job.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecom_assets.redaction import redact

SchemaChoice = Literal["v1", "v2", "v3", "mixed"]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )


class PathSettings(BaseSettings):
    """Where the project keeps its data and its local services' state."""

    model_config = _config("ECOM_")

    home: Path = Field(Path("."), description="Project root; relative paths below resolve from it.")
    data_dir: Path = Field(Path("data"), description="Root of input, processed, quarantine, logs.")
    state_dir: Path = Field(
        Path(".ecom"), description="Local services' state: PostgreSQL data, DAGSTER_HOME, pids."
    )
    contract_file: Path | None = Field(
        None,
        description="The event contract (YAML, docs/contract.md); unset: the shipped default, "
        "ecom_assets/schema/default_contract.yaml.",
    )

    def resolve(self, path: Path) -> Path:
        base = self.home.expanduser().resolve()
        path = path.expanduser()
        return path if path.is_absolute() else base / path

    @cached_property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    @cached_property
    def data(self) -> Path:
        return self.resolve(self.data_dir)

    @cached_property
    def state(self) -> Path:
        return self.resolve(self.state_dir)

    @cached_property
    def contract(self) -> Path | None:
        """The operator's contract file, resolved from the project root; None: the default."""
        return None if self.contract_file is None else self.resolve(self.contract_file)


POSTGRES_URL_SCHEMES = ("postgresql://", "postgres://")
_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def postgres_url_problem(url: str) -> str | None:
    """Why `url` is not a plain libpq URL, or None. The answer never quotes the URL.

    psycopg hands the URL to libpq, which knows no `postgresql+driver://` scheme, and Dagster's
    storage reads the same URL through SQLAlchemy; a raw `@ / ? #` or space in the password
    makes the two split it differently, and libpq then quotes the fragment it choked on (part
    of the password) in its error. Refusing such URLs here keeps them out of every message.
    """
    if not url.startswith(POSTGRES_URL_SCHEMES):
        return "must be a postgresql:// or postgres:// URL (psycopg/libpq form, no +driver)"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "must not contain spaces or control characters (percent-encode them: %20)"
    if _PERCENT_ESCAPE.search(url):
        return "has a '%' that is not a %XX escape (write a literal % as %25)"
    if "#" in url:
        return "must not contain '#' (percent-encode it in the password: %23)"
    rest = url.split("://", 1)[1]
    cut = re.search(r"[/?]", rest)
    authority, tail = (rest[: cut.start()], rest[cut.start() :]) if cut else (rest, "")
    path, _, query = tail.partition("?")
    if authority.count("@") > 1 or "@" in path or ("@" in query and "@" not in authority):
        return "has an unencoded '@', '/' or '?' in the user or password (use %40, %2F, %3F)"
    host_port = authority.rpartition("@")[2]
    if host_port.startswith("["):
        if "]" not in host_port:
            return "has an unclosed '[' in an IPv6 host"
        host_port = host_port.rpartition("]")[2]
    ports = [hp.rpartition(":")[2] for hp in host_port.split(",") if ":" in hp]
    if any(not port.isdigit() for port in ports):
        return "has a port that is not a number (percent-encode ':' '?' in the password)"
    if any(item and "=" not in item for item in query.split("&")):
        return "has a query parameter without '=' (percent-encode '?' in the password: %3F)"
    return None


class DatabaseSettings(BaseSettings):
    """PostgreSQL: an external server by URL, or the embedded one when the URL is unset."""

    model_config = _config("ECOM_")

    database_url: str | None = Field(
        None,
        description="postgresql://user:pass@host:port/db of an external server (percent-encode "
        "`@ / ? # %` and spaces in user and password); unset = embedded.",
    )
    dagster_database_url: str | None = Field(
        None,
        description="Database for Dagster's run/event storage; unset = embedded `dagster` database "
        "or ECOM_DATABASE_URL.",
    )
    pg_port: int = Field(55432, ge=1024, le=65535, description="TCP port of the embedded server.")
    pg_bin_dir: Path | None = Field(
        None,
        description="Directory with initdb/pg_ctl; unset = found on PATH or in the usual places.",
    )
    db_connect_timeout_s: int = Field(10, ge=1, le=300, description="Connection timeout, seconds.")

    @field_validator("database_url", "dagster_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        problem = postgres_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None


class SparkSettings(BaseSettings):
    """Spark: a Spark Connect endpoint, the local Connect server, or a classic master."""

    model_config = _config("ECOM_SPARK_")

    remote: str | None = Field(
        None,
        description="Spark Connect URL (sc://host:port) of a cluster; unset = local server. "
        "Add `/;use_ssl=true` for TLS without a token; no `token=` here (ECOM_SPARK_TOKEN).",
    )
    token: SecretStr | None = Field(
        None,
        description="Token the remote server (ECOM_SPARK_REMOTE) requires; pyspark then uses TLS "
        "(unless the host is localhost). The local server's is generated: "
        "`<ECOM_STATE_DIR>/spark-connect.token`.",
    )
    mode: Literal["connect", "classic"] = Field(
        "connect", description="connect = Spark Connect session; classic = in-process SparkSession."
    )
    master: str = Field("local[2]", description="Master URL when mode=classic.")
    connect_port: int = Field(15002, ge=1024, le=65535, description="Port of the local server.")
    driver_memory: str = Field("1g", pattern=r"^\d+[kmgKMG]$", description="Local driver memory.")
    shuffle_partitions: int = Field(4, ge=1, le=10_000, description="spark.sql.shuffle.partitions.")
    startup_timeout_s: int = Field(120, ge=5, le=900, description="Wait for the local server.")

    @field_validator("remote")
    @classmethod
    def _connect_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("sc://"):
            raise ValueError("must be a Spark Connect URL such as sc://host:15002")
        parameters = value.partition("/;")[2].split(";")
        if any(p.partition("=")[0].strip().lower() == "token" for p in parameters):
            # the URL is shown (ecom status, the UI's resource page): the token goes apart
            raise ValueError("must not carry a token: set ECOM_SPARK_TOKEN instead")
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _no_empty_token(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def managed(self) -> bool:
        """True when the platform starts and owns the Spark Connect server."""
        return self.mode == "connect" and self.remote is None

    @property
    def connect_url(self) -> str:
        """The remote's URL or the local server's: ``localhost``, not 127.0.0.1, for pyspark
        sends a token over grpc's local (loopback) channel only to a host of that name."""
        return self.remote or f"sc://localhost:{self.connect_port}"


class DagsterSettings(BaseSettings):
    """The Dagster webserver of `ecom up` and the run queue it coordinates."""

    model_config = _config("ECOM_DAGSTER_")

    host: str = Field("127.0.0.1", description="Webserver bind address.")
    port: int = Field(3000, ge=1024, le=65535, description="Webserver port.")
    read_only: bool = Field(
        False,
        description=(
            "The UI refuses every mutation (launching, cancelling or deleting runs, starting or "
            "stopping sensors) for anyone who can reach its port; the sensors and runs go on. "
            "For shared machines: the webserver has no login, and executes a mutation sent by "
            "any web page its user visits (docs/security.md)."
        ),
    )
    max_concurrent_runs: int = Field(4, ge=1, le=100, description="Runs in progress at once.")
    dequeue_interval_s: int = Field(1, ge=1, le=60, description="Queued run coordinator tick.")
    run_pool: bool = Field(
        True,
        description=(
            "Runs start as forks of a process that has already imported Dagster and the code "
            "location (`ecom_assets/stack/run_pool.py`); false: Dagster's default launcher."
        ),
    )
    analytics_cron: str = Field(
        "*/5 * * * *",
        description="The analytics views refresh at most once per tick (cron, UTC), and only "
        "after new ingest data.",
    )
    health_min_interval_s: int = Field(
        30,
        ge=5,
        le=3600,
        description="pipeline_health follows new ingest data at most this often (and runs every "
        "5 minutes without it).",
    )

    @field_validator("analytics_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Dagster's own check (private, but dagster is pinned exactly): a bad string fails here,
        # with the variable's name, instead of failing the code location at load
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError("must be a cron expression such as '*/5 * * * *'")
        return value


class IngestionSettings(BaseSettings):
    """The input directory, its sensor and the size of ingest runs."""

    model_config = _config("ECOM_INGEST_")

    input_dir: Path = Field(Path("input"), description="Dropped CSV files (under ECOM_DATA_DIR).")
    processed_dir: Path = Field(Path("processed"), description="Committed files, by partition.")
    quarantine_dir: Path = Field(Path("quarantine"), description="Unparseable files + reasons.")
    log_dir: Path = Field(Path("logs"), description="Log files of generator and pipeline.")
    sensor_interval_s: int = Field(
        1,
        ge=1,
        le=3600,
        description="Minimum seconds between ticks (Dagster's daemon looks every 5 s at most).",
    )
    sensor_watch_s: float = Field(
        4.0,
        ge=0,
        le=30,
        description=(
            "A sensor tick that finds no settled file watches the directory this long: "
            "a file landing meanwhile is requested at once, not at the next tick."
        ),
    )
    file_settle_s: float = Field(
        1.0,
        ge=0,
        le=600,
        description=(
            "A file must be unchanged this long before it is claimed; 30 times as long when its "
            "last byte does not end a line (0: producers rename finished files in)."
        ),
    )
    max_files_per_run: int = Field(5000, ge=1, le=1_000_000, description="Files of one batch.")
    max_batch_mb: int = Field(
        64,
        ge=1,
        le=100_000,
        description=(
            "Megabytes of files in one batch (a run's first three: 1/8, 1/4, 1/2): "
            "a run commits a batch while the next stages."
        ),
    )
    max_file_mb: int = Field(
        64,
        ge=1,
        le=100_000,
        description=(
            "A larger file is quarantined with its size as the reason: a Spark task reads a file "
            "whole, in about 20 times its size of worker memory (transforms/file_rows.py)."
        ),
    )
    commits_in_flight: int = Field(
        2,
        ge=1,
        le=4,
        description=(
            "Batches committing at once, in order, while the next stages: two were faster than "
            "one on two cores (docs/decisions.md 43, 48)."
        ),
    )
    max_concurrent_runs: int = Field(1, ge=1, le=32, description="Ingest runs in progress at once.")
    retry_after_s: float = Field(
        120.0, ge=5, le=86_400, description="Request a partition again if its files still wait."
    )
    max_file_failures: int = Field(
        5,
        ge=2,
        le=100,
        description=(
            "A file is quarantined after failing its batch (or killing the run reading it) this "
            "many times, whatever the reason (docs/decisions.md 57)."
        ),
    )
    linger_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="A run with nothing left waits this long for new files of its partition.",
    )
    max_run_s: float = Field(
        600.0, ge=0, le=86_400, description="A run takes new arrivals only this long after start."
    )
    partitions_start: datetime | None = Field(
        None,
        description=(
            "First hourly partition, a whole UTC hour such as 2026-01-29-10:00; unset: the "
            "installation's first start, moved back to the oldest waiting or processed file "
            "(`<ECOM_STATE_DIR>/partitions_start`)."
        ),
    )

    @field_validator("partitions_start", mode="before")
    @classmethod
    def _whole_utc_hour(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            text = value.strip()
            try:  # the partition key's own format first, then ISO 8601
                value = datetime.strptime(text, "%Y-%m-%d-%H:%M")
            except ValueError:
                try:
                    value = datetime.fromisoformat(text)
                except ValueError:
                    raise ValueError("must be an hour such as 2026-01-29-10:00 (UTC)") from None
        if not isinstance(value, datetime):
            raise ValueError("must be an hour such as 2026-01-29-10:00 (UTC)")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if (value.minute, value.second, value.microsecond) != (0, 0, 0):
            raise ValueError("must be a whole hour such as 2026-01-29-10:00 (UTC)")
        if value > datetime.now(tz=UTC):
            raise ValueError("must not be in the future")
        return value


class QualitySettings(BaseSettings):
    """Data quality rules and the thresholds of the asset checks."""

    model_config = _config("ECOM_QUALITY_")

    min_validity: float = Field(0.95, ge=0, le=1, description="Validity below this: WARN.")
    blocking_validity: float = Field(
        0.80, ge=0, le=1, description="Validity below this: ERROR, blocks downstream assets."
    )
    max_error_share: float = Field(
        0.10, ge=0, le=1, description="Largest share of rows one error code may hit."
    )
    max_warning_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of rows stored with warnings above which the warning check and alert "
        "fire (WARN).",
    )
    late_watermark_s: int = Field(
        600, ge=0, le=86_400 * 30, description="Events older than this on arrival are late."
    )

    @field_validator("blocking_validity")
    @classmethod
    def _blocking_below_warning(cls, value: float, info: Any) -> float:
        warn = info.data.get("min_validity")
        if warn is not None and value > warn:
            raise ValueError(f"must not exceed ECOM_QUALITY_MIN_VALIDITY ({warn})")
        return value


class GeneratorSettings(BaseSettings):
    """Defaults of the event generator process (its command-line flags override them)."""

    model_config = _config("ECOM_GENERATOR_")

    enabled: bool = Field(True, description="Whether `ecom up` starts the generator.")
    events_per_file: int = Field(100, ge=1, le=10_000_000, description="Events in each file.")
    interval_s: float = Field(5.0, ge=0, le=3600, description="Seconds between files.")
    anomaly_rate: float = Field(0.02, ge=0, le=1, description="Share of injected bad events.")
    late_rate: float = Field(0.02, ge=0, le=1, description="Share of late events.")
    schema_version: SchemaChoice = Field("v3", description="v1, v2, v3 or mixed.")
    seed: int | None = Field(None, description="Random seed; same seed, same files.")


class ReliabilitySettings(BaseSettings):
    """Retries with exponential backoff and jitter, and the sink's circuit breaker."""

    model_config = _config("ECOM_")

    retry_attempts: int = Field(5, ge=1, le=100, description="Attempts for transient failures.")
    retry_initial_delay_s: float = Field(0.5, gt=0, le=60, description="First backoff delay.")
    retry_multiplier: float = Field(2.0, ge=1, le=10, description="Backoff growth per attempt.")
    retry_max_delay_s: float = Field(30.0, gt=0, le=600, description="Backoff ceiling.")
    breaker_failure_threshold: int = Field(
        5, ge=1, le=1000, description="Consecutive failures that open the breaker."
    )
    breaker_reset_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Seconds OPEN before HALF_OPEN."
    )
    step_retries: int = Field(
        2, ge=0, le=20, description="Dagster retries of a failed ingest step (transient faults)."
    )
    step_retry_delay_s: float = Field(
        30.0, ge=0, le=3600, description="First delay of a step retry; doubles, with jitter."
    )


class MonitoringSettings(BaseSettings):
    """Alert thresholds and sinks, and what counts as healthy."""

    model_config = _config("ECOM_ALERT_")

    latency_s: float = Field(10.0, gt=0, le=86_400, description="Batch latency alert threshold.")
    consecutive_batches: int = Field(
        3, ge=1, le=1000, description="Low-validity batches in a row that escalate WARN to ERROR."
    )
    consecutive_failures: int = Field(
        3, ge=1, le=1000, description="Failed ingest runs in a row that escalate WARN to ERROR."
    )
    webhook_url: str | None = Field(
        None, description="Optional HTTP(S) endpoint alerts are POSTed to as JSON."
    )
    stale_after_s: int = Field(
        300, ge=1, le=86_400 * 7, description="No batch for this long: health is DEGRADED."
    )
    health_window: int = Field(
        20, ge=1, le=10_000, description="Latest batches that health's success and validity cover."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class StackSettings(BaseSettings):
    """How `ecom up` heals its parts: restart with backoff, give up on a crash loop."""

    model_config = _config("ECOM_STACK_")

    restart_initial_delay_s: float = Field(
        1.0, ge=0, le=60, description="Wait before restarting a part that died; doubles per death."
    )
    restart_max_delay_s: float = Field(
        30.0, ge=0, le=600, description="Ceiling of the wait before a restart."
    )
    max_restarts: int = Field(
        5,
        ge=0,
        le=1000,
        description="Restarts of one part within ECOM_STACK_RESTART_WINDOW_S; one more death "
        "is a crash loop: `ecom up` gives up and stops the stack.",
    )
    restart_window_s: float = Field(
        300.0, ge=1, le=86_400, description="The window that counts a part's deaths."
    )
    probe_grace_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="The embedded PostgreSQL's postmaster alive but refusing connections this "
        "long: restarted.",
    )


_GROUPS: dict[str, type[BaseSettings]] = {
    "paths": PathSettings,
    "database": DatabaseSettings,
    "spark": SparkSettings,
    "dagster": DagsterSettings,
    "ingestion": IngestionSettings,
    "quality": QualitySettings,
    "generator": GeneratorSettings,
    "reliability": ReliabilitySettings,
    "monitoring": MonitoringSettings,
    "stack": StackSettings,
}


class Settings(BaseModel):
    """All groups together; build it with ``load_settings``."""

    model_config = {"frozen": True, "arbitrary_types_allowed": True}

    paths: PathSettings
    database: DatabaseSettings
    spark: SparkSettings
    dagster: DagsterSettings
    ingestion: IngestionSettings
    quality: QualitySettings
    generator: GeneratorSettings
    reliability: ReliabilitySettings
    monitoring: MonitoringSettings
    stack: StackSettings = Field(default_factory=StackSettings)

    def data_path(self, path: Path) -> Path:
        """A path of the ingestion group, resolved under the data directory."""
        path = path.expanduser()
        return path if path.is_absolute() else self.paths.data / path

    @property
    def input_dir(self) -> Path:
        return self.data_path(self.ingestion.input_dir)

    @property
    def processed_dir(self) -> Path:
        return self.data_path(self.ingestion.processed_dir)

    @property
    def quarantine_dir(self) -> Path:
        return self.data_path(self.ingestion.quarantine_dir)

    @property
    def log_dir(self) -> Path:
        return self.data_path(self.ingestion.log_dir)


class SettingsError(ValueError):
    """A setting has a bad value; the message names each variable and what it accepts."""


def env_var_name(group: type[BaseSettings], field: str) -> str:
    return f"{group.model_config.get('env_prefix', '')}{field}".upper()


def _allowed(group: type[BaseSettings], field: str) -> str:
    info = group.model_fields[field]
    bounds = []
    for item in info.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                bounds.append(f"{symbol} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            bounds.append(f"matching {item.pattern}")
    return ", ".join(bounds)


SECRET_SETTING = re.compile(r"(URL|REMOTE|TOKEN|PASSWORD|SECRET|CREDENTIALS?)$")
"""Variables whose value may carry a credential (a URL's password, a token). An error names
them and never echoes their value: SettingsError reaches the terminal, the logs and the UI's
code-location error."""
SHOWN_VALUE_CHARS = 80


def _describe(group: type[BaseSettings], error: dict[str, Any]) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = env_var_name(group, field) if field in group.model_fields else field
    allowed = _allowed(group, field) if field in group.model_fields else ""
    suffix = f" (allowed: {allowed})" if allowed else ""
    message = redact(str(error["msg"]))
    if SECRET_SETTING.search(name.upper()) or field not in group.model_fields:
        return f"{name} (value not shown, it may hold a secret): {message}{suffix}"
    value = repr(os.environ.get(name, error.get("input")))
    if len(value) > SHOWN_VALUE_CHARS:
        value = value[:SHOWN_VALUE_CHARS] + "…"
    return f"{name}={redact(value)}: {message}{suffix}"


def env_file() -> Path:
    """The optional settings file read after the environment (``ECOM_ENV_FILE``)."""
    return Path(os.environ.get("ECOM_ENV_FILE", ".env"))


MOVED_TO_CONTRACT = {
    "ECOM_QUALITY_MAX_PRICE": "rules.EXTREME_PRICE.max_price",
    "ECOM_QUALITY_MAX_QUANTITY": "rules.INVALID_QUANTITY.max_quantity",
    "ECOM_QUALITY_FUTURE_TOLERANCE_S": "rules.FUTURE_EVENT_TIME.tolerance_s",
}
"""Settings that became parameters of the event contract: setting one is an error, not ignored."""


def load_settings(**overrides: BaseSettings) -> Settings:
    """Read every group from the environment; raise one SettingsError listing all bad values."""
    groups: dict[str, BaseSettings] = {}
    given = set(os.environ) | set(dotenv_values(env_file()) if env_file().is_file() else {})
    problems = [
        f"{name} is now {where} in the contract file (ECOM_CONTRACT_FILE, docs/contract.md)"
        for name, where in MOVED_TO_CONTRACT.items()
        if name in given
    ]
    for key, group in _GROUPS.items():
        if key in overrides:
            groups[key] = overrides[key]
            continue
        try:
            groups[key] = group(_env_file=env_file())
        except ValidationError as exc:
            problems.extend(_describe(group, error) for error in exc.errors())
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return Settings(**groups)


def settings_table() -> list[tuple[str, str, str, str]]:
    """(variable, default, allowed, description) for every setting: the README's table."""
    rows = []
    for group in _GROUPS.values():
        for field, info in group.model_fields.items():
            default = "" if info.default is None else str(info.default)
            rows.append(
                (
                    env_var_name(group, field),
                    default,
                    _allowed(group, field),
                    info.description or "",
                )
            )
    return rows


def settings_markdown() -> str:
    lines = ["| Variable | Default | Allowed | Meaning |", "| --- | --- | --- | --- |"]
    for name, default, allowed, description in settings_table():
        lines.append(f"| `{name}` | `{default}` | {allowed} | {description} |")
    return "\n".join(lines)
