"""The optional alert webhook: one JSON POST per alert, best effort, never on the caller's path.

Alerts are stored and logged before they are posted, so a post is only a notification.
`queue_post` hands it to one daemon sender thread per process and returns at once: an endpoint
that is down, slow or trickling never delays a commit, a sensor tick or the stack supervisor.
A full queue drops the new post with a WARNING that counts the drops. At process exit the queue
gets one bounded flush (WEBHOOK_DEADLINE_S, never a hang); posts still waiting are dropped with a
WARNING count.

One delivery (`post_json`) has one total deadline for name resolution, connect, TLS, sending
and the answer's status line, so an endpoint that trickles its answer a byte at a time is cut at
WEBHOOK_DEADLINE_S instead of resetting a per-operation timeout. Redirects are never followed: a
3xx is a failed delivery. So the Basic auth taken from the URL's userinfo only ever reaches the
configured host, and the POST never becomes a GET against another (say, loopback) service.

Webhook URLs carry secrets (basic auth, `?token=`, Slack-style tokens in the path), so a logged
URL keeps only its scheme, host and port. The sender thread writes its WARNINGs to the LogSink
given with the post: a logging.Logger, Dagster's log manager and a Tee of them are thread-safe;
a sink that fails (a closed run log at exit) falls back to this module's logger.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ecom_assets.monitoring.logs import LogSink
from ecom_assets.redaction import redact, redact_url, url_secrets

__all__ = ["flush", "post_json", "queue_post"]

WEBHOOK_DEADLINE_S = 5.0  # one delivery, everything included; also the flush at process exit
WEBHOOK_QUEUE_SIZE = 100  # posts waiting per process; alerts are rare (one per open problem)

_fallback_log = logging.getLogger(__name__)


def _warn(log: LogSink, url: str, what: str) -> None:
    """`webhook <redacted url><what>` as a WARNING on the caller's sink, redacted again of url's
    secrets should an error text have quoted them; a sink that fails (closed at exit) must not
    kill the sender."""
    message = redact(f"webhook {redact_url(url)}{what}", url_secrets(url))
    try:
        log.warning(message)
    except Exception:
        _fallback_log.warning(message)


# --- one delivery ------------------------------------------------------------------------------


class _Deadline:
    """The end of one delivery; every blocking step gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"deadline of {self.seconds:g} s passed")
        return left


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """getaddrinfo has no timeout of its own: it runs in a daemon thread the deadline leaves."""
    found: list[tuple] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=lookup, name="ecom-webhook-resolve", daemon=True)
    thread.start()
    thread.join(deadline.remaining())
    if thread.is_alive():
        raise TimeoutError("name resolution timed out")
    if failed:
        raise failed[0]
    return found


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    """A TCP connection to the first address that answers within the deadline."""
    last: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        timeout = deadline.remaining()
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last


class _DeadlineReader(io.RawIOBase):
    """The answer as http.client reads it: each receive waits only for what is left."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """The socket as http.client uses it (sendall, makefile, close), bound by one deadline.

    A per-operation timeout restarts with every byte a trickling peer sends; this one does not.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._sock.settimeout(self._deadline.remaining())
            view = view[self._sock.send(view) :]

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        self._sock.close()


def _authorization(parts: SplitResult) -> dict[str, str]:
    """The Basic Authorization header of the URL's userinfo; it only goes to this URL's host,
    since redirects are never followed."""
    if parts.username is None:
        return {}
    userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return {"Authorization": "Basic " + base64.b64encode(userinfo.encode()).decode()}


def _deliver(parts: SplitResult, body: bytes, deadline: _Deadline) -> int:
    """POST body to the URL once; the answer's status code. Raises OSError (TimeoutError at the
    deadline), ValueError or HTTPException."""
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    sock = _connect(host, port, deadline)
    try:
        if https:
            sock.settimeout(deadline.remaining())  # the handshake's total, not per record
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        # http.client only formats the request and parses the answer; the socket is ours
        connection = HTTPConnection(host, port)
        connection.sock = _DeadlineSocket(sock, deadline)  # type: ignore[assignment]
        connection.request(
            "POST",
            urlunsplit(("", "", parts.path or "/", parts.query, "")),
            body=body,
            headers={
                "Host": parts.netloc.rpartition("@")[2],
                "Content-Type": "application/json",
                "User-Agent": "ecom-alerts",
                "Connection": "close",
                **_authorization(parts),
            },
        )
        response = connection.getresponse()
        response.close()  # the status decides; a body that trickles must not turn 2xx to failed
        return response.status
    finally:
        sock.close()


