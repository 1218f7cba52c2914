"""Alert rules, their storage in PostgreSQL (escalation, storm guard, resolution), the log lines
and the webhook, posted to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from ecom_assets.monitoring import webhook
from ecom_assets.monitoring.alerts import (
    assess_batch,
    error_concentration_alert,
    latency_alert,
    low_validity_alert,
    raise_batch_alerts,
    warning_rate_alert,
)
from ecom_assets.monitoring.batches import BatchRecord, record_batch
from ecom_assets.monitoring.logs import ingest_logger
from ecom_assets.monitoring.webhook import post_json
from ecom_assets.redaction import redact_url
from ecom_assets.settings import MonitoringSettings, PathSettings, Settings, load_settings
from ecom_assets.stack.processes import free_port
from ecom_assets_tests.test_fault_support import RecordingLog

PARTITION = "2026-01-29-10:00"


def make_batch(
    batch_no: int,
    valid: int = 100,
    invalid: int = 0,
    *,
    run_id: str = "run-a",
    partition: str = PARTITION,
    latency: float | None = 2.0,
    errors: dict[str, int] | None = None,
    status: str = "completed",
) -> BatchRecord:
    return BatchRecord(
        run_id=run_id,
        batch_no=batch_no,
        partition_key=partition,
        started_at=datetime.now(tz=UTC),
        status=status,  # type: ignore[arg-type]
        files=1,
        rows_read=valid + invalid,
        rows_valid=valid,
        rows_invalid=invalid,
        max_latency_s=latency,
        error_counts=errors
        if errors is not None
        else ({"MISSING_FIELD": invalid} if invalid else {}),
        error=None if status == "completed" else "RuntimeError: boom",
    )


def with_monitoring(settings: Settings, **values: object) -> Settings:
    return settings.model_copy(update={"monitoring": MonitoringSettings(**values)})


@pytest.fixture
def settings(ingest_settings: Settings) -> Settings:
    return ingest_settings


# --- pure rules ------------------------------------------------------------------------------


def test_low_validity_warns_then_escalates_after_exactly_three_low_batches(
    settings: Settings,
) -> None:
    low = make_batch(1, valid=912, invalid=88)  # 91.2 %
    quality, monitoring = settings.quality, settings.monitoring
    first = low_validity_alert(low, [], quality, monitoring)
    second = low_validity_alert(low, [0.90], quality, monitoring)
    third = low_validity_alert(low, [0.90, 0.93], quality, monitoring)
    assert (first.level, second.level, third.level) == ("WARNING", "WARNING", "ERROR")
    assert first.line == f"ALERT [low_validity] partition {PARTITION} validity 91.2% < 95.0%"
    assert second.message.endswith("(2 consecutive batches)")
    assert third.line == (
        f"ALERT [low_validity] partition {PARTITION} validity 91.2% < 95.0% (3 consecutive batches)"
    )
    assert third.details["consecutive_batches"] == 3
    # a good batch in between breaks the streak; older low batches do not count
    assert low_validity_alert(low, [0.90, 0.99, 0.5], quality, monitoring).level == "WARNING"
    assert (
        low_validity_alert(make_batch(1, valid=95, invalid=5), [0.1], quality, monitoring) is None
    )
    immediate = with_monitoring(settings, consecutive_batches=1).monitoring
    assert low_validity_alert(low, [], quality, immediate).level == "ERROR"


def test_latency_and_error_concentration_rules(settings: Settings) -> None:
    assert latency_alert(make_batch(1, latency=10.0), settings.monitoring) is None
    slow = latency_alert(make_batch(1, latency=14.25), settings.monitoring)
    assert slow.level == "WARNING"
    assert slow.message == f"partition {PARTITION} batch latency 14.2 s > 10.0 s"

    spread = make_batch(1, valid=80, invalid=20, errors={"A": 10, "B": 10})
    assert error_concentration_alert(spread, settings.quality) is None  # 10 % is not above
    hot = make_batch(1, valid=70, invalid=30, errors={"INVALID_PRICE": 23, "BAD_TYPE": 12})
    alert = error_concentration_alert(hot, settings.quality)
    assert alert.message == (
        f"partition {PARTITION} error code INVALID_PRICE on 23.0% of rows > 10.0%"
    )
    assert alert.details["codes_above"] == {"BAD_TYPE": 0.12, "INVALID_PRICE": 0.23}


def test_warning_rate_rule(settings: Settings) -> None:
    calm = replace(make_batch(1), rows_warned=25, warning_counts={"UNEXPECTED_PRICE": 25})
    assert warning_rate_alert(calm, settings.quality) is None  # 25 % is not above
    noisy = replace(
        make_batch(1, valid=90, invalid=10),
        rows_warned=40,
        warning_counts={"UNEXPECTED_PRICE": 12, "INVALID_USER_SEGMENT": 35},
    )
    alert = warning_rate_alert(noisy, settings.quality)
    assert alert.kind == "high_warning_rate" and alert.level == "WARNING"
    assert alert.message == (
        f"partition {PARTITION} 40.0% of rows stored with warnings > 25.0% "
        "(most: INVALID_USER_SEGMENT)"
    )
    assert alert.details["warning_counts"] == {"INVALID_USER_SEGMENT": 35, "UNEXPECTED_PRICE": 12}


def test_assess_batch_judges_only_what_the_batch_measured(settings: Settings) -> None:
    fine = assess_batch(make_batch(1), [], settings)
    assert fine == {
        "low_validity": None,
        "error_concentration": None,
        "high_warning_rate": None,
        "high_latency": None,
    }
    empty = assess_batch(make_batch(1, valid=0, latency=None), [], settings)
    assert empty == {}  # no rows, no latency: open alerts must stay as they are


# --- against PostgreSQL ----------------------------------------------------------------------


def commit_and_raise(
    url: str, batch: BatchRecord, settings: Settings, log: RecordingLog
) -> list[str]:
    """What the ingest does: commit the batch's row, then raise its alerts."""
    with psycopg.connect(url, autocommit=True) as conn:
        record_batch(conn, batch, settings.quality.min_validity)
        return [f"{a.level} {a.kind}" for a in raise_batch_alerts(conn, batch, settings, log)]


