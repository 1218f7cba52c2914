"""The generator loop: build a file, write it atomically, wait, until told to stop.

Time is the wall clock, or a simulated clock when a start time is given (or implied by a seed);
with the simulated clock, file k is stamped start + k * step, where step is the interval (or
SIMULATED_EVENT_GAP_S per event when the interval is 0), so a seeded run writes byte-identical
files with identical names whenever and however fast it runs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from generator.anomalies import Limits
from generator.batch import Batch, BatchBuilder
from generator.clock import US, EventTimeFormat, SimulatedClock, WallClock, file_stamp
from generator.model import COLUMNS, SCHEMA_VERSIONS, WIDTH, EventModel
from generator.writer import ensure_directory, write_csv, write_json

SEEDED_START = "2026-01-01T00:00:00+00:00"
"""Start of the simulated clock of a seeded run without an explicit start time."""
SIMULATED_EVENT_GAP_S = 0.05
"""Simulated seconds per event when the interval is 0 (bursts): 20 events per second."""


@dataclass(frozen=True)
class RunConfig:
    output_dir: Path
    truth_dir: Path | None
    events_per_file: int
    interval_s: float
    files: int | None
    """Stop after this many files (None: run until stopped)."""
    burst: int | None
    """Write this many events as fast as possible, in files of events_per_file, then stop."""
    schema: str
    seed: int | None
    start_us: int | None
    """Start of the simulated clock; None: the wall clock."""
    anomaly_rate: float
    late_rate: float
    limits: Limits


@dataclass(frozen=True)
class _File:
    name: str
    version: str
    time: str
    batch: Batch


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    files: int = 0
    events: int = 0
    late: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, batch: Batch) -> None:
        self.files += 1
        self.events += len(batch.rows)
        self.late += batch.late
        self.kinds.update(batch.kinds)

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        by_kind = ", ".join(f"{kind}={count}" for kind, count in sorted(self.kinds.items()))
        return (
            f"files={self.files} events={self.events} anomalies={self.kinds.total()} "
            f"late={self.late} seconds={seconds:.2f} "
            f"events_per_s={self.events / seconds if seconds > 0 else 0:.0f} "
            f"anomalies_by_kind=[{by_kind}]"
        )


def file_sizes(config: RunConfig) -> list[int] | None:
    """Events of each file when the run has a known end; None when it runs until stopped."""
    per_file = config.events_per_file
    if config.burst is not None:
        full, rest = divmod(config.burst, per_file)
        return [per_file] * full + ([rest] if rest else [])
    if config.files is not None:
        return [per_file] * config.files
    return None


class Generator:
    """Writes event files per `config` until done or until `stop` is set."""

    def __init__(self, config: RunConfig, logger: logging.Logger, stop: threading.Event) -> None:
        self._config = config
        self._log = logger
        self._stop = stop
        self._rng = random.Random(config.seed)
        self._names = random.Random(None if config.seed is None else f"{config.seed}/names")
        self._builder = BatchBuilder(
            EventModel(self._rng), self._rng, config.limits, config.anomaly_rate, config.late_rate
        )
        gap_s = config.interval_s or config.events_per_file * SIMULATED_EVENT_GAP_S
        self._step_us = int(gap_s * US)
        if config.start_us is None:
            self._clock: WallClock | SimulatedClock = WallClock()
            self._previous_us = WallClock().next_file_time() - self._step_us
        else:
            self._clock = SimulatedClock(config.start_us, self._step_us)
            self._previous_us = config.start_us - self._step_us
        self._max_span_us = config.limits.late_watermark_s * US // 2
        self._format_time = EventTimeFormat()
        self.stats = Stats()

    def run(self) -> Stats:
        """Raises WriteError when a directory or file cannot be written."""
        config = self._config
        ensure_directory(config.output_dir)
        if config.truth_dir is not None:
            ensure_directory(config.truth_dir)
        sizes = file_sizes(config)
        pace = config.burst is None and config.interval_s > 0
        index = 0
        while not self._stop.is_set() and (sizes is None or index < len(sizes)):
            file = self._build_file(config.events_per_file if sizes is None else sizes[index])
            self._write(file)
            self._builder.remember()
            self._record(file)
            index += 1
            if pace and (sizes is None or index < len(sizes)):
                deadline = self.stats.started + index * config.interval_s
                self._stop.wait(max(deadline - time.monotonic(), 0))
        return self.stats

    def _build_file(self, count: int) -> _File:
        config = self._config
        now_us = self._clock.next_file_time()
        start_us = max(self._previous_us, now_us - self._max_span_us)
        self._previous_us = now_us
        version = config.schema if config.schema != "mixed" else self._rng.choice(SCHEMA_VERSIONS)
        batch = self._builder.build(count, WIDTH[version], start_us, now_us)
        name = f"events_{file_stamp(now_us)}_{self._names.getrandbits(32):08x}.csv"
        return _File(name, version, self._format_time(now_us), batch)

    def _write(self, file: _File) -> None:
        """Truth first, so whoever sees the CSV can find its truth."""
        config = self._config
        if config.truth_dir is not None:
            document = {
                "file": file.name,
                "schema_version": file.version,
                "file_time": file.time,
                **file.batch.truth(),
            }
            write_json(config.truth_dir / f"{file.name[:-4]}.json", document)
        width = WIDTH[file.version]
        rows = file.batch.rows
        if width < len(COLUMNS):
            rows = [row[:width] for row in rows]
        write_csv(config.output_dir / file.name, COLUMNS[:width], rows)

    def _record(self, file: _File) -> None:
        batch = file.batch
        self.stats.add(batch)
        self._log.log(
            logging.DEBUG if self._config.burst is not None else logging.INFO,
            "wrote %s: %d events (%s), %d anomalies, %d late",
            file.name,
            len(batch.rows),
            file.version,
            batch.kinds.total(),
            batch.late,
        )
