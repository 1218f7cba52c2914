"""The alert webhook against real misbehaving HTTP servers on 127.0.0.1: redirects are never
followed (nor is the Basic auth carried anywhere else), one total deadline cuts a trickling or
stalled endpoint, and raising an alert, in a real ingest run too, never waits for the endpoint."""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from ecom_assets.ingest import ingest_partition
from ecom_assets.monitoring import webhook
from ecom_assets.monitoring.alerts import raise_batch_alerts
from ecom_assets.monitoring.batches import BatchRecord, record_batch
from ecom_assets.monitoring.webhook import WEBHOOK_DEADLINE_S, post_json, queue_post
from ecom_assets.settings import MonitoringSettings, Settings
from ecom_assets_tests.test_fault_support import RecordingLog, generate_backlog

T = TypeVar("T")
SECRETS = ("alice", "pa55word", "T0KEN", "s3cret")


@dataclass
class Server:
    """A local HTTP server, what it received, and what it is waiting for."""

    url: str
    received: list[dict[str, object]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[None]:
    """Every test starts and ends with the process's webhook queue drained."""
    assert webhook.flush(WEBHOOK_DEADLINE_S + 1)
    yield
    assert webhook.flush(WEBHOOK_DEADLINE_S + 1)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], server: Server) -> Iterator[Server]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.daemon_threads = True
    server.url = f"http://127.0.0.1:{http.server_address[1]}"
    threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        http.shutdown()
        http.server_close()


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def record(self, server: Server) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        server.received.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "body": json.loads(self.rfile.read(length)) if length else None,
            }
        )
        server.arrived.set()


@pytest.fixture
def recorder() -> Iterator[Server]:
    """Records any request, whatever its method, and answers 204."""
    state = Server("")

    class Handler(Quiet):
        def answer(self) -> None:
            self.record(state)
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = answer

    with serve(Handler, state):
        yield state


@contextmanager
def redirecting(code: int, target: Server) -> Iterator[Server]:
    """Records a POST and answers it with a redirect to target."""
    state = Server("")

    class Handler(Quiet):
        def do_POST(self) -> None:
            self.record(state)
            self.send_response(code)
            self.send_header("Location", f"{target.url}/internal")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serve(Handler, state):
        yield state


@pytest.fixture
def slow() -> Iterator[Server]:
    """Records a POST as soon as it arrives, then answers 204 only after 10 s (or when the
    test releases it)."""
    state = Server("")

    class Handler(Quiet):
        def do_POST(self) -> None:
            self.record(state)
            state.release.wait(10)
            self.send_response(204)
            self.end_headers()

    with serve(Handler, state):
        yield state


class Trickle(socketserver.StreamRequestHandler):
    """Reads the request, then answers one byte every 0.5 s, forever: a status line, then a
    header that never ends."""

    stop = threading.Event()

    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        answer = b"HTTP/1.1 200 OK\r\nX-Trickle: "
        n = 0
        while not self.stop.wait(0.5):
            try:
                self.wfile.write(answer[n : n + 1] or b"a")
            except OSError:  # the client gave up
                return
            n += 1


@pytest.fixture
def trickling() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        Trickle.stop.set()
        server.shutdown()
        server.server_close()
        Trickle.stop.clear()


@pytest.fixture
def stalled() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog) and never reads or answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


def within(seconds: float, call: Callable[[], T]) -> tuple[T, float]:
    """call's result and duration; fails (instead of hanging the suite) past seconds."""
    result: list[T] = []
    start = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.monotonic() - start
    assert not thread.is_alive(), f"still running after {elapsed:.1f} s"
    return result[0], elapsed


def with_credentials(url: str) -> str:
    return url.replace("://", "://alice:pa55word@") + "/hook/T0KEN?key=s3cret"


# --- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_never_followed(code: int, recorder: Server) -> None:
    log = RecordingLog()
    with redirecting(code, recorder) as origin:
        assert post_json(with_credentials(origin.url), {"a": 1}, log) is False
    assert recorder.received == []  # neither the POST, nor a GET, nor the credentials
    (request,) = origin.received
    assert request["method"] == "POST"
    assert request["authorization"] == "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert log.lines == [
        (
            "WARNING",
            f"webhook {origin.url}/… failed: redirect HTTP {code} not followed; "
            "the alert is stored",
        )
    ]
    for secret in SECRETS:
        assert secret not in log.text()