def open_alerts(url: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT kind, level, partition_key FROM alerts WHERE resolved_at IS NULL "
            "ORDER BY alert_id"
        ).fetchall()


def test_escalation_storm_guard_and_resolution_in_the_database(
    migrated_database_url: str, settings: Settings
) -> None:
    url, log = migrated_database_url, RecordingLog()
    raised = [commit_and_raise(url, make_batch(n, 90, 10), settings, log) for n in (1, 2, 3, 4)]
    # WARNING once, the second WARNING is the same open alert, the third batch escalates
    assert raised == [["WARNING low_validity"], [], ["ERROR low_validity"], []]
    assert open_alerts(url) == [("low_validity", "ERROR", PARTITION)]  # the WARNING superseded
    assert [level for level, _ in log.lines] == ["WARNING", "ERROR"]
    assert log.lines[1][1].endswith("validity 90.0% < 95.0% (3 consecutive batches)")

    # a batch without rows says nothing about validity: the ERROR stays open
    assert commit_and_raise(url, make_batch(5, 0, 0), settings, log) == []
    assert open_alerts(url) == [("low_validity", "ERROR", PARTITION)]

    assert commit_and_raise(url, make_batch(6), settings, log) == []
    assert open_alerts(url) == []
    assert log.lines[-1] == (
        "INFO",
        "ALERT RESOLVED [low_validity] 1 open alert(s), batch 6 of run run-a is fine",
    )
    # the streak starts again after the good batch
    assert commit_and_raise(url, make_batch(7, 90, 10), settings, log) == ["WARNING low_validity"]
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT level, run_id, details->>'consecutive_batches', resolved_at IS NOT NULL "
            "FROM alerts ORDER BY alert_id"
        ).fetchall()
    assert stored == [
        ("WARNING", "run-a", "1", True),
        ("ERROR", "run-a", "3", True),
        ("WARNING", "run-a", "1", False),
    ]


def test_kinds_are_raised_and_resolved_independently(
    migrated_database_url: str, settings: Settings
) -> None:
    url, log = migrated_database_url, RecordingLog()
    bad = make_batch(1, 70, 30, latency=30.0, errors={"INVALID_PRICE": 30})
    assert commit_and_raise(url, bad, settings, log) == [
        "WARNING low_validity",
        "WARNING error_concentration",
        "WARNING high_latency",
    ]
    # another partition: its own open alerts (kind + level + partition)
    other = make_batch(1, latency=30.0, run_id="run-b", partition="2026-01-29-11:00")
    assert commit_and_raise(url, other, settings, log) == ["WARNING high_latency"]
    # run-b's rows were valid and error free: those problems are over, whatever the partition
    assert open_alerts(url) == [
        ("high_latency", "WARNING", PARTITION),
        ("high_latency", "WARNING", "2026-01-29-11:00"),
    ]
    assert commit_and_raise(url, make_batch(2), settings, log) == []
    assert open_alerts(url) == []


def test_failed_batches_raise_nothing(migrated_database_url: str, settings: Settings) -> None:
    failed = make_batch(1, 0, 0, status="failed")
    assert commit_and_raise(migrated_database_url, failed, settings, RecordingLog()) == []