def _reason(exc: Exception, deadline_s: float) -> str:
    """Why a post failed, without the exception text that may quote the URL."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {deadline_s:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def post_json(
    url: str, payload: Mapping[str, object], log: LogSink, deadline_s: float = WEBHOOK_DEADLINE_S
) -> bool:
    """POST payload as JSON once, within deadline_s in total; True on a 2xx answer. Never raises:
    a failure, a 3xx (not followed) included, is a WARNING line. Blocks: callers on a data path
    use `queue_post`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _warn(log, url, " skipped: not an http(s) URL")
        return False
    try:
        status = _deliver(parts, json.dumps(payload, default=str).encode(), _Deadline(deadline_s))
    except (OSError, ValueError, HTTPException) as exc:
        _warn(log, url, f" failed: {_reason(exc, deadline_s)}; the alert is stored")
        return False
    if 200 <= status < 300:
        return True
    why = f"redirect HTTP {status} not followed" if 300 <= status < 400 else f"HTTP {status}"
    _warn(log, url, f" failed: {why}; the alert is stored")
    return False


# --- the sender thread ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Post:
    url: str
    payload: Mapping[str, object]
    log: LogSink
    deadline_s: float


class _Sender:
    """A bounded queue of posts and the one daemon thread that delivers them in order."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._posts: deque[_Post] = deque()
        self._sending = False
        self._closing_at: float | None = None  # monotonic end of the exit flush, once it began
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._dropped = 0

    def put(self, post: _Post) -> bool:
        with self._changed:
            if len(self._posts) < self._capacity and self._running():
                self._posts.append(post)
                self._changed.notify_all()
                return True
            self._dropped += 1
            dropped, waiting = self._dropped, len(self._posts)
        _warn(
            post.log,
            post.url,
            f" post dropped ({waiting} waiting, {dropped} dropped in this process); "
            "the alert is stored",
        )
        return False

    def _running(self) -> bool:
        """Start the thread on first use; False when it cannot start (interpreter shutdown)."""
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="ecom-webhook", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                return False
            self._thread = thread
            _register_exit_flush()
        return True

    def _time_left(self, post: _Post) -> float:
        """The post's deadline, cut to what is left of the exit flush once that began."""
        if self._closing_at is None:
            return post.deadline_s
        return min(post.deadline_s, self._closing_at - time.monotonic())

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._posts or self._time_left(self._posts[0]) < _MIN_ATTEMPT_S:
                    self._changed.wait()
                post = self._posts.popleft()
                deadline_s = self._time_left(post)
                self._sending = True
            try:
                post_json(post.url, post.payload, post.log, deadline_s)
            except Exception as exc:  # post_json never raises; the thread must outlive a bug
                _warn(post.log, post.url, f" failed: {type(exc).__name__}")
            finally:
                with self._changed:
                    self._sending = False
                    self._changed.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued post was delivered or failed; False at the timeout."""
        end = time.monotonic() + timeout_s
        with self._changed:
            while self._posts or self._sending:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout_s: float) -> list[_Post]:
        """At exit: deliver what fits in timeout_s (a post starts only with _MIN_ATTEMPT_S left
        and gets no more than is left), then take the posts still waiting off the queue."""
        with self._changed:
            self._closing_at = end = time.monotonic() + timeout_s
            self._changed.notify_all()
            while self._sending or (self._posts and end - time.monotonic() >= _MIN_ATTEMPT_S):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            dropped = list(self._posts)
            self._posts.clear()
            self._dropped += len(dropped)
        return dropped


_MIN_ATTEMPT_S = 0.5  # at exit, a post with less time left than this would only fail
_sender = _Sender(WEBHOOK_QUEUE_SIZE)
_exit_flush_registered = False


def _register_exit_flush() -> None:
    """Registered at the first post, so it runs before the exit hooks registered earlier
    (logging's shutdown among them: its WARNING still reaches the files)."""
    global _exit_flush_registered
    if not _exit_flush_registered:
        _exit_flush_registered = True
        atexit.register(_flush_at_exit)


def _flush_at_exit() -> None:
    """Give the queue one delivery deadline in all, then drop what still waits, with a count."""
    dropped = _sender.close(WEBHOOK_DEADLINE_S)
    if dropped:
        _warn(
            dropped[0].log,
            dropped[0].url,
            f": {len(dropped)} alert post(s) not sent before the process exited; "
            "the alerts are stored",
        )


def _new_sender_in_child() -> None:
    """A forked child has the queue's lock and list but not its thread: it starts afresh."""
    global _sender
    _sender = _Sender(WEBHOOK_QUEUE_SIZE)


os.register_at_fork(after_in_child=_new_sender_in_child)


def queue_post(url: str, payload: Mapping[str, object], log: LogSink) -> bool:
    """Queue payload for the sender thread and return at once; False when it was dropped (queue
    full). Delivery failures are WARNING lines on log, written later by the sender thread."""
    return _sender.put(_Post(url, dict(payload), log, WEBHOOK_DEADLINE_S))


def flush(timeout_s: float = WEBHOOK_DEADLINE_S) -> bool:
    """Wait up to timeout_s for the queued posts to be delivered or to fail; True when none is
    left. For callers that end right after raising an alert, and for tests."""
    return _sender.flush(timeout_s)
