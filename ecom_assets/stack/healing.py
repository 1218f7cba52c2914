"""How `ecom up` heals the stack: when to restart a part that died, when to give up, and how it
is told (the stack log, `ecom status` through stack.json, a `stack_restart` alert).

A part that dies is restarted after a backoff that doubles with each death of that part within
ECOM_STACK_RESTART_WINDOW_S (1 s, 2 s, 4 s ... up to ECOM_STACK_RESTART_MAX_DELAY_S): a part
that died once, from a kill or an out-of-memory, comes back at once; one that dies again and
again does not spin. More than ECOM_STACK_MAX_RESTARTS deaths in the window is a crash loop:
restarting cannot help, so `ecom up` gives up, names the part and its log's tail, and stops
the stack as it did before healing existed. The policy is a pure function of the deaths' times.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ecom_assets.monitoring.alerts import Alert, AlertLevel, publish, store_alert
from ecom_assets.monitoring.logs import LogSink
from ecom_assets.settings import Settings, StackSettings

ALERT_KIND = "stack_restart"


def restart_delay(deaths_in_window: int, stack: StackSettings) -> float | None:
    """Seconds to wait before restarting a part that died for the deaths_in_window-th time
    within the window (this death included); None: a crash loop, give up."""
    if deaths_in_window > stack.max_restarts:
        return None
    return min(stack.restart_initial_delay_s * 2 ** (deaths_in_window - 1),
               stack.restart_max_delay_s)  # fmt: skip


@dataclass
class RestartPolicy:
    """The deaths of each part within the window, and the decision for a new one."""

    stack: StackSettings
    deaths: dict[str, deque[float]] = field(default_factory=dict)

    def on_death(self, part: str, now: float) -> tuple[int, float | None]:
        """Record a death at ``now`` (seconds); (deaths in the window, delay or None)."""
        times = self.deaths.setdefault(part, deque())
        times.append(now)
        while times and times[0] <= now - self.stack.restart_window_s:
            times.popleft()
        return len(times), restart_delay(len(times), self.stack)

    def quiet_since(self, now: float) -> bool:
        """No part died within the window before ``now``."""
        window = self.stack.restart_window_s
        return all(not times or times[-1] <= now - window for times in self.deaths.values())


def describe_exit(returncode: int | None) -> str:
    """`exit 1`, `killed by SIGKILL`; None (not our child: the postmaster) `gone`."""
    if returncode is None:
        return "gone"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def raise_stack_alert(
    url: str, settings: Settings, level: AlertLevel, message: str, details: dict, log: LogSink
) -> Alert | None:
    """Store a `stack_restart` alert and publish it (the stack log, the webhook). Each restart
    is a row of its own: the previous open alert of the level is resolved first. A database
    that cannot be reached (PostgreSQL itself is the part) only logs and posts it."""
    alert = Alert(kind=ALERT_KIND, level=level, message=message, details=details)
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn, conn.transaction():
            conn.execute(
                "UPDATE alerts SET resolved_at = now() "
                "WHERE kind = %s AND level = %s AND resolved_at IS NULL",
                (ALERT_KIND, level),
            )
            stored = store_alert(conn, alert)
    except (psycopg.Error, OSError) as exc:
        log.warning(f"{ALERT_KIND} alert not stored, PostgreSQL unavailable: {exc}")
        stored = alert
    if stored is not None:
        publish(stored, settings.monitoring, log)
    return stored


def resolve_stack_alerts(url: str, levels: tuple[str, ...], log: LogSink) -> int:
    """Close the open `stack_restart` alerts of these levels; how many were open."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            count = conn.execute(
                "UPDATE alerts SET resolved_at = now() "
                "WHERE kind = %s AND level = ANY(%s) AND resolved_at IS NULL",
                (ALERT_KIND, list(levels)),
            ).rowcount
    except (psycopg.Error, OSError) as exc:
        log.warning(f"{ALERT_KIND} alerts not resolved, PostgreSQL unavailable: {exc}")
        return 0
    if count:
        log.info(f"ALERT RESOLVED [{ALERT_KIND}] {count} open alert(s)")
    return count


class StackLock:
    """An exclusive flock on `<state>/stack.lock`, held by the supervisor for its whole life.

    Two `ecom up` on one home would both start servers on the same ports and data directory;
    the second fails at once instead. The kernel drops the lock when the holder dies, however it
    dies, so "the lock is free" also means "no supervisor is alive", without trusting a
    recorded pid that may have been reused. The descriptor is not inherited by the children
    (Python's descriptors are close-on-exec), so orphans never hold it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_held(path: Path) -> bool:
    """Does a live process hold the lock at path (a supervisor running)?"""
    if not path.exists():
        return False
    probe = StackLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


def log_tail(path: Path, tail: Callable[[Path], str]) -> str:
    """The tail of a part's log, indented, for a give-up message."""
    return "\n".join(f"    {line}" for line in tail(path).splitlines())