def test_alert_lines_reach_the_ingest_log_file(
    migrated_database_url: str, settings: Settings
) -> None:
    log = ingest_logger(settings.log_dir)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        batch = make_batch(1, 90, 10)
        record_batch(conn, batch, settings.quality.min_validity)
        raise_batch_alerts(conn, batch, settings, log)
    (log_file,) = settings.log_dir.glob("ingest_*.log")
    (line,) = log_file.read_text().splitlines()
    assert line.endswith(
        f" | WARNING  | ALERT [low_validity] partition {PARTITION} validity 90.0% < 95.0%"
    )


# --- webhook ---------------------------------------------------------------------------------


@dataclass
class Hook:
    url: str
    received: list[dict[str, object]]
    status: list[int]


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A real HTTP server on 127.0.0.1 that records what is POSTed and answers `status[0]`."""
    received: list[dict[str, object]] = []
    status = [204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(
                {
                    "path": self.path,
                    "content_type": self.headers["Content-Type"],
                    "authorization": self.headers.get("Authorization"),
                    "body": json.loads(body),
                }
            )
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hook(f"http://127.0.0.1:{server.server_address[1]}", received, status)
    finally:
        server.shutdown()
        server.server_close()


def test_alerts_are_posted_to_the_webhook(
    migrated_database_url: str, settings: Settings, hook: Hook
) -> None:
    with_credentials = hook.url.replace("://", "://alice:pa%3A55@") + "/alerts?token=s3cret"
    settings = with_monitoring(settings, webhook_url=with_credentials)
    log = RecordingLog()
    commit_and_raise(migrated_database_url, make_batch(1, latency=12.5), settings, log)
    assert webhook.flush()  # the post is sent by the webhook's sender thread
    (request,) = hook.received
    assert request["path"] == "/alerts?token=s3cret"
    assert request["content_type"] == "application/json"
    assert request["authorization"] == "Basic " + base64.b64encode(b"alice:pa:55").decode()
    body = request["body"]
    assert body["kind"] == "high_latency"
    assert body["level"] == "WARNING"
    assert body["partition_key"] == PARTITION
    assert body["run_id"] == "run-a"
    assert body["details"] == {"batch_no": 1, "max_latency_s": 12.5, "latency_s": 10.0}
    assert body["text"] == f"WARNING ALERT [high_latency] {body['message']}"
    assert isinstance(body["alert_id"], int)
    assert datetime.fromisoformat(body["raised_at"]).tzinfo is not None
    assert log.lines == [("WARNING", f"ALERT [high_latency] {body['message']}")]

    # a lasting problem is not posted again
    commit_and_raise(migrated_database_url, make_batch(2, latency=12.5), settings, log)
    assert webhook.flush()
    assert len(hook.received) == 1


def test_unreachable_or_failing_webhook_is_a_warning_and_never_leaks_credentials(
    migrated_database_url: str, settings: Settings, hook: Hook
) -> None:
    refused = f"http://alice:pa55word@127.0.0.1:{free_port()}/hook/T0KEN?key=s3cret"
    log = RecordingLog()
    raised = commit_and_raise(
        migrated_database_url,
        make_batch(1, latency=30.0),
        with_monitoring(settings, webhook_url=refused),
        log,
    )
    assert raised == ["WARNING high_latency"]  # stored and logged all the same
    assert webhook.flush()  # the sender thread logs the failure
    assert open_alerts(migrated_database_url) == [("high_latency", "WARNING", PARTITION)]
    alert_line, failure = log.lines
    assert alert_line[1].startswith("ALERT [high_latency]")
    assert failure[0] == "WARNING"
    assert failure[1].startswith("webhook http://127.0.0.1:")
    assert "failed: Connection refused" in failure[1]
    for secret in ("alice", "pa55word", "T0KEN", "s3cret"):
        assert secret not in failure[1]

    hook.status[0] = 500
    log = RecordingLog()
    assert post_json(f"{hook.url}/x?token=s3cret", {"a": 1}, log) is False
    assert log.lines == [
        ("WARNING", f"webhook {hook.url}/… failed: HTTP 500; the alert is stored"),
    ]
    hook.status[0] = 200
    assert post_json(hook.url, {"a": 1}, log) is True


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url("https://u:p@hooks.example.com/services/T/B/X?x=1#f") == (
        "https://hooks.example.com/…"
    )
    assert redact_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert redact_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_settings_with_a_webhook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("ECOM_ALERT_WEBHOOK_URL", "https://hooks.example.invalid/x")
    monkeypatch.setenv("ECOM_ALERT_CONSECUTIVE_FAILURES", "2")
    settings = load_settings(paths=PathSettings(home=tmp_path))
    assert settings.monitoring.webhook_url == "https://hooks.example.invalid/x"
    assert settings.monitoring.consecutive_failures == 2
    assert settings.monitoring.health_window == 20
