"""Retries and circuit breakers against real faults: a refused PostgreSQL port, a real constraint
violation, and a Spark Connect client whose server does not exist."""

from __future__ import annotations

import time

import psycopg
import pytest
from pyspark.sql import SparkSession

from ecom_assets.reliability import (
    DependencyUnavailableError,
    Guard,
    configure_spark_retries,
    describe_error,
    is_transient_postgres,
    is_transient_spark,
)
from ecom_assets.settings import ReliabilitySettings
from ecom_assets.stack.processes import free_port
from ecom_assets_tests.test_fault_support import RecordingLog

FAST = ReliabilitySettings(
    retry_attempts=4,
    retry_initial_delay_s=0.01,
    retry_multiplier=2,
    retry_max_delay_s=0.05,
    breaker_failure_threshold=3,
    breaker_reset_timeout_s=0.3,
)


def refused_url() -> str:
    return f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"


def test_retries_then_breaker_opens_fails_fast_and_closes_after_recovery(database_url: str):
    guard, log, calls = Guard(FAST), RecordingLog(), []
    guard.attach(log)
    target = {"url": refused_url()}

    def attempt() -> int:
        calls.append(time.monotonic())
        with psycopg.connect(target["url"]) as conn:
            return conn.execute("SELECT 1").fetchone()[0]

    with pytest.raises(DependencyUnavailableError, match=r"circuit breaker OPEN \(postgres\)"):
        guard.call(attempt, "probe")
    assert len(calls) == 3  # the third consecutive failure trips the breaker before attempt 4
    assert guard.states() == {"postgres": "OPEN", "spark": "CLOSED"}
    assert "probe: attempt 1 failed (OperationalError: connection failed" in log.text()

    with pytest.raises(DependencyUnavailableError, match="failing fast"):
        guard.call(attempt, "probe")
    assert len(calls) == 3  # OPEN: not even tried

    target["url"] = database_url  # the dependency is back
    time.sleep(FAST.breaker_reset_timeout_s)
    assert guard.call(attempt, "probe") == 1
    assert [(t.breaker, t.old, t.new) for t in guard.transitions] == [
        ("postgres", "CLOSED", "OPEN"),
        ("postgres", "OPEN", "HALF_OPEN"),
        ("postgres", "HALF_OPEN", "CLOSED"),
    ]
    assert ("WARNING", "circuit breaker postgres: CLOSED -> OPEN") in log.lines
    assert ("INFO", "circuit breaker postgres: HALF_OPEN -> CLOSED") in log.lines


def test_retries_run_out_below_the_breaker_threshold_with_a_clear_error():
    settings = FAST.model_copy(update={"retry_attempts": 2})
    guard = Guard(settings)

    def attempt() -> None:
        psycopg.connect(refused_url()).close()

    with pytest.raises(DependencyUnavailableError, match="PostgreSQL unreachable after 2 attempt"):
        guard.call(attempt, "[Batch 1]")
    assert guard.retries == 1
    assert guard.states()["postgres"] == "CLOSED"  # 2 failures < threshold 3


def test_bad_data_fails_at_once_and_never_counts_as_an_outage(database_url: str):
    guard, calls = Guard(FAST), []

    def attempt() -> None:
        calls.append(1)
        with psycopg.connect(database_url) as conn:
            conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY)")
            conn.execute("INSERT INTO t VALUES (1), (1)")

    for _ in range(FAST.breaker_failure_threshold + 1):
        with pytest.raises(psycopg.errors.UniqueViolation):
            guard.call(attempt, "insert")
    assert len(calls) == FAST.breaker_failure_threshold + 1  # one attempt each, no retries
    assert guard.states()["postgres"] == "CLOSED"
    assert not is_transient_postgres(psycopg.errors.UniqueViolation())


def test_spark_connect_without_a_server_is_transient_and_gives_up_quickly():
    session = SparkSession.builder.remote(f"sc://127.0.0.1:{free_port()}").create()
    configure_spark_retries(session, FAST)
    guard = Guard(FAST)
    started = time.monotonic()
    try:
        with pytest.raises(DependencyUnavailableError, match="Spark Connect server unreachable"):
            guard.call(lambda: session.range(1).collect(), "read")
    finally:
        session.stop()
    assert time.monotonic() - started < 30  # not the client's default ten minutes of retries
    assert guard.breakers["spark"].fail_counter == 1
    assert not is_transient_spark(ValueError("not an RPC"))


def test_a_task_failure_is_described_by_its_python_exception_not_sparks_header() -> None:
    """Spark's first line says nothing: the quarantine reason of an isolated file must say why."""
    text = (
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/file_rows.py", line 79, in routed\n'
        "pyarrow.lib.ArrowInvalid: CSV parse error: Expected 5 columns, got 7: a,b\n"
        "\n"
        "JVM stacktrace:\n"
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        "ecom_assets.resources.event_reader.FileChangedError: f.csv changed after its scan\n"
    )
    assert describe_error(RuntimeError(text)) == (
        "RuntimeError: FileChangedError: f.csv changed after its scan"
    )
    assert describe_error(RuntimeError(text.rsplit("JVM", 1)[0])) == (
        "RuntimeError: ArrowInvalid: CSV parse error: Expected 5 columns, got 7: a,b"
    )
    assert describe_error(RuntimeError("plain\nsecond")) == "RuntimeError: plain"
