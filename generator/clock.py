"""Time for the generator: the wall clock or a simulated one, and how timestamps are spelled.

Times are integer microseconds since the epoch (UTC), so arithmetic is exact and formatting can
reuse the part of the string that changes once a minute instead of building a datetime per row.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

US = 1_000_000


def parse_start_time(text: str) -> int:
    """An ISO-8601 instant ('Z' or an offset; naive means UTC) as epoch microseconds."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


class EventTimeFormat:
    """Formats epoch microseconds as 2026-01-29T10:30:20.123456+00:00, caching the minute."""

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, us: int) -> str:
        seconds, micros = divmod(us, US)
        minute, second = divmod(seconds, 60)
        if minute != self._minute:
            self._minute = minute
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        return f"{self._prefix}{second:02d}.{micros:06d}+00:00"


def file_stamp(us: int) -> str:
    """The timestamp part of a file name: 20260129T103020123456Z (sorts in time order)."""
    seconds, micros = divmod(us, US)
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}{micros:06d}Z"


class WallClock:
    """Real time: each file is stamped with the moment it is generated."""

    def next_file_time(self) -> int:
        return time.time_ns() // 1000


class SimulatedClock:
    """Deterministic time: file k (from 0) is stamped start + k * step, whatever the real time."""

    def __init__(self, start_us: int, step_us: int) -> None:
        self._next = start_us
        self._step = step_us

    def next_file_time(self) -> int:
        now = self._next
        self._next += self._step
        return now