def test_basic_auth_goes_to_the_configured_host_only(recorder: Server) -> None:
    log = RecordingLog()
    assert post_json(with_credentials(recorder.url), {"a": 1}, log) is True
    assert post_json(recorder.url + "/plain", {"a": 2}, log) is True
    first, second = recorder.received
    assert first["path"] == "/hook/T0KEN?key=s3cret"
    assert first["authorization"] == "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert first["body"] == {"a": 1}
    assert second["authorization"] is None
    assert log.lines == []


# --- one total deadline ---------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["trickling", "stalled"])
def test_a_trickling_or_stalled_endpoint_is_cut_at_the_deadline(
    endpoint: str, request: pytest.FixtureRequest
) -> None:
    origin = request.getfixturevalue(endpoint).removesuffix("/hook")
    log = RecordingLog()
    delivered, elapsed = within(
        5, lambda: post_json(with_credentials(origin), {"a": 1}, log, deadline_s=1.5)
    )
    assert delivered is False
    assert 1.5 <= elapsed < 2.0
    assert log.lines == [
        ("WARNING", f"webhook {origin}/… failed: no answer within 1.5 s; the alert is stored"),
    ]


def test_the_default_deadline_is_total_not_per_byte(trickling: str) -> None:
    log = RecordingLog()
    delivered, elapsed = within(15, lambda: post_json(trickling, {"a": 1}, log))
    assert delivered is False
    assert WEBHOOK_DEADLINE_S - 0.1 <= elapsed < WEBHOOK_DEADLINE_S + 0.5
    assert f"no answer within {WEBHOOK_DEADLINE_S:g} s" in log.text()


# --- off the caller's path ------------------------------------------------------------------

PARTITION = "2026-01-29-10:00"


def batch(batch_no: int, partition: str = PARTITION) -> BatchRecord:
    """A completed batch whose latency (30 s) raises a high_latency alert."""
    return BatchRecord(
        run_id="run-a",
        batch_no=batch_no,
        partition_key=partition,
        started_at=datetime.now(tz=UTC),
        status="completed",
        files=1,
        rows_read=10,
        rows_valid=10,
        rows_invalid=0,
        max_latency_s=30.0,
    )


def with_webhook(settings: Settings, url: str | None, **values: object) -> Settings:
    return settings.model_copy(update={"monitoring": MonitoringSettings(webhook_url=url, **values)})


def commit_and_raise(url: str, record: BatchRecord, settings: Settings, log: RecordingLog) -> float:
    """What the ingest does after a batch commits; how long raising its alerts took."""
    with psycopg.connect(url, autocommit=True) as conn:
        record_batch(conn, record, settings.quality.min_validity)
        start = time.monotonic()
        raised = raise_batch_alerts(conn, record, settings, log)
        elapsed = time.monotonic() - start
    assert [alert.kind for alert in raised] == ["high_latency"]
    return elapsed


def test_raising_an_alert_never_waits_for_a_slow_endpoint(
    migrated_database_url: str, ingest_settings: Settings, slow: Server
) -> None:
    log = RecordingLog()
    url = migrated_database_url
    without = commit_and_raise(url, batch(1, "2026-01-29-09:00"), ingest_settings, log)
    settings = with_webhook(ingest_settings, slow.url + "/hook")
    elapsed = commit_and_raise(url, batch(2), settings, log)
    assert elapsed < 0.5
    assert elapsed < without + 0.3
    assert slow.arrived.wait(2)  # the post arrives, later, from the sender thread
    (request,) = slow.received
    assert request["body"]["kind"] == "high_latency"  # type: ignore[index]
    assert request["body"]["partition_key"] == PARTITION  # type: ignore[index]
    slow.release.set()
    assert webhook.flush(2)
    assert [level for level, _ in log.lines] == ["WARNING", "WARNING"]  # the two alerts, no failure


def test_a_failure_is_logged_later_by_the_sender(slow: Server) -> None:
    log = RecordingLog()
    start = time.monotonic()
    assert queue_post(with_credentials(slow.url), {"a": 1}, log) is True
    assert time.monotonic() - start < 0.1
    assert slow.arrived.wait(2)
    assert log.lines == []
    assert webhook.flush(WEBHOOK_DEADLINE_S + 1)
    assert log.lines == [
        ("WARNING", f"webhook {slow.url}/… failed: no answer within {WEBHOOK_DEADLINE_S:g} s; "
                    "the alert is stored"),
    ]  # fmt: skip


def test_a_full_queue_drops_the_new_post_with_a_count(slow: Server) -> None:
    log = RecordingLog()
    assert queue_post(slow.url, {"n": 0}, log)
    assert slow.arrived.wait(2)  # the sender holds post 0; the queue is empty again
    assert all(
        queue_post(slow.url, {"n": n}, log) for n in range(1, webhook.WEBHOOK_QUEUE_SIZE + 1)
    )
    assert queue_post(slow.url, {"n": "dropped"}, log) is False
    ((level, line),) = log.lines
    assert level == "WARNING"
    assert line.startswith(
        f"webhook {slow.url} post dropped ({webhook.WEBHOOK_QUEUE_SIZE} waiting, "
    )
    assert line.endswith(" dropped in this process); the alert is stored")
    slow.release.set()
    assert webhook.flush(10)
    assert [r["body"]["n"] for r in slow.received] == list(range(webhook.WEBHOOK_QUEUE_SIZE + 1))  # type: ignore[index]


EXITING = """
import logging, sys, time
from ecom_assets.monitoring.webhook import queue_post
logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
log = logging.getLogger("exiting")
for n in range(3):
    queue_post(sys.argv[1], {"n": n}, log)
print(f"{time.monotonic():.3f}", flush=True)
"""


def run_exiting(url: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """A process that queues three posts and ends; how long its exit took after the last one."""
    process = subprocess.run(
        [sys.executable, "-c", EXITING, url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return time.monotonic() - float(process.stdout), process


def test_posts_queued_at_exit_are_flushed(recorder: Server) -> None:
    exit_s, _ = run_exiting(recorder.url + "/hook")
    assert [r["body"] for r in recorder.received] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert exit_s < 2


def test_exit_waits_at_most_one_deadline_then_counts_what_it_drops(slow: Server) -> None:
    exit_s, process = run_exiting(with_credentials(slow.url))
    assert exit_s < WEBHOOK_DEADLINE_S + 2
    assert [r["body"] for r in slow.received] == [{"n": 0}]
    assert (
        f"WARNING webhook {slow.url}/…: 2 alert post(s) not sent before the process exited; "
        "the alerts are stored"
    ) in process.stderr
    for secret in SECRETS:
        assert secret not in process.stderr


# --- a real ingest run --------------------------------------------------------------------


class TimedLog(RecordingLog):
    """A RecordingLog that also keeps when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def _at(self, level: str, msg: str) -> None:
        self.at.append(time.monotonic())
        self.lines.append((level, msg))

    def info(self, msg: str) -> None:
        self._at("INFO", msg)

    def warning(self, msg: str) -> None:
        self._at("WARNING", msg)

    def error(self, msg: str) -> None:
        self._at("ERROR", msg)


@pytest.mark.integration
def test_an_ingest_run_is_not_delayed_by_a_slow_endpoint(
    spark, migrated_database_url: str, ingest_settings: Settings, slow: Server, tmp_path: Path
) -> None:
    """One file, one batch, alerts (any latency is high here, and the generated anomalies lower
    validity): the run returns right after raising them, and the posts reach the endpoint from
    the sender thread, one after the other."""
    backlog = generate_backlog(ingest_settings, tmp_path / "truth", files=1, events=20)
    settings = with_webhook(ingest_settings, slow.url + "/hook", latency_s=0.001)
    log = TimedLog()
    report = ingest_partition(
        spark, migrated_database_url, settings, backlog.partition, "run-slow", log
    )
    returned = time.monotonic()
    assert report.files_committed == 1
    alerts = [
        (at, line)
        for at, (_, line) in zip(log.at, log.lines, strict=True)
        if line.startswith("ALERT [")
    ]
    assert alerts
    assert returned - alerts[0][0] < 1.0  # posting synchronously took 3 s or more per alert
    assert slow.arrived.wait(2)
    slow.release.set()
    assert webhook.flush(5)
    posted = [f"ALERT [{r['body']['kind']}] {r['body']['message']}" for r in slow.received]  # type: ignore[index]
    assert posted == [line for _, line in alerts]
